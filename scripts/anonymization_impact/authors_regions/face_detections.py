"""The authors' Cityscapes and BDD100K face-box files as ``face-detections/v1`` documents.

Why the face files become two different documents: a face-regions document needs the person
of every box. COCO's file carries it (``keypoint_indices``). The Cityscapes and BDD100K files only
hold the boxes that matched *some* person; re-running the same greedy matching (our
``regions.build_face_regions``) on exactly those boxes reproduces their pairs: every dropped box
had no candidate left (its masks taken by earlier boxes, or none above the IoU threshold), so
removing it changes nothing but the third tie-break key (number of candidate boxes per mask).
So they become ``face-detections/v1``
documents for the workflow's own matching step, and the import checks that every published box
is matched again, with the IoU threshold that step will use (config ``face_detection.min_match_iou``;
the authors' was 0.01). BDD100K's scores were not published: they are set to 1.0 (``scores_published:
false``), which only loses the score tie-break between boxes of exactly equal IoU.
"""

from __future__ import annotations

from ..errors import DatasetError
from ..regions import DETECTIONS_FORMAT, build_face_regions, clip_box
from .common import AUTHORS_FACE_CONFIDENCE, PLACEHOLDER_SCORE, SOURCES, Problems, SourceImage, check_box, persons_split


def convert_face_detections(authors_boxes: dict, persons: dict, index: dict[str, SourceImage], *, dataset: str,
                            min_match_iou: float, max_misfit_fraction: float, hint: str) -> dict:
    problems = Problems(f"authors' {dataset} face boxes", persons)
    if not isinstance(authors_boxes, dict):
        raise DatasetError(f"authors' {dataset} face boxes: expected a JSON object keyed by image, got {type(authors_boxes).__name__}")
    images = {image["file_name"]: image for image in persons["images"]}
    confidence = AUTHORS_FACE_CONFIDENCE[dataset]
    # rows are [x0, y0, x1, y1, score] (Cityscapes: whole DSFD rows) or [x0, y0, x1, y1] (BDD100K);
    # the first row decides for the whole file, a row of another length is reported with its image
    first = next((row for rows in authors_boxes.values() if isinstance(rows, list) for row in rows), None)
    row_length = len(first) if isinstance(first, list) and len(first) in (4, 5) else 4
    detections: dict[str, dict] = {}
    for source, rows in problems.known_images(authors_boxes, index):
        where, image = source.file_name, images[source.file_name]
        if not isinstance(rows, list):
            problems.error(where, f"expected a list of boxes, got {str(rows)[:80]}")
            continue
        reasons = [check_box(row, int(image["width"]), int(image["height"]), row_length) for row in rows]
        bad = next((i for i, reason in enumerate(reasons) if reason), None)
        if bad is not None:
            problems.error(where, f"box {bad}: {reasons[bad]}")
            continue
        scores = [float(row[4]) for row in rows] if row_length == 5 else [PLACEHOLDER_SCORE] * len(rows)
        low = next((s for s in scores if not confidence <= s <= 1), None)
        if low is not None:
            problems.error(where, f"score {low} is outside [{confidence}, 1] (the authors' detector kept scores >= {confidence})")
            continue
        detections[where] = {"boxes": [[float(v) for v in row[:4]] for row in rows], "scores": scores}
    if problems.errors:
        problems.raise_if_needed(len(images), max_misfit_fraction, hint)
    split = persons_split(persons)
    document = {
        "format": DETECTIONS_FORMAT,
        "dataset": dataset,
        "detector": {"name": "DSFD", "confidence_threshold": confidence, "scores_published": row_length == 5},
        "split": split,
        "source": SOURCES[(dataset, "faces")].format(split=split),
        "images": dict(sorted(detections.items())),
    }
    # every published box matched a person in the authors' run: it must match again here
    regions = build_face_regions(document, persons, dataset=dataset, confidence=confidence, min_iou=min_match_iou)
    for file_name, entry in document["images"].items():
        n = len(entry["boxes"])
        problems.checked += n
        matched = {tuple(r["box"]) for r in regions["images"][file_name]}
        width, height = int(images[file_name]["width"]), int(images[file_name]["height"])
        for b, box in enumerate(entry["boxes"]):
            if tuple(clip_box(box, width, height)) not in matched:  # the regions hold the boxes clipped to the image
                problems.misfit(file_name, f"box {b} {box} matches no person (IoU <= {min_match_iou} with every "
                                           "free person mask), yet the authors matched it")
    document["checks"] = {**problems.raise_if_needed(len(images), max_misfit_fraction, hint),
                          "rematched": regions["counts"]["matched"]}
    return document
