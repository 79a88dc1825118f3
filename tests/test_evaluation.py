"""Evaluation: pycocotools / cityscapesscripts on predictions derived from the twins' ground truth,
checked against the evaluators called directly; provenance; the metric JSON schema."""

from __future__ import annotations

import copy
import glob
import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from anonymization_impact import evaluation
from anonymization_impact.annotations import normalize_split
from anonymization_impact.errors import WorkflowInputError
from anonymization_impact.evaluation import evaluate, metrics_document, validate_metrics_document
from anonymization_impact.masks import bbox as rle_bbox
from anonymization_impact.masks import decode, encode
from anonymization_impact.provenance import config_sha256, provenance

TASKS = [("coco", "instance_segmentation"), ("coco", "keypoints"), ("cityscapes", "instance_segmentation"), ("bdd100k", "instance_segmentation")]


@pytest.fixture(scope="module")
def ground_truth(twins):
    cache = {}

    def get(dataset: str) -> dict:
        if dataset not in cache:
            cache[dataset] = normalize_split(dataset, twins[dataset]["root"], "val")["instances"]
        return copy.deepcopy(cache[dataset])

    return get


def run(dataset, task, gt, predictions, twins, work_dir):
    return evaluate(dataset, task, gt, predictions, raw_root=twins[dataset]["root"], work_dir=work_dir)


# --------------------------------------------------------------------------- predictions


def box_center_keypoints(annotation) -> list[float]:
    x, y, w, h = annotation["bbox"]
    return [x + w / 2, y + h / 2, 1.0] * 17


def perfect(gt: dict, task: str = "instance_segmentation") -> list[dict]:
    """Every ground-truth instance (crowd / ignore regions too) as a prediction with score 1;
    for the keypoint task the persons only (a Keypoint R-CNN has one class). Persons without a
    labelled keypoint get all keypoints at their box centre: pycocotools then matches them to
    their (ignored) ground truth, as it does with a real detector's hits on them."""
    predictions = []
    for a in gt["annotations"]:
        if task == "keypoints" and "keypoints" not in a:
            continue
        prediction = {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0, "segmentation": a["segmentation"]}
        if "keypoints" in a:
            prediction["keypoints"] = [float(v) for v in a["keypoints"]] if a["num_keypoints"] else box_center_keypoints(a)
        predictions.append(prediction)
    return predictions


def person_ids(gt: dict) -> set[int]:
    return {c["id"] for c in gt["categories"] if c["name"] in ("person", "pedestrian")}


