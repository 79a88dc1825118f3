"""Synthetic "twins" of COCO 2017, Cityscapes and BDD100K, written in the real on-disk formats.

`write_twin` writes one small deterministic dataset (same arguments give byte-identical files), a
truth manifest describing exactly what the files contain, and a simulated face-detector (DSFD
stand-in) output on the training split. A scene is planned by `plans` (its objects from `objects`
on a background from `backgrounds`), drawn by `rendering` (with `polygons`) and described by
`truth`; `faces` simulates the detector; `coco`, `cityscapes` and `bdd100k` write the three formats.
"""

from __future__ import annotations

import json
from pathlib import Path

from . import bdd100k, cityscapes, coco
from .faces import faces_document, simulate_faces
from .plans import image_rng
from .truth import check_requirements, split_counts

TWIN_DATASETS = ("coco", "cityscapes", "bdd100k")
_MODULES = {"coco": coco, "cityscapes": cityscapes, "bdd100k": bdd100k}
# the first images of every split are reserved for the special cases every twin must contain
MIN_IMAGES_PER_SPLIT = 4

__all__ = ["TWIN_DATASETS", "MIN_IMAGES_PER_SPLIT", "write_pretraining_set", "write_twin"]


def write_twin(dataset: str, root: Path, truth_path: Path, faces_path: Path, *,
               n_train: int, n_val: int, seed: int) -> None:
    """Write the twin of `dataset` ("coco", "cityscapes" or "bdd100k") under `root`.

    `root` is created (it must not exist or be empty). The truth manifest goes to `truth_path` and the
    simulated face detections on the training split to `faces_path`, both outside `root`.
    """
    if dataset not in _MODULES:
        raise ValueError(f"unknown twin dataset {dataset!r}; expected one of {', '.join(TWIN_DATASETS)}")
    for name, n in (("n_train", n_train), ("n_val", n_val)):
        if int(n) != n or n < MIN_IMAGES_PER_SPLIT:
            raise ValueError(f"{name}={n!r}: every split needs at least {MIN_IMAGES_PER_SPLIT} images "
                             "(the first ones hold the special cases)")
    root, truth_path, faces_path = Path(root), Path(truth_path), Path(faces_path)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise ValueError(f"twin root {root} exists and is not an empty directory")
    for path in (truth_path, faces_path):
        if path.resolve().is_relative_to(root.resolve()):
            raise ValueError(f"{path} must lie outside the dataset root {root}")
    root.mkdir(parents=True, exist_ok=True)

    module = _MODULES[dataset]
    dataset_index = TWIN_DATASETS.index(dataset)
    splits = module.write(root, seed=seed, sizes={"train": int(n_train), "val": int(n_val)})

    truth = {"dataset": dataset, "seed": seed, "format_version": 1, "splits": {}}
    for split, images in splits.items():
        check_requirements(dataset, split, images, module.PERSON)
        truth["splits"][split] = {"images": images,
                                  "counts": split_counts(images, module.PERSON, keypoints=dataset == "coco")}

    detections = {}
    for index, image in enumerate(splits["train"]):
        rng = image_rng(seed, dataset_index, 0, index, stream=1)
        faces = [i["face_box"] for i in image["instances"] if i["face_box"] is not None]
        detections[image["file"]] = simulate_faces(rng, faces, image["width"], image["height"])

    truth_path.parent.mkdir(parents=True, exist_ok=True)
    faces_path.parent.mkdir(parents=True, exist_ok=True)
    truth_path.write_text(json.dumps(truth, sort_keys=True, indent=1) + "\n")
    faces_path.write_text(json.dumps(faces_document(detections), sort_keys=True, indent=1) + "\n")


def write_pretraining_set(root: Path, annotation: Path, *, seed: int, images: int) -> int:
    """COCO-style twin images for pre-training the twins' backbones, and their normalized
    instances JSON; returns the number of images.

    A seed of its own keeps these images apart from every twin's training and validation
    images, as ImageNet is apart from COCO. The truth manifest and simulated faces are not
    needed and stay in a scratch directory next to ``root``.
    """
    from ..annotations import normalize_split
    from ..io import write_json_atomic

    root, annotation = Path(root), Path(annotation)
    scratch = root.parent / f".{root.name}_unused"
    write_twin("coco", root, scratch / "truth.json", scratch / "faces.json", n_train=images, n_val=MIN_IMAGES_PER_SPLIT, seed=seed)
    instances = normalize_split("coco", root, "train")["instances"]
    write_json_atomic(annotation, instances)
    return len(instances["images"])
