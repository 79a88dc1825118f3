"""One-shot check of this project's CUDA code paths on the Cityscapes twin (training,
prediction, realistic anonymization), with CPU comparisons.

Three modes:

  python3 perf/gpu_check.py --prepare            # HERE (the project's .venv): build the inputs
  python3 perf/gpu_check.py OUTDIR [options]     # on the GPU machine (or --device cpu here)
  python3 perf/gpu_check.py --evaluate DIR       # HERE: score the predictions the device wrote

``--prepare`` writes ``resources/gpu_check/`` (git-ignored; carry it to the device): a Cityscapes
twin made by the current code, its normalized annotations, the simulated keypoints of its
training persons, the backbone-pretraining images, the twins' pre-trained ResNet-10 backbone
(rule twins_pretrain_backbone's job, run here on the CPU with the config's 800 iterations, ~1.5
min) and ``settings.json``, the validated config values the check needs (the device has neither
jsonschema, cityscapesscripts nor snakemake). The check calls the same package functions as the
rules (twins_pretrain_backbone, train_model, predict, anonymize_shard_realistic), never
snakemake. Where pycocotools is missing (the device) a pure-Python RLE codec stands in for
``pycocotools.mask`` (``--prepare`` proves it equal to pycocotools on every mask of the inputs).

Sections (each caught and reported on its own; JSON lines on stdout, progress on stderr,
``OUTDIR/summary.json`` at the end; exit status 1 if a section raised, e.g. a non-finite loss,
3 on the hard timeout):

  env           versions, GPU, determinism flags, whether roi_align goes through torch.compile
  roi_align     (cuda) the deterministic roi_align path the training takes, forward + backward
  pretrain      twins_pretrain_backbone's job (from scratch, all stages), --pretrain-iters, on
                the device; its backbone must load as initial weights
  train_fp32    train_model's job (twins' schedule, mask_rcnn_r50_fpn -> narrow resnet10, seed 0,
                --iters = the config's 300) from the carried backbone: the demo's run, on the device
  predict       predict's call on the val split (device, and CPU with the same weights)
  cpu_rate      (cuda) the same job on the CPU with all cores, a few iterations: s / iteration
  realistic     twin person renderer, multi-modal truncation and HM-LO, on CPU and CUDA
  train_amp     (cuda) the fp32 job with amp: true (bfloat16 autocast), and its predictions
  determinism   a --check-iters job twice: weight bytes equal?
  resume        that job interrupted after its half-way checkpoint and run again: equal?

Files in OUTDIR (at most 7): summary.json, pred_*.json (COCO results on the val split),
model_<device>_fp32.pth, realistic_montage.png.
"""

from __future__ import annotations

import argparse
import copy
import faulthandler
import io
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import types
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
DEFAULT_INPUTS = REPO / "resources" / "gpu_check"
MODEL = "mask_rcnn_r50_fpn"
VARIANTS = ("body-realistic", "body-realistic-hmlo")
T0 = time.perf_counter()
RECORDS: list[dict] = []
WARNINGS: dict[str, int] = {}


# --- reporting ---------------------------------------------------------------------------------


def elapsed() -> float:
    return time.perf_counter() - T0


def say(message: str) -> None:
    print(f"[{elapsed():7.1f}s] {message}", file=sys.stderr, flush=True)


def _plain(value):
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return None if not np.isfinite(value) else float(f"{float(value):.6g}")
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, Path):
        return str(value)
    return value


def emit(section: str, **fields) -> dict:
    record = _plain({"section": section, "t": round(elapsed(), 1), **fields})
    RECORDS.append(record)
    print(json.dumps(record, sort_keys=False), flush=True)
    return record


def _capture_warning(message, category, filename, lineno, file=None, line=None):
    key = f"{category.__name__}: {str(message).strip().splitlines()[0][:300]}"
    WARNINGS[key] = WARNINGS.get(key, 0) + 1


class Skip(Exception):
    """A section that does not apply here (reported, not a failure)."""


def run_section(name: str, function, results: dict, failures: list) -> None:
    say(f"--- {name}")
    started = time.perf_counter()
    try:
        outcome = function() or {}
        results[name] = {"status": "ok", "seconds": round(time.perf_counter() - started, 1), **outcome}
        emit(name, status="ok", seconds=round(time.perf_counter() - started, 1), **outcome)
    except Skip as reason:
        results[name] = {"status": "skipped", "reason": str(reason)}
        emit(name, status="skipped", reason=str(reason))
    except BaseException as error:  # noqa: BLE001 - one section's failure must not hide the others
        if isinstance(error, KeyboardInterrupt):
            raise
        text = traceback.format_exc()
        results[name] = {"status": "failed", "error": f"{type(error).__name__}: {error}"[:2000], "traceback": text[-4000:]}
        failures.append(name)
        emit(name, status="failed", seconds=round(time.perf_counter() - started, 1), error=f"{type(error).__name__}: {error}"[:2000])
        print(text, file=sys.stderr, flush=True)


def sha256_file(path: Path) -> str:
    from anonymization_impact.io import file_digest

    return file_digest(path, "sha256")


# --- pycocotools.mask stand-in (pure Python, same RLE strings) ----------------------------------


def _rle_counts(flat: np.ndarray) -> list[int]:
    """Run lengths of a column-major flattened binary mask, starting with a run of zeros."""
    values = flat.astype(bool)
    if values.size == 0:
        return [0]
    change = np.flatnonzero(values[1:] != values[:-1]) + 1
    runs = np.diff(np.concatenate(([0], change, [values.size]))).tolist()
    return ([0] + runs) if values[0] else runs


def _counts_to_bytes(counts: list[int]) -> bytes:
    """pycocotools' rleToString (LEB128-like, 5 bits per character, deltas after the 3rd)."""
    out = bytearray()
    for index, count in enumerate(counts):
        x = int(count) - (int(counts[index - 2]) if index > 2 else 0)
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = (x != -1) if (c & 0x10) else (x != 0)
            if more:
                c |= 0x20
            out.append(c + 48)
    return bytes(out)


def _bytes_to_counts(text: bytes) -> list[int]:
    """pycocotools' rleFrString."""
    counts, position = [], 0
    while position < len(text):
        x, k, more = 0, 0, True
        while more:
            c = text[position] - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            position += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def _counts_of(rle: dict) -> list[int]:
    counts = rle["counts"]
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    return _bytes_to_counts(counts) if isinstance(counts, (bytes, bytearray)) else [int(c) for c in counts]


