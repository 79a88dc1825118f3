"""What the sections share (on the device): the prepared inputs and their settings, the devices,
the runs made so far, the files kept, and the training run every training section times."""

from __future__ import annotations

import copy
import json
import logging
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from . import REPO
from .reporting import Report, Skip


def load_settings(inputs: Path) -> tuple[dict, list[str]]:
    """settings.json of --prepare, and what changed here since it was written."""
    from anonymization_impact.io import file_digest

    path = inputs / "settings.json"
    if not path.exists():
        raise SystemExit(f"{path} is missing: run `python -m tools.gpu_check --prepare` with the project's .venv first, and carry {inputs.relative_to(REPO)}")
    settings = json.loads(path.read_text())
    stale = []
    if file_digest(REPO / "config.yaml", "sha256") != settings["config_sha256"]:
        stale.append("config.yaml changed since --prepare")
    if file_digest(REPO / "schemas" / "config.schema.yaml", "sha256") != settings["schema_sha256"]:
        stale.append("schemas/config.schema.yaml changed since --prepare")
    return settings, stale


class Interrupted(Exception):
    pass


def stamping(items, stamps: list, stop_at: int | None = None):
    """The training loop's progress wrapper: a time stamp per iteration; raises before
    iteration ``stop_at`` (after the previous one, and its checkpoint, are done)."""
    for iteration in items:
        if stop_at is not None and iteration >= stop_at:
            raise Interrupted(iteration)
        stamps.append(time.perf_counter())
        yield iteration


class LossLog(logging.Handler):
    """The backend logs 'iteration %d lr %.5f loss %.4f %s' every 10 iterations."""

    def __init__(self, report: Report):
        super().__init__(logging.INFO)
        self.report = report
        self.losses: list[tuple[int, float]] = []
        self.messages: list[str] = []

    def emit(self, record):
        if isinstance(record.msg, str) and record.msg.startswith("iteration %d") and record.args:
            self.losses.append((int(record.args[0]), float(record.args[2])))
            if int(record.args[0]) % 100 == 0:
                self.report.say(f"  iteration {record.args[0]}: loss {float(record.args[2]):.4f}")
        elif record.levelno >= logging.INFO:
            self.messages.append(record.getMessage()[:300])


