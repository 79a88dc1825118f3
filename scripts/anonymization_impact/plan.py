"""What the configured study needs, as pure functions of the validated config.

The training runs of each target (tables, Fig. 8, the report), the anonymized trees and region
files they read, the settings of every training job, and the slice of the config each result
rule is given (what the jobs cost and the SLURM runtime they request: ``cost``). ``rules/common.smk`` turns these answers into paths; the tools and
the tests ask the same functions.
"""

from __future__ import annotations

from typing import NamedTuple

from .config import dataset_root, enabled_datasets, experiment_target, fig8_variant
from .datasets import reader
from .errors import WorkflowInputError
from .training import BACKEND_ENVS
from .variants import Variant

# detectron2's model zoo has ImageNet weights (MSRA's) and COCO Mask R-CNNs for these depths
# only; other depths start from torchvision's ImageNet ResNet, converted when training.
DETECTRON2_ZOO_WEIGHTS = {
    ("imagenet", "resnet50"): "resnet50_imagenet_msra",
    ("imagenet", "resnet101"): "resnet101_imagenet_msra",
    ("coco", "resnet50"): "mask_rcnn_r50_fpn_coco_detectron2",
    ("coco", "resnet101"): "mask_rcnn_r101_fpn_coco_detectron2",
}


class Run(NamedTuple):
    dataset: str
    variant: str
    model: str
    seed: int


# --------------------------------------------------------------------------------- training jobs


def schedule_name(config: dict, dataset: str) -> str:
    """The twins' CPU schedule ("synthetic"), or the paper's schedule of a real dataset."""
    return "synthetic" if config["datasets"][dataset]["synthetic"] else dataset


def schedule(config: dict, dataset: str) -> dict:
    return config["training"][schedule_name(config, dataset)]


def training_backend(config: dict, dataset: str, model: str) -> str:
    """The model's own backend, else its schedule's (training.backends): the twins train with
    torchvision, real datasets with the paper's framework."""
    return config["models"][model]["backend"] or config["training"]["backends"][schedule_name(config, dataset)]


def training_env(config: dict, dataset: str, model: str) -> str:
    """The conda env file (relative to the repository) of a run's backend and training.stack."""
    return BACKEND_ENVS[training_backend(config, dataset, model)][config["training"]["stack"]]


def backbone(config: dict, dataset: str, model: str) -> str:
    """The model's backbone after its schedule's substitution (the twins' narrow ResNets)."""
    name = config["models"][model]["backbone"]
    return schedule(config, dataset)["backbones"].get(name, name)


def init_weights_name(backend_name: str, init: str, backbone: str) -> str:
    """Name of the `weights` entry a run starts from (init imagenet or coco).

    torchvision and MMDetection (its ``torchvision://`` ResNets are these files) start from
    torchvision's ImageNet ResNets; detectron2 from its model zoo's files where it has them
    (MSRA ResNet-50 / 101; the COCO Mask R-CNN R50 / R101 of its Cityscapes config), from
    torchvision's otherwise (ResNet-152: no zoo file, so a coco init falls back to ImageNet).
    """
    if init == "coco" and backend_name != "detectron2":
        raise WorkflowInputError(
            f"schedule init 'coco' (a COCO-trained Mask R-CNN) is only available with the detectron2 backend, "
            f"not {backend_name}; set the schedule's init to imagenet or the backend to detectron2"
        )
    if backend_name == "detectron2":
        if (init, backbone) in DETECTRON2_ZOO_WEIGHTS:
            return DETECTRON2_ZOO_WEIGHTS[(init, backbone)]
    return f"{backbone}_imagenet"


def init_weights(config: dict, dataset: str, model: str, pretrained_backbone: str) -> dict | None:
    """The `weights` entry a run starts from (its backend's ImageNet ResNet, or detectron2's COCO
    Mask R-CNN for init coco), None from scratch; on a twin, its stand-in pre-trained by this
    workflow at ``pretrained_backbone`` (a path pattern with ``{backbone}``)."""
    init = schedule(config, dataset)["init"]
    if init == "scratch":
        return None
    depth = backbone(config, dataset, model)
    if config["datasets"][dataset]["synthetic"]:
        return {
            "name": f"{depth} pre-trained on the twins' pretraining images",
            "path": pretrained_backbone.format(backbone=depth),
            "sha256": None,  # made here; its md5 is in the provenance manifest
            "url": None,
        }
    backend = training_backend(config, dataset, model)
    name = init_weights_name(backend, init, depth)
    if name not in config["weights"]:
        raise WorkflowInputError(f"config key 'weights.{name}' is missing: the {init} initialization of {depth} for the {backend} backend")
    return {"name": name, **config["weights"][name]}


