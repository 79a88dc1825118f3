"""COCO 2017 twin: ``{train,val}2017/%012d.jpg`` and ``annotations/{person_keypoints,instances}_{split}2017.json``.

Persons carry polygons (exact: every polygon rasterises with pycocotools to the stored visible mask),
a few compressed RLEs, crowd regions as uncompressed RLE (iscrowd 1), and 17 COCO keypoints. The
instances file adds other categories with their real COCO ids; person annotations share ids across
both files, annotation ids are unique across the two splits.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from .backgrounds import indoor_background, street_background
from .objects import KEYPOINT_NAMES, SKELETON
from .plans import image_rng, plan_objects, slot_for
from .rendering import render
from .truth import instance_truth

PERSON = "person"
DATASET_INDEX = 0
CATEGORIES = [
    {"supercategory": "person", "id": 1, "name": "person"},
    {"supercategory": "vehicle", "id": 2, "name": "bicycle"},
    {"supercategory": "vehicle", "id": 3, "name": "car"},
    {"supercategory": "vehicle", "id": 4, "name": "motorcycle"},
    {"supercategory": "vehicle", "id": 6, "name": "bus"},
    {"supercategory": "vehicle", "id": 8, "name": "truck"},
    {"supercategory": "animal", "id": 18, "name": "dog"},
]
_CAT_ID = {c["name"]: c["id"] for c in CATEGORIES}
_KIND_TO_CATEGORY = {"person": "person", "rider": "person", "crowd": "person", "bicycle": "bicycle", "car": "car",
                     "motorcycle": "motorcycle", "bus": "bus", "truck": "truck", "dog": "dog"}
LANDSCAPE = [(192, 144), (160, 120), (224, 168), (256, 192), (208, 160)]
PORTRAIT = [(160, 208), (176, 224), (144, 192)]
INFO = {"description": "Synthetic twin of COCO 2017 (anonymization-impact workflow)", "url": "", "version": "1.0",
        "year": 2017, "contributor": "synthetic twin generator", "date_created": "2017/09/01"}
LICENSES = [{"url": "", "id": 1, "name": "Synthetic image, no restrictions"}]


def mask_to_polygons(mask: np.ndarray) -> list[list[float]]:
    """Rectangles (merged row runs) whose pycocotools rasterisation is exactly `mask`."""
    polys, open_runs = [], {}
    height = mask.shape[0]
    for y in range(height + 1):
        runs = set()
        if y < height:
            row = np.concatenate([[0], mask[y].astype(np.int8), [0]])
            d = np.diff(row)
            runs = set(zip(np.nonzero(d == 1)[0].tolist(), np.nonzero(d == -1)[0].tolist()))
        for run in sorted(open_runs):
            if run not in runs:
                x0, x1 = run
                y0 = open_runs.pop(run)
                polys.append([float(v) for v in (x0, y0, x1, y0, x1, y, x0, y)])
        for run in sorted(runs):
            open_runs.setdefault(run, y)
    return sorted(polys, key=lambda p: (p[1], p[0]))


def uncompressed_rle(mask: np.ndarray) -> dict:
    """Uncompressed RLE as in COCO's crowd annotations: column-major run lengths, starting with zeros."""
    flat = mask.ravel(order="F").astype(np.int8)
    counts = [0] if flat[0] == 1 else []
    start = 0
    for edge in (np.nonzero(np.diff(flat))[0] + 1).tolist() + [len(flat)]:
        counts.append(int(edge - start))
        start = edge
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def _check(segmentation, mask: np.ndarray) -> None:
    h, w = mask.shape
    if isinstance(segmentation, dict) and isinstance(segmentation["counts"], str):  # as COCO.annToRLE
        rle = {"size": segmentation["size"], "counts": segmentation["counts"].encode("ascii")}
    else:
        rles = mask_utils.frPyObjects(segmentation, h, w)
        rle = mask_utils.merge(rles) if isinstance(rles, list) else rles
    if not np.array_equal(mask_utils.decode(rle).astype(bool), mask):
        raise AssertionError("COCO segmentation does not rasterise to the drawn mask")


