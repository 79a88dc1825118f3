# Config validation, wildcard constraints and the input functions of all rules: thin wrappers
# that turn wildcards into paths. What the study needs (runs, trees, regions, job settings,
# config slices) is decided in the package: anonymization_impact.plan and .variants.
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "scripts"))

from anonymization_impact import DATASETS, KEYPOINT_ANNOTATED_DATASETS, SPLITS, TASKS
from anonymization_impact import cost, plan, walltime
from snakemake.utils import update_config

from anonymization_impact.config import (
    check_dataset_roots,
    dataset_root,
    enabled_datasets,
    typed_overrides,
    validate_config,
    with_override_hint,
)
from anonymization_impact.errors import WorkflowInputError
from anonymization_impact.realistic import DP2_COMMIT, DP2_REPOSITORY
from anonymization_impact.rule_job import encode
from anonymization_impact.variants import Variant, variant_names
from anonymization_impact.weights import (
    check_placed_files,
    entry_for_file,
    placed_weights,
)

_overrides = typed_overrides(dict(workflow.config_settings.config))  # --config only
update_config(config, _overrides)
try:
    _validated = validate_config(config)
    check_dataset_roots(_validated)
    # weights placed by hand, once per file (a job's own run skips it)
    if workflow.is_main_process:
        check_placed_files(
            _validated, Path(".snakemake/anonymization-impact/verified-weights.json")
        )
except WorkflowInputError as error:
    sys.exit(f"{type(error).__name__}: {with_override_hint(str(error), _overrides)}")
config.update(_validated)

ENABLED_DATASETS = enabled_datasets(config)
TABLE_TARGETS = plan.table_targets(config)


def alternatives(names):
    """A wildcard constraint matching exactly these names (nothing if there are none)."""
    return "|".join(names) or "(?!)"


def config_at(path):
    """A param: the config value at a slash-separated path with {wildcards}. Snakemake's
    lookup() does the same through dpath's glob matching, which cost ~0.5 s of CPU per DAG
    build on the twins (one call per job)."""

    def value(wildcards):
        node = config
        for key in path.format(**dict(wildcards.items())).split("/"):
            node = node[key]
        return node

    return value


wildcard_constraints:
    dataset=alternatives(DATASETS),
    split=alternatives(SPLITS),
    variant=alternatives(variant_names(config)),
    model=alternatives(config["models"]),
    shard=r"\d+",
    seed=r"\d+",
    target=alternatives(TABLE_TARGETS),
    backbone=r"resnet\d+",


# ------------------------------------------------------------------------------ deployment
# Rules run in their env: a conda env (--sdm conda) or its environment module (--sdm
# env-modules; tools/env_twins.py builds one per envs/*.yaml for sites without conda). Rules
# whose env runs Python 3.9 call their script as a command (anonymization_impact.rule_job),
# which reads these from the environment: neither a clone's path nor the deployment method is
# a reason to rerun a job, as a parameter would be.
_METHODS = {method.name for method in workflow.deployment_settings.deployment_method}
# the command's Python: the env's (first on PATH), else this controller's, as script: does
os.environ["ANONYMIZATION_IMPACT_PYTHON"] = (
    "python" if _METHODS & {"CONDA", "ENV_MODULES"} else sys.executable
)
os.environ["ANONYMIZATION_IMPACT_SCRIPTS"] = str(Path(workflow.basedir) / "scripts")
# train_model / predict choose their env per run, which a static envmodules: cannot say
os.environ["ANONYMIZATION_IMPACT_LOAD_ENV"] = (
    "module load" if "ENV_MODULES" in _METHODS else ":"
)
# how long before a scheduler's time limit a training job stops (anonymization_impact.walltime)
os.environ[walltime.MARGIN_VARIABLE] = str(config["cluster"]["stop_margin_minutes"])


# set above, not by the user; declared so that Snakemake passes them on to remote jobs
envvars:
    "ANONYMIZATION_IMPACT_PYTHON",
    "ANONYMIZATION_IMPACT_SCRIPTS",
    "ANONYMIZATION_IMPACT_LOAD_ENV",
    "ANONYMIZATION_IMPACT_STOP_MARGIN_MINUTES",


def env_module(env):
    """The environment module of an env file, e.g. anonymization-impact/detectron2."""
    return f"anonymization-impact/{Path(env).stem}"


