# Config validation, wildcard constraints and input functions shared by all rules.
import sys
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(workflow.basedir) / "scripts"))

from anonymization_impact import DATASETS, SPLITS, TASKS
from anonymization_impact.config import (
    check_dataset_roots,
    dataset_root,
    enabled_datasets,
    experiment_target,
    fig8_variant,
    validate_config,
)
from anonymization_impact.datasets import reader
from anonymization_impact.errors import WorkflowInputError
from anonymization_impact.training import BACKEND_ENVS, init_weights_name

try:
    _validated = validate_config(config)
    check_dataset_roots(_validated)
except WorkflowInputError as error:
    sys.exit(f"{type(error).__name__}: {error}")
config.update(_validated)

ENABLED_DATASETS = enabled_datasets(config)
TABLE_TARGETS = sorted(
    {experiment_target(name, exp) for name, exp in config["experiments"].items()}
)


wildcard_constraints:
    dataset="|".join(DATASETS),
    split="|".join(SPLITS),
    variant="|".join(["original", *config["variants"]]),
    model="|".join(config["models"]) or "(?!)",
    shard=r"\d+",
    seed=r"\d+",
    target="|".join(TABLE_TARGETS) or "(?!)",
    backbone=r"resnet\d+",


localrules:
    all,
    fig7,
    fig8,
    figures_qualitative,
    figures,
    anonymize_tree,
    anonymized_trees,
    weights_download,
    metrics,
    tables_latex,
    table1,
    table2,
    table3,
    table4,
    appendix,
    tables,
    report_reproduction,
    report,
    archive_results,


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


def _schedule_name(dataset):
    return "synthetic" if config["datasets"][dataset]["synthetic"] else dataset


def get_schedule(dataset):
    """The twins' CPU schedule, or the paper's schedule of a real dataset."""
    return config["training"][_schedule_name(dataset)]


def get_training_backend(wildcards):
    """The model's own backend, else its schedule's (training.backends): the twins train
    with torchvision, real datasets with the paper's framework."""
    model = config["models"][wildcards.model]
    return (
        model["backend"]
        or config["training"]["backends"][_schedule_name(wildcards.dataset)]
    )


def get_training_env(wildcards):
    """The conda env of a run's backend (training.stack: paper or current)."""
    backend = get_training_backend(wildcards)
    return f"../{BACKEND_ENVS[backend][config['training']['stack']]}"


def get_backbone(wildcards):
    schedule = get_schedule(wildcards.dataset)
    backbone = config["models"][wildcards.model]["backbone"]
    return schedule["backbones"].get(backbone, backbone)


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
    if get_schedule(wildcards.dataset)["init"] != "scratch":
        inputs["init_weights"] = get_init_weights(wildcards)["path"]
    return inputs


