"""Evaluation stage: predictions in COCO result format -> metrics, independent of the trainer.

Every training backend writes its predictions on the *original* validation split as a JSON
list of COCO results ``{"image_id", "category_id", "bbox": [x, y, w, h], "score",
"segmentation": RLE (str counts), "keypoints": 51 floats}`` whose ids refer to the
normalized ``results/annotations/<dataset>/val/instances.json``. :func:`evaluate` scores
them with the evaluator the paper's numbers come from:

* COCO, task ``keypoints`` (Table 3): pycocotools, person category only, box AP and
  keypoint AP (OKS with COCO's sigmas);
* COCO, task ``instance_segmentation`` (Appendix A.2): pycocotools, box and mask AP over
  all categories;
* Cityscapes (Tables 1, 4): the official ``cityscapesscripts`` instance-level evaluation
  on the raw ``gtFine/<split>/*/*_gtFine_instanceIds.png``;
* BDD100K (Table 2): pycocotools mask AP over its 8 classes (crowd and ``ignore`` regions
  are ``iscrowd`` in the ground truth, so detections on them are neither TP nor FP).

All metrics are in percent, as the paper prints them. :func:`metrics_document` wraps them
in the one metric JSON schema of the workflow (``docs/metrics.md``) and
:func:`validate_metrics_document` checks a document against it.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import math
import shutil
from importlib import metadata
from pathlib import Path

import numpy as np
from PIL import Image

from . import DATASETS
from .errors import WorkflowInputError
from .masks import decode
from .metrics import (  # noqa: F401 (the metric JSON schema, re-exported)
    DOCUMENT_KEYS,
    EVALUATORS,
    PERSON_CLASS,
    PROVENANCE_KEYS,
    REQUIRED_METRICS,
    SCHEMA,
    TASKS,
    is_number,
    metrics_document,
    validate_metrics_document,
)

# label ids of cityscapesscripts' 8 evaluated classes (helpers/labels.py)
CITYSCAPES_LABEL_IDS = {"person": 24, "rider": 25, "car": 26, "truck": 27, "bus": 28, "train": 31, "motorcycle": 32, "bicycle": 33}
NUM_KEYPOINTS = 17

# names of COCOeval.stats entries
BOX_STATS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
KEYPOINT_STATS = ("AP", "AP50", "AP75", "APm", "APl")

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- helpers


def _percent(value) -> float | None:
    """Fraction -> percent; NaN and COCOeval's -1 (no ground truth) -> None."""
    if value is None:
        return None
    value = float(value)
    if math.isnan(value) or value < 0:
        return None
    return value * 100.0


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"


def _check_ground_truth(ground_truth: dict) -> None:
    if not isinstance(ground_truth, dict) or not all(key in ground_truth for key in ("images", "annotations", "categories")):
        raise WorkflowInputError(
            "the ground truth is not a COCO annotation document (needs 'images', 'annotations', "
            "'categories'); pass results/annotations/<dataset>/val/instances.json"
        )


