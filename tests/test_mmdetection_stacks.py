"""The MMDetection backend for real, in the env twins of envs/mmdetection.yaml (mmdet 2.28.2 standing
in for the paper's b95583270c, mmcv-full 1.7.1, torch 1.12.1) and envs/mmdetection-current.yaml
(mmdet 3.3.0, mmcv 2.1.0, mmengine 0.10.7, torch 2.1.2), on the BDD100K twin with the twins' schedule,
called as train_model.py calls it.

What needs a schedule no config offers: a run whose learning rate explodes half-way stops with
TrainingDiverged and keeps its last good checkpoint. Training, a kill and resume (both runners),
prediction and evaluation run through Snakemake as a user runs them (tests/test_stacks_training.py).
Marked `stacks`: `make test-stacks`.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
from torch import nn

from anonymization_impact.annotations import normalize_split
from anonymization_impact.config import load_config
from anonymization_impact.io import read_json, write_json_atomic
from anonymization_impact.plan import training_job_settings
from anonymization_impact.training.torchvision_backend import resnet

from conftest import REPO
from stacks import environment, stacks_machine, twin  # noqa: F401 (a fixture)
from stacks import run as run_in

pytestmark = pytest.mark.stacks

VERSIONS = ("mmdetection", "mmdetection-current")
ITERATIONS, CHECKPOINT_EVERY = 12, 4

# What train_model.py does, in the twin: the summary (or the error) goes to a JSON file.
DRIVER = """
import json, sys
from pathlib import Path
from anonymization_impact.io import write_json_atomic
from anonymization_impact.training import backend
from anonymization_impact.training.job import TrainingJob
from anonymization_impact.walltime import Deadline

a = json.loads(sys.argv[1])
run = Path(a["run"])
job = TrainingJob.from_settings(a["settings"], image_root=a["root"], annotation=a["train"], output=run / "model_final.pth", checkpoint_dir=run / "checkpoints", threads=1)
if a.get("deadline") is not None:  # a scheduler's time limit, already reached
    job.deadline = Deadline(a["deadline"], "the test's")
try:
    summary = backend(a["settings"]["backend"]).train(job)
except Exception as error:
    write_json_atomic(run / "error.json", {"type": type(error).__name__, "message": str(error)})
    raise
write_json_atomic(run / "training.json", summary)
"""

FINITE_CHECKPOINT = """
import sys, torch
from anonymization_impact.training.mmdetection.common import load_checkpoint
state = load_checkpoint(sys.argv[1])["state_dict"]
print("finite" if all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point()) else "not finite")
"""


@pytest.fixture(scope="module")
def bdd100k(twins, tmp_path_factory) -> dict:
    """The BDD100K twin's normalized training split and a narrow ResNet-10 in torchvision's format,
    the format of the twins' pre-trained backbones (rule pretrain_backbone)."""
    base = tmp_path_factory.mktemp("bdd100k-mmdetection")
    root = twins["bdd100k"]["root"]
    write_json_atomic(base / "train.json", normalize_split("bdd100k", root, "train")["instances"])
    torch.manual_seed(0)
    state = {key: value for key, value in resnet("resnet10", 16, nn.BatchNorm2d).state_dict().items() if not key.startswith("fc.")}
    torch.save(state, base / "resnet10.pth")
    return {"root": str(root), "train": str(base / "train.json"), "backbone": base / "resnet10.pth", "base": base}


def settings(data: dict, **schedule) -> dict:
    """train_model's settings for the BDD100K twin's Mask R-CNN R50-FPN with backend mmdetection:
    the twins' schedule (ResNet-10 of width 16, ...) for ITERATIONS iterations."""
    config = load_config(REPO / "config.yaml")
    config["models"]["mask_rcnn_r50_fpn"]["backend"] = "mmdetection"
    job = training_job_settings(config, "bdd100k", "mask_rcnn_r50_fpn", 0, str(data["backbone"]).replace("resnet10", "{backbone}"))
    assert job["backend"] == "mmdetection" and job["backbone"] == "resnet10" and job["schedule"]["backbone_width"] == 16
    job["schedule"].update({"iterations": ITERATIONS, **schedule})
    job.update(checkpoint_every=CHECKPOINT_EVERY, device="cpu")
    return job


