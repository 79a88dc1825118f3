"""Initial weights: files named in the config, checked against their sha256 before use."""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..errors import WorkflowInputError


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_weights(name: str, entry: dict) -> Path:
    """The path of weights ``name`` after checking that it exists and its sha256 matches
    (the full hash, or its leading digits as torchvision publishes them)."""
    path = Path(entry["path"])
    if not path.is_file():
        raise WorkflowInputError(
            f"initial weights '{name}' are missing at {path}: run `snakemake weights_download` "
            f"(the rule fetches {entry['url']}) on a machine with internet, or set "
            "training.<schedule>.init: scratch to train from scratch on purpose"
        )
    if entry["sha256"] is None:  # made by this workflow (the twins' pre-trained backbones)
        return path
    actual = sha256_of(path)
    if not actual.startswith(entry["sha256"]):
        raise WorkflowInputError(f"initial weights '{name}' at {path} have sha256 {actual}, expected {entry['sha256']}...: the file is corrupt or another release; delete it and download again")
    return path
