"""How long `snakemake -n all` takes to build the DAG of the paper's study at full size.

Run: .venv/bin/python perf/benchmark_dag.py [--coco-images 118287]

Writes raw dataset roots without images: COCO annotation files with the training set's
size (118,287 images, one person annotation with keypoints per image plus a second object,
and 5,000 validation images), and empty Cityscapes / BDD100K directory layouts. Then runs a
dry run of `all` with every dataset configured as real (the paper's schedules, all variants,
3 seeds, sharded anonymization) and prints the wall time and the job counts. Building the
DAG must not read images or annotation contents: only paths.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def coco_annotations(images: int, split: str) -> dict:
    categories = [{"id": 1, "name": "person", "supercategory": "person", "keypoints": [f"k{i}" for i in range(17)], "skeleton": []}, {"id": 3, "name": "car", "supercategory": "vehicle"}]
    document = {"info": {}, "licenses": [], "categories": categories, "images": [], "annotations": []}
    for index in range(1, images + 1):
        document["images"].append({"id": index, "file_name": f"{index:012d}.jpg", "width": 640, "height": 480})
        document["annotations"].append({"id": 2 * index, "image_id": index, "category_id": 1, "iscrowd": 0, "area": 400.0, "bbox": [10, 10, 20, 20], "segmentation": [[10, 10, 30, 10, 30, 30, 10, 30]], "num_keypoints": 1, "keypoints": [20, 20, 2] + [0] * 48})
        document["annotations"].append({"id": 2 * index + 1, "image_id": index, "category_id": 3, "iscrowd": 0, "area": 400.0, "bbox": [50, 50, 20, 20], "segmentation": [[50, 50, 70, 50, 70, 70, 50, 70]]})
    return document


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--coco-images", type=int, default=118287)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        base = Path(temporary)
        coco = base / "coco"
        (coco / "annotations").mkdir(parents=True)
        for split, count in (("train", args.coco_images), ("val", 5000)):
            (coco / f"{split}2017").mkdir()
            document = coco_annotations(count, split)
            for kind in ("instances", "person_keypoints"):
                (coco / "annotations" / f"{kind}_{split}2017.json").write_text(json.dumps(document))
        size = sum(p.stat().st_size for p in (coco / "annotations").iterdir())
        for split in ("train", "val"):
            (base / "cityscapes" / "gtFine" / split / "aachen").mkdir(parents=True)
            (base / "cityscapes" / "leftImg8bit" / split / "aachen").mkdir(parents=True)
            (base / "bdd100k" / "labels" / "ins_seg" / "bitmasks" / split).mkdir(parents=True)
            (base / "bdd100k" / "images" / "10k" / split).mkdir(parents=True)
        overlay = base / "overlay.yaml"
        overlay.write_text(yaml.safe_dump({"datasets": {d: {"synthetic": False, "root": str(base / d)} for d in ("coco", "cityscapes", "bdd100k")}}))
        workdir = base / "work"
        workdir.mkdir()
        command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir), "all", "-n", "--quiet", "rules", "--configfile", str(REPO / "config.yaml"), str(overlay)]
        started = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        output = result.stdout + result.stderr
        if result.returncode or "Job stats:" not in output:
            sys.exit(f"dry run failed (exit {result.returncode}):\n{output[-3000:]}")
        stats = output.split("Job stats:")[1].split("Reasons:")[0]
        print(f"COCO annotation files: {size / 2**20:.0f} MiB for {args.coco_images} training images")
        print(f"snakemake -n all (paper configuration, real roots): {seconds:.1f} s wall, including Python start-up")
        print(stats.strip())


if __name__ == "__main__":
    main()
