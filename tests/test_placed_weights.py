"""Weights placed by hand are checked while the DAG is built: size where known, checksum where
pinned, each file hashed once per size and modification time."""

from __future__ import annotations

import copy
import os
import re

import pytest
import yaml

from anonymization_impact import weights
from anonymization_impact.config import validate_config
from anonymization_impact.errors import WorkflowInputError
from anonymization_impact.weights import check_placed_files, sha256_of

from conftest import REPO, run_snakemake


@pytest.fixture(scope="module")
def config():
    return validate_config(yaml.safe_load((REPO / "config.yaml").read_text()))


def with_entry(config: dict, path, **checks) -> dict:
    placed = copy.deepcopy(config)
    placed["weights"] = {"test_placed": {"path": str(path), "url": "https://example.org/placed.pth", **checks}}
    return placed


def test_a_corrupt_file_names_itself_the_expected_checksum_and_the_rule_that_fetches_it(config, tmp_path):
    (tmp_path / "placed.pth").write_bytes(b"not the release")
    with pytest.raises(WorkflowInputError) as error:
        check_placed_files(with_entry(config, tmp_path / "placed.pth", sha256="f37072fd"), tmp_path / "verified.json")
    said = str(error.value)
    assert f"weights 'test_placed' at {tmp_path / 'placed.pth'} have sha256 " in said and "expected f37072fd" in said
    assert "rule download_weights fetches https://example.org/placed.pth" in said
    assert not (tmp_path / "verified.json").exists()


def test_a_file_of_the_wrong_size_is_refused_without_hashing(config, tmp_path, monkeypatch):
    (tmp_path / "placed.pth").write_bytes(b"12345")
    monkeypatch.setattr(weights, "file_digest", lambda *_: pytest.fail("hashed a file of the wrong size"))
    with pytest.raises(WorkflowInputError, match="have 5 bytes, expected 6"):
        check_placed_files(with_entry(config, tmp_path / "placed.pth", size=6, sha256="00"), tmp_path / "verified.json")


def test_a_verified_file_is_hashed_once_until_it_changes(config, tmp_path, monkeypatch):
    placed = tmp_path / "placed.pth"
    placed.write_bytes(b"the release")
    settings = with_entry(config, placed, sha256=sha256_of(placed)[:8])
    hashed = []
    digest = weights.file_digest
    monkeypatch.setattr(weights, "file_digest", lambda path, algorithm: hashed.append(path) or digest(path, algorithm))
    check_placed_files(settings, tmp_path / "verified.json")
    check_placed_files(settings, tmp_path / "verified.json")
    assert hashed == [placed]
    placed.write_bytes(b"the release, changed")
    os.utime(placed, ns=(1, 1))
    with pytest.raises(WorkflowInputError, match="the file is corrupt or another release"):
        check_placed_files(settings, tmp_path / "verified.json")


def test_missing_files_and_files_without_a_pinned_checksum_pass(config, tmp_path):
    check_placed_files(with_entry(config, tmp_path / "absent.pth", sha256="f37072fd"), tmp_path / "verified.json")
    (tmp_path / "made.pth").write_bytes(b"made by the workflow")
    check_placed_files(with_entry(config, tmp_path / "made.pth", sha256=None), tmp_path / "verified.json")


def test_the_dag_build_stops_at_a_corrupt_file_before_any_job(tmp_path):
    corrupt = tmp_path / "resources" / "weights" / "resnet18-f37072fd.pth"  # config.yaml's resnet18_imagenet
    corrupt.parent.mkdir(parents=True)
    corrupt.write_bytes(b"truncated download")
    result = run_snakemake(tmp_path, "-n", "all", "--configfile", str(REPO / "config.yaml"))
    assert result.returncode != 0
    said = "WorkflowInputError: weights 'resnet18_imagenet' at resources/weights/resnet18-f37072fd.pth have 18 bytes, expected 46830571"
    assert said in result.stderr and "rule download_weights fetches https://download.pytorch.org/models/resnet18-f37072fd.pth" in result.stderr


def test_pinned_checksums_agree_with_the_digits_in_the_file_names(config):
    """torchvision (and tops) name a file by the first digits of its sha256: a full checksum
    recorded in the config must begin with them."""
    named = 0
    for name, entry in config["weights"].items():
        digits = re.search(r"-([0-9a-f]{8,})\.pth$", entry["path"])
        if digits and entry.get("sha256"):
            assert entry["sha256"].startswith(digits.group(1)) and digits.group(1).startswith(entry["sha256"][:8]), name
            named += 1
    assert named >= 5
