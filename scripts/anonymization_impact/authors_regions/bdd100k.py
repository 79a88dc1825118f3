"""The paper authors' BDD100K files (face boxes, keypoints) and the instance order they follow.

Instance order: the keys are image ids of ``jsons/ins_seg_train_cocofmt.json``, made by the BDD100K
toolkit (``bdd100k.label.to_coco -m ins_seg``). Their code reads ``annotation["ignore"]``,
which only the conversion from the label JSON writes (``--only-mask``, from the bitmasks,
does not), so the ids follow the *frame order of the label JSON*, which we cannot see from the
bitmasks. Per image the order is the labels' order, which is the bitmask instance id order
(``to_mask`` numbers the instances in label order), filtered to ``category_id == 1``
(pedestrian; riders excluded) and not ``iscrowd`` / ``ignore``. Pass that COCO-format file
(:func:`bdd100k_source_index`): images are then found by file name and its annotations matched
to our persons by mask IoU. Without it the ids are assumed to be our ids (1-based position of
the image in sorted file-name order, as ``--only-mask`` numbers them) -- the alignment checks
tell when that is wrong.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from pycocotools import mask as mask_utils

from ..errors import DatasetError
from ..masks import as_pycocotools
from .common import (AUTHORS_KEYPOINT_SCORE_THRESHOLD, AUTHORS_MIN_MATCH_IOU, DEFAULT_MAX_MISFIT, SourceImage, persons_by_image, persons_split,
                     require_dataset)
from .face_detections import convert_face_detections
from .keypoints import convert_keypoints

MIN_MASK_IOU = 0.5  # BDD100K: a COCO-format annotation is our person if their masks overlap this much
BDD100K_PEDESTRIAN = 1


def _rle(segmentation, height: int, width: int) -> dict:
    """pycocotools RLE of a COCO segmentation (compressed / uncompressed RLE or polygons)."""
    if isinstance(segmentation, list):
        return mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    return as_pycocotools(segmentation)


def bdd100k_source_index(persons: dict, coco_annotations: dict | None = None) -> dict[str, SourceImage]:
    """{"<COCO-format image id>": SourceImage} in the order of deep_privacy2's BDD100K scripts.

    coco_annotations: the parsed ``jsons/ins_seg_{split}_cocofmt.json`` the authors read (BDD100K
    toolkit ``to_coco -m ins_seg``). Its images are found by file name, its pedestrians (not
    crowd / ignore, file order) mapped to our persons by mask IoU >= 0.5. None: assume their
    image ids are ours and their per-image order is persons.json's (bitmask instance id).
    """
    require_dataset(persons, "bdd100k")
    split = persons_split(persons)
    by_image = persons_by_image(persons)
    if coco_annotations is None:
        return {str(image["id"]): SourceImage(image["file_name"], [a["id"] for a in by_image.get(image["id"], [])])
                for image in persons["images"]}
    categories = {c.get("id"): c.get("name") for c in coco_annotations.get("categories", [])}
    if categories and categories.get(BDD100K_PEDESTRIAN) != "pedestrian":
        raise DatasetError(f"the BDD100K COCO-format file has category {BDD100K_PEDESTRIAN} = "
                           f"{categories.get(BDD100K_PEDESTRIAN)!r}, not 'pedestrian'; it is not a BDD100K ins_seg conversion")
    ours = {image["file_name"]: image for image in persons["images"]}
    index: dict[str, SourceImage] = {}
    unknown = []
    for image in coco_annotations.get("images", []):
        file_name = f"images/10k/{split}/{image.get('file_name')}"
        if file_name not in ours:
            unknown.append(str(image.get("file_name")))
            continue
        index[str(image.get("id"))] = SourceImage(file_name)
    if unknown:
        raise DatasetError(f"the BDD100K COCO-format file lists {len(unknown)} images that persons.json "
                           f"({split}) does not have, e.g. {unknown[:3]}; it belongs to another split or release")
    kept: dict[str, list[dict]] = defaultdict(list)
    for annotation in coco_annotations.get("annotations", []):
        if annotation.get("iscrowd") or annotation.get("ignore") or annotation.get("category_id") != BDD100K_PEDESTRIAN:
            continue
        kept[str(annotation.get("image_id"))].append(annotation)
    for key, source in index.items():
        image = ours[source.file_name]
        candidates = by_image.get(image["id"], [])
        theirs = kept.get(key, [])
        if not theirs:
            continue
        height, width = int(image["height"]), int(image["width"])
        if candidates:
            iou = mask_utils.iou([_rle(a["segmentation"], height, width) for a in theirs],
                                 [as_pycocotools(a["segmentation"]) for a in candidates], [0] * len(candidates))
            iou = np.asarray(iou, dtype=np.float64).reshape(len(theirs), len(candidates))
        else:
            iou = np.zeros((len(theirs), 0))
        taken = set()
        for row in iou:
            best = int(np.argmax(row)) if row.size else -1
            if best >= 0 and row[best] >= MIN_MASK_IOU and best not in taken:
                taken.add(best)
                source.entries.append(candidates[best]["id"])
            else:
                source.entries.append(None)
    return index


def bdd100k_keypoints(import_authors_keypoints: dict, persons: dict, coco_annotations: dict | None = None, *,
                      score_threshold: float = AUTHORS_KEYPOINT_SCORE_THRESHOLD, max_misfit_fraction: float = DEFAULT_MAX_MISFIT) -> dict:
    """``person-keypoints/v1`` from BDD100K ``annotated_keypoints_{split}.json`` (visible: score > score_threshold,
    as the authors' reader with its 0.3).

    coco_annotations: see :func:`bdd100k_source_index`.
    """
    index = bdd100k_source_index(persons, coco_annotations)

    def entries_of(value):
        if not isinstance(value, dict) or not isinstance(value.get("keypoints"), list):
            return None
        return value["keypoints"]

    hint = ("Its keys are image ids of the authors' jsons/ins_seg_train_cocofmt.json; pass that file (BDD100K toolkit "
            "to_coco -m ins_seg from the label JSON) so that ids and instance order are not guessed.")
    return convert_keypoints(import_authors_keypoints, persons, index, dataset="bdd100k", entries_of=entries_of,
                             visible_if=">", score_threshold=score_threshold, require_all=False, max_misfit_fraction=max_misfit_fraction, hint=hint)


def bdd100k_face_detections(authors_boxes: dict, persons: dict, coco_annotations: dict | None = None, *,
                            min_match_iou: float = AUTHORS_MIN_MATCH_IOU, max_misfit_fraction: float = DEFAULT_MAX_MISFIT) -> dict:
    """``face-detections/v1`` from BDD100K ``face_boxes_train.json``; scores set to 1.0 (not published). Every box
    must match a person again with ``min_match_iou`` (the workflow's match_faces: config ``face_detection.min_match_iou``).

    coco_annotations: see :func:`bdd100k_source_index` (only its image ids are used here).
    """
    index = bdd100k_source_index(persons, coco_annotations)
    return convert_face_detections(authors_boxes, persons, index, dataset="bdd100k", min_match_iou=min_match_iou,
                                   max_misfit_fraction=max_misfit_fraction,
                                   hint="Its keys are image ids of the authors' jsons/ins_seg_train_cocofmt.json; pass that file.")