def make_rle_module() -> types.ModuleType:
    """A module with pycocotools.mask's encode / decode / frPyObjects / area / toBbox for RLEs."""
    module = types.ModuleType("pycocotools.mask")

    def encode(bimask):
        bimask = np.asarray(bimask)
        if bimask.ndim == 3:
            return [encode(bimask[:, :, i]) for i in range(bimask.shape[2])]
        height, width = bimask.shape
        return {"size": [int(height), int(width)], "counts": _counts_to_bytes(_rle_counts(bimask.ravel(order="F")))}

    def _decode_one(rle):
        height, width = rle["size"]
        counts = _counts_of(rle)
        values = np.zeros(len(counts), dtype=np.uint8)
        values[1::2] = 1
        flat = np.repeat(values, counts)
        if flat.size != height * width:
            raise ValueError(f"invalid RLE: counts sum to {flat.size}, size {height}x{width}")
        return flat.reshape((width, height)).T

    def decode(rle_objects):
        if isinstance(rle_objects, list):
            return np.stack([_decode_one(r) for r in rle_objects], axis=2)
        return _decode_one(rle_objects)

    def frPyObjects(pyobj, height, width):  # noqa: N802 - pycocotools' name
        if isinstance(pyobj, dict) and "counts" in pyobj and "size" in pyobj:
            return {"size": [int(v) for v in pyobj["size"]], "counts": _counts_to_bytes(_counts_of(pyobj))}
        if isinstance(pyobj, list) and pyobj and all(isinstance(o, dict) for o in pyobj):
            return [frPyObjects(o, height, width) for o in pyobj]
        raise NotImplementedError("the gpu_check RLE stand-in does not rasterize polygons")

    def _area_one(rle):
        return int(sum(_counts_of(rle)[1::2]))

    def area(rle_objects):
        if isinstance(rle_objects, list):
            return np.array([_area_one(r) for r in rle_objects], dtype=np.uint32)
        return np.uint32(_area_one(rle_objects))

    def _bbox_one(rle):  # pycocotools' rleToBbox, quirks included
        height, width = rle["size"]
        counts = _counts_of(rle)
        m = (len(counts) // 2) * 2
        if m == 0:
            return [0.0, 0.0, 0.0, 0.0]
        xs, ys, xe, ye, cc, xp = width, height, 0, 0, 0, 0
        for j in range(m):
            cc += counts[j]
            t = cc - j % 2
            y = t % height
            x = (t - y) // height
            if j % 2 == 0:
                xp = x
            elif xp < x:
                ys, ye = 0, height - 1
            xs, xe, ys, ye = min(xs, x), max(xe, x), min(ys, y), max(ye, y)
        return [float(xs), float(ys), float(xe - xs + 1), float(ye - ys + 1)]

    def toBbox(rle_objects):  # noqa: N802 - pycocotools' name
        if isinstance(rle_objects, list):
            return np.array([_bbox_one(r) for r in rle_objects], dtype=np.float64).reshape(-1, 4)
        return np.array(_bbox_one(rle_objects), dtype=np.float64)

    module.encode, module.decode, module.frPyObjects, module.area, module.toBbox = encode, decode, frPyObjects, area, toBbox
    return module


def install_rle(force_fallback: bool) -> str:
    """pycocotools if it imports (and not forced off), else the stand-in; returns which."""
    if not force_fallback:
        try:
            import pycocotools.mask  # noqa: F401

            return "pycocotools"
        except ImportError:
            pass
    package = types.ModuleType("pycocotools")
    package.__path__ = []
    package.mask = make_rle_module()
    sys.modules["pycocotools"], sys.modules["pycocotools.mask"] = package, package.mask
    return "gpu_check pure-Python RLE (pycocotools missing)" if not force_fallback else "gpu_check pure-Python RLE (forced)"


def check_rle_module(documents: list[dict], rounds: int = 200) -> dict:
    """The stand-in against the real pycocotools: every annotation mask and random masks."""
    from pycocotools import mask as real

    fake = make_rle_module()
    checked, rng = 0, np.random.default_rng(0)
    for document in documents:
        for annotation in document["annotations"]:
            rle = annotation["segmentation"]
            if not isinstance(rle, dict):
                continue
            compressed = real.frPyObjects(rle, *rle["size"]) if isinstance(rle["counts"], list) else {**rle, "counts": rle["counts"].encode()}
            mask = real.decode(compressed)
            assert np.array_equal(fake.decode(rle), mask), annotation["id"]
            assert fake.encode(mask)["counts"] == real.encode(np.asfortranarray(mask))["counts"], annotation["id"]
            assert int(fake.area(rle)) == int(real.area(compressed))
            assert np.array_equal(fake.toBbox(rle), real.toBbox(compressed)), annotation["id"]
            checked += 1
    for index in range(rounds):
        height, width = rng.integers(1, 80, size=2)
        kind = index % 4
        mask = (rng.random((height, width)) < [0.0, 1.0, 0.5, 0.97][kind]).astype(np.uint8)
        if kind == 3:
            mask[: height // 2] = 1
        encoded = real.encode(np.asfortranarray(mask))
        assert fake.encode(mask)["counts"] == encoded["counts"]
        assert np.array_equal(fake.decode({"size": [int(height), int(width)], "counts": encoded["counts"].decode()}), mask)
        assert np.array_equal(fake.toBbox(encoded), real.toBbox(encoded)) and int(fake.area(encoded)) == int(real.area(encoded))
        uncompressed = {"size": [int(height), int(width)], "counts": _rle_counts(mask.ravel(order="F"))}
        assert fake.frPyObjects(uncompressed, height, width)["counts"] == real.frPyObjects(uncompressed, height, width)["counts"]
        checked += 1
    return {"masks_checked": checked}


# --- --prepare (here, with the project's .venv) --------------------------------------------------


def job_settings(config: dict) -> dict:
    """What rules/common.smk's get_training_job_settings / get_pretraining_job_settings give the
    twins' mask_rcnn_r50_fpn seed 0 and its backbone's pretraining (Cityscapes twin)."""
    from anonymization_impact.training import pretraining_job_settings

    model = config["models"][MODEL]
    schedule = config["training"]["synthetic"]  # a twin trains with the synthetic schedule
    backbone = schedule["backbones"].get(model["backbone"], model["backbone"])
    training = config["training"]
    train = {
        "backend": model["backend"] or training["backends"]["synthetic"],
        "architecture": model["architecture"],
        "backbone": backbone,
        "schedule": schedule,
        "seed": 0,
        "checkpoint_every": training["checkpoint_every"],
        "device": training["device"],
        "amp": training["amp"],
        "init_weights": {"name": f"{backbone} pre-trained on the twins' pretraining images", "path": None, "sha256": None, "url": None},
    }
    return {"train": train, "pretrain": pretraining_job_settings(config, backbone)}


def pretrain_backbone_here(inputs: Path, settings: dict, *, threads: int, iterations: int | None) -> dict:
    """Rule twins_pretrain_backbone's job on this CPU (its threads: the workflow's backbone bit
    for bit at the config's iterations): the initialization of the check's training runs."""
    from anonymization_impact.training import torchvision_backend
    from anonymization_impact.training.job import TrainingJob

    settings = copy.deepcopy(settings)
    if iterations:
        settings["schedule"]["iterations"] = iterations
    settings["device"] = "cpu"
    with tempfile.TemporaryDirectory(prefix="gpu_check_pretrain_") as scratch:
        job = TrainingJob.from_settings(settings, image_root=inputs / "pretraining" / "coco", annotation=inputs / "pretraining" / "instances.json",
                                        output=Path(scratch) / "detector.pth", checkpoint_dir=Path(scratch) / "checkpoints", threads=threads)
        say(f"pre-training the {job.backbone} backbone here on the CPU: {job.schedule['iterations']} iterations, {threads} thread(s)")
        summary = torchvision_backend.train(job)
        state = torchvision_backend.backbone_state(job.output)
    path = inputs / f"backbone_{job.backbone}.pth"
    torchvision_backend.save_atomic(state, path)
    return {"file": path.name, "backbone": job.backbone, "iterations": job.schedule["iterations"], "threads": threads, "device": "cpu",
            "seconds": round(summary["seconds"], 1), "sha256": sha256_file(path)}


def prepare(inputs: Path, pretrain_iterations: int | None = None) -> None:
    from anonymization_impact.annotations import normalize_split
    from anonymization_impact.config import SCHEMA_PATH, load_config
    from anonymization_impact.io import read_json, write_json_atomic
    from anonymization_impact.twins import write_pretraining_set, write_twin
    from anonymization_impact.twins.keypoints import simulate_keypoints

    config = load_config(REPO / "config.yaml")
    if inputs.exists():
        if any(inputs.iterdir()) and not (inputs / "settings.json").exists():
            raise SystemExit(f"{inputs} exists and was not written by --prepare; not touching it")
        shutil.rmtree(inputs)
    synthetic = config["synthetic"]
    root = inputs / "cityscapes"
    with tempfile.TemporaryDirectory(prefix="gpu_check_truth_") as scratch:
        truth, faces = Path(scratch) / "truth.json", Path(scratch) / "faces.json"
        say(f"writing the Cityscapes twin ({synthetic['n_train']} / {synthetic['n_val']} images, seed {synthetic['seed']}) to {root}")
        write_twin("cityscapes", root, truth, faces, n_train=synthetic["n_train"], n_val=synthetic["n_val"], seed=synthetic["seed"])
        documents = {}
        for split in ("train", "val"):
            documents[split] = normalize_split("cityscapes", root, split, verify_images=config["datasets"]["cityscapes"]["verify_images"])
            for name, document in documents[split].items():
                write_json_atomic(inputs / "annotations" / split / f"{name}.json", document)
        keypoints = simulate_keypoints("cityscapes", read_json(truth), documents["train"]["persons"],
                                       score_threshold=config["regions"]["keypoint_score_threshold"], seed=synthetic["seed"])
        write_json_atomic(inputs / "keypoints-twin.json", keypoints)
    pretraining = synthetic["pretraining"]
    say(f"writing {pretraining['images']} pretraining images (seed {pretraining['seed']})")
    write_pretraining_set(inputs / "pretraining" / "coco", inputs / "pretraining" / "instances.json", seed=pretraining["seed"], images=pretraining["images"])
    jobs = job_settings(config)
    backbone = pretrain_backbone_here(inputs, jobs["pretrain"], threads=config["training"]["threads"], iterations=pretrain_iterations)
    say("checking the pure-Python RLE stand-in against pycocotools")
    rle = check_rle_module([documents["train"]["instances"], documents["val"]["instances"], read_json(inputs / "pretraining" / "instances.json")])
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    settings = {
        "written_by": "perf/gpu_check.py --prepare",
        "git_commit": commit,
        "config_sha256": sha256_file(REPO / "config.yaml"),
        "schema_sha256": sha256_file(SCHEMA_PATH),
        "jobs": jobs,
        "backbone": backbone,
        "variants": {name: config["variants"][name] for name in VARIANTS},
        "realistic": config["realistic"],
        "anonymization": config["anonymization"],
        "rle_check": rle,
    }
    write_json_atomic(inputs / "settings.json", settings, indent=1)
    for path in inputs.rglob("*"):  # atomic writes leave 0600: readable by whoever runs the check
        path.chmod(path.stat().st_mode | 0o444 | (0o111 if path.is_dir() else 0))
    size = sum(p.stat().st_size for p in inputs.rglob("*") if p.is_file())
    say(f"done: {inputs} ({size / 2**20:.1f} MiB, {sum(1 for _ in inputs.rglob('*'))} entries); RLE stand-in equal on {rle['masks_checked']} masks")


def load_settings(inputs: Path) -> tuple[dict, list[str]]:
    path = inputs / "settings.json"
    if not path.exists():
        raise SystemExit(f"{path} is missing: run `python perf/gpu_check.py --prepare` with the project's .venv first, and carry {inputs.relative_to(REPO)}")
    settings = json.loads(path.read_text())
    stale = []
    if sha256_file(REPO / "config.yaml") != settings["config_sha256"]:
        stale.append("config.yaml changed since --prepare")
    if sha256_file(REPO / "schemas" / "config.schema.yaml") != settings["schema_sha256"]:
        stale.append("schemas/config.schema.yaml changed since --prepare")
    return settings, stale


# --- --evaluate (here) ---------------------------------------------------------------------------


def evaluate_dir(directory: Path, inputs: Path) -> None:
    from anonymization_impact.evaluation import evaluate
    from anonymization_impact.io import read_json

    ground_truth = read_json(inputs / "annotations" / "val" / "instances.json")
    files = sorted(Path(directory).rglob("pred_*.json"))
    if not files:
        raise SystemExit(f"no pred_*.json in {directory}")
    results = {}
    for path in files:
        predictions = read_json(path)
        image_ids = {image["id"] for image in ground_truth["images"]}
        predicted_ids = {p["image_id"] for p in predictions}
        if predictions and not predicted_ids <= image_ids:
            raise SystemExit(f"{path}: predictions for images not in the val split")
        with tempfile.TemporaryDirectory(prefix="gpu_check_eval_") as work:
            result = evaluate("cityscapes", "instance_segmentation", ground_truth, predictions, raw_root=inputs / "cityscapes", work_dir=Path(work))
        metrics = result["metrics"]
        results[path.name] = {key: metrics.get(key) for key in ("AP", "AP50", "AP_person", "AP50_person")}
        print(json.dumps({"file": path.name, "predictions": len(predictions), **_plain(results[path.name])}), flush=True)


# --- the check -----------------------------------------------------------------------------------


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

    def __init__(self):
        super().__init__(logging.INFO)
        self.losses: list[tuple[int, float]] = []
        self.messages: list[str] = []

    def emit(self, record):
        if isinstance(record.msg, str) and record.msg.startswith("iteration %d") and record.args:
            self.losses.append((int(record.args[0]), float(record.args[2])))
            if int(record.args[0]) % 100 == 0:
                say(f"  iteration {record.args[0]}: loss {float(record.args[2]):.4f}")
        elif record.levelno >= logging.INFO:
            self.messages.append(record.getMessage()[:300])


class Check:
    def __init__(self, args):
        self.args = args
        self.out = Path(args.outdir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.work = Path(args.work or tempfile.mkdtemp(prefix="gpu_check_work_"))
        self.work.mkdir(parents=True, exist_ok=True)
        self.inputs = Path(args.inputs)
        self.settings, self.stale = load_settings(self.inputs)
        # --pretend-cuda (a test of this script on a machine without a GPU): the CUDA sections'
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

    # helpers ----------------------------------------------------------------------------------

    def budget_allows(self, seconds: float, what: str) -> None:
        if elapsed() + seconds > self.args.budget_s:
            raise Skip(f"time budget: {what} would take ~{seconds:.0f} s more at {elapsed():.0f} s of --budget-s {self.args.budget_s}")

    def estimate(self, iterations: int, extra: float = 10.0) -> float:
        rate = self.runs.get("fp32", {}).get("s_per_iteration") or 0.2
        return iterations * rate + extra

    def job(self, kind: str, name: str, *, device: str, amp: bool, iterations: int, threads: int, checkpoint_every: int | None = None):
        from anonymization_impact.training.job import TrainingJob

        settings = copy.deepcopy(self.settings["jobs"][kind])
        settings["schedule"]["iterations"] = iterations
        settings.update(device=device, amp=amp)
        if checkpoint_every:
            settings["checkpoint_every"] = checkpoint_every
        if kind == "train":
            settings["init_weights"]["path"] = str(self.backbone)
            image_root, annotation = self.inputs / "cityscapes", self.inputs / "annotations" / "train" / "instances.json"
        else:
            image_root, annotation = self.inputs / "pretraining" / "coco", self.inputs / "pretraining" / "instances.json"
        directory = self.work / "runs" / name
        return TrainingJob.from_settings(settings, image_root=image_root, annotation=annotation, output=directory / "model_final.pth",
                                         checkpoint_dir=directory / "checkpoints", threads=threads)

    def train(self, job, *, stop_at: int | None = None, warm: int = 3) -> dict:
        """torchvision_backend.train (what train_model.py calls), timed per iteration."""
        from anonymization_impact.training import torchvision_backend

        stamps: list[float] = []
        handler = LossLog()
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
                          weights=str(weights), weights_bytes=weights.stat().st_size, weights_sha256=sha256_file(weights)[:16])
        if losses and not result["losses_finite"]:
            raise FloatingPointError(f"non-finite loss logged: {losses}")
        return result

    def weights_diff(self, first: Path, second: Path) -> dict:
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
        target = self.out / name
        if Path(source).stat().st_size > 15 * 2**20:
            emit("files", skipped=name, reason="over 15 MiB")
            return
        shutil.copyfile(source, target)
        self.files.append(name)

    # sections ---------------------------------------------------------------------------------

    def env(self) -> dict:
        import torch
        import torchvision

        info = {
            "python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
            "numpy": np.__version__, "cpu_count": os.cpu_count(), "torch_threads_default": torch.get_num_threads(),
            "rle": self.rle, "device_requested": self.args.device, "pretend_cuda": self.pretend, "settings_commit": self.settings.get("git_commit"),
            "settings_stale": self.stale, "cuda_available": torch.cuda.is_available(),
            "CUBLAS_WORKSPACE_CONFIG": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
            "c_compiler": os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang"),
            "work_dir": str(self.work),
        }
        try:
            from importlib import metadata

            info["triton"] = metadata.version("triton")
        except Exception:  # noqa: BLE001
            info["triton"] = None
        for name in ("scipy", "skimage", "PIL", "cv2"):
            try:
                info[name] = __import__(name).__version__
            except Exception as error:  # noqa: BLE001
                info[name] = f"missing ({type(error).__name__})"
        flags = {}
        for name, read in (("cudnn.benchmark", lambda: torch.backends.cudnn.benchmark), ("cudnn.deterministic", lambda: torch.backends.cudnn.deterministic),
                           ("cudnn.allow_tf32", lambda: torch.backends.cudnn.allow_tf32), ("cuda.matmul.allow_tf32", lambda: torch.backends.cuda.matmul.allow_tf32),
                           ("float32_matmul_precision", torch.get_float32_matmul_precision),
                           ("cudnn.conv.fp32_precision", lambda: torch.backends.cudnn.conv.fp32_precision),
                           ("cuda.matmul.fp32_precision", lambda: torch.backends.cuda.matmul.fp32_precision)):
            try:
                flags[name] = read()
            except Exception as error:  # noqa: BLE001 - flags differ between torch versions
                flags[name] = f"n/a ({type(error).__name__})"
        info["flags"] = flags
        info["package_determinism"] = ("torchvision_backend.train: torch.use_deterministic_algorithms(True, warn_only=True), torch.manual_seed(seed), "
                                       "torch.set_num_threads(threads); no cudnn.benchmark / CUBLAS_WORKSPACE_CONFIG / TF32 setting; "
                                       "DataLoader workers = threads on CUDA; amp = bfloat16 autocast on CUDA only, no GradScaler")
        if torch.cuda.is_available():
            properties = torch.cuda.get_device_properties(0)
            info.update(gpu=torch.cuda.get_device_name(0), capability=list(torch.cuda.get_device_capability(0)),
                        gpu_memory_gib=round(properties.total_memory / 2**30, 1), cuda=torch.version.cuda,
                        cudnn=torch.backends.cudnn.version(), bf16_supported=torch.cuda.is_bf16_supported())
            try:
                from torch._dynamo.utils import is_compile_supported

                info["deterministic_roi_align_path"] = ("torch.compile'd pure-Python roi_align (torchvision, deterministic backward)"
                                                        if is_compile_supported("cuda") else "eager pure-Python roi_align")
            except Exception as error:  # noqa: BLE001
                info["deterministic_roi_align_path"] = f"unknown ({error})"
        try:
            import inspect

            from anonymization_impact.realistic import twin_renderer

            info["twin_renderer_draws_on_the_crops_device"] = "device" in inspect.signature(twin_renderer._grid).parameters
        except Exception as error:  # noqa: BLE001
            info["twin_renderer_draws_on_the_crops_device"] = f"unknown ({error})"
        if self.cuda and not self.pretend and not torch.cuda.is_available():
            raise RuntimeError("--device cuda but torch.cuda.is_available() is False")
        if self.stale:
            say("WARNING: " + "; ".join(self.stale) + " -- rerun --prepare here and carry again")
        return info

    def roi_align(self) -> dict:
        """The roi_align call MultiScaleRoIAlign makes, with the training's deterministic flag
        (torchvision then runs its pure-Python roi_align through torch.compile on CUDA), against
        the CUDA kernel used without it."""
        if not self.cuda or self.pretend:
            raise Skip("CUDA only (on the CPU roi_align is torchvision's C++ kernel either way)")
        import torch
        from torchvision.ops import roi_align

        generator = torch.Generator(device="cuda").manual_seed(0)
        features = torch.randn(2, 32, 64, 128, device="cuda", generator=generator)
        boxes = [torch.tensor([[1.0, 2.0, 40.0, 60.0], [10.0, 5.0, 200.0, 120.0], [0.0, 0.0, 511.0, 255.0]], device="cuda"),
                 torch.tensor([[30.0, 30.0, 90.0, 100.0]], device="cuda")]
        results = {}
        for deterministic in (True, False):
            torch.use_deterministic_algorithms(deterministic, warn_only=True)
            try:
                results[deterministic] = self._roi_align_timed(roi_align, features, boxes)
            except Exception:
                if not deterministic:
                    raise
                # The workflow's training would fail here as well: report it, and let the
                # rest of the check run with dynamo's eager fallback so it still says something.
                import torch._dynamo

                torch._dynamo.config.suppress_errors = True
                self.roi_align_fallback = True
                say("WARNING: the deterministic roi_align failed to compile; the rest runs with torch._dynamo.config.suppress_errors = True")
                torch.use_deterministic_algorithms(False)
                raise
        torch.use_deterministic_algorithms(False)
        (out_d, grad_d, first_d, each_d), (out_k, grad_k, first_k, each_k) = results[True], results[False]
        return {"deterministic_first_call_s": round(first_d, 2), "deterministic_per_call_ms": round(each_d * 1000, 2),
                "kernel_first_call_s": round(first_k, 3), "kernel_per_call_ms": round(each_k * 1000, 2),
                "forward_max_abs_diff": float((out_d - out_k).abs().max()), "grad_max_abs_diff": float((grad_d - grad_k).abs().max())}

    @staticmethod
    def _roi_align_timed(roi_align, features, boxes):
        """Forward + backward once (compiles, if it does), then 5 more: outputs, grad, times."""
        import torch

        x = features.clone().requires_grad_(True)
        torch.cuda.synchronize()
        started = time.perf_counter()
        output = roi_align(x, boxes, (7, 7), spatial_scale=0.25, sampling_ratio=2, aligned=False)
        (output * torch.arange(output.numel(), device="cuda").reshape(output.shape).sin()).sum().backward()
        torch.cuda.synchronize()
        first, grad = time.perf_counter() - started, x.grad.detach().clone()
        started = time.perf_counter()
        for _ in range(5):
            roi_align(x, boxes, (7, 7), spatial_scale=0.25, sampling_ratio=2, aligned=False).sum().backward()
        torch.cuda.synchronize()
        return output.detach(), grad, first, (time.perf_counter() - started) / 5

    def pretrain(self) -> dict:
        from anonymization_impact.training import torchvision_backend

        iterations = self.args.pretrain_iters
        job = self.job("pretrain", "pretrain", device=self.device, amp=False, iterations=iterations, threads=self.args.threads)
        say(f"pretraining {job.backbone} from scratch, {iterations} iterations on {self.label} (config: {self.settings['jobs']['pretrain']['schedule']['iterations']})")
        result = self.train(job)
        state = torchvision_backend.backbone_state(job.output)  # as pretrain_backbone.py
        path = self.work / "runs" / "pretrain" / f"{job.backbone}.pth"
        torchvision_backend.save_atomic(state, path)
        schedule = self.settings["jobs"]["train"]["schedule"]
        torchvision_backend.build_model("mask_rcnn", job.backbone, 8, schedule, path)  # loads as a run's initial weights
        result["backbone_tensors"] = len(state)
        if self.backbone is None:
            self.backbone, self.backbone_source = path, f"this device's pretrain section ({iterations} iterations): no carried backbone"
        result["training_runs_start_from"] = self.backbone_source
        return result

    def _need_backbone(self) -> None:
        if self.backbone is None:
            raise Skip("no pre-trained backbone (none carried, and the pretrain section failed)")

    def train_fp32(self) -> dict:
        self._need_backbone()
        job = self.job("train", "fp32", device=self.device, amp=False, iterations=self.args.iters, threads=self.args.threads)
        say(f"training {MODEL} ({job.backbone}, twins' schedule) {self.args.iters} iterations on {self.label}, fp32")
        result = self.train(job)
        result["initial_backbone"] = self.backbone_source
        self.runs["fp32"] = {**result, "job": job}
        if self.cuda and not self.pretend and result.get("summary_device") != "cuda":
            raise AssertionError(f"training.device {job.device!r} trained on {result.get('summary_device')}, not cuda")
        self.keep(job.output, f"model_{self.label}_fp32.pth")
        return result

    def _predict(self, weights: Path, device: str, threads: int) -> tuple[list, float]:
        import torch

        from anonymization_impact.io import read_json
        from anonymization_impact.training import torchvision_backend

        torch.use_deterministic_algorithms(False)  # predict runs in a process of its own in the workflow
        annotation = read_json(self.inputs / "annotations" / "val" / "instances.json")
        if self.args.val_images:
            keep = {image["id"] for image in sorted(annotation["images"], key=lambda i: i["id"])[: self.args.val_images]}
            annotation = {**annotation, "images": [i for i in annotation["images"] if i["id"] in keep],
                          "annotations": [a for a in annotation["annotations"] if a["image_id"] in keep]}
        started = time.perf_counter()
        predictions = torchvision_backend.predict(weights, annotation, self.inputs / "cityscapes", device=device, threads=threads)
        return predictions, (time.perf_counter() - started) / max(1, len(annotation["images"]))

    def _check_predictions(self, predictions: list) -> dict:
        scores = [p["score"] for p in predictions]
        finite = all(np.isfinite(p["bbox"]).all() and np.isfinite(p["score"]) for p in predictions)
        if not finite:
            raise FloatingPointError("non-finite box or score in the predictions")
        return {"predictions": len(predictions), "images_with_predictions": len({p["image_id"] for p in predictions}),
                "with_masks": sum("segmentation" in p for p in predictions), "max_score": max(scores, default=None),
                "categories": sorted({p["category_id"] for p in predictions})}

    @staticmethod
    def _compare_predictions(first: list, second: list) -> dict:
        """Per image and category, greedy matching by score at box IoU >= 0.9."""

        def iou(a, b):
            ax0, ay0, aw, ah = a
            bx0, by0, bw, bh = b
            w = max(0.0, min(ax0 + aw, bx0 + bw) - max(ax0, bx0))
            h = max(0.0, min(ay0 + ah, by0 + bh) - max(ay0, by0))
            union = aw * ah + bw * bh - w * h
            return w * h / union if union > 0 else 0.0

        grouped: dict = {}
        for which, predictions in enumerate((first, second)):
            for p in predictions:
                grouped.setdefault((p["image_id"], p["category_id"]), ([], []))[which].append(p)
        matched, score_diffs = 0, []
        for ours, theirs in grouped.values():
            used = set()
            for p in sorted(ours, key=lambda p: -p["score"]):
                best, best_iou = None, 0.9
                for index, q in enumerate(theirs):
                    if index not in used and iou(p["bbox"], q["bbox"]) >= best_iou:
                        best, best_iou = index, iou(p["bbox"], q["bbox"])
                if best is not None:
                    used.add(best)
                    matched += 1
                    score_diffs.append(abs(p["score"] - theirs[best]["score"]))
        return {"first": len(first), "second": len(second), "matched_iou_0.9": matched,
                "score_abs_diff_mean": float(np.mean(score_diffs)) if score_diffs else None,
                "score_abs_diff_max": float(np.max(score_diffs)) if score_diffs else None}

    def predict(self) -> dict:
        run = self.runs.get("fp32")
        if not run:
            raise Skip("no trained model (train_fp32 failed)")
        weights = run["job"].output
        predictions, per_image = self._predict(weights, self.device, self.args.threads)
        name = f"pred_train-{self.label}-fp32_predict-{self.label}.json"
        (self.out / name).write_text(json.dumps(predictions))
        self.files.append(name)
        result = {"file": name, "s_per_image": round(per_image, 4), **self._check_predictions(predictions)}
        if self.cuda:
            say("the same weights predicted on the CPU")
            on_cpu, cpu_per_image = self._predict(weights, "cpu", os.cpu_count())
            other = f"pred_train-{self.label}-fp32_predict-cpu.json"
            (self.out / other).write_text(json.dumps(on_cpu))
            self.files.append(other)
            result.update(cpu_file=other, cpu_s_per_image=round(cpu_per_image, 4), cuda_vs_cpu=self._compare_predictions(predictions, on_cpu))
        return result

    def realistic(self) -> dict:
        import torch

        from anonymization_impact.io import decode_image, read_json
        from anonymization_impact.keypoints import apply_keypoints
        from anonymization_impact.trees import name_hash, plan_targets, region_union

        torch.use_deterministic_algorithms(False)  # anonymize_shard runs in a process of its own in the workflow
        persons = read_json(self.inputs / "annotations" / "train" / "persons.json")
        apply_keypoints(persons, read_json(self.inputs / "keypoints-twin.json"))
        by_image: dict = {}
        for annotation in persons["annotations"]:
            by_image.setdefault(annotation["image_id"], []).append(annotation)
        body = self.settings["variants"][VARIANTS[0]]
        chosen = []
        for image in sorted(persons["images"], key=lambda i: name_hash(i["file_name"])):
            targets, _ = plan_targets("body", image, by_image.get(image["id"], []), None, body["min_size"], False)
            if len(targets) >= 2:
                chosen.append((image, targets))
            if len(chosen) == self.args.images:
                break
        ids = {image["id"] for image, _ in chosen}
        subset = {**persons, "images": [i for i in persons["images"] if i["id"] in ids], "annotations": [a for a in persons["annotations"] if a["image_id"] in ids]}
        n_persons = sum(len(t) for _, t in chosen)
        devices = ["cpu", "cuda"] if self.cuda else ["cpu"]
        torch_device = {"cpu": "cpu", "cuda": self.gpu}
        realistic = self.settings["realistic"]
        outputs, report = {}, {"images": len(chosen), "persons": n_persons, "cpu_threads": self.args.cpu_threads,
                                "generator": realistic["synthetic_generator"], "config_realistic_device": realistic["device"]}
        originals = {image["file_name"]: decode_image(self.inputs / "cityscapes" / image["file_name"])[0] for image, _ in chosen}
        unions = {image["file_name"]: region_union(targets, image["height"], image["width"]) for image, targets in chosen}
        problems = []
        for name in VARIANTS:
            variant = copy.deepcopy(self.settings["variants"][name])
            if self.args.hmlo_steps is not None:
                variant["hmlo_steps"] = self.args.hmlo_steps
            for device in devices:
                try:  # one failing (variant, device) must not hide the others
                    entry, outputs[(name, device)] = self._anonymize(name, variant, device, torch_device[device], chosen, subset, n_persons, originals, unions)
                except Exception as error:  # noqa: BLE001
                    problems.append(f"{name} on {device}: {type(error).__name__}: {error}")
                    entry = {"error": problems[-1][:2000], "traceback": traceback.format_exc()[-3000:]}
                    print(entry["traceback"], file=sys.stderr, flush=True)
                report[f"{name}/{device}"] = entry
                emit("realistic", variant=name, device=device, **{k: v for k, v in entry.items() if k not in ("audit_method", "traceback")})
        if self.cuda:
            for name in VARIANTS:
                if (name, "cpu") not in outputs or (name, "cuda") not in outputs:
                    continue
                differences = []
                for file_name, cpu_pixels in outputs[(name, "cpu")].items():
                    gpu_pixels = outputs[(name, "cuda")][file_name]
                    delta = np.abs(cpu_pixels.astype(np.int16) - gpu_pixels.astype(np.int16))
                    union = unions[file_name]
                    differences.append((float(delta.mean()), float(delta[union].mean()), int(delta.max()), float(np.any(delta > 0, axis=-1).mean())))
                d = np.array(differences)
                report[f"{name}/cuda_vs_cpu"] = {"mean_abs_diff_all_pixels": float(d[:, 0].mean()), "mean_abs_diff_region_pixels": float(d[:, 1].mean()),
                                                 "max_abs_diff": int(d[:, 2].max()), "fraction_pixels_differing": float(d[:, 3].mean())}
        try:
            self._montage(chosen[:3], originals, outputs, devices)
        except Exception as error:  # noqa: BLE001
            problems.append(f"montage: {type(error).__name__}: {error}")
        if problems:
            emit("realistic_partial_report", **{k: v for k, v in report.items()})
            raise RuntimeError("; ".join(problems))
        return report

    def _anonymize(self, name, variant, device, torch_device, chosen, subset, n_persons, originals, unions):
        """anonymize_shard_realistic's calls (prepare_generators, build_realistic, anonymize_shard)
        on the chosen images, every synthesis timed; the output images checked."""
        import torch

        from anonymization_impact.io import decode_image
        from anonymization_impact.realistic import effective_truncation
        from anonymization_impact.realistic.loading import prepare_generators
        from anonymization_impact.realistic.method import build_realistic
        from anonymization_impact.trees import anonymize_shard

        realistic, anonymization = self.settings["realistic"], self.settings["anonymization"]
        roles = ["body"] if variant["region"] == "body" else ["face"]
        torch.set_num_threads(self.args.cpu_threads)
        settings = {"kind": realistic["synthetic_generator"], "roles": roles, "device": torch_device, "standin_seed": realistic["standin_seed"]}
        started = time.perf_counter()
        generators, resolved = prepare_generators(settings, {}, None, n_persons, logging.getLogger("gpu_check.realistic"))
        loaded = time.perf_counter() - started
        method = build_realistic(variant, generators, resolved)
        timings, finite = [], []
        synthesize = method.synthesize

        def timed(*args, **kwargs):
            begin = time.perf_counter()
            pixels = synthesize(*args, **kwargs)
            timings.append(time.perf_counter() - begin)
            finite.append(bool(np.all(np.isfinite(pixels))) and float(pixels.min()) >= 0 and float(pixels.max()) <= 255)
            return pixels

        method.synthesize = timed
        directory = self.work / "realistic" / name / device
        say(f"{name} on {device}: {len(chosen)} images, {n_persons} persons")
        started = time.perf_counter()
        audit = anonymize_shard(root=self.inputs / "cityscapes", persons=subset, faces=None, variant=variant, method=method, shard=0, shards=1,
                                output_dir=directory, leak_check_images=anonymization["leak_check_images"],
                                hide_pending=anonymization["pending_regions"] == "hidden")
        seconds = time.perf_counter() - started
        images, outside_changed, inside_changed = {}, 0, []
        for image, _ in chosen:
            pixels = decode_image(directory / image["file_name"])[0]
            original, union = originals[image["file_name"]], unions[image["file_name"]]
            assert pixels.dtype == np.uint8 and pixels.shape == original.shape, (pixels.dtype, pixels.shape)
            outside_changed += int(np.any(pixels != original, axis=-1)[~union].sum())
            inside_changed.append(float(np.any(pixels != original, axis=-1)[union].mean()))
            images[image["file_name"]] = pixels
        entry = {"resolved_device": resolved, "truncation": effective_truncation(variant), "postprocess": variant["postprocess"],
                 "hmlo_steps_max": variant["hmlo_steps"], "generator_load_s": round(loaded, 2), "shard_s": round(seconds, 2),
                 "syntheses": len(timings), "s_per_person_mean": float(np.mean(timings)), "s_per_person_median": float(np.median(timings)),
                 "s_first_person": float(timings[0]) if timings else None, "all_finite_in_0_255": all(finite),
                 "pixels_changed_outside_regions": outside_changed, "region_fraction_changed_mean": float(np.mean(inside_changed)),
                 "leak_check": audit["leak_check"], "audit_method": audit.get("method")}
        if not all(finite) or outside_changed:
            raise AssertionError(f"non-finite / out-of-range pixels ({not all(finite)}) or {outside_changed} pixels changed outside the regions")
        if device == "cuda" and torch_device == "cuda" and resolved != "cuda":
            raise AssertionError(f"realistic.device cuda resolved to {resolved}")
        return entry, images

    def _montage(self, chosen, originals, outputs, devices) -> None:
        from PIL import Image, ImageDraw

        rows = [("original", lambda f: originals[f])]
        for name in VARIANTS:
            for device in devices:
                if (name, device) in outputs:  # a failed combination has no row
                    rows.append((f"{name} {device}", lambda f, key=(name, device): outputs[key][f]))
            if (name, "cpu") in outputs and (name, "cuda") in outputs:
                rows.append((f"{name} |cpu-cuda| x8", lambda f, n=name: np.clip(np.abs(outputs[(n, "cpu")][f].astype(np.int16) - outputs[(n, "cuda")][f].astype(np.int16)) * 8, 0, 255).astype(np.uint8)))
        files = [image["file_name"] for image, _ in chosen]
        height, width = originals[files[0]].shape[:2]
        label = 14
        canvas = Image.new("RGB", (width * len(files), (height + label) * len(rows)), (255, 255, 255))
        draw = ImageDraw.Draw(canvas)
        for r, (title, get) in enumerate(rows):
            draw.text((2, r * (height + label) + 1), title, fill=(0, 0, 0))
            for c, file_name in enumerate(files):
                canvas.paste(Image.fromarray(get(file_name)), (c * width, r * (height + label) + label))
        canvas.save(self.out / "realistic_montage.png")
        self.files.append("realistic_montage.png")

    def train_amp(self) -> dict:
        if not self.cuda:
            raise Skip("amp only changes CUDA runs (the backend enables autocast on CUDA only)")
        self._need_backbone()
        self.budget_allows(self.estimate(self.args.iters, 40), "the amp run")
        job = self.job("train", "amp", device=self.gpu, amp=True, iterations=self.args.iters, threads=self.args.threads)
        say(f"training with amp (bfloat16 autocast), {self.args.iters} iterations")
        result = self.train(job)
        result["autocast_dtype"] = "torch.bfloat16 (torchvision_backend.train: torch.autocast(device.type, dtype=torch.bfloat16, enabled=job.amp and device.type == 'cuda'))"
        if "fp32" in self.runs:
            result["speed_vs_fp32"] = round(self.runs["fp32"]["s_per_iteration"] / result["s_per_iteration"], 2)
        predictions, per_image = self._predict(job.output, self.gpu, self.args.threads)
        name = "pred_train-cuda-amp_predict-cuda.json"
        (self.out / name).write_text(json.dumps(predictions))
        self.files.append(name)
        result["predictions"] = {"file": name, "s_per_image": round(per_image, 4), **self._check_predictions(predictions)}
        return result

    def determinism(self) -> dict:
        """The same job (--check-iters iterations) twice, each in a fresh checkpoint directory."""
        self._need_backbone()
        iterations = self.args.check_iters
        self.budget_allows(self.estimate(2 * iterations, 15), "two runs of the same job")
        runs = []
        for name in ("same_job_1", "same_job_2"):
            job = self.job("train", name, device=self.device, amp=False, iterations=iterations, threads=self.args.threads)
            say(f"{name}: fp32, {iterations} iterations on {self.label}")
            runs.append((self.train(job), job))
            self.runs[name] = {**runs[-1][0], "job": job}
        keys = ("iterations_run", "s_per_iteration", "loss_last", "losses_finite", "weights_sha256")
        return {"iterations": iterations, "first": {k: runs[0][0].get(k) for k in keys}, "second": {k: runs[1][0].get(k) for k in keys},
                "weights_equal": self.weights_diff(runs[0][1].output, runs[1][1].output)}

    def resume(self) -> dict:
        """That job interrupted after its checkpoint at half way, then run again: it must resume
        there; its weights are compared with the uninterrupted run's."""
        run = self.runs.get("same_job_1")
        if not run:
            raise Skip("no uninterrupted run of the same job to compare with (determinism did not run)")
        iterations = self.args.check_iters
        self.budget_allows(self.estimate(iterations, 15), "the interrupted + resumed run")
        half = iterations // 2
        job = self.job("train", "resumed", device=self.device, amp=False, iterations=iterations, threads=self.args.threads, checkpoint_every=half)
        say(f"the fp32 job with a checkpoint every {half} iterations, interrupted before iteration {half}, then run again")
        first = self.train(job, stop_at=half)
        checkpoints = sorted(str(p.relative_to(job.checkpoint_dir)) for p in Path(job.checkpoint_dir).rglob("*.pth"))
        second = self.train(job)
        result = {"interrupted": {k: first[k] for k in ("iterations_run", "interrupted_before_iteration", "wall_s")}, "checkpoints_after_interrupt": checkpoints,
                  "resumed": {k: second.get(k) for k in ("resumed_at", "iterations_run", "wall_s", "loss_last", "losses_finite")},
                  "vs_uninterrupted": self.weights_diff(run["job"].output, job.output)}
        if "same_job_2" in self.runs:
            result["uninterrupted_runs_vs_each_other"] = self.weights_diff(run["job"].output, self.runs["same_job_2"]["job"].output)
        if second.get("resumed_at") != half:
            raise AssertionError(f"the second run resumed at {second.get('resumed_at')}, expected {half}")
        return result

    def cpu_rate(self) -> dict:
        if not self.cuda:
            raise Skip("the check itself runs on the CPU (train_fp32's rate is the CPU rate)")
        self._need_backbone()
        iterations = self.args.cpu_iters
        self.budget_allows(iterations * 1.0 + 10, "the CPU rate")
        job = self.job("train", "cpu_rate", device="cpu", amp=False, iterations=self.args.iters, threads=self.args.cpu_threads)
        say(f"the fp32 job on the CPU with {self.args.cpu_threads} threads, stopped after {iterations} iterations")
        result = self.train(job, stop_at=iterations, warm=2)
        if "fp32" in self.runs and result["s_per_iteration"]:
            result["cuda_speedup"] = round(result["s_per_iteration"] / self.runs["fp32"]["s_per_iteration"], 2)
        return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n", 2)[2])
    parser.add_argument("outdir", nargs="?", help="where summary.json, predictions, the fp32 model and the montage go")
    parser.add_argument("--prepare", action="store_true", help="write the inputs (here, with the project's .venv)")
    parser.add_argument("--prepare-pretrain-iters", type=int, help="--prepare: backbone pretraining iterations (default: the config's)")
    parser.add_argument("--evaluate", metavar="DIR", help="score the pred_*.json files in DIR (here)")
    parser.add_argument("--inputs", default=str(DEFAULT_INPUTS), help="what --prepare wrote (default resources/gpu_check)")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to test the script itself")
    parser.add_argument("--sections", help="comma-separated sections to run (default all; env always runs)")
    parser.add_argument("--pretrain-iters", type=int, help="backbone pretraining iterations on the device, a check of that path "
                        "(default 100; --prepare pre-trains the runs' backbone on the CPU with the config's 800)")
    parser.add_argument("--iters", type=int, help="iterations of the fp32 and amp runs (default: the config's, 300)")
    parser.add_argument("--check-iters", type=int, help="iterations of the determinism and resume runs (default 100)")
    parser.add_argument("--cpu-iters", type=int, help="iterations of the CPU rate run (default 12)")
    parser.add_argument("--threads", type=int, help="the runs' threads (DataLoader workers on CUDA; default 8 on cuda, all cores on cpu)")
    parser.add_argument("--cpu-threads", type=int, default=os.cpu_count(), help="torch threads of CPU comparisons (default all cores)")
    parser.add_argument("--images", type=int, help="training images anonymized by the realistic section (default 5)")
    parser.add_argument("--hmlo-steps", type=int, help="override the variant's hmlo_steps (default: the config's)")
    parser.add_argument("--val-images", type=int, help="predict on the first N val images only (default all)")
    parser.add_argument("--budget-s", type=float, default=300, help="optional runs are skipped once they would end after this (default 300)")
    parser.add_argument("--hard-timeout-s", type=float, default=340, help="write summary.json and exit 3 after this (default 340)")
    parser.add_argument("--work", help="scratch directory (default a new one under the temp dir)")
    parser.add_argument("--keep-work", action="store_true")
    parser.add_argument("--cublas-deterministic", action="store_true",
                        help="set CUBLAS_WORKSPACE_CONFIG=:4096:8 (the workflow does not) to see whether that makes CUDA runs bit-identical")
    parser.add_argument("--pretend-cuda", action="store_true", help=argparse.SUPPRESS)  # test the CUDA sections' logic on a CPU
    parser.add_argument("--rle-fallback", action="store_true", help="use the pure-Python RLE even if pycocotools imports (test)")
    args = parser.parse_args()
    quick = args.quick
    defaults = {"pretrain_iters": (100, 10), "iters": (None, 12), "check_iters": (100, 8), "cpu_iters": (12, 5), "images": (5, 2), "hmlo_steps": (None, 5),
                "val_images": (None, 6)}
    for key, (normal, small) in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, small if quick else normal)
    if args.threads is None:
        args.threads = 8 if args.device == "cuda" else (os.cpu_count() or 1)

    if args.prepare:
        prepare(Path(args.inputs), pretrain_iterations=args.prepare_pretrain_iters)
        return 0
    if args.evaluate:
        evaluate_dir(Path(args.evaluate), Path(args.inputs))
        return 0
    if not args.outdir:
        parser.error("OUTDIR is required (or --prepare / --evaluate)")

    if args.cublas_deterministic:  # before the first cuBLAS handle: torch is imported by the sections
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    rle = install_rle(args.rle_fallback)
    warnings.showwarning = _capture_warning
    warnings.simplefilter("always")
    check = Check(args)
    check.rle = rle
    if args.iters is None:
        args.iters = check.settings["jobs"]["train"]["schedule"]["iterations"]
    say(f"gpu_check: device {args.device}, pretrain {args.pretrain_iters} / train {args.iters} iterations, work dir {check.work}")
    emit("options", **{k: v for k, v in vars(args).items()})
    results, failures = {}, []
    order = ["env", "roi_align", "pretrain", "train_fp32", "predict", "cpu_rate", "realistic", "train_amp", "determinism", "resume"]
    if args.sections:
        wanted = {"env", *args.sections.split(",")}
        unknown = wanted - set(order)
        if unknown:
            parser.error(f"unknown sections {sorted(unknown)}; known: {', '.join(order)}")
        order = [name for name in order if name in wanted]

    def write_summary(**extra) -> dict:
        summary = {"ok": not failures and not extra.get("timed_out"), "failures": failures, "device": args.device, "total_s": round(elapsed(), 1),
                   "files": check.files + ["summary.json"], "roi_align_compile_fallback": check.roi_align_fallback, **extra,
                   "sections": results, "warnings": WARNINGS}
        try:
            import torch

            if torch.cuda.is_available():
                summary["cuda_peak_memory_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
            from torch._dynamo.utils import compile_times, counters

            summary["dynamo_counters"] = {key: dict(value) for key, value in counters.items() if value}
            summary["dynamo_compile_times"] = str(compile_times(repr="str"))[:4000]
        except Exception as error:  # noqa: BLE001
            summary["dynamo_counters"] = f"unavailable ({type(error).__name__}: {error})"
        summary["records"] = RECORDS
        (check.out / "summary.json").write_text(json.dumps(_plain(summary), indent=1))
        return summary

    def on_timeout() -> None:  # a hang (e.g. DataLoader workers forked from a threaded process) must not eat the device time
        say(f"HARD TIMEOUT after {args.hard_timeout_s:.0f} s: writing summary.json and exiting; stacks follow")
        running = next((name for name in order if name not in results), None)
        failures.append(f"hard timeout in {running}")
        write_summary(timed_out=True, running_section=running)
        faulthandler.dump_traceback(all_threads=True)
        sys.stderr.flush()
        os._exit(3)

    watchdog = threading.Timer(args.hard_timeout_s, on_timeout)
    watchdog.daemon = True
    watchdog.start()
    for name in order:
        if name != "env" and check.cuda and not check.pretend and results["env"].get("cuda_available") is not True:
            results[name] = {"status": "skipped", "reason": "--device cuda but no CUDA device (see env)"}
            emit(name, **results[name])
            continue
        run_section(name, getattr(check, name), results, failures)
    watchdog.cancel()
    write_summary()
    compact = {name: results[name]["status"] for name in order}
    emit("summary", ok=not failures, failures=failures, total_s=round(elapsed(), 1), statuses=compact, files=check.files + ["summary.json"],
         roi_align_compile_fallback=check.roi_align_fallback)
    if not args.keep_work and not args.work:
        shutil.rmtree(check.work, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
