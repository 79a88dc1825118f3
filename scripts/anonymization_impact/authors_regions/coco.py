"""The paper authors' COCO face boxes, ``boxes_{train,val}2017.json``, as a ``face-regions/v1`` document.

Instance order: the candidate list of an image is ``COCO(person_keypoints_{split}2017.json).getAnnIds(
image)`` -- the annotation order of the *keypoints* file -- minus the annotations without any
labelled keypoint (``(v == 0).all()``; crowd annotations have none). Our persons.json follows
the *instances* file's order; pass the keypoints file (:func:`coco_source_index`) rather than
assume both files list an image's persons in the same order.
"""

from __future__ import annotations

import numpy as np

from ..errors import DatasetError
from ..masks import decode
from ..regions import REGIONS_FORMAT, box_mask_iou, clip_box, count_clipped, match_faces
from .common import (AUTHORS_FACE_CONFIDENCE, AUTHORS_MIN_MATCH_IOU, DEFAULT_MAX_MISFIT, PLACEHOLDER_SCORE, SOURCES, Problems,
                     SourceImage, check_box, persons_by_image, persons_split, require_dataset)


def coco_source_index(persons: dict, person_keypoints: dict | None = None) -> dict[str, SourceImage]:
    """{"<COCO image id>": SourceImage} in the order of deep_privacy2's COCO scripts.

    person_keypoints: the parsed ``annotations/person_keypoints_{split}2017.json`` (the file the
    authors iterated). None: assume it lists each image's persons in the order of persons.json.
    """
    require_dataset(persons, "coco")
    person_of = {str(a["source_id"]): a["id"] for a in persons["annotations"]}
    by_image = persons_by_image(persons)
    index = {str(image["id"]): SourceImage(image["file_name"]) for image in persons["images"]}
    if person_keypoints is None:
        for image in persons["images"]:
            index[str(image["id"])].entries = [a["id"] for a in by_image.get(image["id"], [])]
        return index
    for annotation in person_keypoints.get("annotations", []):
        keypoints = annotation.get("keypoints") or []
        if not any(keypoints[2::3]):  # the authors' `(kp[:, 2] == 0).all()` filter
            continue
        source = index.get(str(annotation.get("image_id")))
        if source is not None:
            source.entries.append(person_of.get(str(annotation.get("id"))))
    return index


def coco_face_regions(authors_boxes: dict, persons: dict, person_keypoints: dict | None = None, *,
                      max_misfit_fraction: float = DEFAULT_MAX_MISFIT) -> dict:
    """``face-regions/v1`` from COCO ``boxes_{split}2017.json`` (boxes + the matched person's position).

    person_keypoints: see :func:`coco_source_index`. Every box must have dp2's IoU > 0.01 with
    its person's mask, and our greedy re-matching of the image's boxes must give the same person.
    Both use the authors' threshold, not the config's: the pairs are the authors' and are used as
    they are (no matching step of ours follows), so the check reproduces their matching.
    Scores were not published (``score``: null).
    """
    index = coco_source_index(persons, person_keypoints)
    problems = Problems("authors' COCO face boxes", persons)
    if not isinstance(authors_boxes, dict):
        raise DatasetError(f"authors' COCO face boxes: expected a JSON object keyed by image id, got {type(authors_boxes).__name__}")
    images = {image["file_name"]: image for image in persons["images"]}
    annotations = {a["id"]: a for a in persons["annotations"]}
    regions: dict[str, list[dict]] = {file_name: [] for file_name in images}
    boxes_total, clipped = 0, {"clipped_to_image": 0, "clipped_max_outside_px": 0.0}
    for source, value in problems.known_images(authors_boxes, index):
        where, image = source.file_name, images[source.file_name]
        if not isinstance(value, dict) or not isinstance(value.get("boxes"), list) or not isinstance(value.get("keypoint_indices"), list):
            problems.error(where, "expected {'boxes': [[x0, y0, x1, y1]], 'keypoint_indices': [j]}")
            continue
        boxes, indices = value["boxes"], value["keypoint_indices"]
        if len(boxes) != len(indices):
            problems.error(where, f"{len(boxes)} boxes but {len(indices)} keypoint_indices")
            continue
        reasons = [check_box(box, int(image["width"]), int(image["height"]), 4) for box in boxes]
        bad = next((i for i, reason in enumerate(reasons) if reason), None)
        if bad is not None:
            problems.error(where, f"box {bad}: {reasons[bad]}")
            continue
        if not all(isinstance(j, int) and not isinstance(j, bool) and 0 <= j < len(source.entries) for j in indices):
            problems.error(where, f"keypoint_indices {indices} out of range: the authors' candidate list of this "
                                  f"image has {len(source.entries)} persons with keypoints")
            continue
        if len(set(indices)) != len(indices):
            problems.error(where, f"keypoint_indices {indices} repeat a person (each person matches one face)")
            continue
        person_ids = [source.entries[j] for j in indices]
        if None in person_ids:
            j = indices[person_ids.index(None)]
            problems.error(where, f"a face is matched to candidate {j}, an annotation that is no target person of persons.json")
            continue
        if not boxes:
            continue
        count_clipped(clipped, boxes, int(image["width"]), int(image["height"]))
        boxes = [clip_box(box, int(image["width"]), int(image["height"])) for box in boxes]  # the IoU is the same
        table = np.array([box + [PLACEHOLDER_SCORE] for box in boxes], dtype=np.float64)
        candidates = [pid for pid in source.entries if pid is not None]
        masks = np.stack([decode(annotations[pid]["segmentation"]).astype(bool) for pid in candidates])
        iou = box_mask_iou(table, masks)
        ours = {b: candidates[m] for b, m in match_faces(table, masks, AUTHORS_MIN_MATCH_IOU)}
        for b, person_id in enumerate(person_ids):
            problems.checked += 1
            value_iou = float(iou[b, candidates.index(person_id)])
            if value_iou <= AUTHORS_MIN_MATCH_IOU:
                problems.misfit(where, f"box {b} -> person {person_id}: IoU {value_iou:.3f} with the person's mask "
                                       f"(the authors' matching needed > {AUTHORS_MIN_MATCH_IOU})")
            elif ours.get(b) != person_id:
                problems.misfit(where, f"box {b} -> person {person_id}, but re-matching the same boxes gives "
                                       f"{ours.get(b)} (instance order differs?)")
            regions[where].append({"person_id": person_id, "box": boxes[b], "score": None,
                                   "iou": round(value_iou, 6)})
        boxes_total += len(boxes)
    checks = problems.raise_if_needed(len(images), max_misfit_fraction,
                                      "Pass the person_keypoints file the authors iterated, and check the split.")
    split = persons_split(persons)
    return {
        "format": REGIONS_FORMAT,
        "dataset": "coco",
        "split": split,
        "source": SOURCES[("coco", "faces")].format(split=split),
        "confidence": AUTHORS_FACE_CONFIDENCE["coco"],
        "min_match_iou": AUTHORS_MIN_MATCH_IOU,
        "images": regions,
        # only matched boxes were published: raw detections, low-score and unmatched boxes are unknown
        "counts": {"detections": None, "below_confidence": None, "matched": boxes_total, "unmatched": None,
                   "persons": len(annotations),
                   "persons_with_face": sum(len({r["person_id"] for r in rs}) for rs in regions.values()), **clipped},
        "checks": checks,
    }
