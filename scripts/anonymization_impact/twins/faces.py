"""Simulated face-detector (DSFD stand-in) output of a twin's training split, from its true face boxes."""

from __future__ import annotations


def simulate_faces(rng, faces: list[list[int]], width: int, height: int) -> dict:
    """Simulated DSFD output for one image from its true face boxes (misses, low scores, false positives)."""
    boxes, scores = [], []
    for x0, y0, x1, y1 in faces:
        u = rng.uniform()
        size = max(x1 - x0, y1 - y0)
        jitter = rng.normal(0, 0.06 * size + 0.3, 4)
        if u < 0.12:
            continue
        score = rng.uniform(0.05, 0.35) if u < 0.3 else rng.uniform(0.55, 0.995)
        box = [min(max(v + j, 0.0), lim) for v, j, lim in zip((x0, y0, x1, y1), jitter, (width, height, width, height))]
        if box[2] - box[0] < 1 or box[3] - box[1] < 1:
            continue
        boxes.append([round(float(v), 2) for v in box])
        scores.append(round(float(score), 2))
    for _ in range(int(rng.poisson(0.5))):
        s = rng.uniform(3, 14)
        x, y = rng.uniform(0, width - s), rng.uniform(0, height - s)
        boxes.append([round(float(v), 2) for v in (x, y, x + s, y + s)])
        scores.append(round(float(rng.uniform(0.05, 0.7) if rng.uniform() < 0.85 else rng.uniform(0.7, 0.95)), 2))
    return {"boxes": boxes, "scores": scores}


def faces_document(split_images: dict) -> dict:
    return {
        "format": "face-detections/v1",
        "detector": {"name": "synthetic-dsfd-standin", "note": "simulated from the twin's truth"},
        "split": "train",
        "images": split_images,
    }
