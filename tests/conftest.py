"""Shared fixtures: small synthetic twins written once per test session."""

from __future__ import annotations

import copy
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from anonymization_impact import DATASETS
from anonymization_impact.io import read_json

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
SMALL = {"n_train": 10, "n_val": 8, "seed": 3}
# the `synthetic` config of workflow tests: small twins, a few pretraining iterations
SMALL_TWINS = {**SMALL, "pretraining": {"images": 8, "iterations": 4}}


def real(config: dict, *datasets: str) -> dict:
    """A copy of a validated config with ``datasets`` (default all) real, rooted at /data/<dataset>:
    the paper's configuration, for what needs no data (plans, costs)."""
    changed = copy.deepcopy(config)
    for dataset in datasets or DATASETS:
        changed["datasets"][dataset].update(synthetic=False, root=f"/data/{dataset}")
    return changed


@pytest.fixture(scope="session")
def twins(tmp_path_factory) -> dict[str, dict]:
    """{dataset: {"root": Path, "truth": dict, "faces": Path}} for small twins (read-only use)."""
    from anonymization_impact.twins import write_twin

    base = tmp_path_factory.mktemp("twins")
    result = {}
    for dataset in DATASETS:
        root, truth, faces = base / dataset, base / f"{dataset}.truth.json", base / f"{dataset}.faces.json"
        write_twin(dataset, root, truth, faces, **SMALL)
        result[dataset] = {"root": root, "truth": read_json(truth), "faces": faces}
    return result


@pytest.fixture
def twin_copy(twins, tmp_path):
    """A writable copy of one twin: twin_copy("coco") -> root Path."""

    def copy(dataset: str) -> Path:
        target = tmp_path / f"{dataset}-copy"
        shutil.copytree(twins[dataset]["root"], target)
        return target

    return copy


def run_snakemake(workdir: Path, *args: str, timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the workflow of this repository with ``workdir`` as its working directory (``env``:
    variables added to this process's environment)."""
    command = [*SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})


@pytest.fixture
def umask():
    """umask(value) sets the process umask for the test; the one before is restored after it."""
    before = []

    def set_umask(value: int) -> None:
        previous = os.umask(value)
        before.append(previous)

    yield set_umask
    if before:
        os.umask(before[0])


def exif_with_gps_and_thumbnail(thumbnail: bytes) -> bytes:
    """Raw EXIF (APP1 payload): IFD0 -> GPS IFD (latitude ref 'N'), IFD1 with a JPEG thumbnail."""
    entries0 = [(0x8825, 4, 1, None)]  # GPSInfo pointer, patched below
    ifd0_offset = 8
    ifd0_size = 2 + 12 * len(entries0) + 4
    gps_offset = ifd0_offset + ifd0_size
    gps_size = 2 + 12 * 1 + 4
    ifd1_offset = gps_offset + gps_size
    ifd1_size = 2 + 12 * 2 + 4
    thumb_offset = ifd1_offset + ifd1_size
    tiff = b"II*\x00" + struct.pack("<I", ifd0_offset)
    tiff += struct.pack("<H", 1) + struct.pack("<HHII", 0x8825, 4, 1, gps_offset) + struct.pack("<I", ifd1_offset)
    tiff += struct.pack("<H", 1) + struct.pack("<HHI", 0x0001, 2, 2) + b"N\x00\x00\x00" + struct.pack("<I", 0)
    tiff += struct.pack("<H", 2) + struct.pack("<HHII", 0x0201, 4, 1, thumb_offset) + struct.pack("<HHII", 0x0202, 4, 1, len(thumbnail)) + struct.pack("<I", 0)
    return b"Exif\x00\x00" + tiff + thumbnail
