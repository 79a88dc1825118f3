"""Import the paper authors' published region files (face boxes, ViTPose keypoints).

deep_privacy2 (``docs/anonymizing_datasets.md``, ``tools/anonymization/{coco,cityscapes,bdd100k}``)
published the face boxes and person keypoints used for the paper. This module turns them, already
parsed from JSON, into this workflow's documents, keyed by our ``persons.json`` annotation ids:

====================================  =======================================================================
authors' file                         what it holds (as written by annotate_faces.py / read by anonymize_*.py)
====================================  =======================================================================
COCO ``boxes_{train,val}2017.json``   ``{"<COCO image id>": {"boxes": [[x0, y0, x1, y1]], "keypoint_indices":
                                      [j]}}``: DSFD boxes (confidence >= 0.3) that survived the greedy
                                      face-to-mask matching, in match order; ``j`` is the matched person's
                                      position in the image's candidate list. Scores not kept.
                                      -> ``face-regions/v1`` (:func:`coco_face_regions`).
Cityscapes ``face_boxes_train.json``  ``{"<image basename>": [[x0, y0, x1, y1, score]]}``: the matched DSFD
                                      boxes (confidence >= 0.2), whole detector rows, match order; *which*
                                      person a box matched was not written.
                                      -> ``face-detections/v1`` (:func:`cityscapes_face_detections`).
BDD100K ``face_boxes_train.json``     ``{"<COCO-format image id>": [[x0, y0, x1, y1]]}``: the matched DSFD boxes
                                      (confidence >= 0.3), coordinates only: no score, no person.
                                      -> ``face-detections/v1`` (:func:`bdd100k_face_detections`).
Cityscapes ``annotated_keypoints_     ``{"<image basename>": [[[x, y, score] x 17] per instance]}``: ViTPose,
{train,val}.json``                    one entry per detectron2 *person* instance, crowd groups included.
                                      -> ``person-keypoints/v1`` (:func:`cityscapes_keypoints`).
BDD100K ``annotated_keypoints_        ``{"<COCO-format image id>": {"keypoints": [[[x, y, score] x 17] per
train.json``                          instance], ...}}``: one entry per pedestrian that is not crowd / ignore.
                                      -> ``person-keypoints/v1`` (:func:`bdd100k_keypoints`).
====================================  =======================================================================

Coordinates are pixels of the (EXIF-oriented) image, boxes x0, y0, x1, y1 (DSFD with
``clip_boxes=True``: inside [0, width] x [0, height]). Keypoints are 17 COCO-order (x, y, score)
triples; the authors' readers turned the score into visibility with 0.3: ``score >= 0.3``
(Cityscapes, ``visualize_body.iterate_dataset``) and ``score > 0.3`` (BDD100K, ``anonymize_body``).

Why the face files become two different documents: a face-regions document needs the person
of every box. COCO's file carries it (``keypoint_indices``). The Cityscapes and BDD100K files only
hold the boxes that matched *some* person; re-running the same greedy matching (our
``regions.build_face_regions``) on exactly those boxes reproduces their pairs: every dropped box
had no candidate left (its masks taken by earlier boxes, or none above the IoU threshold), so
removing it changes nothing but the third tie-break key (number of candidate boxes per mask).
So they become ``face-detections/v1``
documents for the workflow's own matching step, and the import checks that every published box
is matched again. BDD100K's scores were not published: they are set to 1.0 (``scores_published:
false``), which only loses the score tie-break between boxes of exactly equal IoU.

Instance-order pitfalls (the crux: the files address instances by position, in *their* iteration)
------------------------------------------------------------------------------------------------
* COCO: the candidate list of an image is ``COCO(person_keypoints_{split}2017.json).getAnnIds(
  image)`` -- the annotation order of the *keypoints* file -- minus the annotations without any
  labelled keypoint (``(v == 0).all()``; crowd annotations have none). Our persons.json follows
  the *instances* file's order; pass the keypoints file (:func:`coco_source_index`) rather than
  assume both files list an image's persons in the same order.
* Cityscapes: detectron2's ``load_cityscapes_instances`` (default ``from_json=True``) reads
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
* BDD100K: the keys are image ids of ``jsons/ins_seg_train_cocofmt.json``, made by the BDD100K
  toolkit (``bdd100k.label.to_coco -m ins_seg``). Their code reads ``annotation["ignore"]``,
  which only the conversion from the label JSON writes (``--only-mask``, from the bitmasks,
  does not), so the ids follow the *frame order of the label JSON*, which we cannot see from the
  bitmasks. Per image the order is the labels' order, which is the bitmask instance id order
  (``to_mask`` numbers the instances in label order), filtered to ``category_id == 1``
  (pedestrian; riders excluded) and not ``iscrowd`` / ``ignore``. Pass that COCO-format file
  (:func:`bdd100k_source_index`): images are then found by file name and its annotations matched
  to our persons by mask IoU. Without it the ids are assumed to be our ids (1-based position of
  the image in sorted file-name order, as ``--only-mask`` numbers them) -- the alignment checks
  tell when that is wrong.
* Missing keys: deep_privacy2 copied BDD100K / COCO images without an entry unchanged; such
  images are listed in the output, not silently filled.

Alignment checks (fail with :class:`DatasetError` naming the image, plus how many images disagree)
----------------------------------------------------------------------------------------------
Structural, always fatal: unknown image keys, malformed entries (shapes, non-finite numbers,
empty or out-of-image boxes, scores outside [0, 1] or below the authors' detector threshold),
per-image instance counts that differ from the reconstructed order, indices out of range or
repeated, a COCO face matched to an annotation that is no target person. Geometric, fatal when
more than ``max_misfit_fraction`` of the checked instances fail: a keypoint entry with >= 3
visible keypoints must have at least half of them inside its person's mask box grown by
``0.25 * max(w, h) + 2`` px; a COCO face box must have dp2's box/mask IoU > 0.01 with its person
and our re-matching of the same boxes must pick the same person; every Cityscapes / BDD100K box
must be matched again by ``regions.build_face_regions``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils

from .errors import DatasetError
from .io import read_json, require_file
from .masks import as_pycocotools, bbox as mask_bbox, decode
from .regions import DETECTIONS_FORMAT, REGIONS_FORMAT, box_mask_iou, build_face_regions, match_faces

KEYPOINTS_FORMAT = "person-keypoints/v1"
NUM_KEYPOINTS = 17
SCORE_THRESHOLD = 0.3
# the authors' DSFD confidence threshold per dataset (annotate_faces.py / detect_faces.py)
FACE_CONFIDENCE = {"coco": 0.3, "cityscapes": 0.2, "bdd100k": 0.3}
MIN_MATCH_IOU = 0.01  # dp2 get_matches
BOX_TOLERANCE = 1.0  # px a box may leave the image (float rounding of the clipped detector output)
DEFAULT_MAX_MISFIT = 0.02
KEYPOINT_BOX_MARGIN = 0.25  # x max(w, h), plus KEYPOINT_BOX_PAD px
KEYPOINT_BOX_PAD = 2.0
MIN_VISIBLE_TO_CHECK = 3
MIN_INSIDE_FRACTION = 0.5
MIN_MASK_IOU = 0.5  # BDD100K: a COCO-format annotation is our person if their masks overlap this much
BDD100K_PEDESTRIAN = 1
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


# ---------------------------------------------------------------------------------------------
# persons.json helpers


def _split(persons: dict) -> str:
    return persons.get("info", {}).get("split", "train")


def _dataset(persons: dict, expected: str) -> None:
    dataset = persons.get("info", {}).get("dataset", expected)
    if dataset != expected:
        raise DatasetError(f"persons annotation is of dataset {dataset!r}, not {expected!r}; pass the {expected} persons.json")


def _persons_by_image(persons: dict) -> dict[int, list[dict]]:
    by_image: dict[int, list[dict]] = defaultdict(list)
    for annotation in persons["annotations"]:
        by_image[annotation["image_id"]].append(annotation)
    return by_image


def _person_box(annotation: dict) -> list[float]:
    return annotation["bbox"] if "bbox" in annotation else mask_bbox(annotation["segmentation"])


def _rle(segmentation, height: int, width: int) -> dict:
    """pycocotools RLE of a COCO segmentation (compressed / uncompressed RLE or polygons)."""
    if isinstance(segmentation, list):
        return mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    return as_pycocotools(segmentation)


# ---------------------------------------------------------------------------------------------
# problem collection


class _Problems:
    """Structural errors (always fatal) and geometric misfits (fatal above a fraction), per image."""

    def __init__(self, what: str, persons: dict):
        self.what = f"{what} ({persons.get('info', {}).get('dataset', '?')} {_split(persons)})"
        self.errors: dict[str, list[str]] = defaultdict(list)
        self.misfits: dict[str, list[str]] = defaultdict(list)
        self.checked = 0

    def error(self, image: str, message: str) -> None:
        self.errors[image].append(message)

    def misfit(self, image: str, message: str) -> None:
        self.misfits[image].append(message)

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


def _check_box(values, width: int, height: int, length: int) -> str | None:
    """Why `values` is no valid face box row of `length` numbers in a width x height image (None: valid)."""
    if not isinstance(values, (list, tuple)) or len(values) != length or not all(_number(v) for v in values):
        return f"expected a list of {length} finite numbers, got {str(values)[:80]}"
    x0, y0, x1, y1 = (float(v) for v in values[:4])
    if x1 <= x0 or y1 <= y0:
        return f"box {[x0, y0, x1, y1]} is empty (needs x1 > x0 and y1 > y0)"
    if min(x0, y0) < -BOX_TOLERANCE or x1 > width + BOX_TOLERANCE or y1 > height + BOX_TOLERANCE:
        return f"box {[x0, y0, x1, y1]} is not inside the {width}x{height} image"
    return None


# ---------------------------------------------------------------------------------------------
# the authors' instance order, per dataset


def coco_source_index(persons: dict, person_keypoints: dict | None = None) -> dict[str, SourceImage]:
    """{"<COCO image id>": SourceImage} in the order of deep_privacy2's COCO scripts.

    person_keypoints: the parsed ``annotations/person_keypoints_{split}2017.json`` (the file the
    authors iterated). None: assume it lists each image's persons in the order of persons.json.
    """
    _dataset(persons, "coco")
    person_of = {str(a["source_id"]): a["id"] for a in persons["annotations"]}
    by_image = _persons_by_image(persons)
    index = {str(image["id"]): SourceImage(image["file_name"]) for image in persons["images"]}
    if person_keypoints is None:
        for image in persons["images"]:
            index[str(image["id"])].entries = [a["id"] for a in by_image.get(image["id"], [])]
        return index
    for annotation in person_keypoints.get("annotations", []):
        keypoints = annotation.get("keypoints") or []
        if not any(keypoints[2::3]):  # the authors' `(kp[:, 2] == 0).all()` filter
            continue
        source = index.get(str(annotation.get("image_id")))
        if source is not None:
            source.entries.append(person_of.get(str(annotation.get("id"))))
    return index


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
    _dataset(persons, "cityscapes")
    by_image = _persons_by_image(persons)
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


def bdd100k_source_index(persons: dict, coco_annotations: dict | None = None) -> dict[str, SourceImage]:
    """{"<COCO-format image id>": SourceImage} in the order of deep_privacy2's BDD100K scripts.

    coco_annotations: the parsed ``jsons/ins_seg_{split}_cocofmt.json`` the authors read (BDD100K
    toolkit ``to_coco -m ins_seg``). Its images are found by file name, its pedestrians (not
    crowd / ignore, file order) mapped to our persons by mask IoU >= 0.5. None: assume their
    image ids are ours and their per-image order is persons.json's (bitmask instance id).
    """
    _dataset(persons, "bdd100k")
    split = _split(persons)
    by_image = _persons_by_image(persons)
    if coco_annotations is None:
        return {str(image["id"]): SourceImage(image["file_name"], [a["id"] for a in by_image.get(image["id"], [])])
                for image in persons["images"]}
    categories = {c.get("id"): c.get("name") for c in coco_annotations.get("categories", [])}
    if categories and categories.get(BDD100K_PEDESTRIAN) != "pedestrian":
        raise DatasetError(f"the BDD100K COCO-format file has category {BDD100K_PEDESTRIAN} = "
                           f"{categories.get(BDD100K_PEDESTRIAN)!r}, not 'pedestrian'; it is not a BDD100K ins_seg conversion")
    ours = {image["file_name"]: image for image in persons["images"]}
    index: dict[str, SourceImage] = {}
    unknown = []
    for image in coco_annotations.get("images", []):
        file_name = f"images/10k/{split}/{image.get('file_name')}"
        if file_name not in ours:
            unknown.append(str(image.get("file_name")))
            continue
        index[str(image.get("id"))] = SourceImage(file_name)
    if unknown:
        raise DatasetError(f"the BDD100K COCO-format file lists {len(unknown)} images that persons.json "
                           f"({split}) does not have, e.g. {unknown[:3]}; it belongs to another split or release")
    kept: dict[str, list[dict]] = defaultdict(list)
    for annotation in coco_annotations.get("annotations", []):
        if annotation.get("iscrowd") or annotation.get("ignore") or annotation.get("category_id") != BDD100K_PEDESTRIAN:
            continue
        kept[str(annotation.get("image_id"))].append(annotation)
    for key, source in index.items():
        image = ours[source.file_name]
        candidates = by_image.get(image["id"], [])
        theirs = kept.get(key, [])
        if not theirs:
            continue
        height, width = int(image["height"]), int(image["width"])
        if candidates:
            iou = mask_utils.iou([_rle(a["segmentation"], height, width) for a in theirs],
                                 [as_pycocotools(a["segmentation"]) for a in candidates], [0] * len(candidates))
            iou = np.asarray(iou, dtype=np.float64).reshape(len(theirs), len(candidates))
        else:
            iou = np.zeros((len(theirs), 0))
        taken = set()
        for row in iou:
            best = int(np.argmax(row)) if row.size else -1
            if best >= 0 and row[best] >= MIN_MASK_IOU and best not in taken:
                taken.add(best)
                source.entries.append(candidates[best]["id"])
            else:
                source.entries.append(None)
    return index


# ---------------------------------------------------------------------------------------------
# keypoints


def _keypoint_array(entry) -> np.ndarray | None:
    """(17, 3) float array of one authors' keypoint entry, or None when malformed."""
    try:
        array = np.asarray(entry, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if array.shape != (NUM_KEYPOINTS, 3) or not np.isfinite(array).all():
        return None
    return array


def _inside_fraction(points: np.ndarray, visible: np.ndarray, box: list[float]) -> float | None:
    if visible.sum() < MIN_VISIBLE_TO_CHECK:
        return None
    x, y, w, h = box
    margin = KEYPOINT_BOX_MARGIN * max(w, h) + KEYPOINT_BOX_PAD
    px, py = points[visible, 0], points[visible, 1]
    inside = (px >= x - margin) & (px <= x + w + margin) & (py >= y - margin) & (py <= y + h + margin)
    return float(inside.mean())


def _convert_keypoints(authors: dict, persons: dict, index: dict[str, SourceImage], *, dataset: str,
                       entries_of, visible_if: str, require_all: bool, max_misfit_fraction: float, hint: str) -> dict:
    split = _split(persons)
    problems = _Problems("authors' keypoints", persons)
    if not isinstance(authors, dict):
        raise DatasetError(f"authors' keypoints ({dataset}): expected a JSON object keyed by image, got {type(authors).__name__}")
    annotations = {a["id"]: a for a in persons["annotations"]}
    by_file = {image["file_name"]: image for image in persons["images"]}
    by_image = _persons_by_image(persons)
    result: dict[str, list[dict]] = {image["file_name"]: [] for image in persons["images"]}
    counts = Counter()
    for key, value in authors.items():
        source = index.get(str(key))
        if source is None:
            problems.error(str(key), "no such image in persons.json; the file belongs to another dataset or split")
            continue
        where = source.file_name
        entries = entries_of(value)
        if entries is None:
            problems.error(where, f"entry {str(value)[:80]} is not in the authors' format")
            continue
        if len(entries) != len(source.entries):
            groups = sum(1 for e in source.entries if e is None)
            problems.error(where, f"{len(entries)} keypoint entries, but the authors' instance list of this image has "
                                  f"{len(source.entries)} ({len(source.entries) - groups} of our persons, {groups} others)")
            continue
        arrays = [_keypoint_array(entry) for entry in entries]
        bad = [i for i, array in enumerate(arrays) if array is None]
        if bad:
            problems.error(where, f"keypoint entry {bad[0]} is not 17 x [x, y, score] finite numbers")
            continue
        image_persons = by_image.get(by_file[where]["id"], [])
        for position, (array, person_id) in enumerate(zip(arrays, source.entries)):
            if person_id is None:
                counts["source_entries_skipped"] += 1
                continue
            scores = array[:, 2]
            visible = scores >= SCORE_THRESHOLD if visible_if == ">=" else scores > SCORE_THRESHOLD
            fit = _inside_fraction(array, visible, _person_box(annotations[person_id]))
            if fit is None:
                counts["too_few_visible_to_check"] += 1
            else:
                problems.checked += 1
                if fit < MIN_INSIDE_FRACTION:
                    others = [(_inside_fraction(array, visible, _person_box(a)), a["id"]) for a in image_persons if a["id"] != person_id]
                    better = [pid for other_fit, pid in others if other_fit is not None and other_fit >= MIN_INSIDE_FRACTION]
                    problems.misfit(where, f"entry {position} -> person {person_id}: only {fit:.0%} of its "
                                           f"{int(visible.sum())} visible keypoints lie in the person's box"
                                           + (f"; they fit person {better[0]} (instance order differs?)" if better else ""))
            if not visible.any():
                counts["no_visible_keypoint"] += 1
            keypoints = []
            for (x, y, _), v in zip(array, visible):
                keypoints += [float(x), float(y), int(v)]
            result[where].append({"person_id": person_id, "keypoints": keypoints, "scores": [float(s) for s in scores]})
    images_not_in_source = []
    for key, source in index.items():
        if key not in authors and any(e is not None for e in source.entries):
            images_not_in_source.append(source.file_name)
    if require_all:
        for file_name in images_not_in_source:
            problems.error(file_name, "has persons but no entry in the authors' file (their reader needs every image)")
    checks = problems.raise_if_needed(len(persons["images"]), max_misfit_fraction, hint)
    with_keypoints = sum(len(entries) for entries in result.values())
    return {
        "format": KEYPOINTS_FORMAT,
        "dataset": dataset,
        "split": split,
        "source": SOURCES[(dataset, "keypoints")].format(split=split),
        "score_threshold": SCORE_THRESHOLD,
        "visible_if": f"score {visible_if} score_threshold",
        "images": result,
        "images_not_in_source": sorted(images_not_in_source),
        "counts": {"persons": len(annotations), "with_keypoints": with_keypoints,
                   "without_keypoints": len(annotations) - with_keypoints,
                   "source_entries_skipped": counts["source_entries_skipped"],
                   "no_visible_keypoint": counts["no_visible_keypoint"],
                   "too_few_visible_to_check": counts["too_few_visible_to_check"]},
        "checks": checks,
    }


def cityscapes_keypoints(authors_keypoints: dict, persons: dict, polygons: dict[str, dict] | None = None, *,
                         max_misfit_fraction: float = DEFAULT_MAX_MISFIT) -> dict:
    """``person-keypoints/v1`` from Cityscapes ``annotated_keypoints_{split}.json`` (visible: score >= 0.3).

    polygons: see :func:`cityscapes_source_index`; needed wherever an image has a person group.
    """
    index = cityscapes_source_index(persons, polygons)

    def entries_of(value):
        return value if isinstance(value, list) else None

    hint = ("The file must list, per image, one entry per detectron2 person instance (reverse polygon-file order, "
            "crowd groups included); check that it is the file of this split and that the gtFine polygons are given.")
    return _convert_keypoints(authors_keypoints, persons, index, dataset="cityscapes", entries_of=entries_of,
                              visible_if=">=", require_all=True, max_misfit_fraction=max_misfit_fraction, hint=hint)


def bdd100k_keypoints(authors_keypoints: dict, persons: dict, coco_annotations: dict | None = None, *,
                      max_misfit_fraction: float = DEFAULT_MAX_MISFIT) -> dict:
    """``person-keypoints/v1`` from BDD100K ``annotated_keypoints_{split}.json`` (visible: score > 0.3).

    coco_annotations: see :func:`bdd100k_source_index`.
    """
    index = bdd100k_source_index(persons, coco_annotations)

    def entries_of(value):
        if not isinstance(value, dict) or not isinstance(value.get("keypoints"), list):
            return None
        return value["keypoints"]

    hint = ("Its keys are image ids of the authors' jsons/ins_seg_train_cocofmt.json; pass that file (BDD100K toolkit "
            "to_coco -m ins_seg from the label JSON) so that ids and instance order are not guessed.")
    return _convert_keypoints(authors_keypoints, persons, index, dataset="bdd100k", entries_of=entries_of,
                              visible_if=">", require_all=False, max_misfit_fraction=max_misfit_fraction, hint=hint)


# ---------------------------------------------------------------------------------------------
# faces


def coco_face_regions(authors_boxes: dict, persons: dict, person_keypoints: dict | None = None, *,
                      max_misfit_fraction: float = DEFAULT_MAX_MISFIT) -> dict:
    """``face-regions/v1`` from COCO ``boxes_{split}2017.json`` (boxes + the matched person's position).

    person_keypoints: see :func:`coco_source_index`. Every box must have dp2's IoU > 0.01 with
    its person's mask, and our greedy re-matching of the image's boxes must give the same person.
    Scores were not published (``score``: null).
    """
    index = coco_source_index(persons, person_keypoints)
    problems = _Problems("authors' COCO face boxes", persons)
    if not isinstance(authors_boxes, dict):
        raise DatasetError(f"authors' COCO face boxes: expected a JSON object keyed by image id, got {type(authors_boxes).__name__}")
    images = {image["file_name"]: image for image in persons["images"]}
    annotations = {a["id"]: a for a in persons["annotations"]}
    regions: dict[str, list[dict]] = {file_name: [] for file_name in images}
    boxes_total = 0
    for key, value in authors_boxes.items():
        source = index.get(str(key))
        if source is None:
            problems.error(str(key), "no such image in persons.json; the file belongs to another dataset or split")
            continue
        where, image = source.file_name, images[source.file_name]
        if not isinstance(value, dict) or not isinstance(value.get("boxes"), list) or not isinstance(value.get("keypoint_indices"), list):
            problems.error(where, "expected {'boxes': [[x0, y0, x1, y1]], 'keypoint_indices': [j]}")
            continue
        boxes, indices = value["boxes"], value["keypoint_indices"]
        if len(boxes) != len(indices):
            problems.error(where, f"{len(boxes)} boxes but {len(indices)} keypoint_indices")
            continue
        reasons = [_check_box(box, int(image["width"]), int(image["height"]), 4) for box in boxes]
        bad = next((i for i, reason in enumerate(reasons) if reason), None)
        if bad is not None:
            problems.error(where, f"box {bad}: {reasons[bad]}")
            continue
        if not all(isinstance(j, int) and not isinstance(j, bool) and 0 <= j < len(source.entries) for j in indices):
            problems.error(where, f"keypoint_indices {indices} out of range: the authors' candidate list of this "
                                  f"image has {len(source.entries)} persons with keypoints")
            continue
        if len(set(indices)) != len(indices):
            problems.error(where, f"keypoint_indices {indices} repeat a person (each person matches one face)")
            continue
        person_ids = [source.entries[j] for j in indices]
        if None in person_ids:
            j = indices[person_ids.index(None)]
            problems.error(where, f"a face is matched to candidate {j}, an annotation that is no target person of persons.json")
            continue
        if not boxes:
            continue
        table = np.array([[float(v) for v in box] + [PLACEHOLDER_SCORE] for box in boxes], dtype=np.float64)
        candidates = [pid for pid in source.entries if pid is not None]
        masks = np.stack([decode(annotations[pid]["segmentation"]).astype(bool) for pid in candidates])
        iou = box_mask_iou(table, masks)
        ours = {b: candidates[m] for b, m in match_faces(table, masks, MIN_MATCH_IOU)}
        for b, person_id in enumerate(person_ids):
            problems.checked += 1
            value_iou = float(iou[b, candidates.index(person_id)])
            if value_iou <= MIN_MATCH_IOU:
                problems.misfit(where, f"box {b} -> person {person_id}: IoU {value_iou:.3f} with the person's mask "
                                       f"(the authors' matching needed > {MIN_MATCH_IOU})")
            elif ours.get(b) != person_id:
                problems.misfit(where, f"box {b} -> person {person_id}, but re-matching the same boxes gives "
                                       f"{ours.get(b)} (instance order differs?)")
            regions[where].append({"person_id": person_id, "box": [float(v) for v in boxes[b]], "score": None,
                                   "iou": round(value_iou, 6)})
        boxes_total += len(boxes)
    checks = problems.raise_if_needed(len(images), max_misfit_fraction,
                                      "Pass the person_keypoints file the authors iterated, and check the split.")
    split = _split(persons)
    return {
        "format": REGIONS_FORMAT,
        "dataset": "coco",
        "split": split,
        "source": SOURCES[("coco", "faces")].format(split=split),
        "confidence": FACE_CONFIDENCE["coco"],
        "min_match_iou": MIN_MATCH_IOU,
        "images": regions,
        # only matched boxes were published: raw detections, low-score and unmatched boxes are unknown
        "counts": {"detections": None, "below_confidence": None, "matched": boxes_total, "unmatched": None,
                   "persons": len(annotations),
                   "persons_with_face": sum(len({r["person_id"] for r in rs}) for rs in regions.values())},
        "checks": checks,
    }


def _face_detections(authors_boxes: dict, persons: dict, index: dict[str, SourceImage], *, dataset: str,
                     max_misfit_fraction: float, hint: str) -> dict:
    problems = _Problems(f"authors' {dataset} face boxes", persons)
    if not isinstance(authors_boxes, dict):
        raise DatasetError(f"authors' {dataset} face boxes: expected a JSON object keyed by image, got {type(authors_boxes).__name__}")
    images = {image["file_name"]: image for image in persons["images"]}
    confidence = FACE_CONFIDENCE[dataset]
    # rows are [x0, y0, x1, y1, score] (Cityscapes: whole DSFD rows) or [x0, y0, x1, y1] (BDD100K);
    # the first row decides for the whole file, a row of another length is reported with its image
    first = next((row for rows in authors_boxes.values() if isinstance(rows, list) for row in rows), None)
    row_length = len(first) if isinstance(first, list) and len(first) in (4, 5) else 4
    detections: dict[str, dict] = {}
    for key, rows in authors_boxes.items():
        source = index.get(str(key))
        if source is None:
            problems.error(str(key), "no such image in persons.json; the file belongs to another dataset or split")
            continue
        where, image = source.file_name, images[source.file_name]
        if not isinstance(rows, list):
            problems.error(where, f"expected a list of boxes, got {str(rows)[:80]}")
            continue
        reasons = [_check_box(row, int(image["width"]), int(image["height"]), row_length) for row in rows]
        bad = next((i for i, reason in enumerate(reasons) if reason), None)
        if bad is not None:
            problems.error(where, f"box {bad}: {reasons[bad]}")
            continue
        scores = [float(row[4]) for row in rows] if row_length == 5 else [PLACEHOLDER_SCORE] * len(rows)
        low = next((s for s in scores if not confidence <= s <= 1), None)
        if low is not None:
            problems.error(where, f"score {low} is outside [{confidence}, 1] (the authors' detector kept scores >= {confidence})")
            continue
        detections[where] = {"boxes": [[float(v) for v in row[:4]] for row in rows], "scores": scores}
    if problems.errors:
        problems.raise_if_needed(len(images), max_misfit_fraction, hint)
    split = _split(persons)
    document = {
        "format": DETECTIONS_FORMAT,
        "dataset": dataset,
        "detector": {"name": "DSFD", "confidence_threshold": confidence, "scores_published": row_length == 5},
        "split": split,
        "source": SOURCES[(dataset, "faces")].format(split=split),
        "images": dict(sorted(detections.items())),
    }
    # every published box matched a person in the authors' run: it must match again here
    regions = build_face_regions(document, persons, dataset=dataset, confidence=confidence, min_iou=MIN_MATCH_IOU)
    for file_name, entry in document["images"].items():
        n = len(entry["boxes"])
        problems.checked += n
        matched = {tuple(r["box"]) for r in regions["images"][file_name]}
        for b, box in enumerate(entry["boxes"]):
            if tuple(box) not in matched:
                problems.misfit(file_name, f"box {b} {box} matches no person (IoU <= {MIN_MATCH_IOU} with every "
                                           "free person mask), yet the authors matched it")
    document["checks"] = {**problems.raise_if_needed(len(images), max_misfit_fraction, hint),
                          "rematched": regions["counts"]["matched"]}
    return document


def cityscapes_face_detections(authors_boxes: dict, persons: dict, *,
                               max_misfit_fraction: float = DEFAULT_MAX_MISFIT) -> dict:
    """``face-detections/v1`` from Cityscapes ``face_boxes_train.json`` (keys: image basenames)."""
    index = cityscapes_source_index(persons)
    return _face_detections(authors_boxes, persons, index, dataset="cityscapes", max_misfit_fraction=max_misfit_fraction,
                            hint="Check that the file is the Cityscapes face_boxes file of this split.")


def bdd100k_face_detections(authors_boxes: dict, persons: dict, coco_annotations: dict | None = None, *,
                            max_misfit_fraction: float = DEFAULT_MAX_MISFIT) -> dict:
    """``face-detections/v1`` from BDD100K ``face_boxes_train.json``; scores set to 1.0 (not published).

    coco_annotations: see :func:`bdd100k_source_index` (only its image ids are used here).
    """
    index = bdd100k_source_index(persons, coco_annotations)
    return _face_detections(authors_boxes, persons, index, dataset="bdd100k", max_misfit_fraction=max_misfit_fraction,
                            hint="Its keys are image ids of the authors' jsons/ins_seg_train_cocofmt.json; pass that file.")


# ---------------------------------------------------------------------------------------------
# what the import rules call


def _read_dataset_file(path: Path, referenced_by: str) -> dict:
    require_file(path, referenced_by)
    return read_json(path)


def import_authors_regions(kind: str, dataset: str, root: Path, persons: dict, files: dict, *,
                           max_misfit_fraction: float = 0.02) -> dict:
    """The document made from one of the authors' files under the dataset ``root``: ``kind`` is
    "faces" or "keypoints"; ``files`` is the config's ``regions.authors_files.<dataset>``. Reads
    the dataset files the alignment needs (COCO's keypoints file, Cityscapes' polygons, BDD100K's
    COCO-format labels when present) and fails with a DatasetError naming a missing file."""
    root = Path(root)
    published = root / files[kind]
    if not published.is_file():
        raise DatasetError(f"regions.source.{dataset} is 'authors' but {published} does not exist: download the authors' "
                           f"{kind} file (links in docs/authors-regions.md) to that path, or set regions.source.{dataset}: detectors")
    authors = read_json(published)
    options = {"max_misfit_fraction": max_misfit_fraction}
    if dataset == "coco" and kind == "faces":
        keypoints_file = root / "annotations" / f"person_keypoints_{_split(persons)}2017.json"
        return coco_face_regions(authors, persons, _read_dataset_file(keypoints_file, "the COCO download"), **options)
    if dataset == "cityscapes":
        if kind == "faces":
            return cityscapes_face_detections(authors, persons, **options)
        polygons = {image["file_name"]: _read_dataset_file(root / cityscapes_polygons_file(image["file_name"]), "the Cityscapes gtFine download")
                    for image in persons["images"]}
        return cityscapes_keypoints(authors, persons, polygons, **options)
    if dataset == "bdd100k":
        coco_format = root / files["coco_format"]
        labels = read_json(coco_format) if coco_format.is_file() else None
        if kind == "faces":
            return bdd100k_face_detections(authors, persons, labels, **options)
        return bdd100k_keypoints(authors, persons, labels, **options)
    raise ValueError(f"the authors published no {kind} file for {dataset}")
