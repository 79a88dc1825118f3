"""COCO 2017: ``annotations/{instances,person_keypoints}_{split}2017.json`` + ``{split}2017/``."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

from pycocotools.coco import COCO

from ..errors import DatasetError
from ..io import require_file
from ..masks import as_pycocotools
from . import ImageRecord, Instance

PERSON = "person"
RIDER = None  # COCO has no rider class
HAS_KEYPOINTS = True


def _annotation_file(root: Path, kind: str, split: str) -> Path:
    return Path(root) / "annotations" / f"{kind}_{split}2017.json"


def raw_inputs(root: Path, split: str) -> list[Path]:
    return [_annotation_file(root, kind, split) for kind in ("instances", "person_keypoints")]


def _load(path: Path) -> COCO:
    require_file(path, "the COCO dataset layout")
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        try:
            return COCO(str(path))
        except Exception as error:  # json errors, missing keys
            raise DatasetError(f"cannot read COCO annotation file {path}: {error}") from None


def read_split(root: Path, split: str) -> tuple[list[dict], list[ImageRecord]]:
    """Categories and images of one split; persons carry their keypoint annotation."""
    instances = _load(_annotation_file(root, "instances", split))
    keypoints = _load(_annotation_file(root, "person_keypoints", split))
    keypoint_categories = {c["id"]: c for c in keypoints.dataset["categories"]}
    category_list = [keypoint_categories.get(c["id"], c) for c in instances.dataset["categories"]]
    names = {c["id"]: c["name"] for c in category_list}
    records = []
    for image_id in sorted(instances.imgs):
        info = instances.imgs[image_id]
        record = ImageRecord(image_id, f"{split}2017/{info['file_name']}", info["width"], info["height"])
        for annotation in instances.imgToAnns.get(image_id, []):
            rle = as_pycocotools(instances.annToRLE(annotation))
            with_keypoints = keypoints.anns.get(annotation["id"], {})
            record.instances.append(
                Instance(
                    source_id=str(annotation["id"]),
                    category=names[annotation["category_id"]],
                    iscrowd=bool(annotation.get("iscrowd", 0)),
                    ignore=False,
                    rle={"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")},
                    keypoints=with_keypoints.get("keypoints"),
                    area=annotation.get("area"),
                )
            )
        records.append(record)
    return category_list, records
