"""Training samples from a normalized COCO-format annotation and an image root.

Sampling is a pure function of (seed, iteration): sample k of the stream is element
k mod N of the permutation of epoch k // N, and its horizontal flip is drawn from (seed, k).
A resumed run therefore sees exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import DatasetError, WorkflowInputError
from ..io import decode_image, read_json, require_file
from ..masks import decode
from .common import kept_categories

# COCO keypoints: left/right pairs swapped by a horizontal flip.
FLIP_PAIRS = [(1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)]


class DetectionSamples:
    """Images with at least one usable instance (crowd regions are not trained on, as in
    detectron2, and images left without instances are skipped, FILTER_EMPTY_ANNOTATIONS).
    Instances of ``exclude_classes`` are dropped and the model has no label for them."""

    def __init__(self, image_root: Path, annotation: Path, task: str, exclude_classes=()):
        document = read_json(annotation)
        self.image_root, self.task = Path(image_root), task
        categories = kept_categories(document["categories"], task, exclude_classes)
        self.category_ids = [category["id"] for category in categories]
        label_of = {category_id: index + 1 for index, category_id in enumerate(self.category_ids)}
        by_image: dict[int, list[dict]] = {}
        for annotation_ in document["annotations"]:
            if annotation_["iscrowd"] or annotation_["category_id"] not in label_of:
                continue
            if annotation_["bbox"][2] < 1 or annotation_["bbox"][3] < 1:
                continue
            if task == "keypoints" and "keypoints" not in annotation_:
                raise WorkflowInputError(f"{annotation}: person annotation {annotation_['id']} has no keypoints; a keypoint model needs COCO keypoints")
            by_image.setdefault(annotation_["image_id"], []).append({**annotation_, "label": label_of[annotation_["category_id"]]})
        self.images = [image for image in sorted(document["images"], key=lambda image: image["id"]) if image["id"] in by_image]
        self.instances = by_image
        if not self.images:
            raise DatasetError(f"{annotation}: no training image has an instance to train on (empty training set)")

    def __len__(self) -> int:
        return len(self.images)

    def load(self, index: int, flip: bool) -> tuple[torch.Tensor, dict]:
        image = self.images[index]
        path = self.image_root / image["file_name"]
        require_file(path, f"training annotation of image {image['file_name']!r}")
        pixels, _, _ = decode_image(path)
        height, width = pixels.shape[:2]
        if (width, height) != (image["width"], image["height"]):
            raise DatasetError(f"training image {path} is {width}x{height}, its annotation says {image['width']}x{image['height']}")
        instances = self.instances[image["id"]]
        boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (i["bbox"] for i in instances)], dtype=np.float32)
        target = {"labels": torch.tensor([i["label"] for i in instances], dtype=torch.int64)}
        if self.task == "instance_segmentation":
            masks = np.stack([decode(i["segmentation"]) for i in instances])
        if self.task == "keypoints":
            keypoints = np.array([i["keypoints"] for i in instances], dtype=np.float32).reshape(-1, 17, 3)
            keypoints[..., 2] = keypoints[..., 2] > 0
        if flip:
            pixels = pixels[:, ::-1]
            boxes = np.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], axis=1)
            if self.task == "instance_segmentation":
                masks = masks[:, :, ::-1]
            if self.task == "keypoints":
                keypoints[..., 0] = np.where(keypoints[..., 2] > 0, width - keypoints[..., 0], 0)
                for left, right in FLIP_PAIRS:
                    keypoints[:, [left, right]] = keypoints[:, [right, left]]
        target["boxes"] = torch.from_numpy(np.ascontiguousarray(boxes))
        if self.task == "instance_segmentation":
            target["masks"] = torch.from_numpy(np.ascontiguousarray(masks))
        if self.task == "keypoints":
            target["keypoints"] = torch.from_numpy(np.ascontiguousarray(keypoints))
        tensor = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1).float().div_(255)
        return tensor, target


def batch_indices(iteration: int, batch_size: int, count: int, seed: int) -> list[int]:
    indices = []
    for k in range(iteration * batch_size, (iteration + 1) * batch_size):
        epoch = k // count
        permutation = np.random.default_rng([seed, 1, epoch]).permutation(count)
        indices.append(int(permutation[k % count]))
    return indices


def flip_decision(iteration: int, position: int, batch_size: int, seed: int, probability: float) -> bool:
    k = iteration * batch_size + position
    return bool(np.random.default_rng([seed, 2, k]).random() < probability)
