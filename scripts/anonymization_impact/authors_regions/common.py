"""What the conversions of the authors' files share: their instance lists (:class:`SourceImage`),
persons.json helpers, the problem collector behind every alignment check, the face-box check, and
facts about the published files (the authors' thresholds, the source texts)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from ..errors import DatasetError
from ..regions import box_problem

# The thresholds the authors' detector, matching and keypoint readers used: facts about the published
# files, not settings of this workflow (config.yaml's face_detection.* and regions.keypoint_score_threshold may differ).
AUTHORS_FACE_CONFIDENCE = {"coco": 0.3, "cityscapes": 0.2, "bdd100k": 0.3}  # DSFD confidence (annotate_faces.py / detect_faces.py)
AUTHORS_MIN_MATCH_IOU = 0.01  # dp2 get_matches
AUTHORS_KEYPOINT_SCORE_THRESHOLD = 0.3  # visible: score >= it (Cityscapes reader) / > it (BDD100K reader)
DEFAULT_MAX_MISFIT = 0.02
PLACEHOLDER_SCORE = 1.0
SHOWN_PROBLEMS = 5

SOURCES = {
    ("coco", "faces"): "deep_privacy2 authors' boxes_{split}2017.json (DSFD, matched boxes)",
    ("cityscapes", "faces"): "deep_privacy2 authors' face_boxes_{split}.json (DSFD, matched boxes)",
    ("bdd100k", "faces"): "deep_privacy2 authors' face_boxes_{split}.json (DSFD, matched boxes, no scores)",
    ("cityscapes", "keypoints"): "deep_privacy2 authors' annotated_keypoints_{split}.json (ViTPose)",
    ("bdd100k", "keypoints"): "deep_privacy2 authors' annotated_keypoints_{split}.json (ViTPose)",
}


@dataclass
class SourceImage:
    """One image as the authors' scripts saw it: our file name and their instance list, in their
    order, each position holding our person id or None (their instance is no target of ours,
    e.g. a Cityscapes person group)."""

    file_name: str
    entries: list[int | None] = field(default_factory=list)


def persons_split(persons: dict) -> str:
    return persons.get("info", {}).get("split", "train")


def require_dataset(persons: dict, expected: str) -> None:
    dataset = persons.get("info", {}).get("dataset", expected)
    if dataset != expected:
        raise DatasetError(f"persons annotation is of dataset {dataset!r}, not {expected!r}; pass the {expected} persons.json")


def persons_by_image(persons: dict) -> dict[int, list[dict]]:
    by_image: dict[int, list[dict]] = defaultdict(list)
    for annotation in persons["annotations"]:
        by_image[annotation["image_id"]].append(annotation)
    return by_image


class Problems:
    """Structural errors (always fatal) and geometric misfits (fatal above a fraction), per image."""

    def __init__(self, what: str, persons: dict):
        self.what = f"{what} ({persons.get('info', {}).get('dataset', '?')} {persons_split(persons)})"
        self.errors: dict[str, list[str]] = defaultdict(list)
        self.misfits: dict[str, list[str]] = defaultdict(list)
        self.checked = 0

    def error(self, image: str, message: str) -> None:
        self.errors[image].append(message)

    def misfit(self, image: str, message: str) -> None:
        self.misfits[image].append(message)

    def known_images(self, authors: dict, index: dict[str, SourceImage]) -> Iterator[tuple[SourceImage, object]]:
        """(our image, its entry) for every key of an authors' file; a key that is no image of persons.json is an error."""
        for key, value in authors.items():
            source = index.get(str(key))
            if source is None:
                self.error(str(key), "no such image in persons.json; the file belongs to another dataset or split")
                continue
            yield source, value

    @staticmethod
    def _listing(problems: dict[str, list[str]]) -> str:
        shown = [f"image '{image}': {messages[0]}" + (f" (+{len(messages) - 1} more)" if len(messages) > 1 else "")
                 for image, messages in list(problems.items())[:SHOWN_PROBLEMS]]
        rest = len(problems) - len(shown)
        return "; ".join(shown) + (f"; and {rest} more images" if rest > 0 else "")

    def raise_if_needed(self, images: int, max_misfit_fraction: float, hint: str) -> dict:
        if self.errors:
            raise DatasetError(f"{self.what}: {len(self.errors)} of {images} images disagree with persons.json: "
                               f"{self._listing(self.errors)}. {hint}")
        misfits = sum(len(messages) for messages in self.misfits.values())
        if self.checked and misfits / self.checked > max_misfit_fraction:
            raise DatasetError(
                f"{self.what}: {misfits} of {self.checked} checked instances ({100 * misfits / self.checked:.1f} %, "
                f"allowed {100 * max_misfit_fraction:.1f} %) in {len(self.misfits)} of {images} images do not fit the "
                f"person they were mapped to: {self._listing(self.misfits)}. {hint}")
        return {"instances_checked": self.checked, "misfits": misfits, "images_with_misfits": sorted(self.misfits),
                "max_misfit_fraction": max_misfit_fraction}


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)


def check_box(values, width: int, height: int, length: int) -> str | None:
    """Why `values` is no valid face box row of `length` numbers in a width x height image (None: valid)."""
    if not isinstance(values, (list, tuple)) or len(values) != length or not all(_number(v) for v in values):
        return f"expected a list of {length} finite numbers, got {str(values)[:80]}"
    return box_problem(values[:4], width, height)  # a box crossing the border is fine: it is clipped
