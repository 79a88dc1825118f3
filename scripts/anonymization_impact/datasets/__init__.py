"""Readers of the three raw datasets into one in-memory form (:class:`ImageRecord`).

Each reader module exposes ``CATEGORIES`` (the instance classes kept in the normalized
annotation JSON, as COCO category dicts), ``PERSON`` and ``RIDER`` (the dataset's own class
names), ``raw_inputs(root, split)`` (the files the data stage reads) and
``read_split(root, split)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import ModuleType

from .. import DATASETS


@dataclass
class Instance:
    source_id: str  # the instance's id in the raw data, for audits
    category: str  # the dataset's own class name
    iscrowd: bool
    ignore: bool
    rle: dict  # compressed COCO RLE with str counts
    keypoints: list[int] | None = None  # 17 x (x, y, v) in COCO order, where the dataset has them
    area: float | None = None  # the dataset's own area (COCO: polygon area, the OKS scale); else the mask's


@dataclass
class ImageRecord:
    image_id: int
    file_name: str  # relative to the dataset root
    width: int
    height: int
    instances: list[Instance] = field(default_factory=list)


def reader(dataset: str) -> ModuleType:
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
    from . import bdd100k, cityscapes, coco

    return {"coco": coco, "cityscapes": cityscapes, "bdd100k": bdd100k}[dataset]
