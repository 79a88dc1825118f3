"""Data stage: one raw dataset split -> normalized COCO-format annotation JSONs.

Three documents per split:

* ``instances``: every instance of the dataset's instance classes in COCO format (the
  annotation that training and evaluation read), crowd / ignore regions marked ``iscrowd``;
* ``persons``: the anonymization targets after the paper's filters (Sec. 3.1): persons that
  are not crowd / ignore, riders excluded, and for COCO at least one labelled keypoint
  (the paper's code skipped persons without keypoints for both face and body);
* ``excluded``: every person / rider instance left out, with the reason, and counts.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Callable, Iterable

from .datasets import ImageRecord, Instance, reader
from .errors import DatasetError
from .io import image_size, require_file
from .masks import area, bbox

REASON_CROWD = "crowd region (not a single person)"
REASON_IGNORE = "marked ignore in the dataset"
REASON_RIDER = "rider (the paper does not anonymize riders)"
REASON_NO_KEYPOINTS = "no labelled keypoint (COCO; the paper's code skips these persons)"


def exclusion_reason(instance: Instance, rider: str | None, needs_keypoints: bool) -> str | None:
    """Why a person / rider instance is not an anonymization target (None: it is one)."""
    if rider is not None and instance.category == rider:
        return REASON_RIDER
    if instance.iscrowd:
        return REASON_CROWD
    if instance.ignore:
        return REASON_IGNORE
    if needs_keypoints and not any(instance.keypoints[2::3] if instance.keypoints else []):
        return REASON_NO_KEYPOINTS
    return None


def _coco_annotation(annotation_id: int, image_id: int, category_id: int, instance: Instance) -> dict:
    annotation = {
        "id": annotation_id,
        "image_id": image_id,
        "category_id": category_id,
        "segmentation": instance.rle,
        "area": instance.area if instance.area is not None else area(instance.rle),
        "bbox": bbox(instance.rle),
        "iscrowd": int(instance.iscrowd or instance.ignore),
        "source_id": instance.source_id,
    }
    if instance.keypoints is not None:
        annotation["keypoints"] = list(instance.keypoints)
        annotation["num_keypoints"] = sum(1 for v in instance.keypoints[2::3] if v > 0)
    return annotation


def _check_image(root: Path, record: ImageRecord, decode: bool) -> None:
    path = root / record.file_name
    require_file(path, f"the annotation of image id {record.image_id}")
    size = image_size(path, decode=decode)
    if size != (record.width, record.height):
        raise DatasetError(
            f"image {path} is {size[0]}x{size[1]} but its annotation says "
            f"{record.width}x{record.height}; the image or the annotation file is from another release"
        )
    for instance in record.instances:
        if instance.rle["size"] != [record.height, record.width]:
            raise DatasetError(f"instance {instance.source_id} of {path} has a mask of size {instance.rle['size']}, not the image's")


def normalize_split(
    dataset: str,
    root: Path,
    split: str,
    verify_images: bool = True,
    progress: Callable[[Iterable], Iterable] = iter,
) -> dict[str, dict]:
    """Read one split of a raw dataset and return the ``instances``, ``persons`` and ``excluded`` documents."""
    module = reader(dataset)
    root = Path(root)
    categories, records = module.read_split(root, split)
    if not records:
        raise DatasetError(f"{dataset} split '{split}' has no images under {root}; check datasets.{dataset}.root")
    category_ids = {category["name"]: category["id"] for category in categories}
    person_category = next(c for c in categories if c["name"] == module.PERSON)
    images, instances, persons, excluded = [], [], [], []
    other_classes: Counter = Counter()
    for record in progress(records):
        _check_image(root, record, verify_images)
        images.append({"id": record.image_id, "file_name": record.file_name, "width": record.width, "height": record.height})
        for instance in record.instances:
            annotation = _coco_annotation(len(instances) + 1, record.image_id, category_ids[instance.category], instance)
            instances.append(annotation)
            if instance.category not in (module.PERSON, module.RIDER):
                other_classes[instance.category] += 1
                continue
            reason = exclusion_reason(instance, module.RIDER, module.HAS_KEYPOINTS)
            if reason is None:
                persons.append(annotation)
            else:
                excluded.append(
                    {"image": record.file_name, "source_id": instance.source_id, "category": instance.category, "reason": reason, "bbox": annotation["bbox"]}
                )
    if split == "train" and not persons:
        raise DatasetError(
            f"{dataset} split '{split}' has no person left to anonymize after filtering "
            f"({len(excluded)} excluded); is datasets.{dataset}.root the right dataset?"
        )
    info = {"dataset": dataset, "split": split, "description": "normalized by anonymization_impact.annotations"}
    return {
        "instances": {"info": info, "images": images, "annotations": instances, "categories": categories},
        "persons": {"info": info, "images": images, "annotations": persons, "categories": [person_category]},
        "excluded": {
            "info": info,
            "counts": {
                "images": len(images),
                "persons_kept": len(persons),
                "excluded_by_reason": dict(sorted(Counter(item["reason"] for item in excluded).items())),
                "other_instances_by_category": dict(sorted(other_classes.items())),
            },
            "excluded": excluded,
        },
    }
