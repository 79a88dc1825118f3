"""A simulated top-down pose estimator (ViTPose-H stand-in) for the Cityscapes and BDD100K twins.

The twins know every person's true skeleton (truth manifest). This turns it into what a
detector run on the persons of persons.json would report: jittered coordinates and a score per
keypoint, high for visible points, lower for occluded ones, low outside the image, and for a
share of small persons nothing usable (ViTPose found keypoints for 95.8 % of Cityscapes and
85.5 % of BDD100K persons, paper Sec. 4.3). Same inputs and seed, same document.
"""

from __future__ import annotations

import numpy as np

from ..errors import DatasetError
from ..keypoints import NUM_KEYPOINTS, keypoints_document, visible_flags

SOURCE = "simulated top-down pose estimator on the twin's true skeletons (ViTPose-H stand-in)"
SMALL_PERSON_HEIGHT = 24   # pixels: below this a person's keypoints are missed half of the time
KEYPOINT_STREAM = 2        # apart from the face detector's draws (stream 1)


def _truth_by_box(truth: dict) -> dict[tuple[str, tuple[int, ...]], list[int]]:
    found = {}
    instances = [instance for image in truth["splits"]["train"]["images"] for instance in image["instances"]]
    if instances and not any("keypoints" in instance for instance in instances):
        raise DatasetError("the twin's truth manifest has no skeletons (written by an older version of this "
                           "workflow): delete resources/twins and run again")
    for image in truth["splits"]["train"]["images"]:
        for instance in image["instances"]:
            if instance.get("keypoints") is not None:
                found[(image["file"], tuple(int(v) for v in instance["bbox"]))] = instance["keypoints"]
    return found


def simulate_keypoints(dataset: str, truth: dict, persons: dict, *, score_threshold: float, seed: int) -> dict:
    """The person-keypoints/v1 document of the twin's training persons."""
    skeletons = _truth_by_box(truth)
    files = {image["id"]: image["file_name"] for image in persons["images"]}
    images: dict[str, list[dict]] = {}
    for annotation in sorted(persons["annotations"], key=lambda a: a["id"]):
        file_name = files[annotation["image_id"]]
        box = tuple(int(round(v)) for v in annotation["bbox"])
        skeleton = skeletons.get((file_name, box))
        if skeleton is None:
            continue  # a region the twin drew without a skeleton: the estimator finds nothing
        rng = np.random.default_rng(np.random.SeedSequence([seed, KEYPOINT_STREAM, annotation["id"]]))
        images.setdefault(file_name, []).append(_estimate(annotation["id"], skeleton, box, rng, score_threshold))
    return keypoints_document(dataset, SOURCE, score_threshold, images)


def _estimate(person_id: int, skeleton: list[int], box: tuple[int, ...], rng: np.random.Generator, threshold: float) -> dict:
    points = np.asarray(skeleton, dtype=np.float64).reshape(NUM_KEYPOINTS, 3)
    height = max(box[3], 1)
    jitter = rng.normal(0, 0.03 * height + 0.5, size=(NUM_KEYPOINTS, 2))
    visible_score = rng.uniform(0.45, 0.95, NUM_KEYPOINTS)
    occluded_score = rng.uniform(0.1, 0.6, NUM_KEYPOINTS)
    absent_score = rng.uniform(0.0, 0.2, NUM_KEYPOINTS)
    scores = np.where(points[:, 2] == 2, visible_score, np.where(points[:, 2] == 1, occluded_score, absent_score))
    if height < SMALL_PERSON_HEIGHT and rng.uniform() < 0.5:
        scores = absent_score  # too small: nothing above the threshold
    x0, y0, w, h = box
    xy = points[:, :2] + jitter
    xy[:, 0] = np.clip(xy[:, 0], x0, x0 + w)  # top-down estimators answer inside the given box
    xy[:, 1] = np.clip(xy[:, 1], y0, y0 + h)
    flags = visible_flags([float(s) for s in scores], threshold)
    keypoints = [value for (x, y), v in zip(xy.round(2).tolist(), flags) for value in (x, y, v)]
    return {"person_id": person_id, "keypoints": keypoints, "scores": [round(float(s), 3) for s in scores]}
