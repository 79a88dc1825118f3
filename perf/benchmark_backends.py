"""Training speed of the same model under each backend: seconds per iteration, and the ratios.

Run: .venv/bin/python perf/benchmark_backends.py [--backends torchvision detectron2 detectron2-current] [--iterations 10] [--threads 1] [--repeats 2]

The model is the twins' Mask R-CNN (narrow ResNet-10 FPN, slim heads, the `training.synthetic`
schedule at 256 px) on the same Cityscapes-twin images, from the same backbone file (untrained:
speed does not depend on the values), trained by each backend exactly as rule train_model trains it
(``TrainingJob.from_settings`` of the plan's settings, ``backend(name).train``). A backend is named
by its env: ``torchvision`` runs in this interpreter (the project's venv), any other name is an
envs/<name>.yaml whose env twin (tools/env_twins.py) runs it - detectron2, detectron2-current,
mmdetection, mmdetection-current - with the backend whose env that is (training.BACKEND_ENVS).

Seconds per iteration = (time of warm-up + N iterations - time of the warm-up alone) / N, both runs
in one process, so start-up, model building and weight loading cancel out. Threads are pinned:
OMP_NUM_THREADS / MKL_NUM_THREADS and the job's threads (torch.set_num_threads); the data loader
runs in the training process on the CPU in every backend. Backends alternate over the repeats and
each reports its fastest repeat (a shared machine only ever slows a run down).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROJECT_BACKEND = "torchvision"  # the one backend of the project's own venv


def worker(request_file: str) -> None:
    """In the backend's interpreter: train warm-up and warm-up + N iterations, print the seconds."""
    sys.path.insert(0, str(REPO / "scripts"))
    from anonymization_impact.io import read_json
    from anonymization_impact.training import backend
    from anonymization_impact.training.job import TrainingJob

    request = read_json(request_file)
    seconds = {}
    for label, iterations in (("warmup", request["warmup"]), ("measured", request["warmup"] + request["iterations"])):
        settings = {**request["settings"], "schedule": {**request["settings"]["schedule"], "iterations": iterations}}
        out = Path(request["out"]) / label
        job = TrainingJob.from_settings(settings, image_root=request["root"], annotation=request["annotation"], output=out / "model.pth", checkpoint_dir=out / "checkpoints", threads=request["threads"])
        seconds[label] = backend(request["backend"]).train(job)["seconds"]
    print("RESULT " + json.dumps(seconds), flush=True)


def backend_of(env: str) -> str:
    """The training backend whose conda env is envs/<env>.yaml."""
    from anonymization_impact.training import BACKEND_ENVS

    for name, stacks in BACKEND_ENVS.items():
        if f"envs/{env}.yaml" in stacks.values() and name != PROJECT_BACKEND:
            return name
    raise SystemExit(f"{env}: no training backend has envs/{env}.yaml as its env (training.BACKEND_ENVS)")


def interpreter(env: str) -> Path:
    if env == PROJECT_BACKEND:
        return Path(sys.executable)
    import importlib.util

    spec = importlib.util.spec_from_file_location("env_twins", REPO / "tools" / "env_twins.py")
    env_twins = sys.modules.setdefault("env_twins", importlib.util.module_from_spec(spec))  # its dataclasses look themselves up there
    spec.loader.exec_module(env_twins)
    return env_twins.build(REPO / "envs" / f"{env}.yaml", quiet=True) / "bin" / "python"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=[PROJECT_BACKEND, "detectron2", "detectron2-current"], help="torchvision, or an envs/<name>.yaml whose twin runs its backend")
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "scripts"))
    import torch

    from anonymization_impact.annotations import normalize_split
    from anonymization_impact.config import load_config
    from anonymization_impact.io import write_json_atomic
    from anonymization_impact.plan import training_job_settings
    from anonymization_impact.training import torchvision_backend
    from anonymization_impact.twins import write_twin

    config = load_config(REPO / "config.yaml")
    environment = {**os.environ, "PYTHONPATH": str(REPO / "scripts"), "CUDA_VISIBLE_DEVICES": "", "MPLBACKEND": "Agg", "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    best: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="benchmark-backends-") as temporary:
        base = Path(temporary)
        root = base / "cityscapes"
        write_twin("cityscapes", root, base / "truth.json", base / "faces.json", n_train=16, n_val=8, seed=0)
        write_json_atomic(base / "train.json", normalize_split("cityscapes", root, "train", verify_images=False)["instances"])
        settings = training_job_settings(config, "cityscapes", "mask_rcnn_r50_fpn", 0, str(base / "{backbone}.pth"))
        schedule = settings["schedule"]
        backbone = torchvision_backend.resnet(settings["backbone"], schedule["backbone_width"], torch.nn.BatchNorm2d).state_dict()
        torch.save({name: value for name, value in backbone.items() if not name.startswith("fc.")}, base / f"{settings['backbone']}.pth")
        print(f"Mask R-CNN {settings['backbone']} width {schedule['backbone_width']}, Cityscapes twin (16 images), {schedule['image_min_size']} px, batch {schedule['batch_size']}, "
              f"{args.iterations} iterations after {args.warmup}, {args.threads} thread(s), CPU, best of {args.repeats}")
        for repeat in range(args.repeats):
            for env in args.backends:
                name = PROJECT_BACKEND if env == PROJECT_BACKEND else backend_of(env)
                request = {"settings": {**settings, "backend": name}, "root": str(root), "annotation": str(base / "train.json"), "out": str(base / f"{env}-{repeat}"),
                           "backend": name, "threads": args.threads, "warmup": args.warmup, "iterations": args.iterations}
                write_json_atomic(base / f"{env}-{repeat}.json", request)
                command = [str(interpreter(env)), str(Path(__file__).resolve()), "--worker", str(base / f"{env}-{repeat}.json")]
                run = subprocess.run(command, capture_output=True, text=True, env={**environment, "PATH": f"{Path(command[0]).parent}:{os.environ['PATH']}"})
                lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
                if run.returncode or not lines:
                    raise SystemExit(f"{env} failed:\n{run.stdout[-2000:]}\n{run.stderr[-4000:]}")
                seconds = json.loads(lines[-1][len("RESULT "):])
                per_iteration = (seconds["measured"] - seconds["warmup"]) / args.iterations
                best[env] = min(best.get(env, per_iteration), per_iteration)
                print(f"  repeat {repeat + 1}: {env:<22} {per_iteration:6.3f} s/iteration", flush=True)
    reference = args.backends[0]
    print(f"\n{'backend (env)':<24} {'s/iteration':>11} {'x ' + reference:>16}")
    for env in args.backends:
        print(f"{env:<24} {best[env]:11.3f} {best[env] / best[reference]:16.2f}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        worker(sys.argv[2])
    else:
        main()