def get_init_weights(wildcards):
    """The `weights` entry a run starts from (its backend's ImageNet ResNet, or detectron2's
    COCO Mask R-CNN for init coco); on a twin, its stand-in (pre-trained by this workflow).
    """
    if config["datasets"][wildcards.dataset]["synthetic"]:
        backbone = get_backbone(wildcards)
        return {
            "name": f"{backbone} pre-trained on the twins' pretraining images",
            "path": rules.twins_pretrain_backbone.output[0].format(backbone=backbone),
            "sha256": None,  # made here; its md5 is in the provenance manifest
            "url": None,
        }
    init = get_schedule(wildcards.dataset)["init"]
    backend = get_training_backend(wildcards)
    name = init_weights_name(backend, init, get_backbone(wildcards))
    if name not in config["weights"]:
        raise WorkflowInputError(
            f"config key 'weights.{name}' is missing: the {init} initialization of "
            f"{get_backbone(wildcards)} for the {backend} backend"
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
    settings = {
        "backend": get_training_backend(wildcards),
        "architecture": model["architecture"],
        "backbone": get_backbone(wildcards),
        "schedule": schedule,
        "seed": int(wildcards.seed),
        "checkpoint_every": config["training"]["checkpoint_every"],
        "device": config["training"]["device"],
        "amp": config["training"]["amp"],
        "init_weights": (
            get_init_weights(wildcards) if schedule["init"] != "scratch" else None
        ),
    }
    if model["exclude_classes"]:  # only then: other runs' params stay as they were
        settings["exclude_classes"] = model["exclude_classes"]
    return settings


def get_pretraining_job_settings(wildcards):
    """The twins' schedule from scratch on the pretraining images, all stages trained."""
    pretraining = config["synthetic"]["pretraining"]
    schedule = {
        **config["training"]["synthetic"],
        "init": "scratch",
        "trainable_backbone_layers": 5,
        "iterations": pretraining["iterations"],
        "base_lr": pretraining["base_lr"],
    }
    return {
        "architecture": "mask_rcnn",
        "backbone": wildcards.backbone,
        "schedule": schedule,
        "seed": pretraining["seed"],
        "checkpoint_every": config["training"]["checkpoint_every"],
        "device": config["training"]["device"],
        "amp": config["training"]["amp"],
        "init_weights": None,
    }


def runnable(variant):
    """Rows whose anonymized data can be made here (realistic needs DeepPrivacy2)."""
    return (
        variant == "original"
        or config["variants"][variant]["method"] in TRADITIONAL_METHODS
    )


def _runs(dataset, model, variants):
    """(dataset, variant, model, seed) of every runnable variant."""
    if dataset not in ENABLED_DATASETS:
        return set()
    return {
        (dataset, variant, model, seed)
        for variant in variants
        if runnable(variant)
        for seed in config["seeds"]
    }


def _experiment_runs(experiment):
    return _runs(experiment["dataset"], experiment["model"], experiment["variants"])


def _fig8_runs():
    """Original and plotted variant of every Fig. 8 panel, for each of its models."""
    runs = set()
    for panel in config["fig8"]["panels"].values():
        variants = ["original", fig8_variant(config, panel)]
        for model in panel["models"]:
            runs |= _runs(panel["dataset"], model, variants)
    return runs


def _all_experiment_runs():
    runs = set()
    for experiment in config["experiments"].values():
        runs |= _experiment_runs(experiment)
    return runs


def _metric_runs():
    """Every run any table, figure or the report needs."""
    return sorted(_all_experiment_runs() | _fig8_runs())


def _metric_paths(runs):
    return [
        rules.evaluate.output[0].format(dataset=d, variant=v, model=m, seed=s)
        for d, v, m, s in sorted(runs)
    ]


def get_metric_targets():
    return _metric_paths(_metric_runs())


def get_table_metrics(wildcards):
    runs = set()
    for name, experiment in config["experiments"].items():
        if experiment_target(name, experiment) == wildcards.target:
            runs |= _experiment_runs(experiment)
    return _metric_paths(runs)


def get_table(target):
    """The LaTeX table of a named target (table1 ... table4, appendix), if configured."""
    if target not in TABLE_TARGETS:
        return []
    return rules.tables_latex.output.tex.format(target=target)


def get_experiment_metrics():
    """Metric files of every experiment (the tables and the reproduction report)."""
    return _metric_paths(_all_experiment_runs())


def get_published_results():
    """The paper's numbers; a relative path is relative to this workflow."""
    return str(Path(workflow.basedir, config["report"]["published_results"]))


def get_fig8_metrics():
    return _metric_paths(_fig8_runs())


def get_runnable_variants():
    """Whether each variant's anonymized data can be made here (for 'needs weights')."""
    return {variant: runnable(variant) for variant in ["original", *config["variants"]]}


def get_dataset_variants(dataset):
    """Every variant the experiments train on for a dataset, in config order."""
    variants = {"original": None}
    for experiment in config["experiments"].values():
        if experiment["dataset"] == dataset:
            variants.update(dict.fromkeys(experiment["variants"]))
    return list(variants)


def get_qualitative_inputs(wildcards):
    trees = [
        rules.anonymize_tree.output.audit.format(dataset=wildcards.dataset, variant=v)
        for v in get_dataset_variants(wildcards.dataset)
        if v != "original" and runnable(v)
    ]
    return {
        "persons": rules.annotations_normalize.output.persons.format(
            dataset=wildcards.dataset, split="train"
        ),
        "faces": rules.faces_match.output[0].format(dataset=wildcards.dataset),
        "trees": trees,
    }


def get_qualitative_targets():
    return expand(
        rules.figures_qualitative.output.png,
        dataset=[
            d for d in ENABLED_DATASETS if get_dataset_variants(d) != ["original"]
        ],
    )


def get_table_targets():
    return expand(rules.tables_latex.output.tex, target=TABLE_TARGETS)


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
    """Metric JSONs, the weights behind them and the weights they started from."""
    runs = _metric_runs()
    weights = {
        rules.train_model.output.weights.format(dataset=d, variant=v, model=m, seed=s)
        for d, v, m, s in runs
    }
    for dataset, _, model, _ in runs:
        if get_schedule(dataset)["init"] != "scratch":
            run = SimpleNamespace(dataset=dataset, model=model)
            weights.add(get_init_weights(run)["path"])
    return sorted(get_metric_targets() + list(weights))
