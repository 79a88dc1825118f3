"""External weights: files named in the config's ``weights``, checked against their checksum.

An entry names a file, where the download rule fetches it, and its md5 (DeepPrivacy2's and
most model zoos' published checksum) or sha256 (the leading digits torchvision puts in its file
names); a file the user placed by hand is accepted when its checksum matches. Every file already
in place is checked when the DAG is built (:func:`check_placed_files`), so a corrupt one stops
the workflow before a GPU job queues for it.
"""

from __future__ import annotations

from pathlib import Path

from .errors import WorkflowInputError
from .io import file_digest, read_json, write_json_atomic

CHECKSUMS = ("md5", "sha256")


def sha256_of(path: Path) -> str:
    return file_digest(path, "sha256")


def expected_checksum(entry: dict) -> tuple[str, str] | None:
    """(algorithm, expected hex prefix) of an entry, or None when nothing is published."""
    for algorithm in CHECKSUMS:
        if entry.get(algorithm):
            return algorithm, entry[algorithm]
    return None


def fetch_instructions(name: str, entry: dict) -> str:
    """How to get the file: the download rule's command, or placing it by hand (mirrors)."""
    path = entry["path"]
    checksum = expected_checksum(entry)
    check = f" with {checksum[0]} {checksum[1]}" if checksum else ""
    text = f"run `snakemake --cores 1 {path}` (rule download_weights fetches {entry['url']}) on a machine with internet"
    if not entry.get("url"):
        text = "it has no download address that still works"
    text += f", or place the file{check} at {path} by hand"
    if entry.get("mirrors"):
        text += "; known mirrors: " + ", ".join(entry["mirrors"])
    return text


def verify_weights(name: str, entry: dict) -> Path:
    """The path of weights ``name`` after checking that it exists and its checksum matches
    (the full hash, or its leading digits as torchvision publishes them)."""
    path = Path(entry["path"])
    if not path.is_file():
        raise WorkflowInputError(f"weights '{name}' are missing at {path}: {fetch_instructions(name, entry)}")
    checksum = expected_checksum(entry)
    if checksum is None:  # made by this workflow, or nothing published: md5 goes to the manifest
        return path
    algorithm, expected = checksum
    actual = file_digest(path, algorithm)
    if not actual.startswith(expected):
        raise WorkflowInputError(
            f"weights '{name}' at {path} have {algorithm} {actual}, expected {expected}: the file is corrupt "
            f"or another release; delete it and {fetch_instructions(name, entry)}"
        )
    return path


def placed_weights(config: dict, name: str, named_by: str) -> dict:
    """The `weights` entry ``name`` (with its name), refusing while the DAG is built a file placed
    by hand whose size is known and wrong; ``named_by`` is the config key that names it."""
    entry = config["weights"].get(name)
    if entry is None:
        raise WorkflowInputError(f"config key 'weights.{name}' is missing: {named_by} names it")
    path = Path(entry["path"])
    if entry.get("size") and path.is_file() and path.stat().st_size != entry["size"]:
        raise WorkflowInputError(
            f"weights '{name}' at {path} have {path.stat().st_size} bytes, expected {entry['size']}: "
            f"delete the file and {fetch_instructions(name, entry)}"
        )
    return {"name": name, **entry}


def entry_for_file(config: dict, path: str) -> dict:
    """The `weights` entry (with its name) whose file is ``path``, for the download rule."""
    for name, entry in config["weights"].items():
        if Path(entry["path"]) == Path(path):
            return {"name": name, **entry}
    raise WorkflowInputError(f"no entry of config key 'weights' has the file {path}")



def check_placed_files(config: dict, verified: Path) -> None:
    """Every `weights` file already in place has its known size and checksum, checked while the
    DAG is built. A file whose checksum was verified at this size and modification time (the
    record in ``verified``) is not hashed again, so the multi-GB detector weights cost their
    hash once. Files not in place yet are left to the download rule."""
    record = read_json(verified) if verified.is_file() else {}
    changed = False
    for name, entry in sorted(config["weights"].items()):
        path = Path(entry["path"])
        if not path.is_file():
            continue
        placed_weights(config, name, "the config")  # the size, where known
        checksum = expected_checksum(entry)
        if checksum is None:
            continue
        stat = path.stat()
        stamp = [stat.st_size, stat.st_mtime_ns, *checksum]
        key = str(path.resolve())
        if record.get(key) != stamp:
            verify_weights(name, entry)
            record[key], changed = stamp, True
    if changed:
        write_json_atomic(verified, record, indent=1)
