"""detectron2 for real, in the twins of envs/detectron2.yaml (the paper's stack: Python 3.9, PyTorch
1.12.1, detectron2 58e472e) and envs/detectron2-current.yaml (Python 3.11, PyTorch 2.14.1, detectron2
02b5c4e), called as train_model calls the backend (TrainingJob.from_settings of the plan's settings,
``backend("detectron2").train``).

What needs a hand inside the training process: a diverging run - through detectron2's RPN check (a
learning rate of 100) and through its loss check (a NaN loss injected into its forward pass) - stops
with TrainingDiverged, its last checkpoint kept and no weights written; a run whose deadline (a
scheduler's time limit) has come stops with a checkpoint that the next run resumes. Training, a kill and resume,
prediction and evaluation run through Snakemake as a user runs them (tests/test_stacks_training.py).
Marked `stacks` (`make test-stacks`).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import torch

from anonymization_impact.annotations import normalize_split
from anonymization_impact.config import load_config
from anonymization_impact.io import read_json, write_json_atomic
from anonymization_impact.plan import pretraining_job_settings, training_job_settings
from anonymization_impact.training import torchvision_backend
from anonymization_impact.training.job import TrainingJob
from anonymization_impact.twins import write_pretraining_set

from conftest import REPO
from stacks import environment, stacks_machine, twin  # noqa: F401 (a fixture)

pytestmark = pytest.mark.stacks

CONFIG = load_config(REPO / "config.yaml")
STACKS = ("detectron2", "detectron2-current")
RUNS = {"cityscapes": "mask_rcnn_r50_fpn", "coco": "keypoint_rcnn_r50_fpn"}
ITERATIONS, CHECKPOINT_EVERY = 10, 3

# Runs the jobs of a request file in the twin, as scripts/train_model.py does.
DRIVER = """
import sys
from pathlib import Path
from anonymization_impact.io import read_json, write_json_atomic
from anonymization_impact.training import backend
from anonymization_impact.training.common import TrainingDiverged
from anonymization_impact.training.job import TrainingJob
from anonymization_impact.walltime import Deadline, TimeLimitReached

detectron2 = backend("detectron2")
for request in read_json(sys.argv[1]):
    if request.get("poison_loss_from") is not None:  # a NaN loss from this training forward pass on
        from detectron2.modeling.meta_arch.rcnn import GeneralizedRCNN
        forward, calls = GeneralizedRCNN.forward, []
        def poisoned(self, inputs, _forward=forward, _from=request["poison_loss_from"]):
            losses = _forward(self, inputs)
            calls.append(self.training)
            return {k: v * float("nan") for k, v in losses.items()} if self.training and len(calls) > _from else losses
        GeneralizedRCNN.forward = poisoned
    out = Path(request["out"])
    job = TrainingJob.from_settings(request["settings"], image_root=request["root"], annotation=request["train"], output=out / "model_final.pth", checkpoint_dir=out / "checkpoints", threads=1)
    if request.get("deadline") is not None:  # a scheduler's time limit, already reached
        job.deadline = Deadline(request["deadline"], "the test's")
    try:
        result = {"summary": detectron2.train(job)}
    except TrainingDiverged as error:
        result = {"diverged": str(error)}
    except TimeLimitReached as error:
        result = {"stopped": str(error)}
    write_json_atomic(out / request.get("result", "result.json"), result)
"""


@pytest.fixture(scope="module")
def data(stacks_machine, twins, tmp_path_factory) -> dict:  # noqa: F811
    """The small twins' normalized training annotations and a pre-trained twin backbone."""
    base = tmp_path_factory.mktemp("detectron2-stacks")
    annotations = {}
    for dataset in RUNS:
        annotations[dataset] = base / dataset / "train.json"
        write_json_atomic(annotations[dataset], normalize_split(dataset, twins[dataset]["root"], "train")["instances"])
    write_pretraining_set(base / "pretraining", base / "pretraining.json", seed=1000, images=8)
    config = {**CONFIG, "synthetic": {**CONFIG["synthetic"], "pretraining": {**CONFIG["synthetic"]["pretraining"], "iterations": 4}}}
    pretraining = TrainingJob.from_settings(
        pretraining_job_settings(config, "resnet10"), image_root=base / "pretraining", annotation=base / "pretraining.json",
        output=base / "pretrained-detector.pth", checkpoint_dir=base / "pretraining-checkpoints", threads=1,
    )
    torchvision_backend.train(pretraining)
    torchvision_backend.save_atomic(torchvision_backend.backbone_state(pretraining.output), base / "resnet10.pth")
    return {"base": base, "annotations": annotations, "backbone_pattern": str(base / "{backbone}.pth"), "roots": {d: twins[d]["root"] for d in RUNS}}


