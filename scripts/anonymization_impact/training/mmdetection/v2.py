"""MMDetection 2.x (the paper's, envs/mmdetection.yaml): train and predict a mmdet2_config.

Imported only by the backend (this package's ``__init__``) once ``import mmdet`` worked and said 2.x.
Run on the BDD100K twin in the env twin of envs/mmdetection.yaml (mmdet 2.28.2, mmcv-full 1.7.1,
torch 1.12.1; tests/test_mmdetection_stacks.py).
"""

from __future__ import annotations

import time
from pathlib import Path

from ..common import resolve_device
from ..job import TrainingJob
from .common import DEADLINE_HOOK, RESNET10_TYPE, STOP_HOOK, DeadlineWatch, check_backbone_weights, finish, images_bgr, iteration_seconds, mmdet2_results, prepare, resnet10_class, weights_meta


def _register(record: dict | None = None, watch: DeadlineWatch | None = None) -> None:
    """Our modules in MMDetection's registries: the ResNet of depth 10; with ``record``, the stop
    hook, which writes there the iteration the run started at, the last loss and the iterations'
    end times, and the deadline hook of ``watch``."""
    from mmcv.runner import HOOKS, CheckpointHook, Hook
    from mmdet.models.backbones import ResNet
    from mmdet.models.backbones.resnet import BasicBlock
    from mmdet.models.builder import BACKBONES

    BACKBONES.register_module(name=RESNET10_TYPE, module=resnet10_class(ResNet, BasicBlock), force=True)
    if record is None:
        return

    class StopOnNonFiniteLoss(Hook):  # priority VERY_HIGH (the config): before OptimizerHook's backward and step
        def before_run(self, runner):
            record["resumed_at"] = runner.iter  # after train_detector's resume

        def after_train_iter(self, runner):
            iteration_seconds(record, runner.iter, runner.outputs["log_vars"], runner.work_dir)

    HOOKS.register_module(name=STOP_HOOK, module=StopOnNonFiniteLoss, force=True)

    class StopBeforeTheLimit(Hook):  # priority LOWEST (the config): after OptimizerHook and CheckpointHook
        def before_train_epoch(self, runner):
            watch.epoch_starts(runner.epoch, runner.max_epochs)

        def after_train_epoch(self, runner):
            watch.epoch_ended()

        def after_train_iter(self, runner):
            if watch.deadline is None:  # no scheduler's limit
                return
            (checkpoints,) = (hook for hook in runner.hooks if isinstance(hook, CheckpointHook))
            periodic = checkpoints.every_n_iters(runner, checkpoints.interval)  # saved by it already

            def save():
                if not periodic:
                    checkpoints._save_checkpoint(runner)

            watch.iteration_ended(runner.iter, runner.max_iters, checkpoints.by_epoch, save)

    HOOKS.register_module(name=DEADLINE_HOOK, module=StopBeforeTheLimit, force=True)


def _register_resuming_runner() -> None:
    """mmcv 1.7's IterBasedRunner (the twins' runs), registered under its own name with two resume
    fixes, found by killing and resuming a twin run:

    * its resume maps the checkpoint to ``torch.cuda.current_device()`` unless given a map_location
      (its EpochBasedRunner asks torch.cuda.is_available() first) and mmdet's train_detector gives
      none: without CUDA, 'Found no NVIDIA driver'. There it loads to the CPU.
    * ``iter_<n>.pth`` records iter n - 1 (the index of the iteration that wrote it, before the
      runner counts it), so the resumed run trained that iteration twice. It continues at n.
    """
    import torch
    from mmcv.runner import RUNNERS, IterBasedRunner

    class ResumingIterBasedRunner(IterBasedRunner):
        def resume(self, checkpoint, resume_optimizer=True, map_location="default"):
            if map_location == "default" and not torch.cuda.is_available():
                map_location = "cpu"
            super().resume(checkpoint, resume_optimizer, map_location)
            self._iter = self._inner_iter = self._iter + 1
            self.logger.info("continuing at iteration %d, the one after the checkpoint's", self._iter)

    RUNNERS.register_module(name="IterBasedRunner", module=ResumingIterBasedRunner, force=True)


def train(job: TrainingJob, progress=None) -> dict:
    import torch
    from mmcv import Config
    from mmdet.apis import set_random_seed, train_detector
    from mmdet.datasets import build_dataset
    from mmdet.models import build_detector

    torch.set_num_threads(job.threads)
    record: dict = {}
    config, categories = prepare(job, resolve_device(job.device))
    cfg = Config(config)
    work_dir = Path(cfg.work_dir)
    _register(record, DeadlineWatch(job.deadline, work_dir))
    _register_resuming_runner()
    work_dir.mkdir(parents=True, exist_ok=True)
    cfg.dump(str(work_dir / "config.json"))  # not .py: mmcv 1.7's Python formatting fails with yapf >= 0.40.2 (its `verify`)
    set_random_seed(job.seed, deterministic=False)  # what MMDetection's tools/train.py does with --seed
    model = build_detector(cfg.model)
    check_backbone_weights(job.init_weights, model.backbone, job.backbone, job.schedule["backbone_width"])
    model.init_weights()
    datasets = [build_dataset(cfg.data.train)]
    model.CLASSES = datasets[0].CLASSES
    started = time.perf_counter()
    train_detector(model, datasets, cfg, distributed=False, validate=False, timestamp=time.strftime("%Y%m%d_%H%M%S"), meta={"seed": job.seed})
    return finish(
        job, record, api=2, config=config, categories=categories, framework_meta={"CLASSES": model.CLASSES}, runner=dict(cfg.runner),
        started=started, device=cfg.device, images=len(datasets[0]), frameworks=("mmdet", "mmcv-full", "torch"),
    )


def predict(weights: Path, annotation: dict, image_root: Path, *, device: str = "auto", threads: int = 2, progress=None) -> list[dict]:
    import torch
    from mmcv import Config
    from mmdet.apis import inference_detector, init_detector

    torch.set_num_threads(threads)
    _register()
    meta = weights_meta(weights, api=2)
    model = init_detector(Config(meta["config"]), str(weights), device=resolve_device(device))
    results = []
    for image, pixels in images_bgr(annotation, image_root, progress):
        bbox_results, segm_results = inference_detector(model, pixels)
        if isinstance(segm_results, tuple):  # (masks, mask scores) of some heads
            segm_results = segm_results[0]
        results.extend(mmdet2_results(image["id"], bbox_results, segm_results, meta["category_ids"]))
    return results
