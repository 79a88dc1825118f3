"""Face regions: greedy face-box / person-mask matching (dp2 get_matches) and the regions document."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from anonymization_impact.annotations import normalize_split
from anonymization_impact.errors import DatasetError
from anonymization_impact.io import read_json
from anonymization_impact.masks import encode
from anonymization_impact.regions import build_face_regions, match_faces
from anonymization_impact.twins import write_twin
from anonymization_impact.twins.truth import is_eligible

PERSON = {"coco": "person", "cityscapes": "person", "bdd100k": "pedestrian"}


def masks_of(shape, *rectangles) -> np.ndarray:
    masks = np.zeros((len(rectangles), *shape), dtype=bool)
    for mask, (x0, y0, x1, y1) in zip(masks, rectangles):
        mask[y0:y1, x0:x1] = True
    return masks


def test_highest_iou_first_even_against_a_higher_score():
    masks = masks_of((20, 40), (0, 0, 20, 20), (20, 0, 40, 20))
    boxes = np.array([
        [0, 0, 16, 20, 0.4],    # mask 0: IoU 320/400 = 0.8
        [4, 0, 24, 20, 0.99],   # mask 0: 320/480; mask 1: 80/720
    ])
    assert match_faces(boxes, masks) == [(0, 0), (1, 1)]


def test_equal_iou_goes_to_the_higher_score():
    masks = masks_of((20, 20), (0, 0, 10, 10))
    boxes = np.array([[0, 0, 5, 5, 0.5], [0, 0, 5, 5, 0.9]])
    assert match_faces(boxes, masks) == [(1, 0)]


def test_equal_iou_and_score_prefer_the_mask_with_fewer_candidate_boxes():
    masks = masks_of((10, 40), (0, 0, 20, 10), (20, 0, 40, 10))
    boxes = np.array([
        [15, 0, 25, 10, 0.8],   # IoU 50/250 = 0.2 with both masks
        [0, 0, 2, 10, 0.8],     # mask 0 only: 20/200 = 0.1
    ])
    # mask 1 has one candidate, mask 0 two: box 0 goes to mask 1, which leaves mask 0 to box 1
    assert match_faces(boxes, masks) == [(0, 1), (1, 0)]


def test_full_ties_keep_box_order_and_each_box_and_mask_is_used_once():
    masks = masks_of((20, 20), (0, 0, 10, 10), (10, 10, 20, 20))
    boxes = np.array([[0, 0, 5, 5, 0.7], [0, 0, 5, 5, 0.7], [0, 0, 5, 5, 0.7]])
    assert match_faces(boxes, masks) == [(0, 0)]


def test_iou_must_exceed_the_threshold():
    masks = masks_of((40, 40), (0, 0, 20, 20))               # area 400
    touching = np.array([[19, 19, 29, 29, 0.9]])             # 1 / 499
    assert match_faces(touching, masks) == []
    at_threshold = np.array([[19, 0, 40, 5, 0.9]])           # 5 / (400 + 105 - 5) = 0.01
    assert match_faces(at_threshold, masks) == []
    assert match_faces(at_threshold, masks, min_iou=0.009) == [(0, 0)]


def test_boxes_are_rasterised_by_truncation():
    masks = masks_of((20, 20), (0, 0, 5, 5))
    boxes = np.array([
        [1.0, 1.0, 6.0, 6.0, 0.99],   # [1:6, 1:6]: IoU 16/34
        [0.9, 0.9, 5.9, 5.9, 0.5],    # int() -> [0:5, 0:5]: IoU 1 (rounding would tie it with box 0)
    ])
    assert match_faces(boxes, masks) == [(1, 0)]


def test_no_boxes_or_no_masks():
    assert match_faces(np.zeros((0, 5)), masks_of((5, 5), (0, 0, 2, 2))) == []
    assert match_faces(np.array([[0, 0, 2, 2, 0.9]]), np.zeros((0, 5, 5), dtype=bool)) == []


# ----------------------------------------------------------------------------------------------- twins

@pytest.fixture(scope="module")
def twin_inputs(tmp_path_factory):
    """{dataset: (detections, persons, truth)} of fresh twins with 16 training images."""
    base = tmp_path_factory.mktemp("regions-twins")
    result = {}
    for dataset in ("coco", "cityscapes"):
        root = base / dataset
        write_twin(dataset, root, base / f"{dataset}.truth.json", base / f"{dataset}.faces.json",
                   n_train=16, n_val=4, seed=11)
        persons = normalize_split(dataset, root, "train")["persons"]
        result[dataset] = (read_json(base / f"{dataset}.faces.json"), persons,
                           read_json(base / f"{dataset}.truth.json"))
    return result


def box_iou(a, b) -> float:
    inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.mark.parametrize("dataset", ["coco", "cityscapes"])
def test_face_regions_of_a_twin_find_the_faces_of_eligible_persons(twin_inputs, dataset):
    detections, persons, truth = twin_inputs[dataset]
    result = build_face_regions(detections, persons, dataset=dataset, confidence=0.3, min_iou=0.01)
    assert result["format"] == "face-regions/v1" and result["split"] == "train"
    assert list(result["images"]) == [image["file_name"] for image in persons["images"]]

    annotations_of = {}
    for annotation in persons["annotations"]:
        annotations_of.setdefault(annotation["image_id"], []).append(annotation)
    image_id = {image["file_name"]: image["id"] for image in persons["images"]}
    faces, found = 0, 0
    for image in truth["splits"]["train"]["images"]:
        regions = result["images"][image["file"]]
        by_person = {region["person_id"]: region for region in regions}
        assert len(by_person) == len(regions), "a person got two faces"
        assert len({tuple(region["box"]) for region in regions}) == len(regions), "a face went to two persons"
        candidates = annotations_of.get(image_id[image["file"]], [])
        assert set(by_person) <= {a["id"] for a in candidates}
        detected = detections["images"].get(image["file"], {"boxes": [], "scores": []})
        for instance in image["instances"]:
            if instance["category"] != PERSON[dataset] or not is_eligible(instance, dataset == "coco") \
                    or instance["face_box"] is None:
                continue
            person = [a for a in candidates if [int(v) for v in a["bbox"]] == instance["bbox"]]
            assert len(person) == 1
            faces += 1
            region = by_person.get(person[0]["id"])
            if region is not None:
                assert box_iou(region["box"], instance["face_box"]) > 0.3, "matched to another face"
                found += 1
                continue
            # a missed face is one the detector missed or scored below the threshold
            assert not any(box_iou(box, instance["face_box"]) > 0.3 and score >= 0.3
                           for box, score in zip(detected["boxes"], detected["scores"])), instance
    assert faces >= 15 and found >= 0.55 * faces, (found, faces)


def test_counts_follow_the_confidence_threshold(twin_inputs):
    detections, persons, _ = twin_inputs["cityscapes"]
    low = build_face_regions(detections, persons, dataset="cityscapes", confidence=0.2, min_iou=0.01)
    high = build_face_regions(detections, persons, dataset="cityscapes", confidence=0.3, min_iou=0.01)
    total = sum(len(entry["scores"]) for entry in detections["images"].values())
    for result in (low, high):
        counts = result["counts"]
        assert counts["detections"] == total
        assert counts["detections"] == counts["below_confidence"] + counts["matched"] + counts["unmatched"]
        assert counts["matched"] == sum(len(v) for v in result["images"].values()) == counts["persons_with_face"]
        assert counts["persons"] == len(persons["annotations"])
        assert all(r["score"] >= result["confidence"] for v in result["images"].values() for r in v)
    assert low["counts"]["below_confidence"] < high["counts"]["below_confidence"]
    assert low["counts"]["matched"] > high["counts"]["matched"]
    assert (low["confidence"], high["confidence"]) == (0.2, 0.3)


def test_face_regions_are_deterministic(twin_inputs):
    detections, persons, _ = twin_inputs["coco"]
    first = build_face_regions(detections, persons, dataset="coco", confidence=0.3, min_iou=0.01)
    second = build_face_regions(copy.deepcopy(detections), copy.deepcopy(persons), dataset="coco",
                                confidence=0.3, min_iou=0.01)
    assert json.dumps(first) == json.dumps(second)


def _broken(detections, persons, change):
    detections = copy.deepcopy(detections)
    key = next(k for k, v in detections["images"].items() if v["boxes"])
    image = next(i for i in persons["images"] if i["file_name"] == key)
    change(detections["images"], key, image)
    return detections, key


@pytest.mark.parametrize("problem, change, words", [
    ("unknown image", lambda images, key, image: images.update({"train2017/elsewhere.jpg": images[key]}),
     "no such image"),
    ("lengths", lambda images, key, image: images[key]["scores"].append(0.5), "scores"),
    ("outside", lambda images, key, image: images[key]["boxes"].__setitem__(0, [image["width"] + 1.0, 2.0, image["width"] + 5.0, 6.0]),
     "lies entirely outside"),
    ("above", lambda images, key, image: images[key]["boxes"].__setitem__(0, [2.0, -5.0, 6.0, 0.0]), "lies entirely outside"),
    ("empty", lambda images, key, image: images[key]["boxes"][0].__setitem__(2, images[key]["boxes"][0][0]),
     "empty"),
])
def test_bad_detections_raise_one_clear_error(twin_inputs, problem, change, words):
    detections, persons, _ = twin_inputs["coco"]
    broken, key = _broken(detections, persons, change)
    with pytest.raises(DatasetError) as error:
        build_face_regions(broken, persons, dataset="coco", confidence=0.3, min_iou=0.01)
    message = str(error.value)
    assert words in message
    assert ("train2017/elsewhere.jpg" if problem == "unknown image" else key) in message
    if problem in ("outside", "above", "empty"):  # the box and the fix, not "regenerate"
        assert "box 0: box [" in message and "coordinate convention" in message and "regenerate" not in message


def test_a_box_crossing_the_border_is_clipped_and_counted():
    mask = np.zeros((20, 40), dtype=bool)
    mask[:, 30:] = True  # a person at the right border
    persons = {"images": [{"id": 1, "file_name": "a.jpg", "width": 40, "height": 20}],
               "annotations": [{"id": 5, "image_id": 1, "segmentation": encode(mask)}]}
    detections = {"format": "face-detections/v1", "images": {"a.jpg": {"boxes": [[32.0, -1.25, 41.25, 8.0], [-0.5, 12.0, 3.0, 16.0]],
                                                                        "scores": [0.9, 0.5]}}}
    regions = build_face_regions(detections, persons, dataset="coco", confidence=0.3, min_iou=0.01)
    assert regions["images"]["a.jpg"] == [{"person_id": 5, "box": [32.0, 0.0, 40.0, 8.0], "score": 0.9, "iou": 0.32}]
    assert regions["counts"]["clipped_to_image"] == 2 and regions["counts"]["clipped_max_outside_px"] == 1.25
    inside = {"a.jpg": {"boxes": [[32.0, 0.0, 40.0, 8.0]], "scores": [0.9]}}
    unclipped = build_face_regions({**detections, "images": inside}, persons, dataset="coco", confidence=0.3, min_iou=0.01)
    assert unclipped["images"] == regions["images"] and unclipped["counts"]["clipped_to_image"] == 0
