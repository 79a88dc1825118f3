"""The paper's MMDetection backend: BDD100K Mask R-CNN R50-FPN as BDD100K's model zoo defines it.

:func:`train` and :func:`predict` import MMDetection and dispatch to :mod:`.v2` (the paper's
2.x API) or :mod:`.v3`; without it they raise WorkflowInputError naming the envs. Both ran on the
BDD100K twin in the env twins of envs/mmdetection.yaml and envs/mmdetection-current.yaml
(tests/test_mmdetection_stacks.py, docs/training.md).

The config translation and the framework-free parts both versions share are in :mod:`.common`
(tested without MMDetection, tests/test_backends.py) and answer under this backend's name too.
Imports go one way: this module -> v2 / v3 -> common; v2 / v3 only once ``import mmdet`` worked.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import WorkflowInputError
from ..common import missing_framework
from ..job import TrainingJob
from .common import (  # noqa: F401 (the backend's API from when it was one module: backend("mmdetection").<name>)
    BDD100K_MODELS_COMMIT,
    BDD100K_ZOO,
    DEADLINE_HOOK,
    DEPTHS,
    MMCV_STEP_GAMMA,
    MMDETECTION_COMMIT,
    PAPER_CONFIG,
    PLUMBING_KEYS,
    RESNET10_TYPE,
    STOP_HOOK,
    ZOO_GPUS,
    DeadlineWatch,
    backbone_misfits,
    epochs,
    final_checkpoint,
    finite_loss,
    images_bgr,
    iteration_seconds,
    load_checkpoint,
    mmdet2_config,
    mmdet2_results,
    mmdet3_config,
    prediction_scale,
    prepare,
    save_weights,
    seconds_per_iteration,
    trained_images,
    weights_meta,
    whole_epochs,
)


def _api():
    """The module that speaks the installed MMDetection's API (2.x: the paper's; 3.x: current)."""
    try:
        import mmdet
    except ImportError as error:
        raise missing_framework("mmdetection", error) from None
    major = mmdet.__version__.split(".")[0]
    if major == "2":
        from . import v2

        return v2
    if major == "3":
        from . import v3

        return v3
    raise WorkflowInputError(f"MMDetection {mmdet.__version__} is installed; this backend speaks 2.x (envs/mmdetection.yaml) and 3.x (envs/mmdetection-current.yaml)")


def train(job: TrainingJob, progress=None) -> dict:
    """Train (or resume from its work dir) ``job`` with MMDetection; writes ``job.output``."""
    return _api().train(job, progress)


def predict(weights: Path, annotation: dict, image_root: Path, *, device: str = "auto", threads: int = 2, progress=None) -> list[dict]:
    return _api().predict(weights, annotation, image_root, device=device, threads=threads, progress=progress)
