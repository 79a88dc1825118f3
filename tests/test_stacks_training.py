"""detectron2 and MMDetection through Snakemake, as a user runs them: `snakemake --sdm env-modules`
with `training.backends.synthetic: detectron2 | mmdetection` and `training.stack: paper | current`,
so that rules train_model and predict load the module of the stack's env twin (detectron2 58e472e /
02b5c4e, MMDetection 2.x / 3.3.0) and evaluate runs in the data env's.

Per stack (MMDetection's with each of its runners), on the small twins with a few iterations of the
twins' schedule: the workflow is started, and SIGKILLed with its whole process group once every
training job has recorded a checkpoint (a lost node); Snakemake has marked the jobs incomplete.
Unlocked and started again with --rerun-incomplete (as profiles/slurm does), each run resumes from its
checkpoint, then predicts the original validation split and is evaluated into a metric JSON that names
the framework that trained it. The twins, their annotations and the pre-trained backbone are made
once, by the workflow in the data and training twins, and copied into each case's working directory.
Divergence, which needs a hand inside the training process, stays in tests/test_detectron2_stacks.py
and tests/test_mmdetection_stacks.py. Marked `stacks` (`make test-stacks`); -s prints the metrics.
"""

from __future__ import annotations

import base64
import json
import math
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import NamedTuple

import pytest
import torch

from anonymization_impact import TASKS
from anonymization_impact.config import load_config
from anonymization_impact.metrics import validate_metrics_document
from anonymization_impact.training.detectron2_backend import DETECTRON2_COMMIT, DETECTRON2_CURRENT_COMMIT

from conftest import REPO, SMALL_TWINS
from stacks import modulepath, ran_in, run_with_modules, snakemake_with_modules  # noqa: F401 (a fixture)

pytestmark = pytest.mark.stacks

CONFIG = load_config(REPO / "config.yaml")
CHECKPOINT_EVERY = 4
# one schedule for every case but its iterations: the pre-trained backbone's job settings include the rest
TRAINING = {
    "checkpoint_every": CHECKPOINT_EVERY,
    "synthetic": {"image_min_size": 64, "image_max_size": 128, "fpn_channels": 16, "head_channels": 16,
                  "rpn_pre_nms_top_n": 50, "rpn_post_nms_top_n": 25, "box_batch_size_per_image": 16},
}
DETECTRON2_RUNS = {"cityscapes": "mask_rcnn_r50_fpn", "coco": "keypoint_rcnn_r50_fpn"}


class Case(NamedTuple):
    backend: str
    stack: str
    env: str  # the env twin that trains and predicts
    runs: dict[str, str]  # dataset -> model
    framework: tuple[str, str, str]  # what training.json's frameworks must say: (package, field, value)
    iterations: int
    runner: str | None = None  # MMDetection's runner (training.json's runner.type)


# MMDetection runs its epoch-based runner (the paper's BDD100K schedule: 36 epochs) where the iterations are
# whole epochs of the trained images (40 iterations of 2 = 8 epochs of the BDD100K twin's 10), else its
# iteration-based one (the twins' 300 iterations; here 42); each version runs both.
CASES = {
    "detectron2-paper": Case("detectron2", "paper", "detectron2", DETECTRON2_RUNS, ("detectron2", "commit", DETECTRON2_COMMIT), 40),
    "detectron2-current": Case("detectron2", "current", "detectron2-current", DETECTRON2_RUNS, ("detectron2", "commit", DETECTRON2_CURRENT_COMMIT), 40),
    "mmdetection-paper-epochs": Case("mmdetection", "paper", "mmdetection", {"bdd100k": "mask_rcnn_r50_fpn"}, ("mmdet", "version", "2.28.2"), 40, "EpochBasedRunner"),
    "mmdetection-paper-iterations": Case("mmdetection", "paper", "mmdetection", {"bdd100k": "mask_rcnn_r50_fpn"}, ("mmdet", "version", "2.28.2"), 42, "IterBasedRunner"),
    "mmdetection-current-epochs": Case("mmdetection", "current", "mmdetection-current", {"bdd100k": "mask_rcnn_r50_fpn"}, ("mmdet", "version", "3.3.0"), 40,
                                       "EpochBasedTrainLoop"),
    "mmdetection-current-iterations": Case("mmdetection", "current", "mmdetection-current", {"bdd100k": "mask_rcnn_r50_fpn"}, ("mmdet", "version", "3.3.0"), 42,
                                           "IterBasedTrainLoop"),
}


def run_dir(dataset: str, model: str) -> str:
    return f"results/models/{dataset}/original/{model}/seed0"


