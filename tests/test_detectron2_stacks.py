"""detectron2 for real, in the twins of envs/detectron2.yaml (the paper's stack: Python 3.9, PyTorch
1.12.1, detectron2 58e472e) and envs/detectron2-current.yaml (Python 3.11, PyTorch 2.14.1, detectron2
02b5c4e), called as the rules call the backend (TrainingJob.from_settings of the plan's settings,
``backend("detectron2").train`` / ``predict``, then the evaluate rule's functions).

With the twins' schedule (a few iterations) from a backbone pre-trained by the torchvision backend as
rule pretrain_backbone does (8 images, 4 iterations here): Mask R-CNN on the Cityscapes twin and
Keypoint R-CNN on the COCO twin train, a run SIGKILLed after a checkpoint resumes there and finishes,
its predictions on the original validation split score into a valid metric JSON; a diverging run -
through detectron2's RPN check and through its loss check - stops with TrainingDiverged, its last
checkpoint kept and no weights written. Marked `stacks` (`make test-stacks`).
"""

from __future__ import annotations

import json
import math
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import torch

from anonymization_impact import TASKS
from anonymization_impact.annotations import normalize_split
from anonymization_impact.config import load_config
from anonymization_impact.evaluation import evaluate
from anonymization_impact.io import read_json, write_json_atomic
from anonymization_impact.metrics import metrics_document, validate_metrics_document
from anonymization_impact.plan import pretraining_job_settings, training_job_settings
from anonymization_impact.provenance import provenance
from anonymization_impact.training import torchvision_backend
from anonymization_impact.training.detectron2_backend import DETECTRON2_COMMIT, DETECTRON2_CURRENT_COMMIT
from anonymization_impact.training.job import TrainingJob
from anonymization_impact.twins import write_pretraining_set

from conftest import REPO
from stacks import environment, stacks_machine, twin  # noqa: F401 (a fixture)

pytestmark = pytest.mark.stacks

CONFIG = load_config(REPO / "config.yaml")
STACKS = {"detectron2": DETECTRON2_COMMIT, "detectron2-current": DETECTRON2_CURRENT_COMMIT}
RUNS = {"cityscapes": "mask_rcnn_r50_fpn", "coco": "keypoint_rcnn_r50_fpn"}
ITERATIONS, CHECKPOINT_EVERY = 10, 3

# Runs the jobs of a request file in the twin, as scripts/train_model.py and predict.py do.
DRIVER = """
import sys
from pathlib import Path
from anonymization_impact.io import read_json, write_json_atomic
from anonymization_impact.training import backend
from anonymization_impact.training.common import TrainingDiverged
from anonymization_impact.training.job import TrainingJob

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
    try:
        result = {"summary": detectron2.train(job)}
    except TrainingDiverged as error:
        result = {"diverged": str(error)}
    if request.get("predict") and "summary" in result:
        result["predictions"] = detectron2.predict(out / "model_final.pth", read_json(request["val"]), Path(request["root"]), device="cpu", threads=1)
    write_json_atomic(out / "result.json", result)
"""


@pytest.fixture(scope="module")
def data(stacks_machine, twins, tmp_path_factory) -> dict:  # noqa: F811
    """The small twins' normalized train / val annotations and a pre-trained twin backbone."""
    base = tmp_path_factory.mktemp("detectron2-stacks")
    annotations = {}
    for dataset in RUNS:
        for split in ("train", "val"):
            path = base / dataset / f"{split}.json"
            write_json_atomic(path, normalize_split(dataset, twins[dataset]["root"], split)["instances"])
            annotations[(dataset, split)] = path
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
    paths = {"root": data["roots"][dataset], "train": data["annotations"][(dataset, "train")], "val": data["annotations"][(dataset, "val")]}
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


