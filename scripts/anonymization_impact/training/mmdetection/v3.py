"""MMDetection 3.x (envs/mmdetection-current.yaml): train and predict an mmdet3_config.

Imported only by the backend (this package's ``__init__``) once ``import mmdet`` worked and said 3.x.
Run on the BDD100K twin in the env twin of envs/mmdetection-current.yaml (mmdet 3.3.0, mmcv 2.1.0,
mmengine 0.10.7, torch 2.1.2; tests/test_mmdetection_stacks.py).
"""

from __future__ import annotations

import time
from pathlib import Path

from ..common import resolve_device
from ..job import TrainingJob
from ..predictions import coco_results
from .common import DEADLINE_HOOK, RESNET10_TYPE, STOP_HOOK, DeadlineWatch, check_backbone_weights, finish, images_bgr, iteration_seconds, mmdet3_config, prepare, resnet10_class, weights_meta


def _register(record: dict | None = None, watch: DeadlineWatch | None = None) -> None:
    """Our modules in MMDetection's registries: the ResNet of depth 10; with ``record``, the stop
    hook, which writes there the iteration the run started at, the last loss and the iterations'
    end times, and the deadline hook of ``watch``."""
    from mmdet.models.backbones import ResNet
    from mmdet.models.backbones.resnet import BasicBlock
    from mmdet.registry import HOOKS, MODELS
    from mmdet.utils import register_all_modules
    from mmengine.hooks import CheckpointHook, Hook

    register_all_modules()
    MODELS.register_module(name=RESNET10_TYPE, module=resnet10_class(ResNet, BasicBlock), force=True)
    if record is None:
        return

    class StopOnNonFiniteLoss(Hook):  # priority VERY_HIGH (the config): before CheckpointHook saves the iteration
        def before_train(self, runner):
            record["resumed_at"] = runner.iter  # after load_or_resume

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            iteration_seconds(record, runner.iter, outputs, runner.work_dir)

    HOOKS.register_module(name=STOP_HOOK, module=StopOnNonFiniteLoss, force=True)

    class StopBeforeTheLimit(Hook):  # priority LOWEST (the config): after CheckpointHook (VERY_LOW)
        def before_train_epoch(self, runner):
            watch.epoch_starts(runner.epoch, runner.max_epochs)

        def after_train_epoch(self, runner):
            watch.epoch_ended()

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            if watch.deadline is None:  # no scheduler's limit
                return
            (checkpoints,) = (hook for hook in runner.hooks if isinstance(hook, CheckpointHook))
            periodic = checkpoints.every_n_train_iters(runner, checkpoints.interval, checkpoints.save_begin)  # saved by it already

            def save():
                if not periodic:
                    checkpoints._save_checkpoint(runner)

            watch.iteration_ended(runner.iter, runner.max_iters, checkpoints.by_epoch, save)

    HOOKS.register_module(name=DEADLINE_HOOK, module=StopBeforeTheLimit, force=True)


def train(job: TrainingJob, progress=None) -> dict:
    import torch
    from mmengine.config import Config
    from mmengine.runner import Runner

    torch.set_num_threads(job.threads)
    record: dict = {}
    config2, categories = prepare(job, resolve_device(job.device))
    config = mmdet3_config(config2)
    _register(record, DeadlineWatch(job.deadline, config["work_dir"]))
    runner = Runner.from_cfg(Config(config))  # seeds from cfg.randomness, resumes (cfg.resume)
    check_backbone_weights(job.init_weights, runner.model.backbone, job.backbone, job.schedule["backbone_width"])
    started = time.perf_counter()
    runner.train()
    return finish(
        job, record, api=3, config=config, categories=categories, framework_meta={"dataset_meta": {"classes": tuple(c["name"] for c in categories)}},
        runner=config["train_cfg"], started=started, device=resolve_device(job.device), images=len(runner.train_dataloader.dataset),
        frameworks=("mmdet", "mmcv", "mmengine", "torch"),
    )


def predict(weights: Path, annotation: dict, image_root: Path, *, device: str = "auto", threads: int = 2, progress=None) -> list[dict]:
    import torch
    from mmdet.apis import inference_detector, init_detector
    from mmengine.config import Config

    _register()
    torch.set_num_threads(threads)
    meta = weights_meta(weights, api=3)
    model = init_detector(Config(meta["config"]), str(weights), device=resolve_device(device))
    results = []
    for image, pixels in images_bgr(annotation, image_root, progress):
        predicted = inference_detector(model, pixels).pred_instances
        results.extend(
            coco_results(
                image["id"],
                predicted.bboxes.cpu().numpy(),
                predicted.scores.cpu().numpy(),
                predicted.labels.cpu().numpy(),
                meta["category_ids"],
                masks=predicted.masks.cpu().numpy(),
            )
        )
    return results