def _check_predictions(task: str, ground_truth: dict, predictions: list[dict]) -> None:
    """One clear error for the first prediction that cannot be scored against ``ground_truth``."""
    if not isinstance(predictions, list):
        raise WorkflowInputError(f"predictions must be a JSON list of COCO results, not {type(predictions).__name__}")
    images = {image["id"]: image for image in ground_truth["images"]}
    categories = {category["id"] for category in ground_truth["categories"]}
    for index, prediction in enumerate(predictions):
        where = f"prediction #{index}"
        if not isinstance(prediction, dict):
            raise WorkflowInputError(f"{where} is not a JSON object")
        for key in ("image_id", "category_id", "bbox", "score"):
            if key not in prediction:
                raise WorkflowInputError(f"{where} has no '{key}'; every prediction needs image_id, category_id, bbox and score")
        image = images.get(prediction["image_id"])
        if image is None:
            raise WorkflowInputError(
                f"{where} refers to image_id {prediction['image_id']!r}, which is not in the validation "
                "ground truth; the predictions were made on another split or with other annotations"
            )
        if prediction["category_id"] not in categories:
            raise WorkflowInputError(
                f"{where} has category_id {prediction['category_id']!r}, which is not a category of the "
                f"ground truth (ids {sorted(categories)}); map the model's labels to the annotation's category ids"
            )
        if not is_number(prediction["score"]):
            raise WorkflowInputError(f"{where} has score {prediction['score']!r}; expected a finite number")
        bbox = prediction["bbox"]
        if not isinstance(bbox, (list, tuple)) or len(bbox) != 4 or not all(is_number(v) for v in bbox):
            raise WorkflowInputError(f"{where} has bbox {bbox!r}; expected [x, y, width, height]")
        if task == "instance_segmentation":
            segmentation = prediction.get("segmentation")
            if segmentation is None:
                raise WorkflowInputError(f"{where} has no 'segmentation'; instance segmentation needs an RLE mask per prediction")
            if not isinstance(segmentation, dict) or "size" not in segmentation or "counts" not in segmentation:
                raise WorkflowInputError(f"{where}: 'segmentation' must be an RLE {{'size': [h, w], 'counts': str}}")
            expected = [image["height"], image["width"]]
            if list(segmentation["size"]) != expected:
                raise WorkflowInputError(
                    f"{where} has a mask of size {list(segmentation['size'])} (h, w) but image_id "
                    f"{prediction['image_id']} ({image['file_name']}) is {expected}; masks must be pasted at the "
                    "original image resolution"
                )
        if task == "keypoints":
            keypoints = prediction.get("keypoints")
            if keypoints is None:
                raise WorkflowInputError(f"{where} has no 'keypoints'; the keypoint task needs 17 x (x, y, score) per prediction")
            if not isinstance(keypoints, (list, tuple)) or len(keypoints) != 3 * NUM_KEYPOINTS or not all(is_number(v) for v in keypoints):
                raise WorkflowInputError(f"{where} has {len(keypoints) if isinstance(keypoints, (list, tuple)) else keypoints!r} keypoint values; expected 51 numbers")


# --------------------------------------------------------------------------- pycocotools


def _coco_ground_truth(ground_truth: dict):
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = copy.deepcopy(ground_truth)
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _coco_results(coco_gt, predictions: list[dict], iou_type: str):
    """``coco_gt.loadRes`` on a copy of the predictions; an empty list gives an empty result set
    (loadRes itself fails on one). For mask AP the boxes are dropped, as detectron2 and
    MMDetection do, so that small / medium / large use the mask area, not the box area."""
    from pycocotools.coco import COCO

    results = copy.deepcopy(predictions)
    if iou_type == "segm":
        for result in results:
            result.pop("bbox", None)
    with contextlib.redirect_stdout(io.StringIO()):
        if results:
            return coco_gt.loadRes(results)
        empty = COCO()
        empty.dataset = {"images": list(coco_gt.dataset["images"]), "categories": copy.deepcopy(coco_gt.dataset["categories"]), "annotations": []}
        empty.createIndex()
        return empty


def _run_cocoeval(coco_gt, predictions: list[dict], iou_type: str, category_ids: list[int]):
    """COCOeval.evaluate/accumulate/summarize; returns the evaluator (stats, eval['precision'])."""
    from pycocotools.cocoeval import COCOeval

    coco_dt = _coco_results(coco_gt, predictions, iou_type)
    evaluator = COCOeval(coco_gt, coco_dt, iou_type)
    evaluator.params.catIds = sorted(category_ids)
    summary = io.StringIO()
    with contextlib.redirect_stdout(summary):
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    log.info("pycocotools %s:\n%s", iou_type, summary.getvalue().strip())
    return evaluator


