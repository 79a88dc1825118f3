"""Import the paper authors' published region files (face boxes, ViTPose keypoints).

deep_privacy2 (``docs/anonymizing_datasets.md``, ``tools/anonymization/{coco,cityscapes,bdd100k}``)
published the face boxes and person keypoints used for the paper. This package turns them, already
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

The thresholds of the authors' files are facts about them (``AUTHORS_*`` constants); where the
import decides for this workflow it follows the config: keypoint visibility
(``regions.keypoint_score_threshold``) and the IoU with which the Cityscapes / BDD100K boxes must
match again (``face_detection.min_match_iou``). Both default to the authors' values.

Why the Cityscapes and BDD100K face files become detections, not regions: :mod:`.face_detections`.

Instance-order pitfalls (the crux: the files address instances by position, in *their* iteration)
------------------------------------------------------------------------------------------------
How each dataset's order is rebuilt, and what goes wrong when it is guessed, is told in its module:
:mod:`.coco`, :mod:`.cityscapes`, :mod:`.bdd100k`.

Missing keys: deep_privacy2 copied BDD100K / COCO images without an entry unchanged; such
images are listed in the output, not silently filled.

Alignment checks (fail with :class:`DatasetError` naming the image, plus how many images disagree)
----------------------------------------------------------------------------------------------
Structural, always fatal: unknown image keys, malformed entries (shapes, non-finite numbers,
empty boxes or boxes entirely outside the image (one crossing the border is clipped and counted),
scores outside [0, 1] or below the authors' detector threshold),
per-image instance counts that differ from the reconstructed order, indices out of range or
repeated, a COCO face matched to an annotation that is no target person. Geometric, fatal when
more than ``max_misfit_fraction`` of the checked instances fail: a keypoint entry with >= 3
visible keypoints must have at least half of them inside its person's mask box grown by
``0.25 * max(w, h) + 2`` px; a COCO face box must have dp2's box/mask IoU > 0.01 with its person
and our re-matching of the same boxes must pick the same person; every Cityscapes / BDD100K box
must be matched again by ``regions.build_face_regions``.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DatasetError
from ..io import read_json, require_file
from .bdd100k import bdd100k_face_detections, bdd100k_keypoints, bdd100k_source_index
from .cityscapes import cityscapes_face_detections, cityscapes_keypoints, cityscapes_polygons_file, cityscapes_source_index
from .coco import coco_face_regions, coco_source_index
from .common import AUTHORS_KEYPOINT_SCORE_THRESHOLD, AUTHORS_MIN_MATCH_IOU, SourceImage, persons_split

__all__ = ["SourceImage", "bdd100k_face_detections", "bdd100k_keypoints", "bdd100k_source_index", "cityscapes_face_detections",
           "cityscapes_keypoints", "cityscapes_polygons_file", "cityscapes_source_index", "coco_face_regions", "coco_source_index",
           "import_authors_regions"]


def _read_dataset_file(path: Path, referenced_by: str) -> dict:
    require_file(path, referenced_by)
    return read_json(path)


def import_authors_regions(kind: str, dataset: str, root: Path, persons: dict, files: dict, *,
                           max_misfit_fraction: float = 0.02, min_match_iou: float = AUTHORS_MIN_MATCH_IOU,
                           score_threshold: float = AUTHORS_KEYPOINT_SCORE_THRESHOLD) -> dict:
    """The document made from one of the authors' files under the dataset ``root``: ``kind`` is
    "faces" or "keypoints"; ``files`` is the config's ``regions.authors_files.<dataset>``. Reads
    the dataset files the alignment needs (COCO's keypoints file, Cityscapes' polygons, BDD100K's
    COCO-format labels when present) and fails with a DatasetError naming a missing file.
    ``min_match_iou`` is for the Cityscapes / BDD100K face boxes (COCO's pairs are checked with the
    authors' threshold), ``score_threshold`` for the keypoints."""
    root = Path(root)
    published = root / files[kind]
    if not published.is_file():
        raise DatasetError(f"regions.source.{dataset} is 'authors' but {published} does not exist: download the authors' "
                           f"{kind} file (links in docs/authors-regions.md) to that path, or set regions.source.{dataset}: detectors")
    authors = read_json(published)
    options = {"max_misfit_fraction": max_misfit_fraction}
    if dataset == "coco" and kind == "faces":
        keypoints_file = root / "annotations" / f"person_keypoints_{persons_split(persons)}2017.json"
        return coco_face_regions(authors, persons, _read_dataset_file(keypoints_file, "the COCO download"), **options)
    if dataset == "cityscapes":
        if kind == "faces":
            return cityscapes_face_detections(authors, persons, min_match_iou=min_match_iou, **options)
        polygons = {image["file_name"]: _read_dataset_file(root / cityscapes_polygons_file(image["file_name"]), "the Cityscapes gtFine download")
                    for image in persons["images"]}
        return cityscapes_keypoints(authors, persons, polygons, score_threshold=score_threshold, **options)
    if dataset == "bdd100k":
        coco_format = root / files["coco_format"]
        labels = read_json(coco_format) if coco_format.is_file() else None
        if kind == "faces":
            return bdd100k_face_detections(authors, persons, labels, min_match_iou=min_match_iou, **options)
        return bdd100k_keypoints(authors, persons, labels, score_threshold=score_threshold, **options)
    raise ValueError(f"the authors published no {kind} file for {dataset}")
