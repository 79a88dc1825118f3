"""Import of the paper authors' region files (anonymization_impact.authors_regions).

Small raw datasets are written in the real layouts and normalized by our own readers, so the
persons.json order is the real one; the authors' files are written in the formats and instance
orders of deep_privacy2's tools/anonymization scripts, constructed independently here.
"""

from __future__ import annotations

import copy
import json
from pathlib import PurePosixPath

import numpy as np
import pytest
from PIL import Image

from anonymization_impact import authors_regions as ar
from anonymization_impact.annotations import normalize_split
from anonymization_impact.errors import DatasetError
from anonymization_impact.masks import encode
from anonymization_impact.regions import build_face_regions
from anonymization_impact.trees import _check_faces_refer_to_persons, plan_targets

W, H = 64, 48


def rect(x0, y0, x1, y1):
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


def keypoints_in(box, seed, scores=None):
    """17 x [x, y, score] inside box (x0, y0, x1, y1); scores default 0.9 with two at 0.1."""
    rng = np.random.default_rng(seed)
    x0, y0, x1, y1 = box
    xs = rng.uniform(x0 + 1, x1 - 1, 17)
    ys = rng.uniform(y0 + 1, y1 - 1, 17)
    if scores is None:
        scores = [0.9] * 15 + [0.1, 0.1]
    return [[round(float(x), 2), round(float(y), 2), s] for x, y, s in zip(xs, ys, scores)]


def person_by_source(persons, file_name, source_id):
    image = next(i for i in persons["images"] if i["file_name"] == file_name)
    return next(a for a in persons["annotations"] if a["image_id"] == image["id"] and a["source_id"] == str(source_id))


def check_keypoints_refer_to_persons(document, persons):
    """What the body pipeline will rely on: every entry names a target person of its image."""
    files = {image["file_name"]: image["id"] for image in persons["images"]}
    owner = {a["id"]: a["image_id"] for a in persons["annotations"]}
    assert set(document["images"]) == set(files)
    for file_name, entries in document["images"].items():
        for entry in entries:
            assert owner[entry["person_id"]] == files[file_name]
            assert len(entry["keypoints"]) == 51 and set(entry["keypoints"][2::3]) <= {0, 1}
            assert len(entry["scores"]) == 17


# ---------------------------------------------------------------------------------------------
# Cityscapes: polygons -> instanceIds.png (cityscapesscripts) -> our persons.json

CITY_IMAGES = {
    # JSON object order; persons numbered 24000 + k in this order (k over non-group persons)
    "aachen_000000_000019": [
        ("road", rect(0, 0, 63, 47)),
        ("person", rect(2, 4, 12, 40)),        # A 24000
        ("person", rect(14, 4, 24, 40)),       # B 24001
        ("persongroup", rect(26, 10, 40, 40)),
        ("person", rect(43, 20, 47, 30)),      # D 24002, covered by the car below
        ("car", rect(41, 16, 49, 34)),
        ("person", rect(51, 4, 61, 40)),       # C 24003
        ("rider", rect(30, 0, 36, 8)),
    ],
    "aachen_000001_000019": [
        ("road", rect(0, 0, 63, 47)),
        ("person", rect(4, 4, 20, 44)),        # P 24000
        ("person", rect(30, 4, 46, 44)),       # Q 24001
    ],
    "bochum_000000_000019": [("road", rect(0, 0, 63, 47)), ("car", rect(5, 5, 30, 30))],
}


@pytest.fixture(scope="module")
def cityscapes(tmp_path_factory):
    from cityscapesscripts.helpers.annotation import Annotation
    from cityscapesscripts.preparation.json2instanceImg import createInstanceImage

    root = tmp_path_factory.mktemp("cityscapes")
    polygons = {}
    for stem, objects in CITY_IMAGES.items():
        city = stem.split("_")[0]
        gt, images = root / "gtFine" / "train" / city, root / "leftImg8bit" / "train" / city
        gt.mkdir(parents=True, exist_ok=True)
        images.mkdir(parents=True, exist_ok=True)
        document = {"imgHeight": H, "imgWidth": W, "objects": [{"label": label, "polygon": polygon} for label, polygon in objects]}
        (gt / f"{stem}_gtFine_polygons.json").write_text(json.dumps(document))
        annotation = Annotation()
        annotation.fromJsonFile(str(gt / f"{stem}_gtFine_polygons.json"))
        ids = np.asarray(createInstanceImage(annotation, "ids")).astype(np.uint16)  # PIL cannot write mode I PNGs
        Image.fromarray(ids).save(gt / f"{stem}_gtFine_instanceIds.png")
        Image.new("RGB", (W, H)).save(images / f"{stem}_leftImg8bit.png")
        polygons[f"leftImg8bit/train/{city}/{stem}_leftImg8bit.png"] = document
    persons = normalize_split("cityscapes", root, "train")["persons"]
    return persons, polygons