def _metric_document(dataset: str, out: Path, data: dict, summary: dict, predictions: list[dict]) -> dict:
    """What the evaluate rule writes (scripts/evaluate.py)."""
    task, val = TASKS[CONFIG["models"][RUNS[dataset]]["architecture"]], data["annotations"][(dataset, "val")]
    write_json_atomic(out / "predictions.json", predictions)
    with tempfile.TemporaryDirectory() as work_dir:
        result = evaluate(dataset, task, read_json(val), predictions, raw_root=data["roots"][dataset], work_dir=Path(work_dir))
    document = metrics_document(
        dataset=dataset, variant="original", model=RUNS[dataset], seed=0, task=task, metrics=result["metrics"], per_class_ap=result["per_class_AP"], evaluator=result["evaluator"],
        provenance=provenance(seed=0, annotation_files=[data["annotations"][(dataset, "train")], val], extra_files={"weights": out / "model_final.pth", "predictions": out / "predictions.json"},
                              training_time_s=summary["seconds"], device=summary["device"]),
        synthetic=True,
    )
    document["training"] = summary
    return document


@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.parametrize("dataset", RUNS)
def test_a_twin_run_killed_after_a_checkpoint_resumes_there_and_scores(stack, dataset, data, tmp_path):
    python = twin(REPO / "envs" / f"{stack}.yaml") / "bin" / "python"
    request = _request(data, dataset, tmp_path, predict=True)
    first = _driver(python, [request], data["base"])
    marker = None
    while first.poll() is None and marker is None:  # SIGKILL as soon as the first checkpoint is recorded
        found = list((tmp_path / "checkpoints").glob("detectron2-*/last_checkpoint"))
        marker = found[0] if found and found[0].read_text().strip() else None
        time.sleep(0.05)
    assert marker is not None, "the first run ended before writing a checkpoint:\n" + first.communicate()[0][-3000:]
    first.send_signal(signal.SIGKILL)
    first.wait()
    directory = marker.parent
    assert marker.read_text().strip() == f"model_{CHECKPOINT_EVERY - 1:07d}.pth" and not (directory / "model_final.pth").exists()
    assert not (tmp_path / "model_final.pth").exists() and not (tmp_path / "result.json").exists()

    _finish(_driver(python, [request], data["base"]))
    result = read_json(tmp_path / "result.json")
    summary = result["summary"]
    assert (summary["resumed_at"], summary["iterations"], summary["device"]) == (CHECKPOINT_EVERY, ITERATIONS, "cpu")
    assert summary["frameworks"]["detectron2"]["commit"] == STACKS[stack] and summary["frameworks"]["torch"]["version"]
    assert summary["detectron2_overrides"]["MODEL.RESNETS.DEPTH"] == 10 and summary["detectron2_overrides"]["MODEL.FPN.OUT_CHANNELS"] == 32
    # detectron2's own log of the resumed iterations: finite losses up to the last one
    logged = [json.loads(line) for line in (directory / "metrics.json").read_text().splitlines()]
    assert logged[-1]["iteration"] == ITERATIONS - 1 and all(math.isfinite(entry["total_loss"]) for entry in logged if "total_loss" in entry)
    # two checkpoints kept, the killed run's counted: the last two before the end, and the final one
    last_two = [f"model_{i:07d}.pth" for i in range(CHECKPOINT_EVERY - 1, ITERATIONS, CHECKPOINT_EVERY)][-2:]
    assert sorted(path.name for path in directory.glob("model_*.pth")) == [*last_two, "model_final.pth"]
    weights = torch.load(tmp_path / "model_final.pth", map_location="cpu", weights_only=True)
    meta = weights["anonymization_impact"]
    assert meta["backend"] == "detectron2" and meta["task"] == TASKS[CONFIG["models"][RUNS[dataset]]["architecture"]]
    assert "backbone.bottom_up.res5.0.conv2.weight" in weights["model"] and weights["model"]["backbone.bottom_up.stem.conv1.weight"].shape[0] == 16

    predictions = result["predictions"]
    val_ids = {image["id"] for image in read_json(data["annotations"][(dataset, "val")])["images"]}
    assert predictions and {p["image_id"] for p in predictions} <= val_ids
    document = _metric_document(dataset, tmp_path, data, summary, predictions)
    validate_metrics_document(document)
    assert document["training"]["frameworks"]["detectron2"]["commit"] == STACKS[stack]
    assert all(value is None or 0 <= value <= 100 for value in document["metrics"].values())


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