def per_class_ap(evaluator) -> dict[int, float | None]:
    """{category id: AP in percent} from a summarized COCOeval: its precision array averaged
    over IoU thresholds and recall points, area 'all', the largest maxDets; None where the
    category has no (non-crowd) ground truth."""
    precision = evaluator.eval["precision"]  # [T, R, K, A, M]
    result = {}
    for k, category_id in enumerate(evaluator.params.catIds):
        values = precision[:, :, k, 0, -1]
        values = values[values > -1]
        result[category_id] = _percent(values.mean()) if values.size else None
    return result


def _stats(evaluator, names: tuple[str, ...], prefix: str) -> dict[str, float | None]:
    return {f"{prefix}{name}": _percent(value) for name, value in zip(names, evaluator.stats)}


def _category_names(ground_truth: dict) -> dict[int, str]:
    return {category["id"]: category["name"] for category in ground_truth["categories"]}


def _evaluate_coco_keypoints(ground_truth: dict, predictions: list[dict]) -> dict:
    names = _category_names(ground_truth)
    person = next((i for i, name in names.items() if name == "person"), None)
    if person is None:
        raise WorkflowInputError("the ground truth has no 'person' category; the keypoint task needs COCO person keypoints")
    coco_gt = _coco_ground_truth(ground_truth)
    box = _run_cocoeval(coco_gt, predictions, "bbox", [person])
    keypoints = _run_cocoeval(coco_gt, predictions, "keypoints", [person])
    metrics = {**_stats(box, BOX_STATS, "box_"), **_stats(keypoints, KEYPOINT_STATS, "kp_")}
    return {"metrics": metrics, "per_class_AP": {"person": per_class_ap(keypoints)[person]}}


def _evaluate_coco_masks(dataset: str, ground_truth: dict, predictions: list[dict]) -> dict:
    names = _category_names(ground_truth)
    coco_gt = _coco_ground_truth(ground_truth)
    masks = _run_cocoeval(coco_gt, predictions, "segm", list(names))
    per_class = {names[i]: ap for i, ap in per_class_ap(masks).items()}
    mask_stats = _stats(masks, BOX_STATS, "")
    metrics = {**mask_stats, "AP_person": per_class.get(PERSON_CLASS[dataset])}
    if dataset == "coco":  # Appendix A.2 reports box AP of the Mask R-CNN as well
        boxes = _run_cocoeval(coco_gt, predictions, "bbox", list(names))
        metrics.update(_stats(boxes, BOX_STATS, "box_"))
        metrics.update({f"mask_{key}": value for key, value in mask_stats.items()})
    return {"metrics": metrics, "per_class_AP": per_class}


# --------------------------------------------------------------------------- cityscapesscripts


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    return value.__dict__


@contextlib.contextmanager
def cityscapes_numpy_compat():
    """cityscapesScripts 2.3.0 predates NumPy 2.4 (pinned by this workflow) in two places,
    patched here for the duration of one evaluation only:

    * it calls ``np.in1d``, which NumPy 2.4 removed: provided as the flattened ``np.isin`` it
      was an alias of;
    * ``np.count_nonzero`` now returns ``np.int64``, which its ``writeDict2JSON`` (json with
      ``default=lambda o: o.__dict__``) cannot serialize when it writes ``matches.json``: its
      module-level ``writeDict2JSON`` is replaced by one writing NumPy scalars as numbers
      (same layout: sorted keys, indent 4). The numbers it computes are untouched.
    """
    from cityscapesscripts.evaluation import evalInstanceLevelSemanticLabeling as official

    def write_dict_to_json(dictionary, path):
        with open(path, "w") as handle:
            handle.write(json.dumps(dictionary, default=_json_default, sort_keys=True, indent=4))

    added_in1d = not hasattr(np, "in1d")
    if added_in1d:

        def in1d(ar1, ar2, assume_unique=False, invert=False):
            return np.isin(np.ravel(ar1), ar2, assume_unique=assume_unique, invert=invert)

        np.in1d = in1d
    original_writer = official.writeDict2JSON
    official.writeDict2JSON = write_dict_to_json
    try:
        yield
    finally:
        official.writeDict2JSON = original_writer
        if added_in1d:
            del np.in1d