def start(env: str, data: dict, run: Path, job: dict, deadline: float | None = None) -> subprocess.Popen:
    python = twin(REPO / "envs" / f"{env}.yaml") / "bin" / "python"
    arguments = {**{key: data[key] for key in ("root", "train")}, "run": str(run), "settings": job, "deadline": deadline}
    log = open(run / "log.txt", "a")
    return subprocess.Popen([str(python), "-c", DRIVER, json.dumps(arguments)], cwd=REPO, env=environment(python), stdout=log, stderr=subprocess.STDOUT)


def finish(process: subprocess.Popen, run: Path) -> int:
    code = process.wait(timeout=600)
    assert code == 0 or (run / "error.json").exists(), (run / "log.txt").read_text()[-4000:]
    return code


def latest_checkpoint(run: Path) -> Path | None:
    """The checkpoint MMDetection resumes from: 2.x's latest.pth link, 3.x's last_checkpoint file."""
    for work_dir in (run / "checkpoints").glob("mmdetection-*"):
        if (work_dir / "latest.pth").is_symlink():
            return (work_dir / "latest.pth").resolve()
        if (work_dir / "last_checkpoint").is_file():
            return Path((work_dir / "last_checkpoint").read_text().strip())
    return None


def iteration_of(checkpoint: Path) -> int:
    return int(checkpoint.stem.split("_")[-1])  # iter_<n>.pth


@pytest.mark.parametrize("env", VERSIONS)
def test_an_exploding_loss_stops_the_run_and_keeps_the_last_good_checkpoint(env, stacks_machine, bdd100k, tmp_path):
    run = tmp_path / env
    run.mkdir()
    # The learning rate x 1e12 from half-way: the iterations before it checkpoint good weights.
    assert finish(start(env, bdd100k, run, settings(bdd100k, lr_steps=[0.5], lr_gamma=1e12)), run) != 0
    error = read_json(run / "error.json")
    assert error["type"] == "TrainingDiverged" and "non-finite loss at iteration" in error["message"] and "last good checkpoint is kept" in error["message"]
    diverged_at = int(error["message"].split("non-finite loss at iteration ")[1].split()[0])
    checkpoint = latest_checkpoint(run)
    assert diverged_at >= ITERATIONS // 2  # not before the learning rate exploded
    # the checkpoint of the last iteration before the diverged one: no later one was written
    assert checkpoint is not None and iteration_of(checkpoint) == diverged_at // CHECKPOINT_EVERY * CHECKPOINT_EVERY > 0
    python = twin(REPO / "envs" / f"{env}.yaml") / "bin" / "python"  # 3.x's checkpoints pickle mmengine's classes
    check = run_in(python, FINITE_CHECKPOINT, (), str(checkpoint))
    assert check.returncode == 0 and check.stdout.split() == ["finite"], check.stdout + check.stderr[-2000:]
    assert not (run / "model_final.pth").exists()


@pytest.mark.parametrize("env", VERSIONS)
def test_a_run_at_its_time_limit_stops_where_the_next_job_resumes(env, stacks_machine, bdd100k, tmp_path):
    """A job whose deadline has come (docs/training.md): the iteration-based runner (the twins'
    12 iterations) stops after its first iteration with that iteration's checkpoint; the
    epoch-based one (10 iterations of 2 images = 2 epochs of the twin's 10) after its first
    epoch, before one that would not end in time. The next job resumes there and finishes."""
    for runner, schedule, stopped, resumed_at in (("iterations", {}, f"stopped after iteration 1 of {ITERATIONS} ", 1),
                                                   ("epochs", {"iterations": 10, "batch_size": 2}, "stopped after epoch 1 of 2 ", 5)):
        run = tmp_path / env / runner
        run.mkdir(parents=True)
        job = settings(bdd100k, **schedule)
        assert finish(start(env, bdd100k, run, job, deadline=0.0), run) != 0
        error = read_json(run / "error.json")
        assert error["type"] == "TimeLimitReached" and stopped in error["message"] and "the next attempt resumes there" in error["message"], error
        assert iteration_of(latest_checkpoint(run)) == 1 and not (run / "model_final.pth").exists()  # iter_1.pth / epoch_1.pth
        (run / "error.json").unlink()
        assert finish(start(env, bdd100k, run, job), run) == 0
        summary = read_json(run / "training.json")
        assert summary["resumed_at"] == resumed_at and (run / "model_final.pth").is_file(), summary