def command(script, load_env=False):
    """The shell command that runs `scripts/<script>.py` as a command, loading the module of
    the job's env (params.env_module) first with `load_env`."""
    run = (
        f'"$ANONYMIZATION_IMPACT_PYTHON" "$ANONYMIZATION_IMPACT_SCRIPTS/{script}.py" '
        "--log {log:q} --threads {threads} --job {params.job:q}"
    )
    return (
        f"$ANONYMIZATION_IMPACT_LOAD_ENV {{params.env_module}} && {run}"
        if load_env
        else run
    )


def command_job(**params):
    """Params function: the job of a command rule as one JSON argument; each value is a
    params function of the wildcards or a plain value."""

    def job(wildcards, input, output):
        values = {
            name: value(wildcards) if callable(value) else value
            for name, value in params.items()
        }
        return encode(input=input, output=output, params=values, wildcards=wildcards)

    return job


def _variant(wildcards):
    return Variant.of(config, wildcards.variant)


# ------------------------------------------------------------------------------ datasets


def raw_dataset_files(dataset, splits):
    twin = rules.generate_twin.output.root
    return plan.raw_dataset_files(config, dataset, splits, twin)


def get_raw_dataset_inputs(wildcards):
    split = wildcards.split if "split" in wildcards.keys() else "train"  # trees: train
    return raw_dataset_files(wildcards.dataset, [split])


def get_dataset_root(wildcards):
    return str(dataset_root(config, wildcards.dataset))


def persons_file(dataset, split="train"):
    return rules.normalize_annotations.output.persons.format(
        dataset=dataset, split=split
    )


def get_annotation_targets():
    return expand(
        rules.normalize_annotations.output, dataset=ENABLED_DATASETS, split=SPLITS
    )


def get_fig7_persons():
    return [
        persons_file(dataset, config["fig7"]["split"]) for dataset in ENABLED_DATASETS
    ]


# ------------------------------------------------------------------------------ regions


def face_regions_file(dataset):
    """Face boxes matched to persons; COCO's published boxes name their person already."""
    if plan.face_regions_source(config, dataset) == "authors":
        return rules.import_authors_face_regions.output[0].format(dataset=dataset)
    return rules.match_faces.output[0].format(dataset=dataset)


def keypoints_file(dataset):
    """Keypoints of the body targets of a dataset that has none of its own."""
    path = {
        "twin": rules.simulate_keypoints.output[0],
        "authors": rules.import_authors_keypoints.output[0],
        "vitpose": rules.detect_keypoints.output[0],
    }[plan.keypoints_source(config, dataset)]
    return path.format(dataset=dataset)


def get_face_detections(wildcards):
    """Raw face detections of the training split (plan.face_detections_source)."""
    dataset = wildcards.dataset
    source = plan.face_detections_source(config, dataset)
    if source == "precomputed":
        return config["face_detection"]["precomputed"][dataset]
    path = {
        "twin": rules.generate_twin.output.faces,
        "authors": rules.import_authors_face_detections.output[0],
        "dsfd": rules.detect_faces.output[0],
    }[source]
    return path.format(dataset=dataset)


def detector_weights(section):
    """The `weights` entry named by `<section>.weights` (DSFD, ViTPose-H)."""
    return placed_weights(config, config[section]["weights"], f"{section}.weights")


def get_detector_weights(section):
    """Input function: the weight file of a detector."""
    return lambda wildcards: detector_weights(section)["path"]


def authors_inputs(kind):
    """Input function of an import rule: persons.json and the authors' `kind` file ("faces"
    or "keypoints", the input's name)."""
    return lambda wildcards: {
        "persons": persons_file(wildcards.dataset),
        kind: plan.authors_file(config, wildcards.dataset, kind),
    }


# ------------------------------------------------------------------------------ anonymized trees


def generator_weight_files(dataset, variant):
    """{weights_<role>: path} of a realistic variant's DeepPrivacy2 generators (none on a twin);
    a missing file is fetched by the local rule download_weights."""
    return {
        f"weights_{role}": placed_weights(config, name, f"realistic.weights.{role}")[
            "path"
        ]
        for role, name in plan.generator_weights(config, dataset, variant).items()
    }