def training_job_settings(config: dict, dataset: str, model: str, seed: int, pretrained_backbone: str) -> dict:
    """What a train_model job is given (``training.TrainingJob.from_settings``)."""
    settings = config["models"][model]
    job = {
        "backend": training_backend(config, dataset, model),
        "architecture": settings["architecture"],
        "backbone": backbone(config, dataset, model),
        "schedule": schedule(config, dataset),
        "seed": int(seed),
        "checkpoint_every": config["training"]["checkpoint_every"],
        "device": config["training"]["device"],
        "amp": config["training"]["amp"],
        "init_weights": init_weights(config, dataset, model, pretrained_backbone),
    }
    if settings["exclude_classes"]:  # only then: other runs' params stay as they were
        job["exclude_classes"] = settings["exclude_classes"]
    return job


def pretraining_job_settings(config: dict, backbone: str) -> dict:
    """The twins' backbone pretraining (their stand-in for ImageNet): the twins' schedule from
    scratch on the pretraining images, all stages trained."""
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
        "backbone": backbone,
        "schedule": schedule,
        "seed": pretraining["seed"],
        "checkpoint_every": config["training"]["checkpoint_every"],
        "device": config["training"]["device"],
        "amp": config["training"]["amp"],
        "init_weights": None,
    }


# --------------------------------------------------------------------------------- run sets


def runs(config: dict, dataset: str, model: str, variants) -> set[Run]:
    """Every seed of every variant that can be made for an enabled dataset."""
    if dataset not in enabled_datasets(config):
        return set()
    return {
        Run(dataset, variant, model, seed)
        for variant in variants
        if Variant.of(config, variant).runnable_on(config, dataset)
        for seed in config["seeds"]
    }


def experiment_runs(config: dict, experiment: dict) -> set[Run]:
    return runs(config, experiment["dataset"], experiment["model"], experiment["variants"])


def table_targets(config: dict) -> list[str]:
    """The named table targets (table1 ... table4, appendix) of the configured experiments."""
    return sorted({experiment_target(name, experiment) for name, experiment in config["experiments"].items()})


def target_experiments(config: dict, target: str) -> dict:
    return {name: experiment for name, experiment in config["experiments"].items() if experiment_target(name, experiment) == target}


def target_runs(config: dict, target: str) -> list[Run]:
    """The runs of one table target."""
    return sorted(set().union(*(experiment_runs(config, e) for e in target_experiments(config, target).values())))


def all_experiment_runs(config: dict) -> list[Run]:
    """The runs of every experiment (the tables and the reproduction report)."""
    return sorted(set().union(*(experiment_runs(config, e) for e in config["experiments"].values())))


def fig8_runs(config: dict) -> list[Run]:
    """Original and plotted variant of every Fig. 8 panel, for each of its models."""
    found = set()
    for panel in config["fig8"]["panels"].values():
        for model in panel["models"]:
            found |= runs(config, panel["dataset"], model, ["original", fig8_variant(config, panel)])
    return sorted(found)


def metric_runs(config: dict) -> list[Run]:
    """Every run any table, figure or the report needs."""
    return sorted(set(all_experiment_runs(config)) | set(fig8_runs(config)))


def initial_weights_of_runs(config: dict, pretrained_backbone: str) -> list[str]:
    """The weight files the metric runs start from (none for runs from scratch)."""
    entries = (init_weights(config, run.dataset, run.model, pretrained_backbone) for run in metric_runs(config))
    return sorted({entry["path"] for entry in entries if entry})


# --------------------------------------------------------------------------------- raw inputs


def raw_dataset_files(config: dict, dataset: str, splits, twin_root: str) -> list[str]:
    """The files a job reading ``splits`` of a dataset depends on: its generated twin
    (``twin_root``, a path pattern with ``{dataset}``), or the real dataset's annotation files
    and directories (paths only: building the DAG never reads a dataset)."""
    if config["datasets"][dataset]["synthetic"]:
        return [twin_root.format(dataset=dataset)]
    root = dataset_root(config, dataset)
    return [str(path) for split in splits for path in reader(dataset).raw_inputs(root, split)]


def authors_file(config: dict, dataset: str, kind: str) -> str:
    """The authors' published ``kind`` file ("faces" or "keypoints") of a real dataset, which the
    user places in the dataset root (docs/authors-regions.md)."""
    root = dataset_root(config, dataset)
    name = config["regions"]["authors_files"][dataset].get(kind)
    if name is None or not (root / name).is_file():
        raise WorkflowInputError(
            f"regions.source.{dataset} is 'authors' but the authors' {kind} file {root / (name or '?')} is missing: "
            f"download it (links in docs/authors-regions.md) or set regions.source.{dataset}: detectors"
        )
    return str(root / name)


# --------------------------------------------------------------------------------- trees and regions


def dataset_variants(config: dict, dataset: str) -> list[str]:
    """Every variant the experiments train on for a dataset, "original" first, then config order."""
    variants = {"original": None}
    for experiment in config["experiments"].values():
        if experiment["dataset"] == dataset:
            variants.update(dict.fromkeys(experiment["variants"]))
    return list(variants)


def anonymized_trees(config: dict) -> list[tuple[str, str]]:
    """(dataset, variant) of every tree the configured experiments need whose method runs here."""
    pairs = {
        (experiment["dataset"], variant)
        for experiment in config["experiments"].values()
        if experiment["dataset"] in enabled_datasets(config)
        for variant in experiment["variants"]
        if variant != "original" and Variant.of(config, variant).runnable_on(config, experiment["dataset"])
    }
    return sorted(pairs)


