"""The synthetic twins: determinism, and truth manifests checked against an independent reading of the files.

COCO is read with pycocotools, Cityscapes from its PNGs and polygon JSONs (re-rasterised with
cityscapesscripts' own json2instanceImg / json2labelImg), BDD100K from the bitmask channels.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anonymization_impact.twins import TWIN_DATASETS, write_twin

SIZES = {"n_train": 12, "n_val": 6}
PERSON = {"coco": "person", "cityscapes": "person", "bdd100k": "pedestrian"}


def _write(base: Path, dataset: str, seed: int, n_train: int, n_val: int) -> dict:
    root, truth, faces = base / dataset, base / f"{dataset}.truth.json", base / f"{dataset}.faces.json"
    write_twin(dataset, root, truth, faces, n_train=n_train, n_val=n_val, seed=seed)
    return {"root": root, "truth": json.loads(truth.read_text()), "faces": json.loads(faces.read_text()),
            "truth_path": truth, "faces_path": faces}


@pytest.fixture(scope="module")
def twin(tmp_path_factory):
    base = tmp_path_factory.mktemp("twins")
    return {dataset: _write(base, dataset, 0, **SIZES) for dataset in TWIN_DATASETS}


def _digests(base: Path) -> dict[str, str]:
    return {str(p.relative_to(base)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(base.rglob("*")) if p.is_file()}


def _instances(split: dict):
    return [(image, inst) for image in split["images"] for inst in image["instances"]]


def _eligible(inst: dict, dataset: str) -> bool:
    return (inst["category"] == PERSON[dataset] and not inst["iscrowd"] and not inst["ignore"]
            and (dataset != "coco" or inst["num_keypoints"] >= 1))


# ----------------------------------------------------------------------------------------------- API

def test_unknown_dataset_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown twin dataset"):
        write_twin("kitti", tmp_path / "r", tmp_path / "t.json", tmp_path / "f.json", n_train=8, n_val=4, seed=0)


def test_non_empty_root_is_refused(tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "x").write_text("x")
    with pytest.raises(ValueError, match="not an empty directory"):
        write_twin("coco", tmp_path / "r", tmp_path / "t.json", tmp_path / "f.json", n_train=8, n_val=4, seed=0)


@pytest.mark.parametrize("dataset", TWIN_DATASETS)
def test_deterministic_and_seed_dependent(tmp_path, dataset):
    a = _write(tmp_path / "a", dataset, 5, 5, 4)
    b = _write(tmp_path / "b", dataset, 5, 5, 4)
    c = _write(tmp_path / "c", dataset, 6, 5, 4)
    da, db, dc = _digests(tmp_path / "a"), _digests(tmp_path / "b"), _digests(tmp_path / "c")
    assert len(da) > 10 and da == db
    images_a = {k: v for k, v in da.items() if k.endswith((".jpg", "_leftImg8bit.png"))}
    images_c = {k: v for k, v in dc.items() if k.endswith((".jpg", "_leftImg8bit.png"))}
    assert len(images_a) == 9
    # BDD names depend on the seed too, so compare the content digests, not the names
    assert not set(images_a.values()) & set(images_c.values())
    assert a["truth"] != c["truth"]


# ----------------------------------------------------------------------------------------------- common checks

@pytest.mark.parametrize("dataset", TWIN_DATASETS)
def test_special_cases_present(twin, dataset):
    truth = twin[dataset]["truth"]
    assert truth["dataset"] == dataset and truth["seed"] == 0 and truth["format_version"] == 1
    person = PERSON[dataset]
    for split_name, n in (("train", SIZES["n_train"]), ("val", SIZES["n_val"])):
        split = truth["splits"][split_name]
        counts = split["counts"]
        assert counts["images"] == len(split["images"]) == n
        insts = _instances(split)
        eligible = [(img, i) for img, i in insts if _eligible(i, dataset)]
        assert counts["persons_eligible"] == len(eligible)
        assert counts["persons_touching_border"] == sum(i["touches_border"] for _, i in eligible) >= 1
        assert counts["persons_below_32sq"] == sum(i["bbox"][2] * i["bbox"][3] < 1024 for _, i in eligible) >= 2
        assert any(i["bbox"][3] * 3 >= img["height"] for img, i in eligible)
        no_person = [img for img in split["images"] if not any(i["category"] == person for i in img["instances"])]
        only_crowd = [img for img in split["images"]
                      if (ps := [i for i in img["instances"] if i["category"] == person]) and all(i["iscrowd"] for i in ps)]
        assert counts["images_without_persons"] == len(no_person) >= 1
        assert counts["images_only_crowd_persons"] == len(only_crowd) >= 1
        facing = [i["front_facing"] for _, i in insts if i["front_facing"] is not None]
        assert True in facing and False in facing
        assert counts["faces_visible"] == sum(i["face_box"] is not None for _, i in insts) >= 1
        per_cat = Counter(i["category"] for _, i in insts)
        assert {k: v["total"] for k, v in counts["instances"].items()} == dict(per_cat)
        if dataset == "coco":
            assert any(i["category"] == "person" and not i["iscrowd"] and i["num_keypoints"] == 0 for _, i in insts)
        else:
            assert per_cat["rider"] >= 1
            assert all(i["num_keypoints"] is None for _, i in insts)
        if dataset == "bdd100k":
            assert counts["instances"]["pedestrian"]["ignore"] >= 1
        for image, inst in insts:
            x, y, w, h = inst["bbox"]
            assert 0 <= x and 0 <= y and x + w <= image["width"] and y + h <= image["height"]
            assert 16 <= inst["area"] <= w * h
            touches = x == 0 or y == 0 or x + w == image["width"] or y + h == image["height"]
            assert inst["touches_border"] == touches


@pytest.mark.parametrize("dataset", TWIN_DATASETS)
def test_images_open_with_the_annotated_size(twin, dataset):
    root = twin[dataset]["root"]
    for split in twin[dataset]["truth"]["splits"].values():
        for image in split["images"]:
            with Image.open(root / image["file"]) as im:
                assert im.size == (image["width"], image["height"])
                assert im.mode == "RGB"
                assert im.format == ("PNG" if dataset == "cityscapes" else "JPEG")


@pytest.mark.parametrize("dataset", TWIN_DATASETS)
def test_face_detections_cover_the_training_split(twin, dataset):
    faces, truth = twin[dataset]["faces"], twin[dataset]["truth"]
    assert faces["format"] == "face-detections/v1" and faces["split"] == "train"
    train = {img["file"]: img for img in truth["splits"]["train"]["images"]}
    assert set(faces["images"]) == set(train)
    n_boxes = 0
    for file, det in faces["images"].items():
        assert len(det["boxes"]) == len(det["scores"])
        w, h = train[file]["width"], train[file]["height"]
        for (x0, y0, x1, y1), score in zip(det["boxes"], det["scores"]):
            assert 0 <= score <= 1
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
            n_boxes += 1
    assert n_boxes >= 1


def test_face_scores_straddle_the_thresholds(tmp_path):
    faces = _write(tmp_path, "coco", 0, 24, 4)["faces"]
    scores = [s for det in faces["images"].values() for s in det["scores"]]
    assert any(0.2 <= s < 0.3 for s in scores) or any(0.05 <= s < 0.2 for s in scores)
    assert any(s >= 0.5 for s in scores)
    assert all(s == round(s, 2) for s in scores)


# ----------------------------------------------------------------------------------------------- COCO

def test_coco_files_agree_with_truth(twin):
    from pycocotools.coco import COCO

    root, truth = twin["coco"]["root"], twin["coco"]["truth"]
    all_ids = []
    for split_name, split in truth["splits"].items():
        kp = COCO(str(root / "annotations" / f"person_keypoints_{split_name}2017.json"))
        inst = COCO(str(root / "annotations" / f"instances_{split_name}2017.json"))
        assert [c["name"] for c in kp.loadCats(kp.getCatIds())] == ["person"]
        person_cat = kp.loadCats([1])[0]
        assert len(person_cat["keypoints"]) == 17 and len(person_cat["skeleton"]) == 19
        names = {c["id"]: c["name"] for c in inst.loadCats(inst.getCatIds())}
        assert names[1] == "person" and names[2] == "bicycle" and names[3] == "car" and names[18] == "dog"
        kp_anns = kp.loadAnns(kp.getAnnIds())
        inst_anns = inst.loadAnns(inst.getAnnIds())
        all_ids += [a["id"] for a in inst_anns]
        # the same person annotations in both files
        assert {a["id"] for a in kp_anns} == {a["id"] for a in inst_anns if a["category_id"] == 1}
        per_cat = Counter(names[a["category_id"]] for a in inst_anns)
        assert {k: v["total"] for k, v in split["counts"]["instances"].items()} == dict(per_cat)
        assert split["counts"]["instances"]["person"]["crowd"] == sum(a["iscrowd"] for a in kp_anns) >= 1
        eligible = [a for a in kp_anns if not a["iscrowd"] and a["num_keypoints"] >= 1]
        assert split["counts"]["persons_eligible"] == len(eligible)
        assert split["counts"]["persons_below_32sq"] == sum(a["bbox"][2] * a["bbox"][3] < 1024 for a in eligible)
        kinds = Counter()
        files = {img["file"]: img for img in split["images"]}
        for image_id in kp.getImgIds():
            info = kp.loadImgs([image_id])[0]
            image = files[f"{split_name}2017/{info['file_name']}"]
            assert (info["width"], info["height"]) == (image["width"], image["height"])
            assert re.fullmatch(r"\d{12}\.jpg", info["file_name"])
            anns = inst.loadAnns(inst.getAnnIds(imgIds=[image_id]))
            assert len(anns) == len(image["instances"])
            union = np.zeros((info["height"], info["width"]), np.int32)
            for ann, expected in zip(anns, image["instances"]):
                mask = inst.annToMask(ann).astype(bool)
                union += mask
                assert int(mask.sum()) == ann["area"] == expected["area"]
                ys, xs = np.nonzero(mask)
                box = [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]
                assert box == [int(v) for v in ann["bbox"]] == expected["bbox"]
                assert bool(ann["iscrowd"]) == expected["iscrowd"]
                seg = ann["segmentation"]
                kinds["polygon" if isinstance(seg, list) else "list-rle" if isinstance(seg["counts"], list) else "str-rle"] += 1
                if ann["iscrowd"]:
                    assert isinstance(seg, dict) and isinstance(seg["counts"], list)
                if ann["category_id"] == 1:
                    person = kp.loadAnns([ann["id"]])[0]
                    kps = np.array(person["keypoints"]).reshape(17, 3)
                    assert person["num_keypoints"] == int((kps[:, 2] > 0).sum()) == (expected["num_keypoints"] or 0)
                    if ann["iscrowd"]:
                        assert not kps.any()
                    labelled = kps[kps[:, 2] > 0]
                    assert ((labelled[:, 0] >= 0) & (labelled[:, 0] < info["width"])).all()
                    assert ((labelled[:, 1] >= 0) & (labelled[:, 1] < info["height"])).all()
            assert union.max() <= 1, "visible masks of one image must not overlap"
        assert kinds["polygon"] and kinds["str-rle"] and kinds["list-rle"]
    assert len(all_ids) == len(set(all_ids)), "annotation ids must be unique across splits"


# ----------------------------------------------------------------------------------------------- Cityscapes

def test_cityscapes_files_agree_with_truth(twin):
    from cityscapesscripts.helpers.annotation import Annotation
    from cityscapesscripts.helpers.labels import id2label
    from cityscapesscripts.preparation.json2instanceImg import createInstanceImage
    from cityscapesscripts.preparation.json2labelImg import createLabelImage

    root, truth = twin["cityscapes"]["root"], twin["cityscapes"]["truth"]
    assert sorted(p.name for p in (root / "leftImg8bit" / "train").iterdir()) == ["aachen", "bochum"]
    assert sorted(p.name for p in (root / "leftImg8bit" / "val").iterdir()) == ["frankfurt"]
    for split_name, split in truth["splits"].items():
        totals, crowds = Counter(), Counter()
        for image in split["images"]:
            assert re.fullmatch(r"leftImg8bit/(train|val)/(\w+)/\2_\d{6}_\d{6}_leftImg8bit\.png", image["file"])
            stem = image["file"].replace("leftImg8bit/", "gtFine/", 1).removesuffix("_leftImg8bit.png")
            label_png = Image.open(root / f"{stem}_gtFine_labelIds.png")
            instance_png = Image.open(root / f"{stem}_gtFine_instanceIds.png")
            assert label_png.mode == "L" and instance_png.mode in ("I;16", "I")
            label_ids, instance_ids = np.array(label_png), np.array(instance_png)
            assert label_ids.shape == instance_ids.shape == (image["height"], image["width"])
            polygons = json.loads((root / f"{stem}_gtFine_polygons.json").read_text())
            assert (polygons["imgWidth"], polygons["imgHeight"]) == (image["width"], image["height"])
            # the official converters rasterise the polygons to exactly the stored PNGs
            annotation = Annotation()
            annotation.fromJsonFile(str(root / f"{stem}_gtFine_polygons.json"))
            assert np.array_equal(np.array(createInstanceImage(annotation, "ids")), instance_ids)
            assert np.array_equal(np.array(createLabelImage(annotation, "ids")), label_ids)

            labels = Counter(o["label"] for o in polygons["objects"])
            expected = [i for i in image["instances"]]
            for value in np.unique(instance_ids):
                mask = instance_ids == value
                label = id2label[int(value) // 1000 if value >= 1000 else int(value)]
                assert (label_ids[mask] == label.id).all()
                if value >= 1000 or (label.hasInstances and label.id == 24):
                    ys, xs = np.nonzero(mask)
                    box = [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]
                    match = [i for i in expected if i["bbox"] == box and i["area"] == int(mask.sum())
                             and i["category"] == label.name and i["iscrowd"] == (value < 1000)]
                    assert len(match) == 1, (image["file"], value)
                    totals[label.name] += 1
                    crowds[label.name] += int(value < 1000)
            n_person_ids = len([v for v in np.unique(instance_ids) if v // 1000 == 24])
            assert labels["person"] == n_person_ids
            assert labels["persongroup"] == int((instance_ids == 24).any())
        assert {k: v["total"] for k, v in split["counts"]["instances"].items()} == dict(totals)
        assert {k: v["crowd"] for k, v in split["counts"]["instances"].items() if v["crowd"]} == dict(+crowds)
        assert totals["rider"] >= 1 and totals["bicycle"] >= 1 and totals["car"] >= 1
        assert totals["truck"] + totals["bus"] + totals["motorcycle"] >= 1


# ----------------------------------------------------------------------------------------------- BDD100K

def test_bdd100k_bitmasks_agree_with_truth(twin):
    names = ("pedestrian", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle")
    root, truth = twin["bdd100k"]["root"], twin["bdd100k"]["truth"]
    for split_name, split in truth["splits"].items():
        totals, crowd, ignore = Counter(), Counter(), Counter()
        truncated = 0
        for image in split["images"]:
            match = re.fullmatch(rf"images/10k/{split_name}/([0-9a-f]{{8}}-[0-9a-f]{{8}})\.jpg", image["file"])
            assert match
            bitmask_png = Image.open(root / "labels" / "ins_seg" / "bitmasks" / split_name / f"{match[1]}.png")
            assert bitmask_png.mode == "RGBA"
            bitmask = np.array(bitmask_png)
            assert bitmask.shape == (image["height"], image["width"], 4)
            category, attributes = bitmask[..., 0], bitmask[..., 1]
            ids = (bitmask[..., 2].astype(np.int32) << 8) + bitmask[..., 3]
            assert ((category == 0) == (ids == 0)).all() and not attributes[category == 0].any()
            found = []
            for value in np.unique(ids[ids > 0]):
                mask = ids == value
                cats, bits = np.unique(category[mask]), np.unique(attributes[mask])
                assert len(cats) == 1 and len(bits) == 1 and 1 <= cats[0] <= 8
                name, bit = names[cats[0] - 1], int(bits[0])
                ys, xs = np.nonzero(mask)
                box = [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]
                found.append((name, bool(bit & 2), bool(bit & 1), box, int(mask.sum())))
                totals[name] += 1
                crowd[name] += bool(bit & 2)
                ignore[name] += bool(bit & 1)
                truncated += bool(bit & 8)
            expected = [(i["category"], i["iscrowd"], i["ignore"], i["bbox"], i["area"]) for i in image["instances"]]
            assert sorted(found) == sorted(expected)
        counts = split["counts"]["instances"]
        assert {k: v["total"] for k, v in counts.items()} == dict(totals)
        assert {k: v["crowd"] for k, v in counts.items() if v["crowd"]} == dict(+crowd)
        assert {k: v["ignore"] for k, v in counts.items() if v["ignore"]} == dict(+ignore)
        assert crowd["pedestrian"] >= 1 and ignore["pedestrian"] >= 1 and truncated >= 1
