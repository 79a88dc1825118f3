"""Fetching files the workflow cannot make: weights, and the DeepPrivacy2 source its configs
are read from."""

from __future__ import annotations

import tarfile
import urllib.request
from pathlib import Path

from .errors import WorkflowInputError


def download(url: str, target: Path, what: str, instead: str) -> None:
    """Fetch ``url`` to ``target`` through a partial file; on failure one error naming ``what``
    and what to do ``instead``."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    try:
        urllib.request.urlretrieve(url, partial)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise WorkflowInputError(f"could not download {what} from {url} ({error}): {instead}") from None
    partial.replace(target)


def extract_source_archive(archive: Path, target: Path) -> None:
    """A GitHub source archive (one top-level folder) unpacked into ``target``, safely."""
    target = Path(target)
    staging = target.with_name(target.name + ".unpacking")
    with tarfile.open(archive) as bundle:
        bundle.extractall(staging, filter="data")
    (top,) = list(staging.iterdir())
    top.replace(target)
    staging.rmdir()
