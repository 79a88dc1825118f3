"""The MMDetection backend for real, in the env twins of envs/mmdetection.yaml (mmdet 2.28.2 standing
in for the paper's b95583270c, mmcv-full 1.7.1, torch 1.12.1) and envs/mmdetection-current.yaml
(mmdet 3.3.0, mmcv 2.1.0, mmengine 0.10.7, torch 2.1.2), on the BDD100K twin with the twins' schedule.

Each version trains (in the twin's interpreter, called as train_model.py calls it), is SIGKILLed
after a checkpoint and resumes from it, predicts the original validation split, and its predictions
are evaluated into a valid metric JSON here (the evaluate rule's env); a run whose loss explodes
stops with TrainingDiverged and keeps its last good checkpoint. Marked `stacks`: `make test-stacks`.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from anonymization_impact.annotations import normalize_split
from anonymization_impact.config import load_config
from anonymization_impact.evaluation import evaluate
from anonymization_impact.io import read_json, write_json_atomic
from anonymization_impact.metrics import metrics_document, validate_metrics_document
from anonymization_impact.plan import training_job_settings
from anonymization_impact.provenance import provenance
from anonymization_impact.training.torchvision_backend import resnet

from conftest import REPO
from stacks import environment, stacks_machine, twin  # noqa: F401 (a fixture)
from stacks import run as run_in

pytestmark = pytest.mark.stacks

VERSIONS = {"mmdetection": ("2.28.2", "mmcv-full"), "mmdetection-current": ("3.3.0", "mmcv")}
ITERATIONS, CHECKPOINT_EVERY = 12, 4

# What train_model.py and predict.py do, in the twin: the summary (or the error) goes to a JSON file.
DRIVER = """
import json, sys
from pathlib import Path
from anonymization_impact.io import read_json, write_json_atomic
from anonymization_impact.training import backend
from anonymization_impact.training.job import TrainingJob

a = json.loads(sys.argv[1])
run = Path(a["run"])
job = TrainingJob.from_settings(a["settings"], image_root=a["root"], annotation=a["train"], output=run / "model_final.pth", checkpoint_dir=run / "checkpoints", threads=1)
try:
    summary = backend(a["settings"]["backend"]).train(job)
except Exception as error:
    write_json_atomic(run / "error.json", {"type": type(error).__name__, "message": str(error)})
    raise
write_json_atomic(run / "training.json", summary)
if a["predict"]:
    predictions = backend(a["settings"]["backend"]).predict(job.output, read_json(Path(a["val"])), Path(a["root"]), device="cpu", threads=1)
    write_json_atomic(run / "predictions.json", predictions)
"""

FINITE_CHECKPOINT = """
import sys, torch
from anonymization_impact.training.mmdetection.common import load_checkpoint
state = load_checkpoint(sys.argv[1])["state_dict"]
print("finite" if all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point()) else "not finite")
"""


@pytest.fixture(scope="module")
def bdd100k(twins, tmp_path_factory) -> dict:
    """The BDD100K twin's normalized splits and a narrow ResNet-10 in torchvision's format, the
    format of the twins' pre-trained backbones (rule pretrain_backbone)."""
    base = tmp_path_factory.mktemp("bdd100k-mmdetection")
    root = twins["bdd100k"]["root"]
    for split in ("train", "val"):
        write_json_atomic(base / f"{split}.json", normalize_split("bdd100k", root, split)["instances"])
    torch.manual_seed(0)
    state = {key: value for key, value in resnet("resnet10", 16, nn.BatchNorm2d).state_dict().items() if not key.startswith("fc.")}
    torch.save(state, base / "resnet10.pth")
    return {"root": str(root), "train": str(base / "train.json"), "val": str(base / "val.json"), "backbone": base / "resnet10.pth", "base": base}


