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