class Check:
    def __init__(self, args, report: Report, rle: str):
        self.args = args
        self.report = report
        self.rle = rle  # which pycocotools.mask this process uses (env says it)
        self.out = Path(args.outdir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.work = Path(args.work or tempfile.mkdtemp(prefix="gpu_check_work_"))
        self.work.mkdir(parents=True, exist_ok=True)
        self.inputs = Path(args.inputs)
        self.settings, self.stale = load_settings(self.inputs)
        # --pretend-cuda (a test of this tool on a machine without a GPU): the CUDA sections'
        # logic runs with the CPU standing in, labelled "cuda" (roi_align is skipped, amp is a no-op).
        self.pretend = args.pretend_cuda
        self.cuda = args.device == "cuda" or self.pretend
        self.gpu = "cpu" if self.pretend else "cuda"  # the torch device of the "cuda" runs
        configured = self.settings["jobs"]["train"]["device"]  # training.device: auto picks CUDA when the job sees it
        self.device = (configured if configured in ("auto", "cuda") and not self.pretend else self.gpu) if self.cuda else "cpu"
        self.label = "cuda" if self.cuda else "cpu"  # ... and their name in files and records
        self.runs: dict[str, dict] = {}
        carried = self.settings.get("backbone")
        # the training runs start from the backbone --prepare pre-trained on the CPU (the rule's
        # job); the pretrain section's own (short) CUDA backbone is used only if it is missing
        self.backbone: Path | None = self.inputs / carried["file"] if carried and (self.inputs / carried["file"]).exists() else None
        self.backbone_source = f"carried: {carried['file']} ({carried['iterations']} iterations on the CPU by --prepare)" if self.backbone else None
        self.files: list[str] = []
        self.roi_align_fallback = False

    def budget_allows(self, seconds: float, what: str) -> None:
        elapsed = self.report.elapsed()
        if elapsed + seconds > self.args.budget_s:
            raise Skip(f"time budget: {what} would take ~{seconds:.0f} s more at {elapsed:.0f} s of --budget-s {self.args.budget_s}")

    def estimate(self, iterations: int, extra: float = 10.0) -> float:
        rate = self.runs.get("fp32", {}).get("s_per_iteration") or 0.2
        return iterations * rate + extra

    def need_backbone(self) -> None:
        if self.backbone is None:
            raise Skip("no pre-trained backbone (none carried, and the pretrain section failed)")

    def job(self, kind: str, name: str, *, device: str, amp: bool, iterations: int, threads: int, checkpoint_every: int | None = None):
        """The prepared ``kind`` job ("train" or "pretrain") with this check's changes, in its own run directory."""
        from anonymization_impact.training.job import TrainingJob

        settings = copy.deepcopy(self.settings["jobs"][kind])
        settings["schedule"]["iterations"] = iterations
        settings.update(device=device, amp=amp)
        if checkpoint_every:
            settings["checkpoint_every"] = checkpoint_every
        if kind == "train":
            if settings["init_weights"]:  # None: the schedule trains from scratch
                settings["init_weights"]["path"] = str(self.backbone)
            image_root, annotation = self.inputs / "cityscapes", self.inputs / "annotations" / "train" / "instances.json"
        else:
            image_root, annotation = self.inputs / "pretraining" / "coco", self.inputs / "pretraining" / "instances.json"
        directory = self.work / "runs" / name
        return TrainingJob.from_settings(settings, image_root=image_root, annotation=annotation, output=directory / "model_final.pth",
                                         checkpoint_dir=directory / "checkpoints", threads=threads)

    def train(self, job, *, stop_at: int | None = None, warm: int = 3) -> dict:
        """torchvision_backend.train (what train_model.py calls), timed per iteration."""
        from anonymization_impact.io import file_digest
        from anonymization_impact.training import torchvision_backend

        stamps: list[float] = []
        handler = LossLog(self.report)
        logger = logging.getLogger("anonymization_impact.training")
        logger.setLevel(logging.INFO)
        logger.addHandler(handler)
        called = time.perf_counter()
        interrupted = None
        try:
            summary = torchvision_backend.train(job, progress=lambda items: stamping(items, stamps, stop_at))
        except Interrupted as stop:
            summary, interrupted = None, int(str(stop))
        finally:
            logger.removeHandler(handler)
        if self.cuda and not self.pretend:
            import torch

            torch.cuda.synchronize()
        ended = time.perf_counter()
        stamps.append(ended)
        steps = np.diff(stamps)
        counted = steps[warm:] if len(steps) > warm + 2 else steps[1:]
        losses = [loss for _, loss in handler.losses]
        result = {
            "device": job.device, "amp": job.amp, "threads": job.threads, "iterations_run": len(stamps) - 1,
            "schedule_iterations": job.schedule["iterations"], "wall_s": round(ended - called, 2),
            "startup_s": round(stamps[0] - called, 2) if len(stamps) > 1 else None,
            "first_iteration_s": round(float(steps[0]), 3) if len(steps) else None,
            "s_per_iteration": round(float(np.mean(counted)), 4) if len(counted) else None,
            "s_per_iteration_median": round(float(np.median(counted)), 4) if len(counted) else None,
            "losses_logged": len(losses), "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None,
            "losses_finite": bool(np.all(np.isfinite(losses))) if losses else None,
        }
        if interrupted is not None:
            result["interrupted_before_iteration"] = interrupted
        if summary is not None:
            weights = Path(job.output)
            result.update(resumed_at=summary["resumed_at"], summary_device=summary["device"], images=summary["images"],
                          weights=str(weights), weights_bytes=weights.stat().st_size, weights_sha256=file_digest(weights, "sha256")[:16])
        if losses and not result["losses_finite"]:
            raise FloatingPointError(f"non-finite loss logged: {losses}")
        return result

    @staticmethod
    def weights_diff(first: Path, second: Path) -> dict:
        import torch

        a = torch.load(first, map_location="cpu", weights_only=False)["model"]
        b = torch.load(second, map_location="cpu", weights_only=False)["model"]
        differing, largest = 0, 0.0
        for key, tensor in a.items():
            other = b[key]
            if not torch.equal(tensor, other):
                differing += 1
                if tensor.is_floating_point():
                    largest = max(largest, float((tensor.double() - other.double()).abs().max()))
        return {"bytes_equal": Path(first).read_bytes() == Path(second).read_bytes(), "tensors_differing": differing,
                "tensors": len(a), "max_abs_diff": largest}

    def keep(self, source: Path, name: str) -> None:
        """A file for OUTDIR (what comes back from the device), unless it is too large to come back."""
        if Path(source).stat().st_size > 15 * 2**20:
            self.report.emit("files", skipped=name, reason="over 15 MiB")
            return
        shutil.copyfile(source, self.out / name)
        self.files.append(name)

    def write_predictions(self, name: str, predictions: list) -> None:
        """Predictions as OUTDIR/name (COCO results JSON)."""
        (self.out / name).write_text(json.dumps(predictions))
        self.files.append(name)
