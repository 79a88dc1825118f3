"""Seconds per training iteration of the MMDetection backend, run in an env twin (tools/env_twins.py).

``seconds_per_iteration_mmdetection(env_file, ...)`` trains the backend for ``iterations`` + 2
iterations in the twin of ``env_file`` (envs/mmdetection.yaml: MMDetection 2.x, the paper's;
envs/mmdetection-current.yaml: 3.x) and returns the mean time of the iterations after the first two,
the backend's own ``seconds_per_iteration`` (its stop hook stamps each iteration's end), measured as
perf/benchmark_training.py measures the torchvision backend. A benchmark imports it from here
(perf/ is the script folder): same job, same images, one row per backend.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_TRAIN = """
import json, sys
from pathlib import Path
from anonymization_impact.training import backend
from anonymization_impact.training.job import TrainingJob

fields = json.loads(sys.argv[1])
for key in ("image_root", "annotation", "output", "checkpoint_dir", "init_weights"):
    fields[key] = Path(fields[key])
print(json.dumps(backend("mmdetection").train(TrainingJob(**fields))))
"""


def twin_python(env_file: Path) -> Path:
    """The interpreter of ``env_file``'s env twin (built first if it is not cached)."""
    folder = subprocess.run([sys.executable, str(REPO / "tools" / "env_twins.py"), "path", str(env_file)], capture_output=True, text=True, check=True).stdout.strip()
    return Path(folder) / "bin" / "python"


def seconds_per_iteration_mmdetection(
    env_file: Path, *, image_root: Path, annotation: Path, init_weights: Path, schedule: dict, work_dir: Path, backbone: str = "resnet10", iterations: int = 8, threads: int = 1
) -> float:
    """Mean seconds of one Mask R-CNN training iteration of ``schedule`` (its other values as they
    are) on the CPU, after two warm-up iterations; ``work_dir`` receives the run (start it empty:
    a checkpoint there would be resumed)."""
    python = twin_python(env_file)
    fields = {
        "image_root": str(image_root), "annotation": str(annotation), "architecture": "mask_rcnn", "backbone": backbone,
        "schedule": {**schedule, "iterations": iterations + 2}, "seed": 0, "output": str(Path(work_dir) / "model_final.pth"),
        "checkpoint_dir": str(Path(work_dir) / "checkpoints"), "checkpoint_every": 10**9, "init_weights": str(init_weights), "device": "cpu", "threads": threads,
    }
    environment = {"PATH": f"{python.parent}:/usr/bin:/bin", "PYTHONPATH": str(REPO / "scripts"), "HOME": os.environ.get("HOME", "/"), "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run([str(python), "-c", _TRAIN, json.dumps(fields)], capture_output=True, text=True, env=environment, cwd=REPO)
    if result.returncode:
        raise RuntimeError(f"MMDetection training in {python} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])["seconds_per_iteration"]
