"""Dataset readers and the data stage, checked against the twins' truth manifests."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from anonymization_impact import DATASETS, SPLITS
from anonymization_impact.annotations import (
    REASON_CROWD,
    REASON_IGNORE,
    REASON_NO_KEYPOINTS,
    REASON_RIDER,
    normalize_split,
)
from anonymization_impact.datasets import reader
from anonymization_impact.errors import DatasetError
from anonymization_impact.masks import area

PERSON = {"coco": "person", "cityscapes": "person", "bdd100k": "pedestrian"}


@pytest.fixture(scope="module")
def normalized(twins):
    return {(d, s): normalize_split(d, twins[d]["root"], s) for d in DATASETS for s in SPLITS}


def _truth_split(twins, dataset, split):
    return twins[dataset]["truth"]["splits"][split]


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("dataset", DATASETS)
def test_instance_counts_equal_the_truth_manifest(twins, normalized, dataset, split):
    counts = _truth_split(twins, dataset, split)["counts"]
    documents = normalized[dataset, split]
    instances = documents["instances"]
    names = {c["id"]: c["name"] for c in instances["categories"]}
    found = Counter(names[a["category_id"]] for a in instances["annotations"])
    kept_classes = set(names.values())
    expected = {name: c["total"] for name, c in counts["instances"].items() if name in kept_classes and c["total"]}
    assert len(instances["images"]) == counts["images"]
    assert dict(found) == expected
    crowd_or_ignore = Counter(names[a["category_id"]] for a in instances["annotations"] if a["iscrowd"])
    expected_crowd = {n: c["crowd"] + c["ignore"] for n, c in counts["instances"].items() if n in kept_classes and c["crowd"] + c["ignore"]}
    assert dict(crowd_or_ignore) == expected_crowd
    assert len(documents["persons"]["annotations"]) == counts["persons_eligible"] > 0


@pytest.mark.parametrize("dataset", DATASETS)
def test_each_anonymization_target_is_a_true_eligible_person(twins, normalized, dataset):
    """Per image, the kept persons have exactly the truth's boxes and mask areas."""
    split = "train"
    persons = normalized[dataset, split]["persons"]
    by_file = {image["id"]: image["file_name"] for image in persons["images"]}
    found = Counter((by_file[a["image_id"]], tuple(round(v) for v in a["bbox"]), area(a["segmentation"])) for a in persons["annotations"])
    expected = Counter()
    for image in _truth_split(twins, dataset, split)["images"]:
        for instance in image["instances"]:
            eligible = instance["category"] == PERSON[dataset] and not instance["iscrowd"] and not instance["ignore"]
            if dataset == "coco":
                eligible = eligible and instance["num_keypoints"] >= 1
            if eligible:
                expected[image["file"], tuple(instance["bbox"]), instance["area"]] += 1
    assert found == expected


@pytest.mark.parametrize("dataset", DATASETS)
def test_every_left_out_person_has_its_reason(twins, normalized, dataset):
    counts = _truth_split(twins, dataset, "train")["counts"]
    reasons = normalized[dataset, "train"]["excluded"]["counts"]["excluded_by_reason"]
    person = counts["instances"][PERSON[dataset]]
    riders = counts["instances"].get("rider", {}).get("total", 0)
    if dataset != "coco":
        assert reasons[REASON_RIDER] == riders > 0
    assert reasons.get(REASON_CROWD, 0) == person["crowd"] > 0
    assert reasons.get(REASON_IGNORE, 0) == person["ignore"]
    if dataset == "bdd100k":
        assert person["ignore"] > 0
    if dataset == "coco":
        assert reasons[REASON_NO_KEYPOINTS] > 0
    assert sum(reasons.values()) + counts["persons_eligible"] == person["total"] + riders


def test_coco_persons_keep_their_ground_truth_keypoints(normalized):
    for annotation in normalized["coco", "train"]["persons"]["annotations"]:
        assert len(annotation["keypoints"]) == 51
        assert annotation["num_keypoints"] >= 1


def test_validation_split_is_not_filtered_away(normalized, twins):
    """Val is evaluated as is: every instance of the evaluated classes stays in instances."""
    for dataset in DATASETS:
        counts = _truth_split(twins, dataset, "val")["counts"]
        assert len(normalized[dataset, "val"]["instances"]["images"]) == counts["images"]


def _first_image(root: Path, dataset: str) -> Path:
    _, records = reader(dataset).read_split(root, "train")
    return root / records[0].file_name


@pytest.mark.parametrize("dataset", DATASETS)
def test_an_annotation_pointing_at_a_missing_image_is_named(twin_copy, dataset):
    root = twin_copy(dataset)
    image = _first_image(root, dataset)
    image.unlink()
    with pytest.raises(DatasetError, match=image.name):
        normalize_split(dataset, root, "train")


@pytest.mark.parametrize("dataset", DATASETS)
def test_a_corrupt_image_is_named(twin_copy, dataset):
    root = twin_copy(dataset)
    image = _first_image(root, dataset)
    image.write_bytes(image.read_bytes()[:200])
    with pytest.raises(DatasetError, match=f"image {image}.* corrupt"):
        normalize_split(dataset, root, "train")


def _rewrite_coco(root: Path, keep) -> None:
    for kind in ("instances", "person_keypoints"):
        path = root / "annotations" / f"{kind}_train2017.json"
        data = json.loads(path.read_text())
        keep(data)
        path.write_text(json.dumps(data))


def test_an_empty_split_is_an_error(twin_copy):
    root = twin_copy("coco")
    _rewrite_coco(root, lambda data: data.update(images=[], annotations=[]))
    with pytest.raises(DatasetError, match="split 'train' has no images"):
        normalize_split("coco", root, "train")


def test_a_training_split_without_persons_after_filtering_is_an_error(twin_copy):
    root = twin_copy("coco")

    def drop_keypoints(data):
        for annotation in data["annotations"]:
            if "keypoints" in annotation:
                annotation["keypoints"] = [0] * 51
                annotation["num_keypoints"] = 0

    _rewrite_coco(root, drop_keypoints)
    with pytest.raises(DatasetError, match="no person left to anonymize after filtering"):
        normalize_split("coco", root, "train")


def test_a_missing_annotation_file_is_named(twin_copy):
    root = twin_copy("coco")
    (root / "annotations" / "person_keypoints_train2017.json").unlink()
    with pytest.raises(DatasetError, match="person_keypoints_train2017.json"):
        normalize_split("coco", root, "train")