def cityscapes_gt_file(raw_root: Path, file_name: str) -> Path:
    """``leftImg8bit/<split>/<city>/<stem>_leftImg8bit.png`` -> the raw ``*_gtFine_instanceIds.png``."""
    path = Path(file_name)
    suffix = "_leftImg8bit.png"
    if len(path.parts) < 2 or path.parts[0] != "leftImg8bit" or not path.name.endswith(suffix):
        raise WorkflowInputError(
            f"ground-truth image {file_name!r} is not a Cityscapes leftImg8bit/<split>/<city>/*{suffix} path; "
            "the ground truth is not a normalized Cityscapes annotation"
        )
    return Path(raw_root) / "gtFine" / Path(*path.parts[1:-1]) / (path.name[: -len(suffix)] + "_gtFine_instanceIds.png")


def write_cityscapes_predictions(ground_truth: dict, predictions: list[dict], prediction_dir: Path) -> dict[int, Path]:
    """Write the predictions in the official format: per image a ``<stem>_pred.txt`` listing
    ``<relative mask png> <label id> <score>`` per instance, the masks as 1-bit full-image PNGs.
    Returns {image id: txt file} for every ground-truth image (empty files where nothing was predicted)."""
    names = _category_names(ground_truth)
    unknown = sorted(set(names.values()) - set(CITYSCAPES_LABEL_IDS))
    if unknown:
        raise WorkflowInputError(f"ground-truth categories {unknown} are not Cityscapes instance classes")
    by_image: dict[int, list[dict]] = {image["id"]: [] for image in ground_truth["images"]}
    for prediction in predictions:
        by_image[prediction["image_id"]].append(prediction)
    files = {}
    for image in sorted(ground_truth["images"], key=lambda image: image["id"]):
        stem = Path(image["file_name"]).name[: -len("_leftImg8bit.png")]
        directory = prediction_dir / Path(*Path(image["file_name"]).parts[1:-1])
        (directory / "masks").mkdir(parents=True, exist_ok=True)
        lines = []
        for index, prediction in enumerate(by_image[image["id"]]):
            mask_name = f"masks/{stem}_{index:04d}.png"
            Image.fromarray(decode(prediction["segmentation"]).astype(bool)).save(directory / mask_name, compress_level=1)
            label_id = CITYSCAPES_LABEL_IDS[names[prediction["category_id"]]]
            lines.append(f"{mask_name} {label_id} {float(prediction['score'])!r}\n")
        files[image["id"]] = directory / f"{stem}_pred.txt"
        files[image["id"]].write_text("".join(lines))
    return files


def cityscapes_args(work_dir: Path, prediction_dir: Path, raw_root: Path, split: str):
    """A private copy of ``evalInstanceLevelSemanticLabeling.args`` (the module-level settings
    that every function of it takes) pointing everything it writes into ``work_dir``."""
    from cityscapesscripts.evaluation import evalInstanceLevelSemanticLabeling as official

    args = copy.copy(official.args)
    args.cityscapesPath = str(raw_root)
    args.groundTruthSearch = str(Path(raw_root) / "gtFine" / split / "*" / "*_gtFine_instanceIds.png")
    args.exportFile = str(work_dir / "resultInstanceLevelSemanticLabeling.json")
    args.gtInstancesFile = str(work_dir / "gtInstances.json")
    args.predictionPath = str(prediction_dir)
    args.predictionWalk = None
    args.distanceAvailable = False
    args.JSONOutput = True
    args.quiet = True
    args.csv = False
    args.colorized = False
    args.instLabels = []
    return args


