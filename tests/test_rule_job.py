"""Rule scripts that run as commands: the job the controller encodes is the job the script reads."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from anonymization_impact.rule_job import Named, decode, encode, job_of
from conftest import REPO


class FakeNamedlist(list):
    """What Snakemake hands a params function: a list whose names map to items or lists of them."""

    def __init__(self, items, names):
        super().__init__(items)
        self.names = names

    def items(self):
        return self.names.items()


def test_the_job_round_trips_with_snakemakes_access_patterns():
    inputs = FakeNamedlist(["persons.json", "a.png", "b.png", "w.ckpt"], {"persons": "persons.json", "raw": ["a.png", "b.png"], "weights_face": "w.ckpt"})
    outputs = FakeNamedlist(["shards/0", "shards/0.audit.json"], {"images": "shards/0", "audit": "shards/0.audit.json"})
    params = {"variant": {"region": "face", "method": "realistic"}, "generators": None, "shards": 4}
    argument = encode(input=inputs, output=outputs, params=params, wildcards={"dataset": "coco", "shard": "0"})
    job = decode(["--log", "logs/x.log", "--threads", "2", "--job", argument])
    assert job.input.persons == job.input[0] == "persons.json" and job.input.raw == ["a.png", "b.png"] and job.input["weights_face"] == "w.ckpt"
    assert list(job.input.keys()) == ["persons", "raw", "weights_face"] and "faces" not in job.input.keys()
    assert job.output.images == job.output[0] == "shards/0" and job.output.audit == "shards/0.audit.json"
    assert job.params.variant["method"] == "realistic" and job.params.generators is None and job.params.shards == 4
    assert not hasattr(job.params, "max_resolution") and getattr(job.params, "max_resolution", 7) == 7
    assert job.wildcards.dataset == "coco" and job.wildcards.shard == "0"
    assert job.log[0] == "logs/x.log" and job.threads == 2
    with pytest.raises(AttributeError):
        job.input.missing


def test_a_script_prefers_the_injected_object():
    injected = Named(["x"], {"name": "x"})
    assert job_of({"snakemake": injected}, ["--log", "l"]) is injected
    with pytest.raises(SystemExit):  # no injected object and no job argument: argparse's usage error
        job_of({}, ["--log", "l"])


def test_a_rule_script_runs_as_the_rule_calls_it(tmp_path):
    """scripts/predict.py as its rule runs it: a bad backend ends the job with one line in the log and on the console."""
    argument = encode(input=FakeNamedlist(["w.pth", "val.json"], {"weights": "w.pth", "annotation": str(tmp_path / "val.json")}),
                      output=FakeNamedlist([str(tmp_path / "p.json")], {}), params={"root": str(tmp_path), "device": "cpu", "backend": "caffe"},
                      wildcards={"dataset": "coco"})
    (tmp_path / "val.json").write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    log = tmp_path / "logs" / "predict.log"
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "predict.py"), "--log", str(log), "--threads", "1", "--job", argument],
                            capture_output=True, text=True, cwd=tmp_path, env={"PYTHONPATH": str(REPO / "scripts"), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 1
    assert "unknown training backend 'caffe'" in result.stderr and "unknown training backend 'caffe'" in log.read_text()
