"""Atomic writes: no partial file, and the mode a plain open() would give (group-readable on a shared file system)."""

from __future__ import annotations

import os
import stat

import pytest

from anonymization_impact.io import write_bytes_atomic, write_json_atomic


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_atomic_writes_follow_the_umask_as_open_does(tmp_path, umask, mask, expected):
    umask(mask)
    write_bytes_atomic(tmp_path / "sub" / "a.bin", b"data")
    write_json_atomic(tmp_path / "b.json", {"a": 1})
    with open(tmp_path / "plain.bin", "wb") as handle:
        handle.write(b"data")
    assert _mode(tmp_path / "sub" / "a.bin") == _mode(tmp_path / "b.json") == _mode(tmp_path / "plain.bin") == expected
    assert (tmp_path / "sub" / "a.bin").read_bytes() == b"data"


def test_an_existing_private_file_is_replaced_by_one_with_the_umask_mode(tmp_path, umask):
    umask(0o022)
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")
    target.chmod(0o600)
    write_bytes_atomic(target, b"new")
    assert target.read_bytes() == b"new" and _mode(target) == 0o644


def test_a_failed_write_leaves_no_temporary_file(tmp_path):
    with pytest.raises(TypeError):
        write_bytes_atomic(tmp_path / "a.bin", object())  # not bytes: the write fails after the file exists
    assert list(tmp_path.iterdir()) == []
