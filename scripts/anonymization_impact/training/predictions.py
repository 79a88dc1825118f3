"""Detections as numpy arrays -> our COCO result format (the one the evaluate rule scores).

Shared by the detectron2 and MMDetection backends; pure numpy (no framework), so it is tested
here. A result is ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}`` plus
``"segmentation"`` (RLE with str counts) for masks and ``"keypoints"`` (17 x, y, score
triples, 51 floats) for keypoints, rounded as the torchvision backend rounds them.
"""

from __future__ import annotations

import numpy as np

from ..masks import encode


def coco_results(image_id: int, boxes_xyxy, scores, labels, category_ids, masks=None, keypoints=None) -> list[dict]:
    """One image's detections as COCO results.

    ``boxes_xyxy`` (N, 4) absolute pixels; ``labels`` (N,) contiguous indices 0..K-1 into
    ``category_ids`` (our annotation's ids of the trained classes); ``masks`` (N, H, W) bool or
    0/1; ``keypoints`` (N, 17, 3) as x, y, score in the COCO annotation convention.
    """
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1)
    if not len(boxes) == len(scores) == len(labels):
        raise ValueError(f"{len(boxes)} boxes, {len(scores)} scores and {len(labels)} labels: one of each per detection")
    if masks is not None and len(masks) != len(boxes):
        raise ValueError(f"{len(masks)} masks for {len(boxes)} detections")
    if keypoints is not None:
        keypoints = np.asarray(keypoints, dtype=np.float64)
        if keypoints.shape[1:] != (17, 3) or len(keypoints) != len(boxes):
            raise ValueError(f"keypoints of shape {keypoints.shape}, expected ({len(boxes)}, 17, 3)")
    results = []
    for index in range(len(boxes)):
        label = int(labels[index])
        if not 0 <= label < len(category_ids):
            raise ValueError(f"label {label} is not one of the {len(category_ids)} trained classes")
        x0, y0, x1, y1 = (float(v) for v in boxes[index])
        result = {
            "image_id": image_id,
            "category_id": category_ids[label],
            "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)],
            "score": round(float(scores[index]), 5),
        }
        if masks is not None:
            result["segmentation"] = encode(np.asarray(masks[index]).astype(bool))
        if keypoints is not None:
            result["keypoints"] = [round(float(v), 2) for v in keypoints[index].reshape(-1)]
        results.append(result)
    return results
