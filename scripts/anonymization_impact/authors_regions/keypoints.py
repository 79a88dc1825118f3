"""The authors' keypoint files (Cityscapes, BDD100K) as ``person-keypoints/v1`` documents.

Keypoints are 17 COCO-order (x, y, score) triples in pixels of the (EXIF-oriented) image; the
authors' readers turned the score into visibility with 0.3: ``score >= 0.3`` (Cityscapes,
``visualize_body.iterate_dataset``) and ``score > 0.3`` (BDD100K, ``anonymize_body``). The import
keeps each dataset's comparison and takes the threshold from the caller (the rule passes the
config's ``regions.keypoint_score_threshold``, as the workflow's own ViTPose rule does). An entry with
>= 3 visible keypoints must have at least half of them inside its person's mask box grown by
``0.25 * max(w, h) + 2`` px.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from ..errors import DatasetError
from ..masks import bbox as mask_bbox
from .common import SOURCES, Problems, SourceImage, persons_by_image, persons_split

KEYPOINTS_FORMAT = "person-keypoints/v1"
NUM_KEYPOINTS = 17
KEYPOINT_BOX_MARGIN = 0.25  # x max(w, h), plus KEYPOINT_BOX_PAD px
KEYPOINT_BOX_PAD = 2.0
MIN_VISIBLE_TO_CHECK = 3
MIN_INSIDE_FRACTION = 0.5


def _person_box(annotation: dict) -> list[float]:
    return annotation["bbox"] if "bbox" in annotation else mask_bbox(annotation["segmentation"])


def _keypoint_array(entry) -> np.ndarray | None:
    """(17, 3) float array of one authors' keypoint entry, or None when malformed."""
    try:
        array = np.asarray(entry, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if array.shape != (NUM_KEYPOINTS, 3) or not np.isfinite(array).all():
        return None
    return array


def _inside_fraction(points: np.ndarray, visible: np.ndarray, box: list[float]) -> float | None:
    if visible.sum() < MIN_VISIBLE_TO_CHECK:
        return None
    x, y, w, h = box
    margin = KEYPOINT_BOX_MARGIN * max(w, h) + KEYPOINT_BOX_PAD
    px, py = points[visible, 0], points[visible, 1]
    inside = (px >= x - margin) & (px <= x + w + margin) & (py >= y - margin) & (py <= y + h + margin)
    return float(inside.mean())


def convert_keypoints(authors: dict, persons: dict, index: dict[str, SourceImage], *, dataset: str,
                      entries_of, visible_if: str, score_threshold: float, require_all: bool, max_misfit_fraction: float,
                      hint: str) -> dict:
    split = persons_split(persons)
    problems = Problems("authors' keypoints", persons)
    if not isinstance(authors, dict):
        raise DatasetError(f"authors' keypoints ({dataset}): expected a JSON object keyed by image, got {type(authors).__name__}")
    annotations = {a["id"]: a for a in persons["annotations"]}
    by_file = {image["file_name"]: image for image in persons["images"]}
    by_image = persons_by_image(persons)
    result: dict[str, list[dict]] = {image["file_name"]: [] for image in persons["images"]}
    counts = Counter()
    for source, value in problems.known_images(authors, index):
        where = source.file_name
        entries = entries_of(value)
        if entries is None:
            problems.error(where, f"entry {str(value)[:80]} is not in the authors' format")
            continue
        if len(entries) != len(source.entries):
            groups = sum(1 for e in source.entries if e is None)
            problems.error(where, f"{len(entries)} keypoint entries, but the authors' instance list of this image has "
                                  f"{len(source.entries)} ({len(source.entries) - groups} of our persons, {groups} others)")
            continue
        arrays = [_keypoint_array(entry) for entry in entries]
        bad = [i for i, array in enumerate(arrays) if array is None]
        if bad:
            problems.error(where, f"keypoint entry {bad[0]} is not 17 x [x, y, score] finite numbers")
            continue
        image_persons = by_image.get(by_file[where]["id"], [])
        for position, (array, person_id) in enumerate(zip(arrays, source.entries)):
            if person_id is None:
                counts["source_entries_skipped"] += 1
                continue
            scores = array[:, 2]
            visible = scores >= score_threshold if visible_if == ">=" else scores > score_threshold
            fit = _inside_fraction(array, visible, _person_box(annotations[person_id]))
            if fit is None:
                counts["too_few_visible_to_check"] += 1
            else:
                problems.checked += 1
                if fit < MIN_INSIDE_FRACTION:
                    others = [(_inside_fraction(array, visible, _person_box(a)), a["id"]) for a in image_persons if a["id"] != person_id]
                    better = [pid for other_fit, pid in others if other_fit is not None and other_fit >= MIN_INSIDE_FRACTION]
                    problems.misfit(where, f"entry {position} -> person {person_id}: only {fit:.0%} of its "
                                           f"{int(visible.sum())} visible keypoints lie in the person's box"
                                           + (f"; they fit person {better[0]} (instance order differs?)" if better else ""))
            if not visible.any():
                counts["no_visible_keypoint"] += 1
            keypoints = []
            for (x, y, _), v in zip(array, visible):
                keypoints += [float(x), float(y), int(v)]
            result[where].append({"person_id": person_id, "keypoints": keypoints, "scores": [float(s) for s in scores]})
    images_not_in_source = []
    for key, source in index.items():
        if key not in authors and any(e is not None for e in source.entries):
            images_not_in_source.append(source.file_name)
    if require_all:
        for file_name in images_not_in_source:
            problems.error(file_name, "has persons but no entry in the authors' file (their reader needs every image)")
    checks = problems.raise_if_needed(len(persons["images"]), max_misfit_fraction, hint)
    with_keypoints = sum(len(entries) for entries in result.values())
    return {
        "format": KEYPOINTS_FORMAT,
        "dataset": dataset,
        "split": split,
        "source": SOURCES[(dataset, "keypoints")].format(split=split),
        "score_threshold": score_threshold,
        "visible_if": f"score {visible_if} score_threshold",
        "images": result,
        "images_not_in_source": sorted(images_not_in_source),
        "counts": {"persons": len(annotations), "with_keypoints": with_keypoints,
                   "without_keypoints": len(annotations) - with_keypoints,
                   "source_entries_skipped": counts["source_entries_skipped"],
                   "no_visible_keypoint": counts["no_visible_keypoint"],
                   "too_few_visible_to_check": counts["too_few_visible_to_check"]},
        "checks": checks,
    }
