# Config validation, wildcard constraints and input functions shared by all rules.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "scripts"))

from anonymization_impact import DATASETS, SPLITS
from anonymization_impact.config import (
    check_dataset_roots,
    dataset_root,
    enabled_datasets,
    validate_config,
)
from anonymization_impact.datasets import reader
from anonymization_impact.errors import WorkflowInputError
from anonymization_impact.training import TASKS

try:
    _validated = validate_config(config)
    check_dataset_roots(_validated)
except WorkflowInputError as error:
    sys.exit(f"{type(error).__name__}: {error}")
config.update(_validated)

ENABLED_DATASETS = enabled_datasets(config)


wildcard_constraints:
    dataset="|".join(DATASETS),
    split="|".join(SPLITS),
    variant="|".join(["original", *config["variants"]]),
    model="|".join(config["models"]) or "(?!)",
    shard=r"\d+",
    seed=r"\d+",


localrules:
    all,
    fig7,
    anonymize_tree,
    anonymized_trees,
    weights_download,
    metrics,


def _raw_inputs(dataset, splits):
    """The files a job reading `splits` of a dataset depends on: the generated twin, or
    the real dataset's annotation files / directories."""
    if config["datasets"][dataset]["synthetic"]:
        return [rules.twins_generate.output.root.format(dataset=dataset)]
    root = dataset_root(config, dataset)
    paths = [
        path for split in splits for path in reader(dataset).raw_inputs(root, split)
    ]
    return [str(path) for path in paths]


def get_raw_dataset_inputs(wildcards):
    split = wildcards.split if "split" in wildcards.keys() else "train"  # trees: train
    return _raw_inputs(wildcards.dataset, [split])


def get_dataset_root(wildcards):
    return str(dataset_root(config, wildcards.dataset))


def get_annotation_targets():
    return expand(
        rules.annotations_normalize.output,
        dataset=ENABLED_DATASETS,
        split=SPLITS,
    )


def get_fig7_persons():
    return expand(
        rules.annotations_normalize.output.persons,
        dataset=ENABLED_DATASETS,
        split=config["fig7"]["split"],
    )


# Methods that run without external weights; realistic variants need DeepPrivacy2.
TRADITIONAL_METHODS = ("blur", "maskout")


def get_face_detections(wildcards):
    """Raw face detections of the training split: the twin's simulated DSFD output, or the
    DSFD rule's output for a real dataset."""
    if config["datasets"][wildcards.dataset]["synthetic"]:
        return rules.twins_generate.output.faces.format(dataset=wildcards.dataset)
    return rules.faces_detect.output[0].format(dataset=wildcards.dataset)


def get_anonymize_shard_inputs(wildcards):
    inputs = {
        "persons": rules.annotations_normalize.output.persons.format(
            dataset=wildcards.dataset, split="train"
        ),
        "raw": get_raw_dataset_inputs(wildcards),
    }
    if config["variants"][wildcards.variant]["region"] == "face":
        inputs["faces"] = rules.faces_match.output[0].format(dataset=wildcards.dataset)
    return inputs


def _shard_paths(wildcards, pattern):
    return expand(
        pattern,
        dataset=wildcards.dataset,
        variant=wildcards.variant,
        shard=range(config["anonymization"]["shards"]),
    )


def get_anonymize_tree_inputs(wildcards):
    inputs = get_anonymize_shard_inputs(wildcards)
    inputs["shards"] = _shard_paths(wildcards, rules.anonymize_shard.output.images)
    inputs["audits"] = _shard_paths(wildcards, rules.anonymize_shard.output.audit)
    inputs["excluded"] = rules.annotations_normalize.output.excluded.format(
        dataset=wildcards.dataset, split="train"
    )
    return inputs


def get_anonymized_tree_targets():
    """Audits of every tree the configured experiments need whose method runs here."""
    pairs = {
        (experiment["dataset"], variant)
        for experiment in config["experiments"].values()
        if experiment["dataset"] in ENABLED_DATASETS
        for variant in experiment["variants"]
        if variant != "original" and runnable(variant)
    }
    return [
        rules.anonymize_tree.output.audit.format(dataset=dataset, variant=variant)
        for dataset, variant in sorted(pairs)
    ]