def metric_file(dataset: str, model: str) -> str:
    return f"results/metrics/{dataset}/original/{model}/seed0.json"


@pytest.fixture(scope="module")
def prepared(modulepath, tmp_path_factory) -> Path:  # noqa: F811
    """A working directory where the workflow made the twins, their annotations and the twins'
    pre-trained ResNet-10 (rules generate_twin, normalize_annotations, generate_pretraining_set,
    pretrain_backbone in the data and training twins)."""
    workdir = tmp_path_factory.mktemp("prepared")
    targets = [f"results/annotations/{dataset}/{split}/instances.json" for dataset in ("cityscapes", "coco", "bdd100k") for split in ("train", "val")]
    result = run_with_modules(workdir, modulepath, {"synthetic": SMALL_TWINS, "training": TRAINING}, *targets, "resources/twins/pretraining/resnet10.pth")
    assert result.returncode == 0, result.stderr[-4000:]
    return workdir


def checkpoint_pointer(run: Path) -> Path | None:
    """The file a framework resumes from once it has saved a checkpoint: detectron2's and MMDetection
    3.x's last_checkpoint, MMDetection 2.x's latest.pth link."""
    for work_dir in sorted((run / "checkpoints").glob("*")):
        if (work_dir / "latest.pth").is_symlink():
            return work_dir / "latest.pth"
        if (work_dir / "last_checkpoint").is_file() and (work_dir / "last_checkpoint").read_text().strip():
            return work_dir / "last_checkpoint"
    return None


def checkpoint_name(pointer: Path) -> str:
    return (pointer.resolve() if pointer.is_symlink() else Path(pointer.read_text().strip())).stem


def resumes_at(checkpoint: str, iterations: int, runner: dict | None) -> int:
    """The iteration a run resumed from this checkpoint continues at: detectron2's model_<n> holds
    n + 1 iterations, MMDetection's iter_<n> n, its epoch_<n> n epochs of the epoch-based runner."""
    kind, number = checkpoint.rsplit("_", 1)
    if kind == "epoch":
        return int(number) * iterations // runner["max_epochs"]
    return int(number) + (kind == "model")


