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
from anonymization_impact.training import (
    BACKEND_ENVS,
    init_weights_name,
    pretraining_job_settings,
)
from anonymization_impact.realistic import DP2_COMMIT, DP2_REPOSITORY
from anonymization_impact.weights import fetch_instructions

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
    deepprivacy2_source,
    keypoints_twin,
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


# Realistic variants need generators (and a GPU on a cluster); the others run anywhere.
REALISTIC_VARIANTS = [
    name
    for name, variant in config["variants"].items()
    if variant["method"] == "realistic"
]
TRADITIONAL_VARIANTS = [
    name for name in config["variants"] if name not in REALISTIC_VARIANTS
]


def generator_roles(variant):
    """The generators a realistic variant uses (keys of realistic.weights)."""
    if variant["region"] == "body":
        return ["body"]
    return ["face", "face_hr"] if variant["hr_faces"] else ["face"]


def _placed_weights(name, role):
    """A weights entry, refusing before any job runs a file placed by hand whose size is wrong."""
    entry = config["weights"].get(name)
    if entry is None:
        raise WorkflowInputError(
            f"config key 'weights.{name}' is missing: {role} names it"
        )
    path = Path(entry["path"])
    if entry.get("size") and path.is_file() and path.stat().st_size != entry["size"]:
        raise WorkflowInputError(
            f"weights '{name}' at {path} have {path.stat().st_size} bytes, expected "
            f"{entry['size']}: delete the file and {fetch_instructions(name, entry)}"
        )
    return entry


def get_generator_weights(wildcards):
    """Weight files of a realistic variant's DeepPrivacy2 generators (none on a twin: its
    generator is built here); a missing file is fetched by the local rule weights_download.
    """
    if config["datasets"][wildcards.dataset]["synthetic"]:
        return {}
    variant = config["variants"][wildcards.variant]
    files = {
        f"weights_{role}": _placed_weights(name, f"realistic.weights.{role}")["path"]
        for role in generator_roles(variant)
        for name in [config["realistic"]["weights"][role]]
    }
    return {**files, "deepprivacy2": rules.deepprivacy2_source.output[0]}


def get_generator_settings(wildcards):
    """What the shard script needs to build the generators of a realistic variant."""
    synthetic = config["datasets"][wildcards.dataset]["synthetic"]
    return {
        "kind": (
            config["realistic"]["synthetic_generator"] if synthetic else "deepprivacy2"
        ),
        "roles": generator_roles(config["variants"][wildcards.variant]),
        "names": config["realistic"]["weights"],
        "device": config["realistic"]["device"],
        "standin_seed": config["realistic"]["standin_seed"],
    }


def get_keypoints(wildcards):
    """Keypoints of the body targets where the dataset has none of its own (Cityscapes,
    BDD100K): the twin's simulated estimator, ViTPose-H, or the authors' published file.
    """
    dataset = wildcards.dataset
    if config["datasets"][dataset]["synthetic"]:
        return rules.keypoints_twin.output[0].format(dataset=dataset)
    if _from_authors(dataset):
        return rules.authors_keypoints.output[0].format(dataset=dataset)
    return rules.keypoints_detect.output[0].format(dataset=dataset)


def _from_authors(dataset):
    return (
        not config["datasets"][dataset]["synthetic"]
        and config["regions"]["source"][dataset] == "authors"
    )


def get_face_detections(wildcards):
    """Raw face detections of the training split: the twin's simulated DSFD output, the
    boxes the authors published (matched again here), detections made elsewhere
    (face_detection.precomputed), or the DSFD rule's output."""
    dataset = wildcards.dataset
    if config["datasets"][dataset]["synthetic"]:
        return rules.twins_generate.output.faces.format(dataset=dataset)
    if _from_authors(dataset):
        return rules.authors_face_detections.output[0].format(dataset=dataset)
    if config["face_detection"]["precomputed"].get(dataset):
        return config["face_detection"]["precomputed"][dataset]
    return rules.faces_detect.output[0].format(dataset=dataset)


def get_detector_weights(section):
    """Input function: the weight file named by `<section>.weights` (DSFD, ViTPose-H)."""

    def weights(wildcards):
        name = config[section]["weights"]
        return _placed_weights(name, f"{section}.weights")["path"]

    return weights


def detector_weights_entry(section):
    """The `weights` entry of a detector, for the job to check the file's checksum."""
    name = config[section]["weights"]
    return {"name": name, **config["weights"].get(name, {})}


