"""Small file helpers: atomic writes and image checks with clear errors."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import DatasetError


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest (md5, sha256, ...) of a file, read in 1 MiB chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_json_atomic(path: Path, data, indent: int | None = None) -> None:
    """Write JSON so that a killed job never leaves a truncated file behind."""
    write_bytes_atomic(Path(path), (json.dumps(data, indent=indent) + "\n").encode())


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write through a temporary file in the target's directory, renamed over ``path``: a killed
    job never leaves a truncated file. The file gets the mode ``open(path, "wb")`` would give it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = _new_temporary(path)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _new_temporary(path: Path) -> tuple[int, Path]:
    """A new file beside ``path``, created by the kernel with mode 0666 less the umask (or as the
    directory's default ACL says), as ``open`` creates files. Not tempfile.mkstemp: it creates 0600
    whatever the umask and the rename keeps that, so group members of a shared file system could
    not read the outputs. The umask is never read: reading it means setting it, which races with
    other threads; O_EXCL keeps the name ours, as mkstemp does."""
    for _ in range(100):
        temporary = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666), temporary
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path} after 100 tries")


def read_json(path: Path):
    try:
        with open(path) as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise DatasetError(f"annotation file {path} does not exist") from None
    except json.JSONDecodeError as error:
        raise DatasetError(f"annotation file {path} is not valid JSON: {error}") from None


def require_file(path: Path, referenced_by: str) -> None:
    if not Path(path).is_file():
        raise DatasetError(
            f"{referenced_by} refers to {path}, which does not exist; the dataset is "
            "incomplete (re-download or re-extract it, see README.md 'Getting the real datasets')"
        )


def image_size(path: Path, decode: bool) -> tuple[int, int]:
    """(width, height) of an image; with ``decode`` the whole file is decoded, so a
    truncated or corrupt file is named here rather than deep inside training."""
    try:
        with Image.open(path) as image:
            if decode:
                image.load()
            return image.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise DatasetError(
            f"image {path} is corrupt or unreadable ({error}); replace it with an intact "
            "copy from the dataset's archive"
        ) from None


def decode_image(path: Path) -> tuple[np.ndarray, str, bool]:
    """RGB pixels as the training code sees them (EXIF orientation applied, as detectron2
    and deep_privacy2 do), the original mode, and whether an orientation was applied."""
    try:
        with Image.open(path) as image:
            image.load()
            oriented = ImageOps.exif_transpose(image)
            return np.array(oriented.convert("RGB")), image.mode, _has_orientation(image)
    except (OSError, SyntaxError, ValueError) as error:
        raise DatasetError(f"image {path} is corrupt or unreadable ({error})") from None


def _has_orientation(image: Image.Image) -> bool:
    return image.getexif().get(0x0112, 1) != 1