def _keypoints(vis, rng) -> list[int]:
    flags = vis.obj.flags
    kps = list(vis.keypoints)
    if flags.get("no_keypoints") or (vis.bbox[3] < 16 and not flags.get("force_keypoints")):
        return [0] * 51
    if not flags.get("force_keypoints"):
        for k in range(17):
            if rng.uniform() < 0.05:
                kps[3 * k:3 * k + 3] = [0, 0, 0]
    return kps


def write(root: Path, *, seed: int, sizes: dict[str, int]) -> dict[str, list[dict]]:
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    truth: dict[str, list[dict]] = {}
    image_id = ann_id = 0
    for split_index, (split, n) in enumerate(sizes.items()):
        folder = root / f"{split}2017"
        folder.mkdir()
        images, person_anns, other_anns, split_truth = [], [], [], []
        for index in range(n):
            rng = image_rng(seed, DATASET_INDEX, split_index, index)
            slot = slot_for(index)
            if slot in ("showcase_a", "showcase_b"):
                width, height = LANDSCAPE[int(rng.integers(2))]
            else:
                pool = LANDSCAPE if rng.uniform() < 0.7 else PORTRAIT
                width, height = pool[int(rng.integers(len(pool)))]
            background = street_background if rng.uniform() < 0.5 else indoor_background
            canvas, stuff = background(rng, width, height)
            objects = stuff + plan_objects(rng, width, height, slot, riders_kind="person",
                                           vehicles=("car", "car", "truck", "bus"), dog=True)
            rgb, survivors = render(rng, canvas, objects)
            image_id += 1
            file_name = f"{image_id:012d}.jpg"
            Image.fromarray(rgb).save(folder / file_name, format="JPEG", quality=90, subsampling=2)
            day = 1 + int(rng.integers(28))
            images.append({"license": 1, "file_name": file_name, "coco_url": "", "height": height, "width": width,
                           "date_captured": f"2013-11-{day:02d} 12:00:00", "flickr_url": "", "id": image_id})
            instances = []
            for vis in survivors:
                if vis.obj.kind == "stuff":
                    continue
                category = _KIND_TO_CATEGORY[vis.obj.kind]
                ann_id += 1
                iscrowd = vis.obj.kind == "crowd"
                if iscrowd:
                    segmentation = uncompressed_rle(vis.mask)
                elif category == "person" and vis.obj.flags.get("rle"):
                    rle = mask_utils.encode(np.asfortranarray(vis.mask.astype(np.uint8)))
                    segmentation = {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}
                else:
                    segmentation = mask_to_polygons(vis.mask)
                _check(segmentation, vis.mask)
                ann = {"segmentation": segmentation, "area": float(vis.area), "iscrowd": int(iscrowd),
                       "image_id": image_id, "bbox": [float(v) for v in vis.bbox], "category_id": _CAT_ID[category],
                       "id": ann_id}
                num_keypoints = None
                if category == "person":
                    kps = [0] * 51 if iscrowd else _keypoints(vis, rng)
                    num_keypoints = sum(1 for k in range(17) if kps[3 * k + 2] > 0)
                    person_anns.append(dict(ann, num_keypoints=num_keypoints, keypoints=kps))
                other_anns.append(ann)
                instances.append(instance_truth(vis, category, iscrowd=iscrowd, ignore=False, num_keypoints=num_keypoints))
            split_truth.append({"file": f"{split}2017/{file_name}", "width": width, "height": height, "instances": instances})
        person_category = dict(CATEGORIES[0], keypoints=list(KEYPOINT_NAMES), skeleton=SKELETON)
        _dump(root / "annotations" / f"person_keypoints_{split}2017.json",
              {"info": INFO, "licenses": LICENSES, "images": images, "annotations": person_anns,
               "categories": [person_category]})
        _dump(root / "annotations" / f"instances_{split}2017.json",
              {"info": INFO, "licenses": LICENSES, "images": images, "annotations": other_anns,
               "categories": CATEGORIES})
        truth[split] = split_truth
    return truth


def _dump(path: Path, document: dict) -> None:
    path.write_text(json.dumps(document, separators=(",", ":")))