def kill_after_checkpoints(workdir: Path, modulepath: Path, overlay: dict, runs: dict[str, str], timeout: float = 600) -> dict[str, Path]:  # noqa: F811
    """Start the workflow for the runs' metrics; SIGKILL Snakemake and its jobs (one process group) once
    every run has a checkpoint. Returns each run's checkpoint pointer."""
    command, environment = snakemake_with_modules(workdir, modulepath, overlay, "--", *(metric_file(d, m) for d, m in runs.items()))
    with open(workdir / "killed-run.log", "w") as output:
        process = subprocess.Popen(command, env=environment, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
        deadline, pointers = time.monotonic() + timeout, {}
        while process.poll() is None and time.monotonic() < deadline and len(pointers) < len(runs):
            pointers = {d: p for d, m in runs.items() if (p := checkpoint_pointer(workdir / run_dir(d, m)))}
            time.sleep(0.05)
        alive = process.poll() is None
        if alive:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    log = (workdir / "killed-run.log").read_text()[-3000:]
    assert alive, f"the workflow ended before it could be killed:\n{log}"
    assert len(pointers) == len(runs), f"no checkpoint within {timeout} s: {sorted(pointers)}\n{log}"
    return pointers


@pytest.mark.parametrize("case", CASES.values(), ids=CASES)
def test_killed_during_training_the_workflow_resumes_predicts_and_evaluates(case, prepared, modulepath, tmp_path):  # noqa: F811
    backend, runs, (framework, field, expected) = case.backend, case.runs, case.framework
    workdir = tmp_path / "workdir"
    shutil.copytree(prepared, workdir, symlinks=True)
    enabled = {dataset: {"enabled": dataset in runs} for dataset in ("coco", "cityscapes", "bdd100k")}
    training = {**TRAINING, "synthetic": {**TRAINING["synthetic"], "iterations": case.iterations}, "stack": case.stack, "backends": {"synthetic": backend}}
    overlay = {"synthetic": SMALL_TWINS, "training": training, "datasets": enabled}

    started = time.monotonic()
    pointers = kill_after_checkpoints(workdir, modulepath, overlay, runs)
    killed_after = time.monotonic() - started
    checkpoints = {dataset: checkpoint_name(pointer) for dataset, pointer in pointers.items()}
    checkpoint_dirs = {dataset: pointer.parent for dataset, pointer in pointers.items()}
    incomplete = {base64.b64decode(path.name).decode() for path in (workdir / ".snakemake" / "incomplete").iterdir()}
    for dataset, model in runs.items():
        assert f"{run_dir(dataset, model)}/model_final.pth" in incomplete
        assert not (workdir / run_dir(dataset, model) / "model_final.pth").exists()

    unlocked = run_with_modules(workdir, modulepath, overlay, options=("--unlock",))
    assert unlocked.returncode == 0, unlocked.stderr[-3000:]
    started = time.monotonic()
    result = run_with_modules(workdir, modulepath, overlay, *(metric_file(d, m) for d, m in runs.items()), options=("--rerun-incomplete",))
    assert result.returncode == 0, result.stderr[-4000:]
    finished_after = time.monotonic() - started

    for dataset, model in runs.items():
        run = workdir / run_dir(dataset, model)
        summary = json.loads((run / "training.json").read_text())
        assert (summary["iterations"], summary["device"], summary["backend"], summary.get("runner", {}).get("type")) == (case.iterations, "cpu", backend, case.runner)
        assert 0 < summary["resumed_at"] == resumes_at(checkpoints[dataset], case.iterations, summary.get("runner")) < case.iterations
        assert summary["frameworks"][framework][field] == expected and summary["frameworks"]["torch"]["version"]
        assert checkpoint_dirs[dataset].is_dir() and sorted((run / "checkpoints").iterdir()) == [checkpoint_dirs[dataset]]  # the killed run's, kept
        for log in (f"logs/models/{dataset}/original/{model}/seed0.log", f"logs/predictions/{dataset}/original/{model}/seed0.log"):
            assert ran_in(workdir / log, case.env), f"{log} did not run in the {case.env} twin"
        assert ran_in(workdir / f"logs/metrics/{dataset}/original/{model}/seed0.log", "data")
        check_weights(case, run, workdir, checkpoint_dirs[dataset], CONFIG["models"][model]["architecture"])

        document = json.loads((workdir / metric_file(dataset, model)).read_text())
        validate_metrics_document(document)
        assert document["provenance"]["frameworks"][framework][field] == expected and document["training"]["frameworks"][framework][field] == expected
        assert document["task"] == TASKS[CONFIG["models"][model]["architecture"]] and document["synthetic"] is True
        assert all(value is None or 0 <= value <= 100 for value in document["metrics"].values())
        predictions = json.loads((workdir / f"results/predictions/{dataset}/original/{model}/seed0.json").read_text())
        assert predictions, "no predictions on the validation twin"
        shown = {key: round(value, 2) for key, value in document["metrics"].items() if value is not None and not key.startswith("AP50_")}
        print(f"\n{backend} {case.stack} {dataset}/{model}: killed {killed_after:.0f} s after the start, resumed at {summary['resumed_at']}; "
              f"rerun (resume, predict, evaluate) {finished_after:.0f} s; training {summary['seconds']:.1f} s; {len(predictions)} predictions; {shown}")


def check_weights(case: Case, run: Path, workdir: Path, checkpoint_dir: Path, architecture: str) -> None:
    """What each framework leaves: its final checkpoint beside the kept ones, our weights file
    (finite), the twins' pre-trained stem (frozen) and a trained last stage."""
    initial = torch.load(workdir / "resources/twins/pretraining/resnet10.pth", map_location="cpu", weights_only=True)
    if case.backend == "detectron2":
        kept = [f"model_{i:07d}.pth" for i in range(CHECKPOINT_EVERY - 1, case.iterations, CHECKPOINT_EVERY)][-2:]
        assert sorted(path.name for path in checkpoint_dir.glob("model_*.pth")) == [*kept, "model_final.pth"]
        logged = [json.loads(line) for line in (checkpoint_dir / "metrics.json").read_text().splitlines()]
        assert logged[-1]["iteration"] == case.iterations - 1 and all(math.isfinite(entry["total_loss"]) for entry in logged if "total_loss" in entry)
        weights = torch.load(run / "model_final.pth", map_location="cpu", weights_only=True)
        assert weights["anonymization_impact"]["backend"] == "detectron2" and weights["anonymization_impact"]["task"] == TASKS[architecture]
        state, stem, last = weights["model"], "backbone.bottom_up.stem.conv1.weight", "backbone.bottom_up.res5.0.conv1.weight"
    else:
        state, stem, last = torch.load(run / "model_final.pth", map_location="cpu", weights_only=False)["state_dict"], "backbone.conv1.weight", "backbone.layer4.0.conv1.weight"
    assert torch.equal(state[stem], initial["conv1.weight"]) and not torch.equal(state[last], initial["layer4.0.conv1.weight"])
    assert all(torch.isfinite(value).all() for value in state.values() if value.is_floating_point())
