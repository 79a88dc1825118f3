"""Training backends behind one interface.

A backend trains ``(dataset root, annotation JSON, model spec, schedule, seed) -> weights``
and predicts ``(weights, original validation split) -> COCO-format results``. The portable
backend is torchvision (this machine, any GPU); the paper-exact detectron2 / MMDetection
backends (their own conda envs, see docs/training.md) plug in behind the same
:class:`TrainingJob` and ``predict`` signatures. Nothing here imports a framework: the
backend modules import theirs inside the functions that need it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import TASKS
from ..errors import WorkflowInputError

BACKENDS = ("torchvision", "detectron2", "mmdetection")
# The conda env of each backend per `training.stack` (paths relative to the repository).
BACKEND_ENVS = {
    "torchvision": {"paper": "envs/training.yaml", "current": "envs/training.yaml"},
    "detectron2": {"paper": "envs/detectron2.yaml", "current": "envs/detectron2-current.yaml"},
    "mmdetection": {"paper": "envs/mmdetection.yaml", "current": "envs/mmdetection-current.yaml"},
}
# detectron2's model zoo has ImageNet weights (MSRA's) and COCO Mask R-CNNs for these depths
# only; other depths start from torchvision's ImageNet ResNet, converted when training.
DETECTRON2_ZOO_WEIGHTS = {
    ("imagenet", "resnet50"): "resnet50_imagenet_msra",
    ("imagenet", "resnet101"): "resnet101_imagenet_msra",
    ("coco", "resnet50"): "mask_rcnn_r50_fpn_coco_detectron2",
    ("coco", "resnet101"): "mask_rcnn_r101_fpn_coco_detectron2",
}


@dataclass
class TrainingJob:
    image_root: Path  # dataset root the annotation's file names are relative to
    annotation: Path  # normalized COCO-format instances.json of the training split
    architecture: str  # mask_rcnn | keypoint_rcnn
    backbone: str  # resnet18 ... resnet152 (after the schedule's override)
    schedule: dict  # a validated `training.<name>` schedule
    seed: int
    output: Path  # final weights
    checkpoint_dir: Path
    checkpoint_every: int = 50
    init_weights: Path | None = None  # ImageNet backbone weights (schedule init "imagenet")
    device: str = "auto"
    amp: bool = False
    threads: int = 2
    fingerprint_extra: dict = field(default_factory=dict)  # anything else a checkpoint must match
    exclude_classes: tuple[str, ...] = ()  # class names left out of training

    @classmethod
    def from_settings(cls, settings: dict, *, image_root, annotation, output, checkpoint_dir, threads: int) -> "TrainingJob":
        """A job from the settings a rule passes (common.smk's get_training_job_settings)."""
        from ..weights import verify_weights

        init = settings["init_weights"]
        return cls(
            image_root=Path(image_root),
            annotation=Path(annotation),
            architecture=settings["architecture"],
            backbone=settings["backbone"],
            schedule=settings["schedule"],
            seed=settings["seed"],
            output=Path(output),
            checkpoint_dir=Path(checkpoint_dir),
            checkpoint_every=settings["checkpoint_every"],
            init_weights=verify_weights(init["name"], init) if init else None,
            device=settings["device"],
            amp=settings["amp"],
            threads=threads,
            exclude_classes=tuple(settings.get("exclude_classes", ())),
        )

    @property
    def task(self) -> str:
        return TASKS[self.architecture]

    def fingerprint(self) -> str:
        """sha256 of the description: a checkpoint directory belongs to one configuration."""
        return hashlib.sha256(json.dumps(self.description(), sort_keys=True, default=str).encode()).hexdigest()

    def description(self) -> dict:
        """What determines the weights; a checkpoint of another description is not resumed."""
        keys = ("architecture", "backbone", "schedule", "seed", "threads", "amp", "fingerprint_extra")
        described = {key: value for key, value in asdict(self).items() if key in keys}
        described["annotation"] = str(self.annotation)
        if self.exclude_classes:  # absent otherwise: older runs keep their fingerprint
            described["exclude_classes"] = sorted(self.exclude_classes)
        return described


def backend(name: str):
    """The module of a backend (``train(job, progress)``, ``predict(weights, ...)``).

    Importing it never needs the framework; its functions that do raise WorkflowInputError
    naming the conda env when the framework is missing.
    """
    if name == "torchvision":
        from . import torchvision_backend

        return torchvision_backend
    if name == "detectron2":
        from . import detectron2_backend

        return detectron2_backend
    if name == "mmdetection":
        from . import mmdet_backend

        return mmdet_backend
    raise WorkflowInputError(f"unknown training backend {name!r}; expected one of {', '.join(BACKENDS)}")


def missing_framework(backend_name: str, error: ImportError) -> WorkflowInputError:
    """The error of a backend whose framework does not import in this environment."""
    envs = BACKEND_ENVS[backend_name]
    return WorkflowInputError(
        f"the {backend_name} backend needs {error.name or 'its framework'}, which does not import here ({error}). "
        f"Run this rule in its conda env: {envs['paper']} (training.stack: paper, the paper's PyTorch 1.12 stack) "
        f"or {envs['current']} (training.stack: current), e.g. `snakemake --sdm conda ...` on a GPU node "
        "(docs/training.md). On a machine without the framework, train with `models.<name>.backend: torchvision` "
        "or `training.backends`."
    )


def resolve_device(requested: str) -> str:
    """'cuda' or 'cpu' for training.device (auto: CUDA when the job sees a device)."""
    import torch

    if requested == "cuda" and not torch.cuda.is_available():
        raise WorkflowInputError("training.device is 'cuda' but no CUDA device is visible to this job")
    return "cuda" if requested != "cpu" and torch.cuda.is_available() else "cpu"


def kept_categories(categories: list[dict], task: str, exclude_classes=()) -> list[dict]:
    """The categories a model is trained on, in id order: every category of the annotation
    (only person for keypoints) but the excluded class names, which must exist."""
    names = {category["name"] for category in categories}
    unknown = sorted(set(exclude_classes) - names)
    if unknown:
        raise WorkflowInputError(f"exclude_classes {unknown} are not classes of this dataset ({', '.join(sorted(names))})")
    kept = sorted((c for c in categories if c["name"] not in set(exclude_classes)), key=lambda category: category["id"])
    if task == "keypoints":
        kept = [category for category in kept if category["name"] == "person"]
    if not kept:
        raise WorkflowInputError(f"no class is left to train on after excluding {sorted(exclude_classes)}")
    return kept


def pretraining_job_settings(config: dict, backbone: str) -> dict:
    """The twins' backbone pretraining (their stand-in for ImageNet): the twins' schedule from
    scratch on the pretraining images, all stages trained."""
    pretraining = config["synthetic"]["pretraining"]
    schedule = {
        **config["training"]["synthetic"],
        "init": "scratch",
        "trainable_backbone_layers": 5,
        "iterations": pretraining["iterations"],
        "base_lr": pretraining["base_lr"],
    }
    return {
        "architecture": "mask_rcnn",
        "backbone": backbone,
        "schedule": schedule,
        "seed": pretraining["seed"],
        "checkpoint_every": config["training"]["checkpoint_every"],
        "device": config["training"]["device"],
        "amp": config["training"]["amp"],
        "init_weights": None,
    }


def init_weights_name(backend_name: str, init: str, backbone: str) -> str:
    """Name of the `weights` entry a run starts from (init imagenet or coco).

    torchvision and MMDetection (its ``torchvision://`` ResNets are these files) start from
    torchvision's ImageNet ResNets; detectron2 from its model zoo's files where it has them
    (MSRA ResNet-50 / 101; the COCO Mask R-CNN R50 / R101 of its Cityscapes config), from
    torchvision's otherwise (ResNet-152: no zoo file, so a coco init falls back to ImageNet).
    """
    if init == "coco" and backend_name != "detectron2":
        raise WorkflowInputError(
            f"schedule init 'coco' (a COCO-trained Mask R-CNN) is only available with the detectron2 backend, "
            f"not {backend_name}; set the schedule's init to imagenet or the backend to detectron2"
        )
    if backend_name == "detectron2":
        if (init, backbone) in DETECTRON2_ZOO_WEIGHTS:
            return DETECTRON2_ZOO_WEIGHTS[(init, backbone)]
    return f"{backbone}_imagenet"


def model_zoo_mismatches(schedule: dict, backbone: str, depths) -> list[str]:
    """What a model-zoo R-CNN of the paper's frameworks cannot express (the twins' slim
    models): the backend names each, then adds its own."""
    problems = []
    if backbone not in depths:
        problems.append(f"backbone {backbone} (their ResNets: {', '.join(depths)})")
    if schedule["backbone_width"] != 64:
        problems.append(f"backbone_width {schedule['backbone_width']} (64 only)")
    if schedule["head_channels"] is not None:
        problems.append(f"head_channels {schedule['head_channels']} (null only: the model-zoo heads)")
    if schedule["clip_gradient_norm"] is not None:
        problems.append(f"clip_gradient_norm {schedule['clip_gradient_norm']} (null only: not translated)")
    return problems
