"""MMDetection 2.x (the paper's, envs/mmdetection.yaml): train and predict a mmdet2_config.

Imported only by the backend (this package's ``__init__``) once ``import mmdet`` worked and said 2.x.
Never executed in this project (docs/training.md, "Never executed").
"""

from __future__ import annotations

import time
from pathlib import Path

from ..common import resolve_device
from ..job import TrainingJob
from .common import images_bgr, mmdet2_results, prepare, save_weights, weights_meta


def train(job: TrainingJob, progress=None) -> dict:
    import torch
    from mmcv import Config
    from mmdet.apis import set_random_seed, train_detector
    from mmdet.datasets import build_dataset
    from mmdet.models import build_detector

    config, categories = prepare(job, resolve_device(job.device))
    cfg = Config(config)
    work_dir = Path(cfg.work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    cfg.dump(str(work_dir / "config.py"))
    set_random_seed(job.seed, deterministic=False)  # what MMDetection's tools/train.py does with --seed
    model = build_detector(cfg.model)
    model.init_weights()
    datasets = [build_dataset(cfg.data.train)]
    model.CLASSES = datasets[0].CLASSES
    resumed = (work_dir / "latest.pth").exists()
    started = time.perf_counter()
    train_detector(model, datasets, cfg, distributed=False, validate=False, timestamp=time.strftime("%Y%m%d_%H%M%S"), meta={"seed": job.seed})
    final = torch.load(work_dir / f"epoch_{cfg.runner.max_epochs}.pth", map_location="cpu")
    meta = {
        "CLASSES": model.CLASSES,
        "anonymization_impact": {"backend": "mmdetection", "api": 2, "config": config, "category_ids": [c["id"] for c in categories]},
    }
    save_weights(job.output, final["state_dict"], meta)
    return {
        "iterations": job.schedule["iterations"],
        "epochs": cfg.runner.max_epochs,
        "resumed": resumed,
        "seconds": time.perf_counter() - started,
        "device": cfg.device,
        "images": len(datasets[0]),
    }


def predict(weights: Path, annotation: dict, image_root: Path, *, device: str = "auto", threads: int = 2, progress=None) -> list[dict]:
    import torch
    from mmcv import Config
    from mmdet.apis import inference_detector, init_detector

    torch.set_num_threads(threads)
    meta = weights_meta(weights, api=2)
    model = init_detector(Config(meta["config"]), str(weights), device=resolve_device(device))
    results = []
    for image, pixels in images_bgr(annotation, image_root, progress):
        bbox_results, segm_results = inference_detector(model, pixels)
        if isinstance(segm_results, tuple):  # (masks, mask scores) of some heads
            segm_results = segm_results[0]
        results.extend(mmdet2_results(image["id"], bbox_results, segm_results, meta["category_ids"]))
    return results
