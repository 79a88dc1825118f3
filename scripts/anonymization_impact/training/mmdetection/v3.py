"""MMDetection 3.x (envs/mmdetection-current.yaml): train and predict an mmdet3_config.

Imported only by the backend (this package's ``__init__``) once ``import mmdet`` worked and said 3.x.
Never executed in this project (docs/training.md, "Never executed").
"""

from __future__ import annotations

import time
from pathlib import Path

from ..common import resolve_device
from ..job import TrainingJob
from ..predictions import coco_results
from .common import images_bgr, mmdet3_config, prepare, save_weights, weights_meta


def train(job: TrainingJob, progress=None) -> dict:
    import torch
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    from mmengine.runner import Runner

    register_all_modules()
    config2, categories = prepare(job, resolve_device(job.device))
    config = mmdet3_config(config2)
    work_dir = Path(config["work_dir"])
    resumed = (work_dir / "last_checkpoint").exists()
    started = time.perf_counter()
    runner = Runner.from_cfg(Config(config))  # seeds from cfg.randomness, resumes (cfg.resume)
    runner.train()
    final = torch.load(work_dir / f"epoch_{config['train_cfg']['max_epochs']}.pth", map_location="cpu")
    meta = {
        "dataset_meta": {"classes": tuple(c["name"] for c in categories)},
        "anonymization_impact": {"backend": "mmdetection", "api": 3, "config": config, "category_ids": [c["id"] for c in categories]},
    }
    save_weights(job.output, final["state_dict"], meta)
    return {
        "iterations": job.schedule["iterations"],
        "epochs": config["train_cfg"]["max_epochs"],
        "resumed": resumed,
        "seconds": time.perf_counter() - started,
        "device": resolve_device(job.device),
    }


def predict(weights: Path, annotation: dict, image_root: Path, *, device: str = "auto", threads: int = 2, progress=None) -> list[dict]:
    import torch
    from mmdet.apis import inference_detector, init_detector
    from mmdet.utils import register_all_modules
    from mmengine.config import Config

    register_all_modules()
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
