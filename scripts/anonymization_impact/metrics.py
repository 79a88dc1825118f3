"""The metric JSON of one (dataset, variant, model, seed): its schema and checks.

Kept apart from the evaluators so that tables, figures and the report read metric files
without importing pycocotools or cityscapesscripts. See docs/metrics.md.
"""

from __future__ import annotations

import math
from numbers import Real

from . import DATASETS

SCHEMA = "anonymization-impact/metrics/v1"
TASKS = ("instance_segmentation", "keypoints")
EVALUATORS = ("pycocotools", "cityscapesscripts")
# the dataset's own name of the person class (AP_person)
PERSON_CLASS = {"coco": "person", "cityscapes": "person", "bdd100k": "pedestrian"}
# metric keys that a document must have, per (dataset, task): the paper's table columns
REQUIRED_METRICS = {
    ("cityscapes", "instance_segmentation"): ("AP", "AP50", "AP_person"),
    ("bdd100k", "instance_segmentation"): ("AP", "AP50", "AP_person"),
    ("coco", "instance_segmentation"): ("box_AP", "mask_AP", "AP", "AP50", "AP_person"),
    ("coco", "keypoints"): ("box_AP", "kp_AP"),
}


def is_number(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(float(value))


DOCUMENT_KEYS = ("schema", "dataset", "variant", "model", "seed", "task", "synthetic", "metrics", "per_class_AP", "evaluator", "provenance")
PROVENANCE_KEYS = ("git_commit", "dirty", "seed", "packages", "python", "device", "annotation_md5", "files_md5", "training_time_s", "created_by")


def metrics_document(*, dataset, variant, model, seed, task, metrics, per_class_ap, evaluator, provenance, synthetic: bool) -> dict:
    """The metric JSON of one (dataset, variant, model, seed); see docs/metrics.md."""
    document = {
        "schema": SCHEMA,
        "dataset": dataset,
        "variant": variant,
        "model": model,
        "seed": seed,
        "task": task,
        "synthetic": bool(synthetic),
        "metrics": dict(metrics),
        "per_class_AP": dict(per_class_ap),
        "evaluator": dict(evaluator),
        "provenance": provenance,
    }
    validate_metrics_document(document)
    return document


def _metric_value_ok(value) -> bool:
    return value is None or is_number(value)


def validate_metrics_document(doc) -> None:
    """Raise ValueError naming the first missing or wrong key of a metric document."""
    if not isinstance(doc, dict):
        raise ValueError(f"metric document must be a JSON object, not {type(doc).__name__}")
    for key in DOCUMENT_KEYS:
        if key not in doc:
            raise ValueError(f"metric document lacks key '{key}'")
    if doc["schema"] != SCHEMA:
        raise ValueError(f"metric document key 'schema' is {doc['schema']!r}, expected {SCHEMA!r}")
    if doc["dataset"] not in DATASETS:
        raise ValueError(f"metric document key 'dataset' is {doc['dataset']!r}, expected one of {', '.join(DATASETS)}")
    if doc["task"] not in TASKS:
        raise ValueError(f"metric document key 'task' is {doc['task']!r}, expected one of {', '.join(TASKS)}")
    for key in ("variant", "model"):
        if not isinstance(doc[key], str) or not doc[key]:
            raise ValueError(f"metric document key '{key}' must be a non-empty string, not {doc[key]!r}")
    if not isinstance(doc["seed"], int) or isinstance(doc["seed"], bool):
        raise ValueError(f"metric document key 'seed' must be an integer, not {doc['seed']!r}")
    if not isinstance(doc["synthetic"], bool):
        raise ValueError(f"metric document key 'synthetic' must be true or false, not {doc['synthetic']!r}")
    required = REQUIRED_METRICS.get((doc["dataset"], doc["task"]))
    if required is None:
        raise ValueError(f"metric document key 'task': {doc['task']!r} is not evaluated for {doc['dataset']}")
    for section in ("metrics", "per_class_AP"):
        if not isinstance(doc[section], dict):
            raise ValueError(f"metric document key '{section}' must be an object")
        for name, value in doc[section].items():
            if not _metric_value_ok(value):
                raise ValueError(f"metric document key '{section}.{name}' must be a number (percent) or null, not {value!r}")
    for name in required:
        if name not in doc["metrics"]:
            raise ValueError(f"metric document lacks key 'metrics.{name}' (required for {doc['dataset']} {doc['task']})")
    evaluator = doc["evaluator"]
    if not isinstance(evaluator, dict) or evaluator.get("name") not in EVALUATORS:
        raise ValueError(f"metric document key 'evaluator.name' must be one of {', '.join(EVALUATORS)}")
    if not isinstance(evaluator.get("version"), str):
        raise ValueError("metric document lacks key 'evaluator.version' (a string)")
    provenance = doc["provenance"]
    if not isinstance(provenance, dict):
        raise ValueError("metric document key 'provenance' must be an object")
    for key in PROVENANCE_KEYS:
        if key not in provenance:
            raise ValueError(f"metric document lacks key 'provenance.{key}'")
    if provenance["seed"] != doc["seed"]:
        raise ValueError(f"metric document key 'provenance.seed' is {provenance['seed']!r} but 'seed' is {doc['seed']!r}")
