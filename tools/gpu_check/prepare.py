"""``--prepare`` (here, with the project's .venv): the inputs the device reads, in resources/gpu_check/."""

from __future__ import annotations

import copy
import shutil
import subprocess
import tempfile
from pathlib import Path

from . import DATASET, MODEL, REPO, SEED, VARIANTS
from .coco_mask import check_against_pycocotools
from .reporting import Report

# rule pretrain_backbone's output, which the plan makes a twin run start from
WORKFLOW_BACKBONE = "resources/twins/pretraining/{backbone}.pth"


def job_settings(config: dict) -> dict:
    """The plan's train_model job of the twins' mask_rcnn_r50_fpn seed 0 on the Cityscapes twin and
    its backbone's pretrain_backbone job, as the rules get them; only the initial weights' path differs."""
    from anonymization_impact import plan

    train = plan.training_job_settings(config, DATASET, MODEL, SEED, WORKFLOW_BACKBONE)
    if train["init_weights"]:
        # the check carries its own pre-trained backbone (pretrain_backbone_here, or the pretrain
        # section's): not the workflow's file; the device puts its path in (Check.job)
        train["init_weights"] = {**train["init_weights"], "path": None}
    return {"train": train, "pretrain": plan.pretraining_job_settings(config, train["backbone"])}


def generator_settings(config: dict) -> dict:
    """The plan's generator settings of the realistic variants the check runs (anonymize_shard_realistic's)."""
    from anonymization_impact import plan

    return {name: plan.generator_settings(config, DATASET, name) for name in VARIANTS}


def pretrain_backbone_here(report: Report, inputs: Path, settings: dict, *, threads: int, iterations: int | None) -> dict:
    """Rule pretrain_backbone's job on this CPU (its threads: the workflow's backbone bit for bit
    at the config's iterations): the initialization of the check's training runs."""
    from anonymization_impact.io import file_digest
    from anonymization_impact.training import torchvision_backend
    from anonymization_impact.training.job import TrainingJob

    settings = copy.deepcopy(settings)
    if iterations:
        settings["schedule"]["iterations"] = iterations
    settings["device"] = "cpu"
    with tempfile.TemporaryDirectory(prefix="gpu_check_pretrain_") as scratch:
        job = TrainingJob.from_settings(settings, image_root=inputs / "pretraining" / "coco", annotation=inputs / "pretraining" / "instances.json",
                                        output=Path(scratch) / "detector.pth", checkpoint_dir=Path(scratch) / "checkpoints", threads=threads)
        report.say(f"pre-training the {job.backbone} backbone here on the CPU: {job.schedule['iterations']} iterations, {threads} thread(s)")
        summary = torchvision_backend.train(job)
        state = torchvision_backend.backbone_state(job.output)
    path = inputs / f"backbone_{job.backbone}.pth"
    torchvision_backend.save_atomic(state, path)
    return {"file": path.name, "backbone": job.backbone, "iterations": job.schedule["iterations"], "threads": threads, "device": "cpu",
            "seconds": round(summary["seconds"], 1), "sha256": file_digest(path, "sha256")}


def prepare(report: Report, inputs: Path, pretrain_iterations: int | None = None) -> None:
    from anonymization_impact.annotations import normalize_split
    from anonymization_impact.config import SCHEMA_PATH, load_config
    from anonymization_impact.io import file_digest, read_json, write_json_atomic
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
        report.say(f"writing the Cityscapes twin ({synthetic['n_train']} / {synthetic['n_val']} images, seed {synthetic['seed']}) to {root}")
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
    report.say(f"writing {pretraining['images']} pretraining images (seed {pretraining['seed']})")
    write_pretraining_set(inputs / "pretraining" / "coco", inputs / "pretraining" / "instances.json", seed=pretraining["seed"], images=pretraining["images"])
    jobs = job_settings(config)
    backbone = pretrain_backbone_here(report, inputs, jobs["pretrain"], threads=config["training"]["threads"], iterations=pretrain_iterations)
    report.say("checking the pure-Python RLE stand-in against pycocotools")
    rle = check_against_pycocotools([documents["train"]["instances"], documents["val"]["instances"], read_json(inputs / "pretraining" / "instances.json")])
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    settings = {
        "written_by": "python -m tools.gpu_check --prepare",
        "git_commit": commit,
        "config_sha256": file_digest(REPO / "config.yaml", "sha256"),
        "schema_sha256": file_digest(SCHEMA_PATH, "sha256"),
        "jobs": jobs,
        "backbone": backbone,
        "variants": {name: config["variants"][name] for name in VARIANTS},
        "generators": generator_settings(config),
        "realistic": config["realistic"],
        "anonymization": config["anonymization"],
        "rle_check": rle,
    }
    write_json_atomic(inputs / "settings.json", settings, indent=1)
    for path in inputs.rglob("*"):  # atomic writes leave 0600: readable by whoever runs the check
        path.chmod(path.stat().st_mode | 0o444 | (0o111 if path.is_dir() else 0))
    size = sum(p.stat().st_size for p in inputs.rglob("*") if p.is_file())
    report.say(f"done: {inputs} ({size / 2**20:.1f} MiB, {sum(1 for _ in inputs.rglob('*'))} entries); RLE stand-in equal on {rle['masks_checked']} masks")
