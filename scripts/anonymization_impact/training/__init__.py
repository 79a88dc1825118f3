"""Training backends behind one interface.

A backend trains ``(dataset root, annotation JSON, model spec, schedule, seed) -> weights``
and predicts ``(weights, original validation split) -> COCO-format results``. The portable
backend is torchvision (this machine, any GPU); the paper-exact detectron2 / MMDetection
backends (their own conda envs, see docs/training.md) plug in behind the same
:class:`job.TrainingJob` and ``predict`` signatures. Nothing here imports a framework: the
backend modules import theirs inside the functions that need it.
"""

from __future__ import annotations

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
        from . import mmdetection

        return mmdetection
    raise WorkflowInputError(f"unknown training backend {name!r}; expected one of {', '.join(BACKENDS)}")


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
