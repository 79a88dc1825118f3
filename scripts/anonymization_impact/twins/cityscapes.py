"""Cityscapes twin: ``leftImg8bit/{split}/{city}/*_leftImg8bit.png`` and ``gtFine/{split}/{city}/*_gtFine_*``.

Per image: the RGB PNG, ``labelIds`` (uint8), ``instanceIds`` (16-bit; instance classes as
label id x 1000 + index, group regions such as "persongroup" and stuff as the bare label id) and the
``polygons`` JSON whose objects, rasterised in order with PIL (as cityscapesscripts does), give exactly
those two PNGs. Train cities: aachen, bochum; val city: frankfurt. 256x128 pixels.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from cityscapesscripts.helpers.labels import name2label
from PIL import Image

from .backgrounds import street_background
from .plans import image_rng, plan_objects, slot_for
from .rendering import render
from .truth import instance_truth

PERSON = "person"
DATASET_INDEX = 1
WIDTH, HEIGHT = 256, 128
CITIES = {"train": ("aachen", "bochum"), "val": ("frankfurt",)}
_KIND_TO_LABEL = {"person": "person", "rider": "rider", "crowd": "persongroup", "car": "car", "truck": "truck",
                  "bus": "bus", "bicycle": "bicycle", "motorcycle": "motorcycle"}


def stem_for(split: str, index: int) -> tuple[str, str]:
    cities = CITIES.get(split, ("frankfurt",))
    city = cities[index % len(cities)]
    return city, f"{city}_{index // len(cities):06d}_000019"


def write(root: Path, *, seed: int, sizes: dict[str, int]) -> dict[str, list[dict]]:
    truth: dict[str, list[dict]] = {}
    for split_index, (split, n) in enumerate(sizes.items()):
        split_truth = []
        for index in range(n):
            rng = image_rng(seed, DATASET_INDEX, split_index, index)
            canvas, stuff = street_background(rng, WIDTH, HEIGHT)
            objects = stuff + plan_objects(rng, WIDTH, HEIGHT, slot_for(index), riders_kind="rider",
                                           vehicles=("car", "car", "truck", "bus"), dog=False)
            rgb, survivors = render(rng, canvas, objects)
            city, stem = stem_for(split, index)
            image_dir = root / "leftImg8bit" / split / city
            gt_dir = root / "gtFine" / split / city
            image_dir.mkdir(parents=True, exist_ok=True)
            gt_dir.mkdir(parents=True, exist_ok=True)

            label_ids = np.zeros((HEIGHT, WIDTH), np.uint8)
            instance_ids = np.zeros((HEIGHT, WIDTH), np.uint16)
            counters: dict[str, int] = {}
            objects_json, instances = [], []
            for vis in survivors:
                name = vis.obj.label if vis.obj.kind == "stuff" else _KIND_TO_LABEL[vis.obj.kind]
                group = name not in name2label and name.endswith("group")
                label = name2label[name[:-len("group")] if group else name]
                value = label.id
                if label.hasInstances and not group:
                    value = label.id * 1000 + counters.get(label.name, 0)
                    counters[label.name] = counters.get(label.name, 0) + 1
                label_ids[vis.mask] = label.id
                instance_ids[vis.mask] = value
                objects_json.append({"label": name, "polygon": [[int(x), int(y)] for x, y in vis.polygon]})
                if vis.obj.kind != "stuff":
                    instances.append(instance_truth(vis, label.name, iscrowd=group, ignore=False, num_keypoints=None))

            Image.fromarray(rgb).save(image_dir / f"{stem}_leftImg8bit.png", format="PNG")
            Image.fromarray(label_ids).save(gt_dir / f"{stem}_gtFine_labelIds.png", format="PNG")
            Image.fromarray(instance_ids).save(gt_dir / f"{stem}_gtFine_instanceIds.png", format="PNG")
            (gt_dir / f"{stem}_gtFine_polygons.json").write_text(
                json.dumps({"imgHeight": HEIGHT, "imgWidth": WIDTH, "objects": objects_json}, indent=4) + "\n")
            split_truth.append({"file": f"leftImg8bit/{split}/{city}/{stem}_leftImg8bit.png", "width": WIDTH,
                                "height": HEIGHT, "instances": instances})
        truth[split] = split_truth
    return truth