def city_file(stem):
    return f"leftImg8bit/train/{stem.split('_')[0]}/{stem}_leftImg8bit.png"


def city_keypoints():
    """The authors' annotated_keypoints_train.json: detectron2 order = reverse object order,
    covered persons dropped, person groups kept; every image a key."""
    a, b, c = (keypoints_in(box, seed) for seed, box in enumerate([(2, 4, 12, 40), (14, 4, 24, 40), (51, 4, 61, 40)]))
    group = keypoints_in((26, 10, 40, 40), 7)
    c[0][2] = 0.3  # exactly the threshold: visible for Cityscapes (>=)
    p, q = keypoints_in((4, 4, 20, 44), 8), keypoints_in((30, 4, 46, 44), 9)
    return {
        "aachen_000000_000019_leftImg8bit.png": [c, group, b, a],
        "aachen_000001_000019_leftImg8bit.png": [q, p],
        "bochum_000000_000019_leftImg8bit.png": [],
    }


def test_cityscapes_source_order_is_detectron2s(cityscapes):
    persons, polygons = cityscapes
    index = ar.cityscapes_source_index(persons, polygons)
    first = index["aachen_000000_000019_leftImg8bit.png"]
    ids = [person_by_source(persons, first.file_name, s)["id"] for s in (24003, 24001, 24000)]
    assert first.entries == [ids[0], None, ids[1], ids[2]]  # C, group, B, A (D fully covered)
    assert index["bochum_000000_000019_leftImg8bit.png"].entries == []


def test_cityscapes_keypoints_conversion(cityscapes):
    persons, polygons = cityscapes
    authors = city_keypoints()
    document = ar.cityscapes_keypoints(authors, persons, polygons)
    assert document["format"] == "person-keypoints/v1" and document["dataset"] == "cityscapes"
    assert document["split"] == "train" and document["score_threshold"] == 0.3
    check_keypoints_refer_to_persons(document, persons)
    first = city_file("aachen_000000_000019")
    by_person = {e["person_id"]: e for e in document["images"][first]}
    for source_id, raw in ((24003, authors["aachen_000000_000019_leftImg8bit.png"][0]),
                           (24000, authors["aachen_000000_000019_leftImg8bit.png"][3])):
        entry = by_person[person_by_source(persons, first, source_id)["id"]]
        assert entry["keypoints"][0::3] == [k[0] for k in raw]
        assert entry["scores"] == [k[2] for k in raw]
        assert entry["keypoints"][2::3] == [int(k[2] >= 0.3) for k in raw]
    assert by_person[person_by_source(persons, first, 24003)["id"]]["keypoints"][2] == 1  # score 0.3 is visible
    counts = document["counts"]
    assert counts == {"persons": 5, "with_keypoints": 5, "without_keypoints": 0, "source_entries_skipped": 1,
                      "no_visible_keypoint": 0, "too_few_visible_to_check": 0}
    assert document["checks"]["misfits"] == 0 and document["checks"]["instances_checked"] == 5


def test_cityscapes_keypoints_feed_the_body_planner(cityscapes):
    persons, polygons = cityscapes
    document = ar.cityscapes_keypoints(city_keypoints(), persons, polygons)
    image = next(i for i in persons["images"] if i["file_name"] == city_file("aachen_000001_000019"))
    keypoints = {e["person_id"]: e["keypoints"] for e in document["images"][image["file_name"]]}
    annotations = [dict(a, keypoints=keypoints[a["id"]]) for a in persons["annotations"] if a["image_id"] == image["id"]]
    targets, _ = plan_targets("body", image, annotations, None, 0)
    assert len(targets) == 2 and all(t.keypoints.shape == (17, 3) for t in targets)


def test_cityscapes_without_polygons_fails_on_the_person_group(cityscapes):
    persons, _ = cityscapes
    with pytest.raises(DatasetError, match=r"1 of 3 images disagree.*aachen_000000_000019.*4 keypoint entries.*has 3"):
        ar.cityscapes_keypoints(city_keypoints(), persons)
    # images without groups align without polygons
    authors = city_keypoints()
    del authors["aachen_000000_000019_leftImg8bit.png"][1]
    document = ar.cityscapes_keypoints(authors, persons)
    assert document["counts"]["with_keypoints"] == 5