def dataset_trees(config: dict, dataset: str) -> list[str]:
    """The variants of the trees made for one dataset, in the experiments' order."""
    trees = set(anonymized_trees(config))
    return [variant for variant in dataset_variants(config, dataset) if (dataset, variant) in trees]


def qualitative_datasets(config: dict) -> list[str]:
    """Datasets with at least one variant to show next to the original."""
    return [dataset for dataset in enabled_datasets(config) if dataset_variants(config, dataset) != ["original"]]


def regions_from_authors(config: dict, dataset: str) -> bool:
    """Whether a real dataset's face boxes and keypoints come from the authors' published files."""
    return not config["datasets"][dataset]["synthetic"] and config["regions"]["source"][dataset] == "authors"


def face_detections_source(config: dict, dataset: str) -> str:
    """Where the raw face detections of the training split come from: "twin" (the twin's
    simulated DSFD output), "authors" (their published boxes, matched again here),
    "precomputed" (face_detection.precomputed) or "dsfd" (this workflow's detector rule)."""
    if config["datasets"][dataset]["synthetic"]:
        return "twin"
    if regions_from_authors(config, dataset):
        return "authors"
    if config["face_detection"]["precomputed"].get(dataset):
        return "precomputed"
    return "dsfd"


def face_regions_source(config: dict, dataset: str) -> str:
    """"authors" where the published file names each box's person already (COCO), else
    "matched" (detections matched to persons by this workflow)."""
    return "authors" if regions_from_authors(config, dataset) and dataset == "coco" else "matched"


def keypoints_source(config: dict, dataset: str) -> str:
    """Keypoints of the body targets of a dataset without its own: "twin" (simulated),
    "authors" (their published file) or "vitpose" (this workflow's ViTPose-H rule)."""
    if config["datasets"][dataset]["synthetic"]:
        return "twin"
    return "authors" if regions_from_authors(config, dataset) else "vitpose"


def generator_weights(config: dict, dataset: str, variant: str) -> dict[str, str]:
    """{role: weights entry name} of a realistic variant's DeepPrivacy2 generators on a real
    dataset (none on a twin: its generator is built here)."""
    if config["datasets"][dataset]["synthetic"]:
        return {}
    return {role: config["realistic"]["weights"][role] for role in Variant.of(config, variant).generator_roles}


def generator_settings(config: dict, dataset: str, variant: str) -> dict:
    """What the shard script needs to build the generators of a realistic variant; on a real
    dataset "md5" holds each role's checksum from its `weights` entry, which the loader demands of
    the file (the paper's for the default entries; another file only through an entry of its own)."""
    synthetic = config["datasets"][dataset]["synthetic"]
    names = generator_weights(config, dataset, variant)
    return {
        "kind": config["realistic"]["synthetic_generator"] if synthetic else "deepprivacy2",
        "roles": list(Variant.of(config, variant).generator_roles),
        "names": config["realistic"]["weights"],
        "md5": {role: config["weights"].get(name, {}).get("md5") for role, name in names.items()},
        "device": config["realistic"]["device"],
        "standin_seed": config["realistic"]["standin_seed"],
    }


# --------------------------------------------------------------------------------- config slices
# A result rule gets the part of the config it reads (a config-shaped dict), so that editing
# another key (a Fig. 8 title, a table's title) reruns only the outputs that show it.


def _results_slice(config: dict, experiments: dict, variants=(), models=(), datasets=()) -> dict:
    variants = {v for e in experiments.values() for v in e["variants"]} | set(variants)
    models = {e["model"] for e in experiments.values()} | set(models)
    datasets = {e["dataset"] for e in experiments.values()} | set(datasets)
    return {
        "experiments": experiments,
        "variants": {name: settings for name, settings in config["variants"].items() if name in variants},
        "models": {name: settings for name, settings in config["models"].items() if name in models},
        "seeds": list(config["seeds"]),
        "datasets": {d: {key: config["datasets"][d][key] for key in ("enabled", "synthetic")} for d in config["datasets"] if d in datasets},
        "realistic": {"synthetic_generator": config["realistic"]["synthetic_generator"]},
    }


def table_config(config: dict, target: str) -> dict:
    """What make_table reads for one target: its experiments, their variants and models."""
    return _results_slice(config, target_experiments(config, target))


def fig8_config(config: dict) -> dict:
    """What fig8 reads: the panels, the variants and models they plot."""
    panels = config["fig8"]["panels"].values()
    variants = {fig8_variant(config, panel) for panel in panels} | {panel["variant"] for panel in panels}
    models = {model for panel in panels for model in panel["models"]}
    return {**_results_slice(config, {}, variants, models, {panel["dataset"] for panel in panels}), "fig8": config["fig8"]}


def report_config(config: dict) -> dict:
    """What the reproduction report reads: every experiment and the report's own settings."""
    return {**_results_slice(config, config["experiments"]), "report": config["report"]}