def degraded(gt: dict, seed: int = 0) -> list[dict]:
    """Half the persons dropped, masks shifted by up to 3 px, keypoints jittered, random scores,
    and a few false positives (far-shifted copies)."""
    rng = np.random.default_rng(seed)
    persons = person_ids(gt)
    predictions = []
    person_index = 0
    for a in gt["annotations"]:
        if a["iscrowd"]:
            continue
        if a["category_id"] in persons:
            person_index += 1
            if person_index % 2 == 0:
                continue
        mask = decode(a["segmentation"])
        for shift_range, score_scale in ((3, 1.0), (25, 0.5)):
            if shift_range == 25 and rng.random() < 0.7:
                continue  # only some false positives
            dy, dx = (int(v) for v in rng.integers(-shift_range, shift_range + 1, size=2))
            moved = np.roll(mask, (dy, dx), axis=(0, 1))
            if not moved.any():
                continue
            rle = encode(moved)
            prediction = {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": rle_bbox(rle), "score": float(rng.random()) * score_scale, "segmentation": rle}
            if "keypoints" in a:
                keypoints = np.array(a["keypoints"] if a["num_keypoints"] else box_center_keypoints(a), dtype=float).reshape(17, 3)
                keypoints[:, :2] += rng.normal(0, 2.0, size=(17, 2)) + (dx, dy)
                keypoints[:, 2] = 1.0
                prediction["keypoints"] = [float(v) for v in keypoints.ravel()]
            predictions.append(prediction)
    return predictions


# --------------------------------------------------------------------------- independent references


def reference_cocoeval(gt: dict, predictions: list[dict], iou_type: str, tmp_path: Path, category_ids=None):
    """pycocotools as its README uses it: files on disk, COCO(), loadRes(), COCOeval. For mask
    AP the boxes are removed (detectron2 / MMDetection do this so that area ranges use mask area)."""
    gt_file, dt_file = tmp_path / f"ref-gt-{iou_type}.json", tmp_path / f"ref-dt-{iou_type}.json"
    gt_file.write_text(json.dumps(gt))
    results = [{k: v for k, v in p.items() if not (iou_type == "segm" and k == "bbox")} for p in predictions]
    dt_file.write_text(json.dumps(results))
    coco_gt = COCO(str(gt_file))
    coco_eval = COCOeval(coco_gt, coco_gt.loadRes(str(dt_file)), iou_type)
    if category_ids is not None:
        coco_eval.params.catIds = category_ids
    coco_eval.evaluate()
    coco_eval.accumulate()
    coco_eval.summarize()
    return coco_eval


def reference_cityscapes(gt: dict, predictions: list[dict], root: Path, out: Path, monkeypatch) -> dict:
    """The official script's own flow (as its main() does it): glob its groundTruthSearch, find
    each image's prediction txt with getPrediction(), evaluateImgLists(). Files written here."""
    from cityscapesscripts.evaluation import evalInstanceLevelSemanticLabeling as official
    from cityscapesscripts.helpers.labels import name2label

    names = {c["id"]: c["name"] for c in gt["categories"]}
    files = {i["id"]: Path(i["file_name"]).name.replace("_leftImg8bit.png", "") for i in gt["images"]}
    results = out / "results"
    results.mkdir(parents=True)
    lines = {image_id: [] for image_id in files}
    for n, p in enumerate(predictions):
        mask_file = f"{files[p['image_id']]}_inst{n}.png"
        Image.fromarray(decode(p["segmentation"]) * 255).save(results / mask_file)
        lines[p["image_id"]].append(f"{mask_file} {name2label[names[p['category_id']]].id} {p['score']}\n")
    for image_id, stem in files.items():
        (results / f"{stem}_predictions.txt").write_text("".join(lines[image_id]))

    # cityscapesScripts 2.3.0 vs NumPy 2.4: np.in1d is gone, np.count_nonzero gives np.int64
    monkeypatch.setattr(np, "in1d", lambda a, b: np.isin(np.ravel(a), b), raising=False)

    def write_json(data, path):
        Path(path).write_text(json.dumps(data, default=lambda o: o.item() if isinstance(o, np.generic) else o.__dict__))

    monkeypatch.setattr(official, "writeDict2JSON", write_json)
    monkeypatch.chdir(out)
    args = copy.copy(official.args)
    args.cityscapesPath = str(root)
    args.groundTruthSearch = os.path.join(str(root), "gtFine", "val", "*", "*_gtFine_instanceIds.png")
    args.gtInstancesFile = str(out / "gt.json")
    args.exportFile = str(out / "result.json")
    args.predictionPath, args.predictionWalk = str(results), None
    args.quiet = True
    gt_list = sorted(glob.glob(args.groundTruthSearch))
    assert len(gt_list) == len(gt["images"])
    return official.evaluateImgLists([official.getPrediction(g, args) for g in gt_list], gt_list, args)


def pct(value):
    return None if value < 0 or np.isnan(value) else 100 * float(value)


def class_ap(coco_eval, k):
    p = coco_eval.eval["precision"][:, :, k, 0, -1]
    return pct(p[p > -1].mean()) if (p > -1).any() else None


# --------------------------------------------------------------------------- metrics


@pytest.mark.parametrize(("dataset", "task"), TASKS)
def test_perfect_predictions_score_100(dataset, task, ground_truth, twins, tmp_path):
    gt = ground_truth(dataset)
    result = run(dataset, task, gt, perfect(gt, task), twins, tmp_path)
    metrics = result["metrics"]
    keys = ("box_AP", "kp_AP", "kp_AP50") if task == "keypoints" else ("AP", "AP50", "AP_person")
    for key in keys:
        assert metrics[key] == pytest.approx(100.0), key
    present = {c["name"] for c in gt["categories"] if any(a["category_id"] == c["id"] and not a["iscrowd"] for a in gt["annotations"])}
    for name, ap in result["per_class_AP"].items():
        if name in present:
            assert ap == pytest.approx(100.0), name
        else:
            assert ap is None, name  # no ground truth: null, not 0
    assert result["evaluator"]["name"] == ("cityscapesscripts" if dataset == "cityscapes" else "pycocotools")
    json.dumps(result, allow_nan=False)  # no NaN leaks into the JSON


def test_cityscapes_ignores_instances_below_100_pixels(ground_truth, twins, tmp_path):
    """The official evaluation drops ground truth smaller than its minRegionSizes[0] = 100 px
    (and does not count predictions on it as false positives): missing every such instance
    still scores 100, where COCO-style AP would not. The twin has person instances of 34 and 73 px."""
    gt = ground_truth("cityscapes")
    tiny = [a for a in gt["annotations"] if a["area"] < 100 and not a["iscrowd"]]
    assert tiny, "the twin should contain instances below 100 px"
    kept = [p for p, a in zip(perfect(gt), gt["annotations"]) if a["area"] >= 100]
    result = run("cityscapes", "instance_segmentation", gt, kept, twins, tmp_path)
    assert result["metrics"]["AP"] == pytest.approx(100.0)
    assert result["metrics"]["AP_person"] == pytest.approx(100.0)
    # pycocotools on the same data counts them as misses
    coco_style = reference_cocoeval(gt, kept, "segm", tmp_path)
    assert coco_style.stats[0] < 1.0


@pytest.mark.parametrize("dataset", ["coco", "bdd100k"])
def test_degraded_mask_ap_equals_pycocotools(dataset, ground_truth, twins, tmp_path):
    gt = ground_truth(dataset)
    predictions = degraded(gt, seed=1)
    result = run(dataset, "instance_segmentation", gt, predictions, twins, tmp_path / "work")
    metrics = result["metrics"]
    assert 0 < metrics["AP"] < 100
    assert 0 < metrics["AP_person"] < 100
    reference = reference_cocoeval(gt, predictions, "segm", tmp_path)
    for name, value in zip(("AP", "AP50", "AP75", "APs", "APm", "APl"), reference.stats):
        assert metrics[name] == (None if value < 0 else pytest.approx(100 * value, abs=1e-9)), name
    names = {c["id"]: c["name"] for c in gt["categories"]}
    for k, category_id in enumerate(reference.params.catIds):
        expected = class_ap(reference, k)
        assert result["per_class_AP"][names[category_id]] == (pytest.approx(expected, abs=1e-9) if expected is not None else None)
    person = "person" if dataset == "coco" else "pedestrian"
    assert metrics["AP_person"] == result["per_class_AP"][person]
    if dataset == "coco":
        boxes = reference_cocoeval(gt, predictions, "bbox", tmp_path)
        assert metrics["box_AP"] == pytest.approx(100 * boxes.stats[0], abs=1e-9)
        assert metrics["mask_AP"] == metrics["AP"]


def test_degraded_keypoint_ap_equals_pycocotools(ground_truth, twins, tmp_path):
    gt = ground_truth("coco")
    predictions = [p for p in degraded(gt, seed=2) if p["category_id"] == 1]
    result = run("coco", "keypoints", gt, predictions, twins, tmp_path / "work")
    metrics = result["metrics"]
    assert 0 < metrics["kp_AP"] < 100 and 0 < metrics["box_AP"] < 100
    keypoints = reference_cocoeval(gt, predictions, "keypoints", tmp_path, category_ids=[1])
    boxes = reference_cocoeval(gt, predictions, "bbox", tmp_path, category_ids=[1])
    assert metrics["kp_AP"] == pytest.approx(100 * keypoints.stats[0], abs=1e-9)
    assert metrics["kp_AP50"] == pytest.approx(100 * keypoints.stats[1], abs=1e-9)
    assert metrics["box_AP"] == pytest.approx(100 * boxes.stats[0], abs=1e-9)
    assert result["per_class_AP"] == {"person": pytest.approx(metrics["kp_AP"])}


def test_keypoint_ap_uses_keypoints_not_boxes(ground_truth, twins, tmp_path):
    """Right boxes, keypoints thrown far off: box AP stays 100, keypoint AP falls."""
    gt = ground_truth("coco")
    predictions = perfect(gt, "keypoints")
    for p in predictions:
        p["keypoints"] = [v + 40.0 if i % 3 != 2 else v for i, v in enumerate(p["keypoints"])]
    metrics = run("coco", "keypoints", gt, predictions, twins, tmp_path)["metrics"]
    assert metrics["box_AP"] == pytest.approx(100.0)
    assert metrics["kp_AP"] < 50


def test_degraded_cityscapes_equals_official_script(ground_truth, twins, tmp_path, monkeypatch):
    gt = ground_truth("cityscapes")
    predictions = degraded(gt, seed=3)
    root = twins["cityscapes"]["root"]
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    cwd = Path.cwd()
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "gtInstances.json").write_text("{}")  # a stale ground-truth cache must not be read
    result = run("cityscapes", "instance_segmentation", gt, predictions, twins, tmp_path / "work")
    assert Path.cwd() == cwd
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before  # nothing written next to the raw data
    written = {p.name for p in (tmp_path / "work").iterdir()}
    assert {"gtInstances.json", "matches.json", "resultInstanceLevelSemanticLabeling.json", "predictions"} <= written
    package_dir = Path(evaluation.__file__).parent
    assert not (package_dir / "gtInstances.json").exists()

    metrics = result["metrics"]
    assert 0 < metrics["AP"] < 100 and 0 < metrics["AP_person"] < 100
    reference = reference_cityscapes(gt, predictions, root, tmp_path / "ref", monkeypatch)["averages"]
    assert metrics["AP"] == pytest.approx(100 * reference["allAp"], abs=1e-9)
    assert metrics["AP50"] == pytest.approx(100 * reference["allAp50%"], abs=1e-9)
    for name, values in reference["classes"].items():
        expected = pct(values["ap"])
        assert result["per_class_AP"][name] == (pytest.approx(expected, abs=1e-9) if expected is not None else None), name
    assert metrics["AP_person"] == result["per_class_AP"]["person"]
    # deterministic: a second run in the same work_dir (stale cache and predictions replaced) agrees
    assert run("cityscapes", "instance_segmentation", gt, predictions, twins, tmp_path / "work") == result


