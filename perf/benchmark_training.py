"""Training speed of the portable (torchvision) backend: seconds per iteration.

Run: .venv/bin/python perf/benchmark_training.py [--iterations 8]

Measures, on whatever device `training.device: auto` picks (CUDA when present, else CPU),
the twins' CPU schedule for Mask R-CNN (Cityscapes twin) and Keypoint R-CNN (COCO twin),
and the paper's model size (R50-FPN, torchvision's full heads, batch 2, 512-1024 px) on
upscaled twin images. The first two iterations are warm-up and not counted.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import torch  # noqa: E402

from anonymization_impact.annotations import normalize_split  # noqa: E402
from anonymization_impact.config import load_config  # noqa: E402
from anonymization_impact.io import write_json_atomic  # noqa: E402
from anonymization_impact.training.job import TrainingJob  # noqa: E402
from anonymization_impact.training import torchvision_backend as backend  # noqa: E402
from anonymization_impact.twins import write_twin  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def seconds_per_iteration(job: TrainingJob, iterations: int) -> float:
    stamps = []
    job.schedule = {**job.schedule, "iterations": iterations + 2}
    backend.train(job, progress=lambda items: _stamping(items, stamps))
    return (stamps[-1] - stamps[2]) / (len(stamps) - 3)


def _stamping(items, stamps):
    for item in items:
        stamps.append(time.perf_counter())
        yield item
    stamps.append(time.perf_counter())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=8)
    args = parser.parse_args()
    config = load_config(REPO / "config.yaml")
    device = backend.select_device(config["training"]["device"])
    paper_size = {**config["training"]["cityscapes"], "image_min_size": 512, "image_max_size": 1024, "batch_size": 2, "init": "scratch", "trainable_backbone_layers": 5}
    twins = config["training"]["synthetic"]
    runs = [  # the twins map the models' ResNet-50 / 152 to ResNet-10 / 34 (narrow)
        ("twin schedule, Mask R-CNN ResNet-10 narrow", "cityscapes", "mask_rcnn", "resnet10", twins),
        ("twin schedule, Mask R-CNN ResNet-34 narrow", "cityscapes", "mask_rcnn", "resnet34", twins),
        ("twin schedule, Keypoint R-CNN ResNet-10 narrow", "coco", "keypoint_rcnn", "resnet10", twins),
        ("R50-FPN full heads, 512-1024 px, batch 2", "cityscapes", "mask_rcnn", "resnet50", paper_size),
    ]
    print(f"device: {device}, torch {torch.__version__}, threads {config['training']['threads']}")
    with tempfile.TemporaryDirectory() as temporary:
        base = Path(temporary)
        for name, dataset, architecture, backbone, schedule in runs:
            root = base / dataset
            if not root.exists():
                write_twin(dataset, root, base / f"{dataset}.truth.json", base / f"{dataset}.faces.json", n_train=16, n_val=8, seed=0)
                write_json_atomic(base / f"{dataset}.json", normalize_split(dataset, root, "train", verify_images=False)["instances"])
            init = None
            if schedule["init"] == "imagenet":  # speed does not depend on the values: an untrained backbone
                init = base / f"{backbone}-init.pth"
                torch.save(backend.resnet(backbone, schedule["backbone_width"], torch.nn.BatchNorm2d).state_dict(), init)
            job = TrainingJob(
                image_root=root, annotation=base / f"{dataset}.json", architecture=architecture, backbone=backbone,
                schedule=dict(schedule), seed=0, output=base / f"{name}.pth", checkpoint_dir=base / f"{name}-checkpoints",
                checkpoint_every=10**9, init_weights=init, device=config["training"]["device"], threads=config["training"]["threads"],
            )
            print(f"{name:<48} {seconds_per_iteration(job, args.iterations):6.3f} s/iteration")


if __name__ == "__main__":
    main()