def settings(data: dict, **schedule) -> dict:
    """train_model's settings for the BDD100K twin's Mask R-CNN R50-FPN with backend mmdetection:
    the twins' schedule (ResNet-10 of width 16, ...) for ITERATIONS iterations."""
    config = load_config(REPO / "config.yaml")
    config["models"]["mask_rcnn_r50_fpn"]["backend"] = "mmdetection"
    job = training_job_settings(config, "bdd100k", "mask_rcnn_r50_fpn", 0, str(data["backbone"]).replace("resnet10", "{backbone}"))
    assert job["backend"] == "mmdetection" and job["backbone"] == "resnet10" and job["schedule"]["backbone_width"] == 16
    job["schedule"].update(iterations=ITERATIONS, **schedule)
    job.update(checkpoint_every=CHECKPOINT_EVERY, device="cpu")
    return job


def start(env: str, data: dict, run: Path, job: dict, predict: bool) -> subprocess.Popen:
    python = twin(REPO / "envs" / f"{env}.yaml") / "bin" / "python"
    arguments = {**{key: data[key] for key in ("root", "train", "val")}, "run": str(run), "settings": job, "predict": predict}
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


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


@pytest.mark.parametrize("env", VERSIONS)
def test_killed_after_a_checkpoint_resumes_then_predicts_and_evaluates(env, stacks_machine, bdd100k, tmp_path):
    run = tmp_path / env
    run.mkdir()
    job = settings(bdd100k)
    process = start(env, bdd100k, run, job, predict=False)
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None and latest_checkpoint(run) is None:
        time.sleep(0.05)
    assert process.poll() is None, f"the run ended before it could be killed:\n{(run / 'log.txt').read_text()[-3000:]}"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    checkpoint = latest_checkpoint(run)
    assert checkpoint is not None and not (run / "model_final.pth").exists()
    killed_at = iteration_of(checkpoint)
    assert 0 < killed_at < ITERATIONS

    assert finish(start(env, bdd100k, run, job, predict=True), run) == 0
    summary = read_json(run / "training.json")
    assert summary["resumed_at"] == killed_at and math.isfinite(summary["last_loss"]) and summary["seconds_per_iteration"] > 0
    version, mmcv = VERSIONS[env]
    assert summary["frameworks"]["mmdet"]["version"] == version and summary["frameworks"][mmcv]["version"] is not None
    assert summary["runner"]["max_iters"] == ITERATIONS and summary["device"] == "cpu"

    weights = load(run / "model_final.pth")["state_dict"]
    initial = torch.load(bdd100k["backbone"])
    assert torch.equal(weights["backbone.conv1.weight"], initial["conv1.weight"])  # the twins' backbone, its stem frozen
    assert not torch.equal(weights["backbone.layer4.0.conv1.weight"], initial["layer4.0.conv1.weight"])  # trained
    assert all(torch.isfinite(value).all() for value in weights.values() if value.is_floating_point())

    validation = read_json(Path(bdd100k["val"]))
    predictions = read_json(run / "predictions.json")
    assert predictions and {p["image_id"] for p in predictions} <= {image["id"] for image in validation["images"]}
    result = evaluate("bdd100k", "instance_segmentation", validation, predictions, raw_root=Path(bdd100k["root"]), work_dir=tmp_path / "evaluation")
    document = metrics_document(
        dataset="bdd100k",
        variant="original",
        model="mask_rcnn_r50_fpn",
        seed=0,
        task="instance_segmentation",
        metrics=result["metrics"],
        per_class_ap=result["per_class_AP"],
        evaluator=result["evaluator"],
        provenance=provenance(seed=0, annotation_files=[Path(bdd100k["train"]), Path(bdd100k["val"])], training_time_s=summary["seconds"], device=summary["device"]),
        synthetic=True,
    )
    document["training"] = summary
    validate_metrics_document(document)
    assert result["metrics"]["AP_person"] is not None


@pytest.mark.parametrize("env", VERSIONS)
def test_an_exploding_loss_stops_the_run_and_keeps_the_last_good_checkpoint(env, stacks_machine, bdd100k, tmp_path):
    run = tmp_path / env
    run.mkdir()
    # The learning rate x 1e12 from half-way: the iterations before it checkpoint good weights.
    assert finish(start(env, bdd100k, run, settings(bdd100k, lr_steps=[0.5], lr_gamma=1e12), predict=False), run) != 0
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
