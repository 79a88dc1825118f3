"""A shard's finished images, kept between the attempts of its job.

A realistic shard under a scheduler's time limit (HM-LO bodies on COCO: hours per shard)
stops before the limit as training does, and the next attempt continues it. Its images go
to a work directory beside the job's outputs, not inside them (Snakemake deletes the outputs
of a failed job), with one journal line per finished image: its audit record and the
method's statistics for it. Every draw is seeded per instance, so an image made by a later
attempt has the bytes it would have had in one go. A journal written for another job (other
settings, other input files) is discarded, never continued.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

from .io import file_digest, read_json, write_bytes_atomic, write_json_atomic

JOURNAL = "journal.jsonl"
DESCRIPTION = "job.json"
IMAGES = "images"

log = logging.getLogger("anonymization_impact")


def input_digest(path: str | Path) -> str:
    """What a journal is bound to of an input: a file's sha256, a directory's path (the
    DeepPrivacy2 checkout, named by its commit)."""
    path = Path(path)
    return f"directory {path.resolve()}" if path.is_dir() else file_digest(path, "sha256")


class ShardJournal:
    """The work directory of one shard job: ``images/`` (the raw root's layout) and the journal."""

    def __init__(self, directory: str | Path, description: dict):
        self.directory = Path(directory)
        self.images = self.directory / IMAGES
        self.description = description
        self.fingerprint = hashlib.sha256(json.dumps(description, sort_keys=True, default=str).encode()).hexdigest()

    def open(self) -> dict[str, dict]:
        """The entries of the images earlier attempts finished, by file name; none on a first
        attempt or where the directory holds another job's work (then removed)."""
        described = self.directory / DESCRIPTION
        if described.is_file() and read_json(described).get("fingerprint") == self.fingerprint:
            finished = self._read()
            log.info("continuing %s: %d images finished by earlier attempts", self.directory, len(finished))
            return finished
        if self.directory.exists():
            log.info("discarding %s: written by a job with other settings or inputs", self.directory)
            shutil.rmtree(self.directory)
        self.images.mkdir(parents=True)
        write_json_atomic(described, {"fingerprint": self.fingerprint, "description": self.description})
        return {}

    def _read(self) -> dict[str, dict]:
        """The journal's entries; a line cut by a kill, and anything after it, is dropped (its
        image is made again), as is an entry whose image is not there."""
        path = self.directory / JOURNAL
        entries, lines = {}, path.read_text().splitlines(keepends=True) if path.exists() else []
        kept = []
        for line in lines:
            try:
                entry = json.loads(line) if line.endswith("\n") else None
            except json.JSONDecodeError:
                entry = None
            if entry is None:
                break
            if not (self.images / entry["record"]["image"]).is_file():
                continue
            entries[entry["record"]["image"]] = entry
            kept.append(line)
        if len(kept) != len(lines):
            write_bytes_atomic(path, "".join(kept).encode())
        return entries

    def add(self, entry: dict) -> None:
        """Record one finished image (after its file is in place)."""
        with open(self.directory / JOURNAL, "a") as handle:
            handle.write(json.dumps(entry) + "\n")  # key order kept: the audit is written as made

    def finish(self, output_dir: str | Path) -> None:
        """Move the images into the job's (absent or empty) output directory; the work
        directory goes."""
        output_dir = Path(output_dir)
        output_dir.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.images, output_dir)
        shutil.rmtree(self.directory)


def statistics_since(before: dict, after: dict) -> dict:
    """What a method's statistics gained (counts: the difference; lists: the new items)."""
    return {key: value[len(before[key]):] if isinstance(value, list) else value - before[key] for key, value in after.items()}


def add_statistics(statistics: dict, gained: dict) -> None:
    for key, value in gained.items():
        if isinstance(value, list):
            statistics[key].extend(value)
        else:
            statistics[key] += value
