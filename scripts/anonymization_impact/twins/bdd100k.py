"""BDD100K twin (10k images, instance segmentation): ``images/10k/{split}/{name}.jpg`` and
``labels/ins_seg/bitmasks/{split}/{name}.png``.

Bitmasks follow the BDD100K toolkit: RGBA uint8, R = category id (1 pedestrian, 2 rider, 3 car,
4 truck, 5 bus, 6 train, 7 motorcycle, 8 bicycle; 0 background), G = ``truncated << 3 | occluded << 2
| crowd << 1 | ignore``, ``B << 8 | A`` = instance id (>= 1, unique per image). 256x144 pixels; names
are pairs of 8-digit hex numbers like BDD's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .backgrounds import street_background
from .plans import image_rng, plan_objects, slot_for
from .rendering import render
from .truth import instance_truth

PERSON = "pedestrian"
DATASET_INDEX = 2
WIDTH, HEIGHT = 256, 144
CLASS_NAMES = ("pedestrian", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle")
_KIND_TO_CLASS = {"person": "pedestrian", "crowd": "pedestrian", "rider": "rider", "car": "car", "truck": "truck",
                  "bus": "bus", "motorcycle": "motorcycle", "bicycle": "bicycle"}


def write(root: Path, *, seed: int, sizes: dict[str, int]) -> dict[str, list[dict]]:
    truth: dict[str, list[dict]] = {}
    names: set[str] = set()
    for split_index, (split, n) in enumerate(sizes.items()):
        image_dir = root / "images" / "10k" / split
        label_dir = root / "labels" / "ins_seg" / "bitmasks" / split
        image_dir.mkdir(parents=True)
        label_dir.mkdir(parents=True)
        split_truth = []
        for index in range(n):
            rng = image_rng(seed, DATASET_INDEX, split_index, index)
            a, b = image_rng(seed, DATASET_INDEX, split_index, index, stream=2).integers(0, 2**32, 2)
            name = f"{int(a):08x}-{int(b):08x}"
            if name in names:
                raise RuntimeError(f"BDD twin: image name {name} drawn twice")
            names.add(name)
            canvas, stuff = street_background(rng, WIDTH, HEIGHT)
            objects = stuff + plan_objects(rng, WIDTH, HEIGHT, slot_for(index), riders_kind="rider",
                                           vehicles=("car", "car", "truck", "bus"), dog=False)
            rgb, survivors = render(rng, canvas, objects)
            bitmask = np.zeros((HEIGHT, WIDTH, 4), np.uint8)
            instances = []
            ann_id = 0
            for vis in survivors:
                if vis.obj.kind == "stuff":
                    continue
                ann_id += 1
                category = _KIND_TO_CLASS[vis.obj.kind]
                crowd = vis.obj.kind == "crowd"
                ignore = bool(vis.obj.flags.get("ignore")) and vis.obj.kind == "person"
                bits = (int(vis.truncated) << 3) | (int(vis.occluded) << 2) | (int(crowd) << 1) | int(ignore)
                bitmask[vis.mask] = (CLASS_NAMES.index(category) + 1, bits, ann_id >> 8, ann_id & 255)
                instances.append(instance_truth(vis, category, iscrowd=crowd, ignore=ignore, num_keypoints=None))
            Image.fromarray(rgb).save(image_dir / f"{name}.jpg", format="JPEG", quality=90, subsampling=2)
            Image.fromarray(bitmask, mode="RGBA").save(label_dir / f"{name}.png", format="PNG")
            split_truth.append({"file": f"images/10k/{split}/{name}.jpg", "width": WIDTH, "height": HEIGHT,
                                "instances": instances})
        truth[split] = split_truth
    return truth
