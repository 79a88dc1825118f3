"""The paper's published numbers (reference/published_results.yaml) and the names of their rows."""

from __future__ import annotations

import yaml

from ..errors import WorkflowInputError


def load_published(path) -> dict:
    try:
        with open(path) as handle:
            published = yaml.safe_load(handle)
    except OSError as error:
        raise WorkflowInputError(f"cannot read the published results {path} ({error.strerror or error})") from None
    except yaml.YAMLError as error:
        raise WorkflowInputError(f"published results {path} are not valid YAML: {error}") from None
    if not isinstance(published, dict):
        raise WorkflowInputError(f"published results {path} must be a mapping of tables")
    return published


def published_number(value, where: str) -> tuple[float, float]:
    """(mean, SE) of a printed ``[mean, se]``."""
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        raise WorkflowInputError(f"published result {where} must be [mean, standard error], not {value!r}")
    return float(value[0]), float(value[1])


def published_value(published: dict, dotted: str):
    node = published
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise WorkflowInputError(f"config key report.text_results: {dotted!r} is not a key of the published results")
        node = node[part]
    if not isinstance(node, (int, float)) or isinstance(node, bool):
        raise WorkflowInputError(f"published result {dotted!r} must be a number, not {node!r}")
    return float(node)


def published_row_name(experiment: dict, variant: str) -> str:
    return experiment["published"]["rows"].get(variant, variant.replace("-", "_"))


def published_table(published: dict, name: str, experiment: dict, source) -> dict:
    table = published.get(experiment["published"]["table"])
    if not isinstance(table, dict):
        raise WorkflowInputError(
            f"config key 'experiments.{name}.published.table': {experiment['published']['table']!r} is not a table of {source}"
        )
    return table
