"""The paper authors' Cityscapes files (face boxes, keypoints) and the instance order they follow.

Instance order: detectron2's ``load_cityscapes_instances`` (default ``from_json=True``) reads
``gtFine_polygons.json``, walks the objects in *reverse* file order, skips objects that have a
``deleted`` key and labels with id < 0, and drops an instance whose (0.5-px buffered) polygon is
fully covered by the polygons drawn after it. The authors kept category 0 (``person``, *not*
rider) and, for the keypoints, also the crowd ``persongroup`` entries ("In keypoint annotation
I did not filter out crowd label"); their reader skips the crowd positions. Our persons come
from ``instanceIds.png`` in ascending instance id, i.e. *forward* file order. Without the
polygon files only images without person groups can be aligned (reversed order), so pass them
(:func:`cityscapes_source_index`). Full cover is decided here by rasterising the polygons in
order with PIL, as cityscapesscripts draws instanceIds.png, not with detectron2's shapely
geometry: a person whose uncovered remainder is a sliver thinner than a pixel is in their list
and not in ours (it shows up as a count mismatch).
"""

from __future__ import annotations

from collections import Counter
from pathlib import PurePosixPath

import numpy as np
from PIL import Image, ImageDraw

from ..errors import DatasetError
from .common import AUTHORS_KEYPOINT_SCORE_THRESHOLD, AUTHORS_MIN_MATCH_IOU, DEFAULT_MAX_MISFIT, SourceImage, persons_by_image, require_dataset
from .face_detections import convert_face_detections
from .keypoints import convert_keypoints


def cityscapes_polygons_file(file_name: str) -> str:
    """The ``gtFine_polygons.json`` (relative to the dataset root) of a persons.json image path
    ``leftImg8bit/<split>/<city>/<stem>_leftImg8bit.png``."""
    path = PurePosixPath(file_name)
    if len(path.parts) != 4 or path.parts[0] != "leftImg8bit" or not path.name.endswith("_leftImg8bit.png"):
        raise DatasetError(f"{file_name!r} is not a Cityscapes image path leftImg8bit/<split>/<city>/<stem>_leftImg8bit.png")
    stem = path.name[: -len("_leftImg8bit.png")]
    return str(PurePosixPath("gtFine", path.parts[1], path.parts[2], f"{stem}_gtFine_polygons.json"))