def _evaluate_cityscapes(ground_truth: dict, predictions: list[dict], raw_root: Path, work_dir: Path) -> dict:
    from cityscapesscripts.evaluation import evalInstanceLevelSemanticLabeling as official

    raw_root = Path(raw_root).resolve()
    work_dir = Path(work_dir).resolve()
    if work_dir == raw_root or raw_root in work_dir.parents:
        raise WorkflowInputError(f"the Cityscapes evaluation directory {work_dir} lies inside the raw dataset {raw_root}; choose one under results/")
    images = sorted(ground_truth["images"], key=lambda image: image["id"])
    gt_files = {image["id"]: cityscapes_gt_file(raw_root, image["file_name"]) for image in images}
    for image_id, path in gt_files.items():
        if not path.is_file():
            raise WorkflowInputError(f"the Cityscapes ground truth {path} of image id {image_id} does not exist; check datasets.cityscapes.root")
    split = Path(images[0]["file_name"]).parts[1] if images else "val"

    work_dir.mkdir(parents=True, exist_ok=True)
    prediction_dir = work_dir / "predictions"
    shutil.rmtree(prediction_dir, ignore_errors=True)
    prediction_files = write_cityscapes_predictions(ground_truth, predictions, prediction_dir)
    args = cityscapes_args(work_dir, prediction_dir, raw_root, split)
    Path(args.gtInstancesFile).unlink(missing_ok=True)  # a stale cache would be read instead of the pngs

    output = io.StringIO()
    try:
        # evaluateImgLists writes matches.json into the working directory
        with contextlib.chdir(work_dir), contextlib.redirect_stdout(output), cityscapes_numpy_compat():
            result = official.evaluateImgLists([str(prediction_files[i]) for i in gt_files], [str(gt_files[i]) for i in gt_files], args)
    except SystemExit:  # its printError() exits
        raise WorkflowInputError(f"the official Cityscapes evaluation failed: {output.getvalue().strip()}") from None
    if output.getvalue().strip():
        log.info("cityscapesscripts:\n%s", output.getvalue().strip())

    averages = result["averages"]
    per_class = {name: _percent(averages["classes"][name]["ap"]) for name in args.instLabels}
    metrics = {
        "AP": _percent(averages["allAp"]),
        "AP50": _percent(averages["allAp50%"]),
        "AP_person": per_class.get("person"),
        **{f"AP50_{name}": _percent(averages["classes"][name]["ap50%"]) for name in args.instLabels},
    }
    return {"metrics": metrics, "per_class_AP": per_class}


# --------------------------------------------------------------------------- entry points


def evaluate(dataset: str, task: str, ground_truth: dict, predictions: list[dict], *, raw_root: Path, work_dir: Path) -> dict:
    """Score ``predictions`` against ``ground_truth`` (the normalized val ``instances`` document).

    Returns ``{"metrics": {name: percent or None}, "per_class_AP": {class name: percent or None},
    "evaluator": {"name", "version"}}``. ``raw_root`` is the raw dataset root (Cityscapes reads
    its ``gtFine`` pngs from there); ``work_dir`` receives whatever the evaluator writes.
    """
    if dataset not in DATASETS:
        raise WorkflowInputError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
    if task not in TASKS or (task == "keypoints" and dataset != "coco"):
        raise WorkflowInputError(f"task {task!r} is not evaluated for {dataset}; expected instance_segmentation (or keypoints for coco)")
    _check_ground_truth(ground_truth)
    _check_predictions(task, ground_truth, predictions)
    if task == "keypoints":
        result = _evaluate_coco_keypoints(ground_truth, predictions)
    elif dataset == "cityscapes":
        result = _evaluate_cityscapes(ground_truth, predictions, raw_root, work_dir)
    else:
        result = _evaluate_coco_masks(dataset, ground_truth, predictions)
    if dataset == "cityscapes" and task == "instance_segmentation":
        result["evaluator"] = {"name": "cityscapesscripts", "version": _version("cityscapesScripts")}
    else:
        result["evaluator"] = {"name": "pycocotools", "version": _version("pycocotools")}
    return result
