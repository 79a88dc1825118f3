"""A shard under a time limit: each attempt stops at its deadline after an image, the next
continues from the journal, and the chain ends with the bytes and the audit of one attempt.
Through Snakemake's retries: test_workflow.py's realistic trees test."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from anonymization_impact.io import read_json
from anonymization_impact.realistic.loading import load_generators
from anonymization_impact.realistic.method import build_realistic
from anonymization_impact.shard_journal import JOURNAL, ShardJournal
from anonymization_impact.trees import anonymize_shard
from anonymization_impact.walltime import Deadline, TimeLimitReached

from test_realistic import _bytes, cityscapes, variant  # noqa: F401 (a fixture)

PASSED = Deadline(at=0.0, source="a limit already passed")  # each attempt makes one image, then stops


def attempt(cityscapes, settings, tmp_path, *, deadline=None, name="chained"):  # noqa: F811
    """One attempt of a job, as a new process makes it: a new method, a new output directory
    (Snakemake deleted the last one's), the work directory kept."""
    generators = load_generators({"kind": "standin", "roles": ["body"], "standin_seed": 0}, {}, "cpu")
    output_dir = tmp_path / name / "shard"
    journal = ShardJournal(tmp_path / name / "shard.partial", {"settings": settings})
    audit = anonymize_shard(root=Path(cityscapes["root"]), persons=cityscapes["persons"], faces=None, variant=settings,
                            method=build_realistic(settings, generators), shard=0, shards=1, output_dir=output_dir,
                            leak_check_images=2, journal=journal, deadline=deadline)
    return audit, output_dir, journal


def chain(cityscapes, settings, tmp_path, name="chained"):  # noqa: F811
    """Attempts until one finishes; the finished attempt's audit and images, and how many it took."""
    for attempts in range(1, 100):
        try:
            audit, output_dir, journal = attempt(cityscapes, settings, tmp_path, deadline=PASSED, name=name)
        except TimeLimitReached as stopped:
            assert "the next attempt continues there" in str(stopped)
            continue
        assert not journal.directory.exists()
        return audit, output_dir, attempts
    raise AssertionError("the chain never finished")


@pytest.mark.parametrize("settings", [variant(region="body", method="realistic"),
                                      variant(region="body", method="realistic", postprocess="hmlo", hmlo_steps=3)],
                         ids=["leak-checked", "hmlo"])
def test_a_shard_stopped_at_each_image_ends_with_the_bytes_and_audit_of_one_attempt(cityscapes, settings, tmp_path):  # noqa: F811
    whole, whole_dir, _ = attempt(cityscapes, settings, tmp_path, name="whole")
    audit, output_dir, attempts = chain(cityscapes, settings, tmp_path)
    made = sum(1 for record in whole["images"] if record["anonymized"])
    assert attempts == made > 2
    assert _bytes(output_dir) == _bytes(whole_dir) and _bytes(output_dir)
    assert audit.pop("images_from_earlier_attempts") == made - 1  # the one thing the audit adds: how it was made
    assert json.dumps(audit) == json.dumps(whole)  # key order too: the audit file is written as it is
    assert audit["method"]["syntheses"] > 0


def test_a_journal_of_another_job_is_discarded_not_continued(cityscapes, tmp_path, caplog):  # noqa: F811
    with pytest.raises(TimeLimitReached):
        attempt(cityscapes, variant(region="body", method="realistic"), tmp_path, deadline=PASSED)
    other = variant(region="body", method="realistic", truncation="none")
    expected, expected_dir, _ = attempt(cityscapes, other, tmp_path, name="other")
    with caplog.at_level(logging.INFO):
        audit, output_dir, _ = attempt(cityscapes, other, tmp_path)
    assert "written by a job with other settings or inputs" in caplog.text
    assert _bytes(output_dir) == _bytes(expected_dir) and audit == expected and "images_from_earlier_attempts" not in audit


def test_a_journal_line_cut_by_a_kill_and_a_missing_image_are_made_again(cityscapes, tmp_path):  # noqa: F811
    settings = variant(region="body", method="realistic")
    whole, whole_dir, _ = attempt(cityscapes, settings, tmp_path, name="whole")
    for _ in range(2):
        with pytest.raises(TimeLimitReached):
            attempt(cityscapes, settings, tmp_path, deadline=PASSED)
    work = tmp_path / "chained" / "shard.partial"
    entries = [json.loads(line) for line in (work / JOURNAL).read_text().splitlines()]
    assert len(entries) == 2
    (work / "images" / entries[0]["record"]["image"]).unlink()  # the file system lost it
    with open(work / JOURNAL, "a") as journal:
        journal.write('{"record": {"image": "cut')  # a kill in the middle of a line
    audit, output_dir, _ = attempt(cityscapes, settings, tmp_path)
    assert audit.pop("images_from_earlier_attempts") == 1  # the other's line was cut, its image lost
    assert _bytes(output_dir) == _bytes(whole_dir) and audit == whole


def test_the_description_binds_the_journal(tmp_path):
    first = ShardJournal(tmp_path / "work", {"inputs": {"persons": "a"}})
    assert first.open() == {}
    first.add({"record": {"image": "x.png"}, "oriented": False, "leak_checked": False, "statistics": None})
    (first.images / "x.png").write_bytes(b"x")
    assert set(ShardJournal(tmp_path / "work", {"inputs": {"persons": "a"}}).open()) == {"x.png"}
    assert ShardJournal(tmp_path / "work", {"inputs": {"persons": "b"}}).open() == {}
    assert read_json(tmp_path / "work" / "job.json")["description"] == {"inputs": {"persons": "b"}}