def _cityscapes_entries(polygons: dict, file_name: str, annotations: list[dict]) -> list[int | None]:
    """detectron2's person instances of one image (reverse file order, covered ones dropped, groups
    kept as None), mapped to our person ids through the instanceIds value label_id * 1000 + k."""
    from cityscapesscripts.helpers.labels import name2label

    try:
        width, height, objects = int(polygons["imgWidth"]), int(polygons["imgHeight"]), polygons["objects"]
    except (KeyError, TypeError, ValueError):
        raise DatasetError(f"polygons of image '{file_name}' have no imgWidth / imgHeight / objects") from None
    canvas = Image.new("I", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    counters: Counter = Counter()
    people = []  # (position + 1, is group, instanceIds value)
    for position, obj in enumerate(objects):
        name = str(obj.get("label"))
        group = name not in name2label and name.endswith("group")
        label = name2label.get(name[: -len("group")] if group else name)
        if label is None:
            raise DatasetError(f"polygons of image '{file_name}': unknown label {name!r}")
        value = None
        if not obj.get("deleted"):  # cityscapesscripts numbers the instances it draws
            if label.hasInstances and not group:
                value = label.id * 1000 + counters[label.name]
                counters[label.name] += 1
        if "deleted" in obj or label.id < 0:  # detectron2 skips both
            continue
        try:
            draw.polygon([(float(x), float(y)) for x, y in obj["polygon"]], fill=position + 1)
        except (KeyError, TypeError, ValueError):
            raise DatasetError(f"polygons of image '{file_name}': object {position} has no valid polygon") from None
        if label.name == "person":
            people.append((position + 1, group, value))
    visible = set(np.unique(np.asarray(canvas)).tolist())
    person_of = {str(a["source_id"]): a["id"] for a in annotations}
    entries, seen = [], set()
    for marker, group, value in reversed(people):
        if marker not in visible:
            continue
        if group:
            entries.append(None)
            continue
        if str(value) not in person_of:
            raise DatasetError(f"polygons of image '{file_name}' have a visible person {value} that persons.json "
                               "does not have; the polygon file and instanceIds.png are from different releases")
        entries.append(person_of[str(value)])
        seen.add(str(value))
    missing = sorted(set(person_of) - seen)
    if missing:
        raise DatasetError(f"polygons of image '{file_name}' leave persons {missing} of persons.json fully covered; "
                           "the polygon file and instanceIds.png are from different releases")
    return entries


def cityscapes_source_index(persons: dict, polygons: dict[str, dict] | None = None) -> dict[str, SourceImage]:
    """{"<image basename>": SourceImage} in detectron2 ``load_cityscapes_instances`` order.

    polygons: {persons.json file name: parsed ``gtFine_polygons.json``} (see
    :func:`cityscapes_polygons_file`) for every image that has persons. None: assume no image
    has a person group, so the authors' list is our persons in descending instance id.
    """
    require_dataset(persons, "cityscapes")
    by_image = persons_by_image(persons)
    index = {}
    for image in persons["images"]:
        annotations = by_image.get(image["id"], [])
        if polygons is None:
            entries = [a["id"] for a in sorted(annotations, key=lambda a: int(a["source_id"]), reverse=True)]
        elif image["file_name"] in polygons:
            entries = _cityscapes_entries(polygons[image["file_name"]], image["file_name"], annotations)
        elif annotations:
            raise DatasetError(f"no polygons given for Cityscapes image '{image['file_name']}' "
                               f"({cityscapes_polygons_file(image['file_name'])})")
        else:
            entries = []
        key = PurePosixPath(image["file_name"]).name
        if key in index:
            raise DatasetError(f"Cityscapes images '{index[key].file_name}' and '{image['file_name']}' share the basename "
                               "the authors' files are keyed by")
        index[key] = SourceImage(image["file_name"], entries)
    return index


def cityscapes_keypoints(import_authors_keypoints: dict, persons: dict, polygons: dict[str, dict] | None = None, *,
                         score_threshold: float = AUTHORS_KEYPOINT_SCORE_THRESHOLD, max_misfit_fraction: float = DEFAULT_MAX_MISFIT) -> dict:
    """``person-keypoints/v1`` from Cityscapes ``annotated_keypoints_{split}.json`` (visible: score >= score_threshold,
    as the authors' reader with its 0.3).

    polygons: see :func:`cityscapes_source_index`; needed wherever an image has a person group.
    """
    index = cityscapes_source_index(persons, polygons)

    def entries_of(value):
        return value if isinstance(value, list) else None

    hint = ("The file must list, per image, one entry per detectron2 person instance (reverse polygon-file order, "
            "crowd groups included); check that it is the file of this split and that the gtFine polygons are given.")
    return convert_keypoints(import_authors_keypoints, persons, index, dataset="cityscapes", entries_of=entries_of,
                             visible_if=">=", score_threshold=score_threshold, require_all=True, max_misfit_fraction=max_misfit_fraction, hint=hint)


def cityscapes_face_detections(authors_boxes: dict, persons: dict, *, min_match_iou: float = AUTHORS_MIN_MATCH_IOU,
                               max_misfit_fraction: float = DEFAULT_MAX_MISFIT) -> dict:
    """``face-detections/v1`` from Cityscapes ``face_boxes_train.json`` (keys: image basenames); every box must
    match a person again with ``min_match_iou`` (the workflow's match_faces: config ``face_detection.min_match_iou``)."""
    index = cityscapes_source_index(persons)
    return convert_face_detections(authors_boxes, persons, index, dataset="cityscapes", min_match_iou=min_match_iou,
                                   max_misfit_fraction=max_misfit_fraction,
                                   hint="Check that the file is the Cityscapes face_boxes file of this split.")