def test_cityscapes_forward_order_is_detected(cityscapes):
    persons, polygons = cityscapes
    authors = city_keypoints()
    authors["aachen_000001_000019_leftImg8bit.png"].reverse()  # P, Q: our order, not detectron2's
    with pytest.raises(DatasetError, match=r"2 of 5 checked instances.*aachen_000001_000019.*instance order differs"):
        ar.cityscapes_keypoints(authors, persons, polygons)


def test_cityscapes_wrong_count_unknown_and_missing_images(cityscapes):
    persons, polygons = cityscapes
    authors = city_keypoints()
    authors["aachen_000001_000019_leftImg8bit.png"].pop()
    with pytest.raises(DatasetError, match=r"aachen_000001_000019.*1 keypoint entries.*has 2"):
        ar.cityscapes_keypoints(authors, persons, polygons)
    authors = city_keypoints()
    authors["zurich_000000_000019_leftImg8bit.png"] = []
    with pytest.raises(DatasetError, match=r"zurich_000000_000019.*no such image"):
        ar.cityscapes_keypoints(authors, persons, polygons)
    authors = city_keypoints()
    del authors["aachen_000001_000019_leftImg8bit.png"]
    with pytest.raises(DatasetError, match=r"aachen_000001_000019.*no entry in the authors' file"):
        ar.cityscapes_keypoints(authors, persons, polygons)


def test_keypoints_outside_the_box(cityscapes):
    persons, polygons = cityscapes
    authors = city_keypoints()
    far = authors["aachen_000000_000019_leftImg8bit.png"][2]  # B
    for point in far:
        point[1] += 200
    with pytest.raises(DatasetError, match=r"1 of 5 checked instances.*aachen_000000_000019.*only 0% of its 15 visible"):
        ar.cityscapes_keypoints(authors, persons, polygons)
    document = ar.cityscapes_keypoints(authors, persons, polygons, max_misfit_fraction=0.25)
    assert document["checks"]["misfits"] == 1
    assert document["checks"]["images_with_misfits"] == [city_file("aachen_000000_000019")]


def test_too_few_visible_keypoints_are_not_checked(cityscapes):
    persons, polygons = cityscapes
    authors = city_keypoints()
    authors["aachen_000001_000019_leftImg8bit.png"][0] = [[500.0, 500.0, 0.1]] * 17
    document = ar.cityscapes_keypoints(authors, persons, polygons)
    assert document["counts"]["too_few_visible_to_check"] == 1 and document["counts"]["no_visible_keypoint"] == 1


@pytest.mark.parametrize("broken", [
    lambda kp: kp.pop(),                                     # 16 keypoints
    lambda kp: kp.__setitem__(0, [1.0, 2.0]),                # a pair, not a triple
    lambda kp: kp.__setitem__(0, [float("nan"), 2.0, 0.9]),  # not finite
    lambda kp: kp.__setitem__(0, ["x", 2.0, 0.9]),           # not a number
])
def test_malformed_keypoint_entries(cityscapes, broken):
    persons, polygons = cityscapes
    authors = city_keypoints()
    broken(authors["aachen_000001_000019_leftImg8bit.png"][0])
    with pytest.raises(DatasetError, match=r"aachen_000001_000019.*entry 0 is not 17 x \[x, y, score\]"):
        ar.cityscapes_keypoints(authors, persons, polygons)


def test_malformed_keypoint_files(cityscapes):
    persons, polygons = cityscapes
    with pytest.raises(DatasetError, match="expected a JSON object"):
        ar.cityscapes_keypoints([], persons, polygons)
    authors = city_keypoints()
    authors["aachen_000001_000019_leftImg8bit.png"] = {"keypoints": []}
    with pytest.raises(DatasetError, match=r"aachen_000001_000019.*not in the authors' format"):
        ar.cityscapes_keypoints(authors, persons, polygons)


def test_polygons_of_another_release_are_rejected(cityscapes):
    persons, polygons = cityscapes
    changed = copy.deepcopy(polygons)
    objects = changed[city_file("aachen_000001_000019")]["objects"]
    objects.append({"label": "car", "polygon": rect(0, 0, 63, 47)})  # covers P and Q
    with pytest.raises(DatasetError, match="fully covered"):
        ar.cityscapes_source_index(persons, changed)
    del changed[city_file("aachen_000001_000019")]
    with pytest.raises(DatasetError, match="no polygons given"):
        ar.cityscapes_source_index(persons, changed)
    assert ar.cityscapes_polygons_file(city_file("aachen_000001_000019")) == \
        "gtFine/train/aachen/aachen_000001_000019_gtFine_polygons.json"


def city_faces():
    """face_boxes_train.json: whole DSFD rows (score kept), only matched boxes, keyed by basename."""
    return {
        "aachen_000000_000019_leftImg8bit.png": [[52.4, 4.2, 60.1, 11.5, 0.93], [3.0, 4.5, 11.2, 12.0, 0.41]],
        "aachen_000001_000019_leftImg8bit.png": [[32.0, 5.0, 44.0, 15.0, 0.25]],
    }


