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


localrules:
    all,
    fig7,


def get_raw_dataset_inputs(wildcards):
    """The files a data-stage job reads: the generated twin, or the real dataset's files."""
    if config["datasets"][wildcards.dataset]["synthetic"]:
        return rules.twins_generate.output.root.format(dataset=wildcards.dataset)
    root = dataset_root(config, wildcards.dataset)
    return [
        str(path)
        for path in reader(wildcards.dataset).raw_inputs(root, wildcards.split)
    ]


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
