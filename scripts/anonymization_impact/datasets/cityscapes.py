"""Cityscapes fine annotations, read from ``gtFine/{split}/{city}/*_gtFine_instanceIds.png``.

Official encoding (cityscapesscripts): pixels of an instance carry label id x 1000 + index;
crowd / group regions of an instance class carry the bare label id. The same file is what
the official instance-level evaluation reads.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from cityscapesscripts.helpers.labels import id2label, name2label
from PIL import Image

from ..io import image_size, require_file
from ..masks import encode
from . import ImageRecord, Instance

PERSON = "person"
RIDER = "rider"
HAS_KEYPOINTS = False
# The 8 classes of the official instance evaluation, in detectron2's order.
CLASS_NAMES = ("person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle")
CATEGORIES = [{"id": index + 1, "name": name, "supercategory": name2label[name].category} for index, name in enumerate(CLASS_NAMES)]
INSTANCE_SUFFIX = "_gtFine_instanceIds.png"


def raw_inputs(root: Path, split: str) -> list[Path]:
    return [Path(root) / "gtFine" / split, Path(root) / "leftImg8bit" / split]


def _label_files(root: Path, split: str) -> list[Path]:
    return sorted((Path(root) / "gtFine" / split).glob(f"*/*{INSTANCE_SUFFIX}"))


def _image_path(root: Path, split: str, label_file: Path) -> Path:
    stem = label_file.name[: -len(INSTANCE_SUFFIX)]
    return Path(root) / "leftImg8bit" / split / label_file.parent.name / f"{stem}_leftImg8bit.png"


def read_split(root: Path, split: str) -> tuple[list[dict], list[ImageRecord]]:
    root = Path(root)
    records = []
    for image_id, label_file in enumerate(_label_files(root, split), start=1):
        image_path = _image_path(root, split, label_file)
        require_file(image_path, f"annotation {label_file}")
        ids = np.array(Image.open(label_file))
        width, height = image_size(image_path, decode=False)
        record = ImageRecord(image_id, str(image_path.relative_to(root)), width, height)
        for value in np.unique(ids):
            label = id2label.get(int(value) // 1000 if value >= 1000 else int(value))
            if label is None or label.name not in CLASS_NAMES:
                continue  # stuff classes and instance classes outside the evaluation
            record.instances.append(
                Instance(
                    source_id=str(int(value)),
                    category=label.name,
                    iscrowd=bool(value < 1000),
                    ignore=False,
                    rle=encode(ids == value),
                )
            )
        records.append(record)
    return CATEGORIES, records