def get_face_regions(wildcards):
    """Face boxes matched to persons; COCO's published boxes name their person already."""
    if _from_authors(wildcards.dataset) and wildcards.dataset == "coco":
        return rules.authors_face_regions.output[0].format(dataset=wildcards.dataset)
    return rules.faces_match.output[0].format(dataset=wildcards.dataset)


def authors_inputs(kind):
    """Input function of an import rule: persons.json and the authors' `kind` file ("faces"
    or "keypoints"), which must have been placed in the dataset root."""

    def inputs(wildcards):
        root = dataset_root(config, wildcards.dataset)
        name = config["regions"]["authors_files"][wildcards.dataset].get(kind)
        if name is None or not (root / name).is_file():
            raise WorkflowInputError(
                f"regions.source.{wildcards.dataset} is 'authors' but the authors' {kind} "
                f"file {root / (name or '?')} is missing: download it (links in "
                f"docs/authors-regions.md) or set regions.source.{wildcards.dataset}: detectors"
            )
        persons = rules.annotations_normalize.output.persons
        return {
            "persons": persons.format(dataset=wildcards.dataset, split="train"),
            "published": str(root / name),
        }

    return inputs


def get_anonymize_shard_inputs(wildcards):
    inputs = {
        "persons": rules.annotations_normalize.output.persons.format(
            dataset=wildcards.dataset, split="train"
        ),
        "raw": get_raw_dataset_inputs(wildcards),
    }
    variant = config["variants"][wildcards.variant]
    if variant["region"] == "face":
        inputs["faces"] = get_face_regions(wildcards)
    elif variant["method"] == "realistic" and wildcards.dataset != "coco":
        inputs["keypoints"] = get_keypoints(wildcards)
    return inputs


def get_realistic_shard_inputs(wildcards):
    return {**get_anonymize_shard_inputs(wildcards), **get_generator_weights(wildcards)}


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
        if variant != "original" and runnable_on(variant, experiment["dataset"])
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


# run time of a deeper backbone relative to ResNet-50 (its share of the FLOPs of an R-CNN)
DEPTH_RUNTIME_FACTOR = {"resnet101": 1.5, "resnet152": 2.0}


def get_training_runtime(wildcards):
    """SLURM runtime (minutes) of one training run: its schedule's estimate, scaled by depth."""
    minutes = config["training"]["runtime_minutes"][_schedule_name(wildcards.dataset)]
    backbone = config["models"][wildcards.model]["backbone"]
    return int(minutes * DEPTH_RUNTIME_FACTOR.get(backbone, 1.0))


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
    target = Path("resources/weights", wildcards.filename)
    for name, entry in config["weights"].items():
        if Path(entry["path"]) == target:
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
    return pretraining_job_settings(config, wildcards.backbone)


def runnable_on(variant, dataset):
    """Whether a variant's anonymized data can be made for a dataset: realistic variants
    need DeepPrivacy2 (real datasets) or a synthetic generator (twins)."""
    if variant == "original" or variant in TRADITIONAL_VARIANTS:
        return True
    if config["datasets"][dataset]["synthetic"]:
        return config["realistic"]["synthetic_generator"] is not None
    return True


def runnable(variant):
    """Rows that can be made for every enabled dataset (the others read 'needs weights')."""
    return all(runnable_on(variant, dataset) for dataset in ENABLED_DATASETS)


def _runs(dataset, model, variants):
    """(dataset, variant, model, seed) of every runnable variant."""
    if dataset not in ENABLED_DATASETS:
        return set()
    return {
        (dataset, variant, model, seed)
        for variant in variants
        if runnable_on(variant, dataset)
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
        if v != "original" and runnable_on(v, wildcards.dataset)
    ]
    return {
        "persons": rules.annotations_normalize.output.persons.format(
            dataset=wildcards.dataset, split="train"
        ),
        "faces": get_face_regions(wildcards),
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
    return sorted(get_metric_targets() + list(weights) + _anonymization_files())


def _anonymization_files():
    """The audits of the trees, the region files and the generator weights they were made with."""
    files = set()
    for audit in get_anonymized_tree_targets():
        dataset, variant = Path(audit).parts[-3:-1]
        tree = SimpleNamespace(dataset=dataset, variant=variant)
        files.add(audit)
        if config["variants"][variant]["region"] == "face":
            files.add(get_face_regions(tree))
        elif variant in REALISTIC_VARIANTS and dataset != "coco":
            files.add(get_keypoints(tree))
        if variant in REALISTIC_VARIANTS:
            weights = get_generator_weights(tree)
            files |= {
                path for key, path in weights.items() if key.startswith("weights_")
            }
    return sorted(files)