def test_cityscapes_face_boxes_become_detections_that_rematch(cityscapes):
    persons, _ = cityscapes
    detections = ar.cityscapes_face_detections(city_faces(), persons)
    assert detections["format"] == "face-detections/v1" and detections["detector"]["scores_published"]
    assert detections["images"][city_file("aachen_000000_000019")]["scores"] == [0.93, 0.41]
    assert detections["checks"]["rematched"] == 3 and detections["checks"]["misfits"] == 0
    regions = build_face_regions(detections, persons, dataset="cityscapes", confidence=0.2, min_iou=0.01)
    _check_faces_refer_to_persons(regions, persons)
    first = city_file("aachen_000000_000019")
    assert {r["person_id"] for r in regions["images"][first]} == {person_by_source(persons, first, s)["id"] for s in (24003, 24000)}


def test_cityscapes_face_box_problems(cityscapes):
    persons, _ = cityscapes
    faces = city_faces()
    faces["aachen_000001_000019_leftImg8bit.png"][0] = [22.0, 30.0, 28.0, 40.0, 0.9]  # between P and Q
    with pytest.raises(DatasetError, match=r"1 of 3 checked instances.*aachen_000001_000019.*matches no person"):
        ar.cityscapes_face_detections(faces, persons)
    faces = city_faces()
    faces["aachen_000001_000019_leftImg8bit.png"][0][4] = 0.1
    with pytest.raises(DatasetError, match=r"aachen_000001_000019.*score 0.1 is outside \[0.2, 1\]"):
        ar.cityscapes_face_detections(faces, persons)
    faces = city_faces()
    faces["aachen_000001_000019_leftImg8bit.png"][0] = [64.0, 5.0, 70.0, 15.0, 0.9]
    with pytest.raises(DatasetError, match=r"aachen_000001_000019.*\[64.0, 5.0, 70.0, 15.0\] lies entirely outside the 64x48 image; check"):
        ar.cityscapes_face_detections(faces, persons)
    faces = city_faces()
    faces["aachen_000001_000019_leftImg8bit.png"][0] = [32.0, 5.0, 44.0, 15.0]  # row without its score
    with pytest.raises(DatasetError, match=r"aachen_000001_000019.*list of 5 finite numbers"):
        ar.cityscapes_face_detections(faces, persons)
    faces = {"frankfurt_000000_000019_leftImg8bit.png": []}
    with pytest.raises(DatasetError, match="frankfurt_000000_000019.*no such image"):
        ar.cityscapes_face_detections(faces, persons)


# ---------------------------------------------------------------------------------------------
# BDD100K: bitmasks -> our persons.json; the authors' ids from a COCO-format file

# instance id -> (category id, attribute bits, box); instance ids numbered in label order
BDD_IMAGES = {
    "0a0a0a0a-00000001": {1: (1, 0, (2, 4, 12, 40)), 2: (3, 0, (14, 20, 30, 40)), 3: (1, 0, (34, 4, 44, 40)),
                          4: (2, 0, (46, 4, 52, 30)), 5: (1, 2, (54, 4, 62, 40))},   # 5: crowd
    "0b0b0b0b-00000002": {1: (1, 0, (4, 4, 20, 44)), 2: (1, 1, (22, 4, 28, 44)), 3: (1, 0, (30, 4, 46, 44))},  # 2: ignore
    "0c0c0c0c-00000003": {1: (3, 0, (5, 5, 30, 30))},
}
# the label JSON's frame order, which gave the authors' COCO-format image ids 1, 2, 3
BDD_FRAME_ORDER = ["0b0b0b0b-00000002", "0c0c0c0c-00000003", "0a0a0a0a-00000001"]


def bdd_mask(box):
    mask = np.zeros((H, W), dtype=bool)
    x0, y0, x1, y1 = box
    mask[y0:y1, x0:x1] = True
    return mask


