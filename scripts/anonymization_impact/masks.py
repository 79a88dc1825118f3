"""COCO RLE helpers on top of pycocotools."""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils


def encode(mask: np.ndarray) -> dict:
    """Binary HxW mask -> compressed RLE with JSON-serializable (str) counts."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def as_pycocotools(rle: dict) -> dict:
    counts = rle["counts"]
    if isinstance(counts, list):  # uncompressed RLE (COCO crowd annotations)
        return mask_utils.frPyObjects(rle, *rle["size"])
    return {"size": rle["size"], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


def bbox(rle: dict) -> list[float]:
    return [float(v) for v in mask_utils.toBbox(as_pycocotools(rle))]


def area(rle: dict) -> int:
    return int(mask_utils.area(as_pycocotools(rle)))


def decode(rle: dict) -> np.ndarray:
    """RLE (compressed or uncompressed) -> HxW uint8 mask."""
    return mask_utils.decode(as_pycocotools(rle))