def test_cityscapes_label_ids_are_the_official_ones():
    from cityscapesscripts.helpers.labels import name2label

    assert evaluation.CITYSCAPES_LABEL_IDS == {name: name2label[name].id for name in evaluation.CITYSCAPES_LABEL_IDS}


@pytest.mark.parametrize(("dataset", "task"), TASKS)
def test_empty_predictions_score_0(dataset, task, ground_truth, twins, tmp_path):
    result = run(dataset, task, ground_truth(dataset), [], twins, tmp_path)
    for key in ("box_AP", "kp_AP") if task == "keypoints" else ("AP", "AP50", "AP_person"):
        assert result["metrics"][key] == 0.0, key


# --------------------------------------------------------------------------- bad input


def _break(kind: str, prediction: dict) -> str:
    if kind == "image_id":
        prediction["image_id"] = 987654
    elif kind == "category_id":
        prediction["category_id"] = 999
    elif kind == "segmentation":
        del prediction["segmentation"]
    elif kind == "keypoints":
        del prediction["keypoints"]
    elif kind == "size":
        prediction["segmentation"] = encode(np.ones((5, 7), dtype=np.uint8))
    return kind


@pytest.mark.parametrize(
    ("dataset", "task", "kind"),
    [
        ("bdd100k", "instance_segmentation", "image_id"),
        ("cityscapes", "instance_segmentation", "category_id"),
        ("bdd100k", "instance_segmentation", "segmentation"),
        ("coco", "keypoints", "keypoints"),
        ("cityscapes", "instance_segmentation", "size"),
        ("coco", "instance_segmentation", "size"),
    ],
)
def test_bad_predictions_are_named(dataset, task, kind, ground_truth, twins, tmp_path):
    gt = ground_truth(dataset)
    predictions = perfect(gt, task)
    _break(kind, predictions[3])
    with pytest.raises(WorkflowInputError, match=rf"prediction #3 .*{kind}"):
        run(dataset, task, gt, predictions, twins, tmp_path)
    assert not (tmp_path / "predictions").exists()  # rejected before anything was written


