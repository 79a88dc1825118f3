"""Face regions: raw face-detector boxes matched to the persons to anonymize (docs/anonymization.md, "Regions").

The paper's code (dp2 ``tools/anonymization/coco/annotate_faces.py``) keeps a detected face only
if it can be assigned to one person instance: every (box, mask) pair with IoU above a small
threshold is a candidate, the candidates are taken greedily by decreasing IoU, then decreasing
detector score, then increasing number of candidate boxes of the mask, and each box and each mask
is used at most once. Unmatched boxes are dropped. This module re-implements that rule on the
``face-detections/v1`` documents and the normalized ``persons`` annotation of one split.

The IoU is dp2's: the box rasterised with int() of its coordinates (``[y0:y1, x0:x1]``) against the
binary mask, ``intersection / (union + 1e-7)``. It is computed from counts (box area inside the
image + mask area - intersection), which equals dp2's pixel-wise union. Deviation: coordinates are
clipped at 0 before slicing; dp2 sliced with int() as is, so a coordinate <= -1 would have wrapped
around as a negative index (its detector clipped boxes to the image, so this never happened there).

Boxes that cross the image border are clipped to it (``clip_box``) and counted: dp2's DSFD clipped
its boxes (``clip_boxes=True``), other detectors return the whole face of a person cut by the border.
There is no margin: the IoU and the face crop only ever use the part inside the image, so a box
10 px out is as usable as one 1 px out, and refusing it would stop the stage while dropping it would
leave the visible part of that face as it was. Only a box with nothing inside the image is an error
(``box_problem``); it points at a coordinate convention problem, not at something to regenerate.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from pycocotools import mask as mask_utils

from .errors import DatasetError
from .masks import as_pycocotools

DETECTIONS_FORMAT = "face-detections/v1"
REGIONS_FORMAT = "face-regions/v1"
BOX_FIX = ("check the detector's coordinate convention (x0, y0, x1, y1 in pixels of the image as annotated, EXIF orientation "
           "applied; not x, y, w, h nor normalized) or drop that box from the file")


def box_problem(box, width: int, height: int) -> str | None:
    """Why a face box x0, y0, x1, y1 is unusable in a width x height image, with the fix; None: usable
    (after ``clip_box`` when it crosses the border)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    if x1 <= x0 or y1 <= y0:
        return f"box {[x0, y0, x1, y1]} is empty (needs x1 > x0 and y1 > y0); {BOX_FIX}"
    if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
        return f"box {[x0, y0, x1, y1]} lies entirely outside the {width}x{height} image; {BOX_FIX}"
    return None


def clip_box(box, width: int, height: int) -> list[float]:
    """The part of a box (no ``box_problem``) inside the image; never empty."""
    x0, y0, x1, y1 = (float(v) for v in box)
    return [min(max(x0, 0.0), width), min(max(y0, 0.0), height), min(max(x1, 0.0), width), min(max(y1, 0.0), height)]


def count_clipped(counts: dict, boxes, width: int, height: int) -> None:
    """Add the boxes that cross the image border to ``counts["clipped_to_image"]``, and keep in
    ``counts["clipped_max_outside_px"]`` how far the farthest reached out: round-off or real crossings."""
    outside = [max(-x0, -y0, x1 - width, y1 - height) for x0, y0, x1, y1 in ((float(v) for v in box[:4]) for box in boxes)]
    counts["clipped_to_image"] += sum(1 for distance in outside if distance > 0)
    counts["clipped_max_outside_px"] = round(max([counts["clipped_max_outside_px"], *outside]), 3)


