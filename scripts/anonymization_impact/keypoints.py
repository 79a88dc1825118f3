"""Person keypoints for body anonymization: the ``person-keypoints/v1`` documents.

COCO's body anonymization uses its ground-truth keypoints (in persons.json). Cityscapes and
BDD100K have none: ViTPose-H (rule ``detect_keypoints``), the authors' published files (rule
``regions_import_authors``) or, on a twin, a simulated detector write one document per
training split, keyed by image and person id of persons.json::

    {"format": "person-keypoints/v1", "dataset": "cityscapes", "split": "train",
     "source": "...", "score_threshold": 0.3,
     "images": {"<file name>": [{"person_id": 7, "keypoints": [x, y, v] * 17, "scores": [...]}]}}

``v`` is 1 when the keypoint's score is at least the threshold, else 0 (COCO order). A person
without an entry is anonymized with all keypoints invisible, as the paper's code did for persons
ViTPose found no keypoint for (dp2 ``tools/anonymization/cityscapes/anonymize_body.py`` counts
them and anonymizes them all the same).
"""

from __future__ import annotations

from .errors import DatasetError

KEYPOINTS_FORMAT = "person-keypoints/v1"
NUM_KEYPOINTS = 17


def keypoints_document(dataset: str, source: str, score_threshold: float, images: dict[str, list[dict]]) -> dict:
    return {"format": KEYPOINTS_FORMAT, "dataset": dataset, "split": "train", "source": source,
            "score_threshold": score_threshold, "images": {name: images[name] for name in sorted(images)}}


def visible_flags(scores: list[float], threshold: float) -> list[int]:
    return [1 if score is not None and score >= threshold else 0 for score in scores]


def attach_keypoints(persons: dict, document: dict) -> dict[int, list[float]]:
    """Keypoints (51 numbers) by person id, after checking that the document is of this split:
    every image and person id must exist in persons.json and belong together."""
    if document.get("format") != KEYPOINTS_FORMAT:
        raise DatasetError(f"keypoints file has format {document.get('format')!r}, expected {KEYPOINTS_FORMAT!r}; regenerate it")
    image_ids = {image["file_name"]: image["id"] for image in persons["images"]}
    owner = {annotation["id"]: annotation["image_id"] for annotation in persons["annotations"]}
    by_person: dict[int, list[float]] = {}
    for file_name, entries in document["images"].items():
        if file_name not in image_ids:
            raise DatasetError(f"keypoints refer to image {file_name!r}, which is not in persons.json: the keypoints are of another split or dataset version")
        for entry in entries:
            person = entry.get("person_id")
            if owner.get(person) != image_ids[file_name]:
                raise DatasetError(f"keypoints of {file_name!r} refer to person {person!r}, which is not a person of that image in persons.json")
            values = entry.get("keypoints")
            if not isinstance(values, list) or len(values) != 3 * NUM_KEYPOINTS:
                raise DatasetError(f"keypoints of person {person} in {file_name!r}: expected {3 * NUM_KEYPOINTS} numbers (x, y, v per keypoint)")
            if person in by_person:
                raise DatasetError(f"keypoints of person {person} in {file_name!r} appear twice")
            by_person[person] = [float(v) for v in values]
    return by_person


def apply_keypoints(persons: dict, document: dict) -> None:
    """Give every person of persons.json the document's keypoints (in place); a person the
    document has none for gets 17 invisible ones, as the paper's scripts anonymized it."""
    found = attach_keypoints(persons, document)
    for annotation in persons["annotations"]:
        annotation["keypoints"] = found.get(annotation["id"], [0.0] * 3 * NUM_KEYPOINTS)