def get_schedule(dataset):
    """The twins' CPU schedule, or the paper's schedule of a real dataset."""
    synthetic = config["datasets"][dataset]["synthetic"]
    return config["training"]["synthetic" if synthetic else dataset]


def get_backbone(wildcards):
    schedule = get_schedule(wildcards.dataset)
    return schedule["backbone"] or config["models"][wildcards.model]["backbone"]


def get_training_image_root(wildcards):
    if wildcards.variant == "original":
        return str(dataset_root(config, wildcards.dataset))
    return rules.anonymize_tree.output.root.format(**wildcards)


def get_training_inputs(wildcards):
    inputs = {
        "annotation": rules.annotations_normalize.output.instances.format(
            dataset=wildcards.dataset, split="train"
        )
    }
    if wildcards.variant == "original":
        inputs["raw"] = get_raw_dataset_inputs(wildcards)
    else:
        inputs["tree"] = get_training_image_root(wildcards)
    if get_schedule(wildcards.dataset)["init"] == "imagenet":
        inputs["init_weights"] = get_init_weights(wildcards)["path"]
    return inputs


def get_init_weights(wildcards):
    name = f"{get_backbone(wildcards)}_imagenet"
    if name not in config["weights"]:
        raise WorkflowInputError(
            f"config key 'weights.{name}' is missing: the ImageNet initialization of {get_backbone(wildcards)}"
        )
    return {"name": name, **config["weights"][name]}


def get_weights_entry(wildcards):
    for name, entry in config["weights"].items():
        if Path(entry["path"]).name == wildcards.filename:
            return {"name": name, **entry}
    raise WorkflowInputError(
        f"no entry of 'weights' has the file name {wildcards.filename!r}"
    )


def get_training_job_settings(wildcards):
    model = config["models"][wildcards.model]
    schedule = get_schedule(wildcards.dataset)
    return {
        "backend": model["backend"],
        "architecture": model["architecture"],
        "backbone": get_backbone(wildcards),
        "schedule": schedule,
        "seed": int(wildcards.seed),
        "checkpoint_every": config["training"]["checkpoint_every"],
        "device": config["training"]["device"],
        "amp": config["training"]["amp"],
        "init_weights": (
            get_init_weights(wildcards) if schedule["init"] == "imagenet" else None
        ),
    }


def runnable(variant):
    """Rows whose anonymized data can be made here (realistic needs DeepPrivacy2)."""
    return (
        variant == "original"
        or config["variants"][variant]["method"] in TRADITIONAL_METHODS
    )


def _metric_runs():
    """(dataset, variant, model, seed) of every runnable row of every experiment."""
    return sorted(
        {
            (experiment["dataset"], variant, experiment["model"], seed)
            for experiment in config["experiments"].values()
            if experiment["dataset"] in ENABLED_DATASETS
            for variant in experiment["variants"]
            if runnable(variant)
            for seed in config["seeds"]
        }
    )


def get_metric_targets():
    return [
        rules.evaluate.output[0].format(dataset=d, variant=v, model=m, seed=s)
        for d, v, m, s in _metric_runs()
    ]


def get_dataset_roots():
    return {dataset: str(dataset_root(config, dataset)) for dataset in ENABLED_DATASETS}


def get_raw_inputs_by_dataset():
    return {dataset: _raw_inputs(dataset, SPLITS) for dataset in ENABLED_DATASETS}


def get_all_raw_inputs():
    return sorted(
        {path for paths in get_raw_inputs_by_dataset().values() for path in paths}
    )


def get_annotation_files_by_dataset():
    return {
        dataset: expand(
            rules.annotations_normalize.output.instances, dataset=dataset, split=SPLITS
        )
        for dataset in ENABLED_DATASETS
    }


def get_result_files():
    """Metric JSONs and the weights behind them."""
    weights = [
        rules.train_model.output.weights.format(dataset=d, variant=v, model=m, seed=s)
        for d, v, m, s in _metric_runs()
    ]
    return sorted(get_metric_targets() + weights)
