"""Fetching files: through a partial file, with one clear error, and a safe source unpack."""

from __future__ import annotations

import tarfile

import pytest

from anonymization_impact.downloads import download, extract_source_archive
from anonymization_impact.errors import WorkflowInputError


def test_download_writes_the_file_and_leaves_no_partial(tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(b"weights")
    target = tmp_path / "weights" / "model.pth"
    download(source.as_uri(), target, "weights 'model'", "place it by hand")
    assert target.read_bytes() == b"weights"
    assert list(target.parent.iterdir()) == [target]


def test_a_failed_download_names_what_and_what_to_do_and_leaves_nothing(tmp_path):
    target = tmp_path / "model.pth"
    with pytest.raises(WorkflowInputError, match=r"could not download weights 'model' from .*: place it by hand"):
        download((tmp_path / "missing.bin").as_uri(), target, "weights 'model'", "place it by hand")
    assert list(tmp_path.iterdir()) == []


def test_a_source_archive_is_unpacked_without_its_top_folder(tmp_path):
    tree = tmp_path / "deep_privacy2-f4d8f09"
    (tree / "configs").mkdir(parents=True)
    (tree / "configs" / "a.py").write_text("x = 1\n")
    archive = tmp_path / "source.tar.gz"
    with tarfile.open(archive, "w:gz") as bundle:
        bundle.add(tree, arcname=tree.name)
    target = tmp_path / "out" / "deep_privacy2"
    target.parent.mkdir()
    extract_source_archive(archive, target)
    assert (target / "configs" / "a.py").read_text() == "x = 1\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["deep_privacy2"]


def test_a_source_archive_may_not_write_outside_its_target(tmp_path):
    archive = tmp_path / "evil.tar"
    payload = tmp_path / "payload.txt"
    payload.write_text("x")
    with tarfile.open(archive, "w") as bundle:
        bundle.add(payload, arcname="../escaped.txt")
    with pytest.raises(tarfile.FilterError):
        extract_source_archive(archive, tmp_path / "out" / "target")
    assert not (tmp_path / "out" / "escaped.txt").exists()
