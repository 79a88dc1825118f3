"""Section predict: predict's call on the val split with the fp32 run's weights, on the device and on the CPU."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from .check import Check
from .reporting import Skip


def predict_val(check: Check, weights: Path, device: str, threads: int) -> tuple[list, float]:
    """torchvision_backend.predict on the val split (its first --val-images): predictions, s / image."""
    import torch

    from anonymization_impact.io import read_json
    from anonymization_impact.training import torchvision_backend

    torch.use_deterministic_algorithms(False)  # predict runs in a process of its own in the workflow
    annotation = read_json(check.inputs / "annotations" / "val" / "instances.json")
    if check.args.val_images:
        keep = {image["id"] for image in sorted(annotation["images"], key=lambda i: i["id"])[: check.args.val_images]}
        annotation = {**annotation, "images": [i for i in annotation["images"] if i["id"] in keep],
                      "annotations": [a for a in annotation["annotations"] if a["image_id"] in keep]}
    started = time.perf_counter()
    predictions = torchvision_backend.predict(weights, annotation, check.inputs / "cityscapes", device=device, threads=threads)
    return predictions, (time.perf_counter() - started) / max(1, len(annotation["images"]))


def describe_predictions(predictions: list) -> dict:
    """Counts of the predictions; raises on a non-finite box or score."""
    scores = [p["score"] for p in predictions]
    finite = all(np.isfinite(p["bbox"]).all() and np.isfinite(p["score"]) for p in predictions)
    if not finite:
        raise FloatingPointError("non-finite box or score in the predictions")
    return {"predictions": len(predictions), "images_with_predictions": len({p["image_id"] for p in predictions}),
            "with_masks": sum("segmentation" in p for p in predictions), "max_score": max(scores, default=None),
            "categories": sorted({p["category_id"] for p in predictions})}


def compare_predictions(first: list, second: list) -> dict:
    """Per image and category, greedy matching by score at box IoU >= 0.9."""

    def iou(a, b):
        ax0, ay0, aw, ah = a
        bx0, by0, bw, bh = b
        w = max(0.0, min(ax0 + aw, bx0 + bw) - max(ax0, bx0))
        h = max(0.0, min(ay0 + ah, by0 + bh) - max(ay0, by0))
        union = aw * ah + bw * bh - w * h
        return w * h / union if union > 0 else 0.0

    grouped: dict = {}
    for which, predictions in enumerate((first, second)):
        for p in predictions:
            grouped.setdefault((p["image_id"], p["category_id"]), ([], []))[which].append(p)
    matched, score_diffs = 0, []
    for ours, theirs in grouped.values():
        used = set()
        for p in sorted(ours, key=lambda p: -p["score"]):
            best, best_iou = None, 0.9
            for index, q in enumerate(theirs):
                if index not in used and iou(p["bbox"], q["bbox"]) >= best_iou:
                    best, best_iou = index, iou(p["bbox"], q["bbox"])
            if best is not None:
                used.add(best)
                matched += 1
                score_diffs.append(abs(p["score"] - theirs[best]["score"]))
    return {"first": len(first), "second": len(second), "matched_iou_0.9": matched,
            "score_abs_diff_mean": float(np.mean(score_diffs)) if score_diffs else None,
            "score_abs_diff_max": float(np.max(score_diffs)) if score_diffs else None}


def predict(check: Check) -> dict:
    run = check.runs.get("fp32")
    if not run:
        raise Skip("no trained model (train_fp32 failed)")
    weights = run["job"].output
    predictions, per_image = predict_val(check, weights, check.device, check.args.threads)
    name = f"pred_train-{check.label}-fp32_predict-{check.label}.json"
    check.write_predictions(name, predictions)
    result = {"file": name, "s_per_image": round(per_image, 4), **describe_predictions(predictions)}
    if check.cuda:
        check.report.say("the same weights predicted on the CPU")
        on_cpu, cpu_per_image = predict_val(check, weights, "cpu", os.cpu_count())
        other = f"pred_train-{check.label}-fp32_predict-cpu.json"
        check.write_predictions(other, on_cpu)
        result.update(cpu_file=other, cpu_s_per_image=round(cpu_per_image, 4), cuda_vs_cpu=compare_predictions(predictions, on_cpu))
    return result
