"""BDD100K 10k instance segmentation, read from ``labels/ins_seg/bitmasks/{split}/*.png``.

Bitmask encoding (BDD100K toolkit docs): R = category id (1..8), G = attribute bits
``truncated << 3 | occluded << 2 | crowd << 1 | ignore``, ``B << 8 | A`` = instance id.
The toolkit's evaluation uses these bitmasks as ground truth.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import DatasetError
from ..io import image_size, require_file
from ..masks import encode
from . import ImageRecord, Instance

PERSON = "pedestrian"
RIDER = "rider"
HAS_KEYPOINTS = False
CLASS_NAMES = ("pedestrian", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle")
CATEGORIES = [{"id": index + 1, "name": name, "supercategory": "none"} for index, name in enumerate(CLASS_NAMES)]
CROWD_BIT, IGNORE_BIT = 2, 1


def raw_inputs(root: Path, split: str) -> list[Path]:
    return [Path(root) / "labels" / "ins_seg" / "bitmasks" / split, Path(root) / "images" / "10k" / split]


def read_split(root: Path, split: str) -> tuple[list[dict], list[ImageRecord]]:
    root = Path(root)
    label_dir = root / "labels" / "ins_seg" / "bitmasks" / split
    records = []
    for image_id, label_file in enumerate(sorted(label_dir.glob("*.png")), start=1):
        image_path = root / "images" / "10k" / split / f"{label_file.stem}.jpg"
        require_file(image_path, f"bitmask {label_file}")
        bitmask = np.array(Image.open(label_file))
        if bitmask.ndim != 3 or bitmask.shape[2] != 4:
            raise DatasetError(f"bitmask {label_file} is not an RGBA image (shape {bitmask.shape})")
        width, height = image_size(image_path, decode=False)
        record = ImageRecord(image_id, str(image_path.relative_to(root)), width, height)
        category, attributes = bitmask[..., 0], bitmask[..., 1]
        instance_ids = (bitmask[..., 2].astype(np.int32) << 8) + bitmask[..., 3]
        for instance_id in np.unique(instance_ids[category > 0]):
            mask = (instance_ids == instance_id) & (category > 0)
            category_id = int(np.bincount(category[mask]).argmax())
            if category_id > len(CLASS_NAMES):
                raise DatasetError(f"bitmask {label_file}: category id {category_id} is not one of BDD100K's 8 instance classes")
            bits = int(np.bincount(attributes[mask]).argmax())
            record.instances.append(
                Instance(
                    source_id=str(int(instance_id)),
                    category=CLASS_NAMES[category_id - 1],
                    iscrowd=bool(bits & CROWD_BIT),
                    ignore=bool(bits & IGNORE_BIT),
                    rle=encode(mask),
                )
            )
        records.append(record)
    return CATEGORIES, records
