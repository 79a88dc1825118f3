"""``--evaluate DIR`` (here): the AP of every pred_*.json the device wrote, on the val twin."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from .reporting import plain


def evaluate_dir(directory: Path, inputs: Path) -> None:
    from anonymization_impact.evaluation import evaluate
    from anonymization_impact.io import read_json

    ground_truth = read_json(inputs / "annotations" / "val" / "instances.json")
    files = sorted(Path(directory).rglob("pred_*.json"))
    if not files:
        raise SystemExit(f"no pred_*.json in {directory}")
    image_ids = {image["id"] for image in ground_truth["images"]}
    for path in files:
        predictions = read_json(path)
        if predictions and not {p["image_id"] for p in predictions} <= image_ids:
            raise SystemExit(f"{path}: predictions for images not in the val split")
        with tempfile.TemporaryDirectory(prefix="gpu_check_eval_") as work:
            result = evaluate("cityscapes", "instance_segmentation", ground_truth, predictions, raw_root=inputs / "cityscapes", work_dir=Path(work))
        metrics = {key: result["metrics"].get(key) for key in ("AP", "AP50", "AP_person", "AP50_person")}
        print(json.dumps({"file": path.name, "predictions": len(predictions), **plain(metrics)}), flush=True)