@pytest.fixture(scope="module")
def bdd100k(tmp_path_factory):
    root = tmp_path_factory.mktemp("bdd100k")
    (root / "images" / "10k" / "train").mkdir(parents=True)
    (root / "labels" / "ins_seg" / "bitmasks" / "train").mkdir(parents=True)
    for name, instances in BDD_IMAGES.items():
        bitmask = np.zeros((H, W, 4), np.uint8)
        for instance_id, (category, bits, box) in instances.items():
            bitmask[bdd_mask(box)] = (category, bits, instance_id >> 8, instance_id & 255)
        Image.fromarray(bitmask, "RGBA").save(root / "labels" / "ins_seg" / "bitmasks" / "train" / f"{name}.png")
        Image.new("RGB", (W, H)).save(root / "images" / "10k" / "train" / f"{name}.jpg")
    persons = normalize_split("bdd100k", root, "train")["persons"]
    # jsons/ins_seg_train_cocofmt.json as the toolkit writes it from the label JSON
    images, annotations = [], []
    for image_id, name in enumerate(BDD_FRAME_ORDER, start=1):
        images.append({"id": image_id, "file_name": f"{name}.jpg", "height": H, "width": W})
        for instance_id, (category, bits, box) in BDD_IMAGES[name].items():
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category,
                                "iscrowd": int(bool(bits & 3)), "ignore": 0, "segmentation": encode(bdd_mask(box)),
                                "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]]})
    names = ["pedestrian", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle"]
    coco = {"images": images, "annotations": annotations, "categories": [{"id": i + 1, "name": n} for i, n in enumerate(names)]}
    return persons, coco


def bdd_keypoints():
    """annotated_keypoints_train.json: {coco image id: {"keypoints": [...]}} over the non-crowd,
    non-ignore pedestrians in annotation order; the car-only image has no entry."""
    first = [keypoints_in((2, 4, 12, 40), 1, [0.3] * 5 + [0.9] * 12), keypoints_in((34, 4, 44, 40), 2)]
    second = [keypoints_in((4, 4, 20, 44), 3), keypoints_in((30, 4, 46, 44), 4)]
    return {"3": {"keypoints": first, "boxes": []}, "1": {"keypoints": second}}


def test_cityscapes_face_box_crossing_the_border_is_clipped_and_still_rematches(cityscapes):
    persons, _ = cityscapes
    faces = city_faces()
    faces["aachen_000001_000019_leftImg8bit.png"][0] = [32.0, -1.25, 44.0, 15.0, 0.25]
    detections = ar.cityscapes_face_detections(faces, persons)
    assert detections["checks"]["misfits"] == 0 and detections["images"][city_file("aachen_000001_000019")]["boxes"] == [[32.0, -1.25, 44.0, 15.0]]
    regions = build_face_regions(detections, persons, dataset="cityscapes", confidence=0.2, min_iou=0.01)
    assert regions["images"][city_file("aachen_000001_000019")][0]["box"] == [32.0, 0.0, 44.0, 15.0]
    assert regions["counts"]["clipped_to_image"] == 1 and regions["counts"]["clipped_max_outside_px"] == 1.25


def test_bdd100k_keypoints_with_the_coco_format_file(bdd100k):
    persons, coco = bdd100k
    document = ar.bdd100k_keypoints(bdd_keypoints(), persons, coco)
    check_keypoints_refer_to_persons(document, persons)
    first = "images/10k/train/0a0a0a0a-00000001.jpg"
    entry = next(e for e in document["images"][first] if e["person_id"] == person_by_source(persons, first, 1)["id"])
    assert entry["keypoints"][2::3] == [0] * 5 + [1] * 12  # score 0.3 is not visible for BDD100K (>)
    assert document["visible_if"] == "score > score_threshold"
    assert document["counts"]["with_keypoints"] == 4 and document["images_not_in_source"] == []
    assert document["checks"]["misfits"] == 0


def test_bdd100k_guessed_ids_are_detected(bdd100k):
    persons, _ = bdd100k
    # without the COCO-format file the ids are taken as ours (sorted file names): "3" is the car image
    with pytest.raises(DatasetError, match=r"0c0c0c0c-00000003.*2 keypoint entries.*has 0.*ins_seg_train_cocofmt"):
        ar.bdd100k_keypoints(bdd_keypoints(), persons)
    # keyed by our ids it works without the file; images without an entry are listed
    authors = {"1": bdd_keypoints()["3"]}
    document = ar.bdd100k_keypoints(authors, persons)
    assert document["images_not_in_source"] == ["images/10k/train/0b0b0b0b-00000002.jpg"]
    assert document["counts"]["without_keypoints"] == 2


def test_bdd100k_permuted_instances_are_detected(bdd100k):
    persons, coco = bdd100k
    authors = bdd_keypoints()
    authors["3"]["keypoints"].reverse()
    with pytest.raises(DatasetError, match=r"2 of 4 checked.*0a0a0a0a-00000001.*instance order differs"):
        ar.bdd100k_keypoints(authors, persons, coco)


def test_bdd100k_coco_format_file_is_checked(bdd100k):
    persons, coco = bdd100k
    other = copy.deepcopy(coco)
    other["images"][0]["file_name"] = "ffffffff-00000009.jpg"
    with pytest.raises(DatasetError, match="1 images that persons.json .* does not have"):
        ar.bdd100k_keypoints(bdd_keypoints(), persons, other)
    other = copy.deepcopy(coco)
    other["categories"][0]["name"] = "person"
    with pytest.raises(DatasetError, match="not 'pedestrian'"):
        ar.bdd100k_source_index(persons, other)
    # an annotation whose mask is none of our persons keeps its position, as None
    other = copy.deepcopy(coco)
    moved = next(a for a in other["annotations"] if a["image_id"] == 1 and a["category_id"] == 1)
    moved["segmentation"] = encode(bdd_mask((50, 40, 60, 47)))
    index = ar.bdd100k_source_index(persons, other)
    assert index["1"].entries[0] is None and index["1"].entries[1] is not None


def test_bdd100k_face_boxes(bdd100k):
    persons, coco = bdd100k
    faces = {"3": [[3.0, 4.0, 11.0, 12.0], [35.0, 4.5, 43.0, 12.0]], "1": []}  # coordinates only
    detections = ar.bdd100k_face_detections(faces, persons, coco)
    first = "images/10k/train/0a0a0a0a-00000001.jpg"
    assert detections["images"][first]["scores"] == [1.0, 1.0] and not detections["detector"]["scores_published"]
    assert detections["checks"]["rematched"] == 2
    regions = build_face_regions(detections, persons, dataset="bdd100k", confidence=0.3, min_iou=0.01)
    _check_faces_refer_to_persons(regions, persons)
    assert {r["person_id"] for r in regions["images"][first]} == {person_by_source(persons, first, s)["id"] for s in (1, 3)}
    with pytest.raises(DatasetError, match=r"0c0c0c0c-00000003.*matches no person"):
        ar.bdd100k_face_detections(faces, persons)  # ids guessed: "3" is the car image


# ---------------------------------------------------------------------------------------------
# COCO: instances + person_keypoints files -> our persons.json; boxes_train2017.json

COCO_PERSONS = {  # image id -> [(annotation id, box, has keypoints)] in the instances file order
    7: [(101, (2, 4, 20, 44), True), (102, (22, 4, 40, 44), True), (103, (42, 4, 62, 44), True)],
    9: [(201, (4, 4, 28, 44), True), (202, (30, 30, 40, 40), False), (203, (34, 4, 60, 44), True)],
}


def coco_annotation(annotation_id, image_id, box, has_keypoints):
    x0, y0, x1, y1 = box
    keypoints = []
    for x, y, _ in keypoints_in(box, annotation_id):
        keypoints += [round(x), round(y), 2 if has_keypoints else 0]
    return {"id": annotation_id, "image_id": image_id, "category_id": 1, "iscrowd": 0,
            "segmentation": [[x0, y0, x1, y0, x1, y1, x0, y1]], "area": float((x1 - x0) * (y1 - y0)),
            "bbox": [x0, y0, x1 - x0, y1 - y0], "keypoints": keypoints if has_keypoints else [0] * 51,
            "num_keypoints": 17 if has_keypoints else 0}


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco")
    (root / "annotations").mkdir()
    (root / "train2017").mkdir()
    images = [{"id": image_id, "file_name": f"{image_id:012d}.jpg", "width": W, "height": H} for image_id in (7, 9, 11)]
    for image in images:
        Image.new("RGB", (W, H)).save(root / "train2017" / image["file_name"])
    annotations = [coco_annotation(a, image_id, box, kp) for image_id, rows in COCO_PERSONS.items() for a, box, kp in rows]
    category = {"id": 1, "name": "person", "supercategory": "person", "keypoints": [f"k{i}" for i in range(17)], "skeleton": []}
    instances = {"images": images, "annotations": [{k: v for k, v in a.items() if k not in ("keypoints", "num_keypoints")}
                                                   for a in annotations], "categories": [category]}
    # the keypoints file lists image 7's persons in another order than the instances file
    keypoint_annotations = [annotations[2], annotations[0], annotations[1], *annotations[3:]]
    person_keypoints = {"images": images, "annotations": keypoint_annotations, "categories": [category]}
    (root / "annotations" / "instances_train2017.json").write_text(json.dumps(instances))
    (root / "annotations" / "person_keypoints_train2017.json").write_text(json.dumps(person_keypoints))
    persons = normalize_split("coco", root, "train")["persons"]
    return persons, person_keypoints


def coco_boxes():
    """boxes_train2017.json: matched boxes in match order with the keypoint-file candidate index.
    Image 7's candidates (keypoints file order): 103, 101, 102; image 9's: 201, 203 (202 has none)."""
    return {
        "7": {"boxes": [[44.0, 4.0, 52.0, 12.0], [4.0, 4.5, 12.5, 12.0]], "keypoint_indices": [0, 1]},
        "9": {"boxes": [[40.0, 4.0, 50.0, 14.0]], "keypoint_indices": [1]},
        "11": {"boxes": [], "keypoint_indices": []},
    }


def test_coco_face_regions(coco):
    persons, person_keypoints = coco
    regions = ar.coco_face_regions(coco_boxes(), persons, person_keypoints)
    assert regions["format"] == "face-regions/v1" and regions["confidence"] == 0.3 and regions["min_match_iou"] == 0.01
    _check_faces_refer_to_persons(regions, persons)
    seven = "train2017/000000000007.jpg"
    assert [r["person_id"] for r in regions["images"][seven]] == [person_by_source(persons, seven, s)["id"] for s in (103, 101)]
    assert regions["images"][seven][0]["box"] == [44.0, 4.0, 52.0, 12.0] and regions["images"][seven][0]["score"] is None
    assert regions["images"]["train2017/000000000011.jpg"] == []
    assert regions["counts"]["matched"] == 3 and regions["counts"]["persons_with_face"] == 3
    assert regions["checks"]["misfits"] == 0
    image = next(i for i in persons["images"] if i["file_name"] == seven)
    annotations = [a for a in persons["annotations"] if a["image_id"] == 7]
    targets, skipped = plan_targets("face", image, annotations, regions["images"][seven], 0)
    assert len(targets) == 2 and [s["id"] for s in skipped] == [person_by_source(persons, seven, 102)["id"]]


def test_coco_face_box_1_25_px_outside_is_clipped_and_counted(coco):
    persons, person_keypoints = coco
    boxes = coco_boxes()
    boxes["7"]["boxes"][0] = [56.0, -1.25, 65.25, 8.0]  # person 103's face, cut by the top and right borders
    regions = ar.coco_face_regions(boxes, persons, person_keypoints)
    seven = "train2017/000000000007.jpg"
    assert regions["images"][seven][0]["box"] == [56.0, 0.0, 64.0, 8.0]
    assert regions["images"][seven][0]["person_id"] == person_by_source(persons, seven, 103)["id"]
    assert regions["counts"]["clipped_to_image"] == 1 and regions["counts"]["clipped_max_outside_px"] == 1.25
    assert ar.coco_face_regions(coco_boxes(), persons, person_keypoints)["counts"]["clipped_to_image"] == 0


def test_coco_instances_order_instead_of_keypoints_order_is_detected(coco):
    persons, _ = coco
    with pytest.raises(DatasetError, match=r"2 of 3 checked instances.*000000000007.*IoU 0.000"):
        ar.coco_face_regions(coco_boxes(), persons)


@pytest.mark.parametrize("change, message", [
    (lambda b: b["7"]["keypoint_indices"].__setitem__(1, 3), r"out of range.*has 3 persons"),
    (lambda b: b["7"]["keypoint_indices"].__setitem__(1, 0), r"repeat a person"),
    (lambda b: b["7"]["keypoint_indices"].pop(), r"2 boxes but 1 keypoint_indices"),
    (lambda b: b["7"]["boxes"].__setitem__(0, [44.0, 4.0, 52.0]), r"box 0: expected a list of 4"),
    (lambda b: b["7"]["boxes"].__setitem__(0, [52.0, 4.0, 44.0, 12.0]), r"box 0: .* is empty"),
    (lambda b: b["7"]["boxes"].__setitem__(0, [64.5, 4.0, 90.0, 12.0]), r"box 0: box \[64.5, 4.0, 90.0, 12.0\] lies entirely outside the 64x48 "
                                                                         r"image; check the detector's coordinate convention"),
    (lambda b: b.__setitem__("7", [[44.0, 4.0, 52.0, 12.0]]), r"expected \{'boxes'"),
])
def test_coco_malformed_entries(coco, change, message):
    persons, person_keypoints = coco
    boxes = coco_boxes()
    change(boxes)
    with pytest.raises(DatasetError, match=r"1 of 3 images disagree.*000000000007.*" + message):
        ar.coco_face_regions(boxes, persons, person_keypoints)


def test_coco_unknown_image_and_wrong_person(coco):
    persons, person_keypoints = coco
    boxes = coco_boxes()
    boxes["139"] = {"boxes": [], "keypoint_indices": []}
    with pytest.raises(DatasetError, match=r"image '139': no such image"):
        ar.coco_face_regions(boxes, persons, person_keypoints)
    boxes = coco_boxes()
    boxes["7"]["keypoint_indices"] = [1, 0]  # both faces assigned to the other person
    with pytest.raises(DatasetError, match=r"2 of 3 checked instances.*000000000007"):
        ar.coco_face_regions(boxes, persons, person_keypoints)
    regions = ar.coco_face_regions(boxes, persons, person_keypoints, max_misfit_fraction=1.0)
    assert regions["checks"]["misfits"] == 2


def test_persons_of_another_dataset_are_refused(coco, cityscapes):
    with pytest.raises(DatasetError, match="not 'cityscapes'"):
        ar.cityscapes_keypoints({}, coco[0])
    with pytest.raises(DatasetError, match="not 'coco'"):
        ar.coco_face_regions({}, cityscapes[0])


def test_documents_are_json(cityscapes, bdd100k, coco):
    documents = [ar.cityscapes_keypoints(city_keypoints(), *cityscapes), ar.cityscapes_face_detections(city_faces(), cityscapes[0]),
                 ar.bdd100k_keypoints(bdd_keypoints(), *bdd100k), ar.coco_face_regions(coco_boxes(), *coco)]
    for document in documents:
        assert json.loads(json.dumps(document, allow_nan=False)) == document
    assert PurePosixPath(next(iter(documents[0]["images"]))).parts[0] == "leftImg8bit"


def test_keypoint_documents_pass_the_body_pipelines_reader(cityscapes, bdd100k):
    keypoints = pytest.importorskip("anonymization_impact.keypoints")
    if not hasattr(keypoints, "attach_keypoints"):
        pytest.skip("anonymization_impact.keypoints has no attach_keypoints")
    for document, persons in ((ar.cityscapes_keypoints(city_keypoints(), *cityscapes), cityscapes[0]),
                              (ar.bdd100k_keypoints(bdd_keypoints(), *bdd100k), bdd100k[0])):
        assert document["format"] == keypoints.KEYPOINTS_FORMAT
        attached = keypoints.attach_keypoints(persons, document)
        assert len(attached) == document["counts"]["with_keypoints"]


# ---------------------------------------------------------------------------------------------
# what the import rules call: the files read from a dataset root


def _cityscapes_root_with_keypoints(tmp_path, polygons):
    """A Cityscapes root holding the polygon files the alignment reads and the authors' keypoints."""
    root = tmp_path / "cityscapes"
    for file_name, document in polygons.items():
        path = root / ar.cityscapes_polygons_file(file_name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(document))
    (root / "annotated_keypoints_train.json").write_text(json.dumps(city_keypoints()))
    return root


def test_the_rule_entry_reads_the_files_the_alignment_needs(coco, cityscapes, tmp_path):
    persons, person_keypoints = coco
    (tmp_path / "coco" / "annotations").mkdir(parents=True)
    (tmp_path / "coco" / "annotations" / "person_keypoints_train2017.json").write_text(json.dumps(person_keypoints))
    (tmp_path / "coco" / "boxes_train2017.json").write_text(json.dumps(coco_boxes()))
    files = {"faces": "boxes_train2017.json"}
    assert ar.import_authors_regions("faces", "coco", tmp_path / "coco", persons, files) == ar.coco_face_regions(coco_boxes(), persons, person_keypoints)

    city_persons, polygons = cityscapes
    root = _cityscapes_root_with_keypoints(tmp_path, polygons)
    files = {"faces": "face_boxes_train.json", "keypoints": "annotated_keypoints_train.json"}
    imported = ar.import_authors_regions("keypoints", "cityscapes", root, city_persons, files)
    assert imported == ar.cityscapes_keypoints(city_keypoints(), city_persons, polygons)
    with pytest.raises(DatasetError, match=r"face_boxes_train.json does not exist: download .*docs/authors-regions.md.*regions.source.cityscapes: detectors"):
        ar.import_authors_regions("faces", "cityscapes", root, city_persons, files)
    next(root.rglob("*_gtFine_polygons.json")).unlink()
    with pytest.raises(DatasetError, match="gtFine_polygons.json, which does not exist"):
        ar.import_authors_regions("keypoints", "cityscapes", root, city_persons, files)


def test_the_rule_entry_applies_this_workflows_keypoint_threshold(cityscapes, tmp_path):
    city_persons, polygons = cityscapes
    root = _cityscapes_root_with_keypoints(tmp_path, polygons)
    files = {"keypoints": "annotated_keypoints_train.json"}

    def visible(document):
        return sum(v > 0 for entries in document["images"].values() for entry in entries for v in entry["keypoints"][2::3])

    authors = ar.import_authors_regions("keypoints", "cityscapes", root, city_persons, files)
    strict = ar.import_authors_regions("keypoints", "cityscapes", root, city_persons, files, score_threshold=0.95)
    assert visible(strict) < visible(authors)
