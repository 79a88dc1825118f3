"""Throughput of traditional anonymization next to the floor of decoding and re-encoding.

Run: .venv/bin/python perf/benchmark_anonymization.py [--repeats 3]

Image sets: the three synthetic twins (small images), and full-size sets made from the
twins' scenes: 2048x1024 PNG (Cityscapes-sized, upscaled Cityscapes twin scenes with their
masks) and 640x480 JPEG (COCO-sized). For each set and method the script anonymizes every
image with persons exactly as the workflow does (decode, plan regions, anonymize, encode)
and, separately, only decodes and re-encodes the same images with the same settings. It
prints images/s of both and their ratio (the cost over the floor), best of the repeats,
and the peak Python-traced memory of anonymizing one full-size image.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from anonymization_impact.annotations import normalize_split  # noqa: E402
from anonymization_impact.config import validate_config  # noqa: E402
from anonymization_impact.masks import decode, encode  # noqa: E402
from anonymization_impact.methods import build_method  # noqa: E402
from anonymization_impact.io import decode_image  # noqa: E402
from anonymization_impact.trees import anonymize_pixels, encode_image, plan_targets  # noqa: E402
from anonymization_impact.twins import write_twin  # noqa: E402

METHODS = {
    "maskout": {"region": "body", "method": "maskout"},
    "blur (crop space)": {"region": "body", "method": "blur"},
    "blur (image space)": {"region": "body", "method": "blur", "blur_space": "image"},
}


def image_set_from_twin(dataset: str, base: Path) -> list[tuple[Path, dict, list[dict]]]:
    root = base / dataset
    write_twin(dataset, root, base / f"{dataset}.truth.json", base / f"{dataset}.faces.json", n_train=48, n_val=8, seed=0)
    persons = normalize_split(dataset, root, "train", verify_images=False)["persons"]
    by_image = {}
    for annotation in persons["annotations"]:
        by_image.setdefault(annotation["image_id"], []).append(annotation)
    return [(root / image["file_name"], image, by_image[image["id"]]) for image in persons["images"] if image["id"] in by_image]


def resized_set(source: list, base: Path, size: tuple[int, int], suffix: str, count: int) -> list:
    """Scenes of `source` resized to `size` (width, height), masks resized with them."""
    out = []
    base.mkdir(parents=True, exist_ok=True)
    for index, (path, image, annotations) in enumerate(source[:count]):
        pixels = Image.open(path).convert("RGB").resize(size, Image.BICUBIC)
        target = base / f"{index:04d}{suffix}"
        pixels.save(target, **({"quality": 90} if suffix == ".jpg" else {}))
        resized = []
        for annotation in annotations:
            mask = Image.fromarray(decode(annotation["segmentation"]) * 255).resize(size, Image.NEAREST)
            if np.asarray(mask).any():
                resized.append({**annotation, "segmentation": encode(np.asarray(mask) > 127)})
        out.append((target, {**image, "width": size[0], "height": size[1], "file_name": target.name}, resized))
    return out


def floor_pass(items) -> None:
    for path, _, _ in items:
        pixels, mode, _ = decode_image(path)
        encode_image(pixels, mode, path.suffix)


def anonymize_pass(items, variant: dict) -> None:
    method = build_method(variant)
    for path, image, annotations in items:
        pixels, mode, _ = decode_image(path)
        targets, _ = plan_targets("body", image, annotations, None, variant["min_size"])
        encode_image(anonymize_pixels(pixels, targets, method, 0, image["file_name"]), mode, path.suffix)


def best_time(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--full-size-images", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        base = Path(temporary)
        twins = {dataset: image_set_from_twin(dataset, base / "twins") for dataset in ("coco", "cityscapes", "bdd100k")}
        sets = {
            **{f"{dataset} twin": items for dataset, items in twins.items()},
            "2048x1024 PNG": resized_set(twins["cityscapes"], base / "png", (2048, 1024), ".png", args.full_size_images),
            "640x480 JPEG": resized_set(twins["coco"], base / "jpeg", (640, 480), ".jpg", args.full_size_images),
        }
        print(f"{'image set':<16} {'images':>6} {'persons':>7} {'method':<19} {'floor img/s':>11} {'anon img/s':>10} {'ratio':>6}")
        for name, items in sets.items():
            persons = sum(len(annotations) for _, _, annotations in items)
            floor = best_time(lambda: floor_pass(items), args.repeats)
            for method_name, settings in METHODS.items():
                variant = validate_config({"variants": {"v": settings}})["variants"]["v"]
                seconds = best_time(lambda: anonymize_pass(items, variant), args.repeats)
                print(
                    f"{name:<16} {len(items):>6} {persons:>7} {method_name:<19} {len(items) / floor:>11.2f} "
                    f"{len(items) / seconds:>10.2f} {seconds / floor:>6.2f}"
                )
        largest = sets["2048x1024 PNG"][:1]
        for method_name, settings in METHODS.items():
            variant = validate_config({"variants": {"v": settings}})["variants"]["v"]
            tracemalloc.start()
            anonymize_pass(largest, variant)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            print(f"peak traced memory, one 2048x1024 image, {method_name}: {peak / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