def test_keypoints_only_for_coco(ground_truth, twins, tmp_path):
    with pytest.raises(WorkflowInputError, match="keypoints"):
        run("bdd100k", "keypoints", ground_truth("bdd100k"), [], twins, tmp_path)


# --------------------------------------------------------------------------- provenance


def test_provenance_hashes_and_packages(tmp_path):
    torch_before = "torch" in sys.modules
    big = tmp_path / "weights.bin"
    big.write_bytes(np.random.default_rng(0).bytes(3 * (1 << 20) + 17))  # spans several read chunks
    annotation = tmp_path / "instances.json"
    annotation.write_text('{"images": []}')
    block = provenance(seed=2, annotation_files=[annotation], extra_files={"weights": big}, training_time_s=12.5, device="cuda:0")
    if not torch_before:
        assert "torch" not in sys.modules
    assert block["annotation_md5"] == {str(annotation): hashlib.md5(annotation.read_bytes()).hexdigest()}
    assert block["files_md5"] == {"weights": hashlib.md5(big.read_bytes()).hexdigest()}
    assert block["packages"]["numpy"] == np.__version__
    assert {"pillow", "pycocotools", "cityscapesScripts", "scipy"} <= set(block["packages"])
    assert block["seed"] == 2 and block["device"] == "cuda:0" and block["training_time_s"] == 12.5
    assert block["created_by"].startswith("anonymization_impact ")
    if block["git_commit"] is not None:
        assert len(block["git_commit"]) == 40 and isinstance(block["dirty"], bool)
    # no timestamps: the same inputs give the same bytes
    again = provenance(seed=2, annotation_files=[annotation], extra_files={"weights": big}, training_time_s=12.5, device="cuda:0")
    assert json.dumps(again) == json.dumps(block)
    assert provenance(seed=0, annotation_files=[])["device"] == "cpu"