def _request(data, dataset: str, out: Path, *, schedule: dict | None = None, checkpoint_every: int = CHECKPOINT_EVERY, **extra) -> dict:
    settings = training_job_settings(CONFIG, dataset, RUNS[dataset], 0, data["backbone_pattern"])
    settings.update(backend="detectron2", checkpoint_every=checkpoint_every, schedule={**settings["schedule"], "iterations": ITERATIONS, **(schedule or {})})
    paths = {"root": data["roots"][dataset], "train": data["annotations"][dataset]}
    return {"settings": settings, "out": str(out), **{key: str(path) for key, path in paths.items()}, **extra}


def _driver(python: Path, requests: list[dict], base: Path) -> subprocess.Popen:
    path = base / f"requests-{time.monotonic_ns()}.json"
    write_json_atomic(path, requests)
    return subprocess.Popen([str(python), "-c", DRIVER, str(path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO, env=environment(python))


def _finish(process: subprocess.Popen) -> None:
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output[-4000:]


def _checkpoint_dir(out: Path) -> Path:
    (directory,) = (out / "checkpoints").glob("detectron2-*")
    return directory


@pytest.mark.parametrize("stack", STACKS)
def test_a_diverging_run_stops_with_training_diverged_and_keeps_its_checkpoint(stack, data, tmp_path):
    """lr 100 without clipping or warm-up: detectron2's RPN finds Inf / NaN boxes; a NaN loss
    from the fourth iteration on: its trainer's loss check. A checkpoint after every iteration."""
    python = twin(REPO / "envs" / f"{stack}.yaml") / "bin" / "python"
    exploding = {"base_lr": 100.0, "warmup_iterations": 0, "clip_gradient_norm": None}
    requests = [
        _request(data, "cityscapes", tmp_path / "rpn", schedule=exploding, checkpoint_every=1),
        _request(data, "coco", tmp_path / "loss", checkpoint_every=1, poison_loss_from=3),
    ]
    _finish(_driver(python, requests, data["base"]))
    for request, reason in zip(requests, ("Predicted boxes or scores contain Inf/NaN", "Loss became infinite or NaN at iteration=3")):
        out = Path(request["out"])
        message = read_json(out / "result.json")["diverged"]
        assert reason in message and "Lower training.*.base_lr" in message, message
        directory = _checkpoint_dir(out)
        kept = (directory / "last_checkpoint").read_text().strip()
        assert f"({kept}) is kept in {directory}" in message and (directory / kept).is_file()
        assert not (directory / "model_final.pth").exists() and not (out / "model_final.pth").exists()
        state = torch.load(directory / kept, map_location="cpu", weights_only=False)["model"]
        assert all(torch.isfinite(value).all() for value in state.values() if value.is_floating_point())


@pytest.mark.parametrize("stack", STACKS)
def test_a_run_at_its_time_limit_stops_with_a_checkpoint_that_the_next_job_resumes(stack, data, tmp_path):
    """The deadline of a job under a scheduler's limit (docs/training.md): detectron2 saves a
    checkpoint after the iteration that reached it and stops; the next attempt resumes there."""
    python = twin(REPO / "envs" / f"{stack}.yaml") / "bin" / "python"
    out = tmp_path / "chained"
    _finish(_driver(python, [_request(data, "cityscapes", out, deadline=0.0, result="first.json")], data["base"]))
    stopped = read_json(out / "first.json")["stopped"]
    assert f"stopped after iteration 1 of {ITERATIONS} before its time limit" in stopped and "(the test's)" in stopped, stopped
    directory = _checkpoint_dir(out)
    assert (directory / "last_checkpoint").read_text().strip() == "model_0000000.pth"
    assert torch.load(directory / "model_0000000.pth", map_location="cpu", weights_only=False)["iteration"] == 0
    assert not (out / "model_final.pth").exists()
    _finish(_driver(python, [_request(data, "cityscapes", out, result="second.json")], data["base"]))
    summary = read_json(out / "second.json")["summary"]
    assert summary["resumed_at"] == 1 and summary["iterations"] == ITERATIONS and (out / "model_final.pth").is_file()