def box_mask_iou(boxes: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """(N, M) IoU of each rasterised box with each mask, as dp2's ``calculate_IoU``."""
    n, m = len(boxes), len(masks)
    iou = np.zeros((n, m), dtype=np.float64)
    if n == 0 or m == 0:
        return iou
    height, width = masks.shape[1:]
    mask_area = masks.reshape(m, -1).sum(axis=1)
    for i, box in enumerate(boxes):
        x0, y0, x1, y1 = (max(int(v), 0) for v in box[:4])
        window = masks[:, y0:y1, x0:x1]
        box_area = window.shape[1] * window.shape[2]
        inter = window.reshape(m, -1).sum(axis=1)
        iou[i] = inter / (box_area + mask_area - inter + 1e-7)
    return iou


def match_faces(boxes: np.ndarray, masks: np.ndarray, min_iou: float = 0.01) -> list[tuple[int, int]]:
    """Greedy one-to-one matching of face boxes to person masks (dp2 ``get_matches``).

    boxes: (N, 5) x0, y0, x1, y1, score; masks: (M, H, W) bool (values >= 0.5 count as set).
    Candidates need IoU > min_iou. They are visited in the order (-IoU, -score, number of
    candidate boxes of the mask), ties kept in box-major / mask-minor order (a stable sort), and a
    candidate is taken when neither its box nor its mask is taken yet.
    Returns (box index, mask index) pairs in the order they were taken.
    """
    return _match(boxes, masks, min_iou)[0]


def _match(boxes, masks, min_iou: float) -> tuple[list[tuple[int, int]], np.ndarray]:
    """``match_faces`` and the (N, M) IoU table it used."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 5)
    masks = np.asarray(masks)
    if masks.dtype != bool:
        masks = masks >= 0.5
    if masks.ndim != 3:
        raise ValueError(f"masks must be (M, H, W), got shape {masks.shape}")
    iou = box_mask_iou(boxes, masks)
    box_idx, mask_idx = np.nonzero(iou > min_iou)  # row-major: box, then mask
    candidates_per_mask = np.bincount(mask_idx, minlength=len(masks))
    order = sorted(range(len(box_idx)), key=lambda k: (-iou[box_idx[k], mask_idx[k]],
                                                       -boxes[box_idx[k], 4],
                                                       candidates_per_mask[mask_idx[k]]))
    box_taken = np.zeros(len(boxes), dtype=bool)
    mask_taken = np.zeros(len(masks), dtype=bool)
    matches = []
    for k in order:
        b, m = int(box_idx[k]), int(mask_idx[k])
        if box_taken[b] or mask_taken[m]:
            continue
        box_taken[b] = mask_taken[m] = True
        matches.append((b, m))
    return matches, iou


def _decode(annotation: dict) -> np.ndarray:
    return mask_utils.decode(as_pycocotools(annotation["segmentation"])).astype(bool)


def _checked_detections(key: str, entry, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, 4) boxes and (N,) scores of one image's detections, or DatasetError naming the image."""
    def fail(problem: str, fix: str = "; regenerate the face detections for this dataset split"):
        raise DatasetError(f"face detections of image '{key}': {problem}{fix}")

    if not isinstance(entry, dict) or "boxes" not in entry or "scores" not in entry:
        fail("expected an object with 'boxes' and 'scores'")
    boxes, scores = entry["boxes"], entry["scores"]
    if len(boxes) != len(scores):
        fail(f"{len(boxes)} boxes but {len(scores)} scores")
    try:
        box_array = np.asarray(boxes, dtype=np.float64)
        score_array = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError):
        fail("boxes must be lists of 4 numbers and scores numbers")
    if len(boxes) == 0:
        box_array = box_array.reshape(0, 4)
    if box_array.ndim != 2 or box_array.shape[1] != 4 or score_array.ndim != 1:
        fail("boxes must be lists of 4 coordinates x0, y0, x1, y1 and scores a list of numbers")
    if not (np.isfinite(box_array).all() and np.isfinite(score_array).all()):
        fail("boxes and scores must be finite numbers")
    for i, row in enumerate(box_array):
        problem = box_problem(row, width, height)
        if problem:
            fail(f"box {i}: {problem}", fix="")
    return box_array, score_array


def build_face_regions(detections: dict, persons: dict, *, dataset: str, confidence: float, min_iou: float) -> dict:
    """The ``face-regions/v1`` document of one split: every face detection with score >= confidence
    matched (``match_faces``) against the persons of its image; matched faces listed per image in
    match order, every image of `persons` present (empty list when none)."""
    if detections.get("format") != DETECTIONS_FORMAT:
        raise DatasetError(f"face detections have format {detections.get('format')!r}, expected {DETECTIONS_FORMAT!r}")
    images = {image["file_name"]: image for image in persons["images"]}
    by_image: dict[int, list[dict]] = defaultdict(list)
    for annotation in persons["annotations"]:
        by_image[annotation["image_id"]].append(annotation)

    checked = {}
    for key, entry in detections.get("images", {}).items():
        if key not in images:
            raise DatasetError(f"face detections of image '{key}': no such image in the persons annotation "
                               "of this split; the detections belong to another dataset or split")
        image = images[key]
        checked[key] = _checked_detections(key, entry, int(image["width"]), int(image["height"]))

    counts = {"detections": 0, "below_confidence": 0, "matched": 0, "unmatched": 0,
              "persons": len(persons["annotations"]), "persons_with_face": 0, "clipped_to_image": 0, "clipped_max_outside_px": 0.0}
    regions: dict[str, list[dict]] = {}
    for file_name, image in images.items():
        regions[file_name] = []
        if file_name not in checked:
            continue
        boxes, scores = checked[file_name]
        count_clipped(counts, boxes, int(image["width"]), int(image["height"]))
        boxes = np.array([clip_box(box, int(image["width"]), int(image["height"])) for box in boxes]).reshape(-1, 4)
        keep = scores >= confidence
        counts["detections"] += len(scores)
        counts["below_confidence"] += int((~keep).sum())
        candidates = np.flatnonzero(keep)
        annotations = by_image.get(image["id"], [])
        matches = []
        if len(candidates) and annotations:
            masks = np.stack([_decode(a) for a in annotations])
            if masks.shape[1:] != (image["height"], image["width"]):
                raise DatasetError(f"persons annotation of image '{file_name}' has masks of size {masks.shape[1:]}, "
                                   f"not the image's {image['height']}x{image['width']}")
            table = np.concatenate([boxes[candidates], scores[candidates, None]], axis=1)
            matches, iou = _match(table, masks, min_iou)
        for b, m in matches:
            index = int(candidates[b])
            regions[file_name].append({
                "person_id": annotations[m]["id"],
                "box": [float(v) for v in boxes[index]],
                "score": float(scores[index]),
                "iou": round(float(iou[b, m]), 6),
            })
        counts["matched"] += len(matches)
        counts["unmatched"] += len(candidates) - len(matches)
        counts["persons_with_face"] += len({r["person_id"] for r in regions[file_name]})
    return {
        "format": REGIONS_FORMAT,
        "dataset": dataset,
        "split": detections.get("split"),
        "confidence": confidence,
        "min_match_iou": min_iou,
        "images": regions,
        "counts": counts,
    }