def tree_region_files(dataset, variant):
    """{"faces" / "keypoints": path} of the region files a tree reads."""
    files = {"faces": face_regions_file, "keypoints": keypoints_file}
    return {
        kind: files[kind](dataset)
        for kind in Variant.of(config, variant).region_inputs(dataset)
    }


def get_anonymize_shard_inputs(wildcards):
    return {
        "persons": persons_file(wildcards.dataset),
        "raw": get_raw_dataset_inputs(wildcards),
        **tree_region_files(wildcards.dataset, wildcards.variant),
    }


def get_realistic_shard_inputs(wildcards):
    weights = generator_weight_files(wildcards.dataset, wildcards.variant)
    if weights:
        weights["deepprivacy2"] = rules.download_deepprivacy2.output[0]
    return {**get_anonymize_shard_inputs(wildcards), **weights}


def get_generator_settings(wildcards):
    """What the shard script needs to build a realistic variant's generators (None otherwise)."""
    if not _variant(wildcards).is_realistic:
        return None
    return plan.generator_settings(config, wildcards.dataset, wildcards.variant)


def get_variant_settings(wildcards):
    return _variant(wildcards).settings


def _shard_paths(wildcards, pattern):
    shards = range(config["anonymization"]["shards"])
    return expand(
        pattern, dataset=wildcards.dataset, variant=wildcards.variant, shard=shards
    )


def get_assemble_tree_inputs(wildcards):
    return {
        **get_anonymize_shard_inputs(wildcards),
        "shards": _shard_paths(wildcards, rules.anonymize_shard.output.images),
        "audits": _shard_paths(wildcards, rules.anonymize_shard.output.audit),
        "excluded": rules.normalize_annotations.output.excluded.format(
            dataset=wildcards.dataset, split="train"
        ),
    }


def tree_audit_file(dataset, variant):
    return rules.assemble_tree.output.audit.format(dataset=dataset, variant=variant)


def get_anonymized_tree_targets():
    return [tree_audit_file(*tree) for tree in plan.anonymized_trees(config)]


# ------------------------------------------------------------------------------ training


def get_training_env(wildcards):
    return f"../{plan.training_env(config, wildcards.dataset, wildcards.model)}"


def get_training_env_module(wildcards):
    return env_module(plan.training_env(config, wildcards.dataset, wildcards.model))


def run_answer(answer):
    """Input / params function: the plan's `answer(config, dataset, model)` for the job's run."""
    return lambda wildcards: answer(config, wildcards.dataset, wildcards.model)


def initial_weights(dataset, model):
    """The `weights` entry (or the twins' pre-trained backbone) a run starts from, or None."""
    pretrained = rules.pretrain_backbone.output[0]
    return plan.init_weights(config, dataset, model, pretrained)


def get_training_image_root(wildcards):
    if wildcards.variant == "original":
        return str(dataset_root(config, wildcards.dataset))
    return rules.assemble_tree.output.root.format(**wildcards)


def get_train_model_inputs(wildcards):
    inputs = {
        "annotation": rules.normalize_annotations.output.instances.format(
            dataset=wildcards.dataset, split="train"
        )
    }
    if wildcards.variant == "original":
        inputs["raw"] = get_raw_dataset_inputs(wildcards)
    else:
        inputs["tree"] = get_training_image_root(wildcards)
    init = initial_weights(wildcards.dataset, wildcards.model)
    if init is not None:
        inputs["init_weights"] = init["path"]
    return inputs


def get_checkpoint_dir(wildcards):
    return str(
        Path(rules.train_model.output.weights.format(**wildcards)).parent
        / "checkpoints"
    )


def get_shard_work_dir(wildcards):
    """Beside the shard's outputs (Snakemake deletes those of a failed job): the images an
    attempt stopped by its time limit leaves to the next (shard_journal)."""
    return rules.anonymize_shard.output.images.format(**wildcards) + ".partial"


def get_training_job_settings(wildcards):
    pretrained = rules.pretrain_backbone.output[0]
    return plan.training_job_settings(
        config, wildcards.dataset, wildcards.model, wildcards.seed, pretrained
    )


def get_pretraining_job_settings(wildcards):
    return plan.pretraining_job_settings(config, wildcards.backbone)


def get_weights_entry(wildcards):
    return entry_for_file(config, f"resources/weights/{wildcards.filename}")