def test_config_hash_is_stable_under_key_order():
    one = config_sha256({"datasets": {"coco": {"root": "x"}, "bdd100k": {"root": "y"}}, "seeds": [0, 1, 2]})
    two = config_sha256({"seeds": [0, 1, 2], "datasets": {"bdd100k": {"root": "y"}, "coco": {"root": "x"}}})
    assert one == two and len(one) == 64
    assert config_sha256({"seeds": [0, 1, 3]}) != config_sha256({"seeds": [0, 1, 2]})


def test_provenance_missing_file_is_named(tmp_path):
    with pytest.raises(WorkflowInputError, match="missing.json"):
        provenance(seed=0, annotation_files=[tmp_path / "missing.json"])


# --------------------------------------------------------------------------- metric JSON


@pytest.fixture
def document(ground_truth, twins, tmp_path):
    gt = ground_truth("bdd100k")
    result = run("bdd100k", "instance_segmentation", gt, degraded(gt), twins, tmp_path / "work")
    return metrics_document(
        dataset="bdd100k",
        variant="face_blur",
        model="maskrcnn_r50",
        seed=1,
        task="instance_segmentation",
        metrics=result["metrics"],
        per_class_ap=result["per_class_AP"],
        evaluator=result["evaluator"],
        provenance=provenance(seed=1, annotation_files=[]),
        synthetic=True,
    )


def test_metrics_document_round_trip(document):
    text = json.dumps(document, allow_nan=False)
    loaded = json.loads(text)
    validate_metrics_document(loaded)
    assert loaded == document
    assert loaded["schema"] == "anonymization-impact/metrics/v1"
    assert loaded["per_class_AP"]["train"] is None  # no ground truth of that class


@pytest.mark.parametrize(
    ("path", "named"),
    [(("metrics", "AP_person"), "metrics.AP_person"), (("seed",), "'seed'"), (("provenance", "annotation_md5"), "provenance.annotation_md5"), (("evaluator", "version"), "evaluator.version")],
)
def test_missing_key_is_named(document, path, named):
    broken = copy.deepcopy(document)
    target = broken
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    with pytest.raises(ValueError, match=named.replace(".", r"\.")):
        validate_metrics_document(broken)


@pytest.mark.parametrize(("key", "value"), [("schema", "v0"), ("dataset", "kitti"), ("synthetic", "yes"), ("seed", "1")])
def test_wrong_value_is_named(document, key, value):
    broken = dict(document, **{key: value})
    with pytest.raises(ValueError, match=f"'{key}'"):
        validate_metrics_document(broken)


def test_nan_metric_is_rejected(document):
    broken = copy.deepcopy(document)
    broken["metrics"]["AP"] = float("nan")
    with pytest.raises(ValueError, match=r"metrics\.AP"):
        validate_metrics_document(broken)


def test_manifest_lists_every_raw_file_used_with_its_md5(twins, tmp_path):
    import hashlib

    from anonymization_impact.annotations import normalize_split
    from anonymization_impact.datasets import reader
    from anonymization_impact.provenance import manifest, raw_files_used

    root = twins["cityscapes"]["root"]
    documents = [normalize_split("cityscapes", root, split)["instances"] for split in ("train", "val")]
    inputs = [path for split in ("train", "val") for path in reader("cityscapes").raw_inputs(root, split)]
    files = raw_files_used(root, documents, inputs)
    images = sum(len(document["images"]) for document in documents)
    assert len(files) == images * 4  # leftImg8bit + gtFine instanceIds, labelIds, polygons
    result = tmp_path / "metrics.json"
    result.write_text("{}")
    env = tmp_path / "data.yaml"
    env.write_text("channels: []\n")
    document = manifest(config={"seeds": [0]}, raw={"cityscapes": (root, files)}, results=[result], env_files=[env])
    entry = document["raw_datasets"]["cityscapes"]
    assert entry["files"] == len(files) == len(entry["md5"])
    some = files[0]
    assert entry["md5"][str(some.relative_to(root))] == hashlib.md5(some.read_bytes()).hexdigest()
    assert document["results_md5"][str(result)] == hashlib.md5(b"{}").hexdigest()
    assert list(document["envs_md5"]) == ["data.yaml"]