def get_task(wildcards):
    return TASKS[config["models"][wildcards.model]["architecture"]]


# ------------------------------------------------------------------------------ resources
# The SLURM runtime of every GPU job comes from the cost model: its expected time on
# cluster.gpu_model (or the median of matching benchmarks of earlier runs here) with the
# margin of cluster.runtime_margin; `python -m tools.cost_plan` prints them all.
COST_CONTEXT = cost.Context.of(config, Path.cwd())


def get_retries(rule):
    """Retries of train_model / anonymize_shard_realistic: under cluster.max_runtime_minutes,
    as many as their longest job needs (each continuing the last, with cluster.runtime_margin)
    and one for a failure; else the profile's. None in a job's own Snakemake on the node: there
    a retry would resume inside the allocation that is about to end."""
    if not workflow.is_main_process:
        return None
    retries = {
        "train_model": cost.training_retries,
        "anonymize_shard_realistic": cost.shard_retries,
    }
    try:
        return retries[rule](config, COST_CONTEXT)
    except WorkflowInputError as error:
        sys.exit(f"{type(error).__name__}: {error}")


def get_runtime(rule):
    """Resources function: the SLURM runtime in minutes of a job of `rule`, more on a retry."""

    def runtime(wildcards, attempt):
        expected = cost.estimate(config, COST_CONTEXT, rule, **dict(wildcards.items()))
        return cost.slurm_minutes(config, expected.seconds, attempt)

    return runtime


# ------------------------------------------------------------------------------ results


def metric_files(runs):
    return [rules.evaluate.output[0].format(**run._asdict()) for run in runs]


def get_metric_targets():
    return metric_files(plan.metric_runs(config))


def get_table_metrics(wildcards):
    return metric_files(plan.target_runs(config, wildcards.target))


def get_table_config(wildcards):
    return plan.table_config(config, wildcards.target)


def get_table_targets():
    return expand(rules.make_table.output.tex, target=TABLE_TARGETS)


def get_published_results():
    """The paper's numbers; a relative path is relative to this workflow."""
    return str(Path(workflow.basedir, config["report"]["published_results"]))


def get_qualitative_inputs(wildcards):
    dataset = wildcards.dataset
    return {
        "persons": persons_file(dataset),
        "faces": face_regions_file(dataset),
        "trees": [
            tree_audit_file(dataset, v) for v in plan.dataset_trees(config, dataset)
        ],
    }


def get_qualitative_variants(wildcards):
    """{name: settings} of every variant the dataset's experiments train on, original first."""
    return {
        name: Variant.of(config, name).settings
        for name in plan.dataset_variants(config, wildcards.dataset)
    }


def get_qualitative_targets():
    datasets = plan.qualitative_datasets(config)
    return expand(rules.plot_qualitative.output.png, dataset=datasets)


def get_figure_targets():
    """Fig. 7, Fig. 8 and the qualitative figures."""
    figures = [*rules.plot_fig7.output, *rules.plot_fig8.output]
    return figures + get_qualitative_targets()


# ------------------------------------------------------------------------------ provenance


def get_raw_inputs_by_dataset():
    return {dataset: raw_dataset_files(dataset, SPLITS) for dataset in ENABLED_DATASETS}


def get_all_raw_inputs():
    return sorted(
        {path for paths in get_raw_inputs_by_dataset().values() for path in paths}
    )


def get_annotation_files_by_dataset():
    instances = rules.normalize_annotations.output.instances
    return {
        dataset: expand(instances, dataset=dataset, split=SPLITS)
        for dataset in ENABLED_DATASETS
    }


def get_result_files():
    """Metric JSONs, the weights behind them and the weights they started from; the trees'
    audits, the region files and generator weights the trees were made with."""
    runs = plan.metric_runs(config)
    files = set(metric_files(runs))
    files |= {rules.train_model.output.weights.format(**run._asdict()) for run in runs}
    pretrained = rules.pretrain_backbone.output[0]
    files |= set(plan.initial_weights_of_runs(config, pretrained))
    for dataset, variant in plan.anonymized_trees(config):
        files.add(tree_audit_file(dataset, variant))
        files |= set(tree_region_files(dataset, variant).values())
        files |= set(generator_weight_files(dataset, variant).values())
    return sorted(files)
