"""Load and validate the workflow config against ``schemas/config.schema.yaml``.

Validation fills in the schema's defaults and turns the first problem into one
:class:`ConfigError` whose message names the offending key.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
import jsonschema
import yaml

from . import DATASETS
from .errors import ConfigError, DatasetError
from .schema import SCHEMA_PATH, load_schema  # noqa: F401 (SCHEMA_PATH: part of this module's interface)

TWINS_DIR = Path("resources") / "twins"
README_DATA_SECTION = "README.md, section 'Getting the real datasets'"


def _filling_defaults(validator_class):
    """Extend a validator so that ``properties`` also inserts missing defaults."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def properties_with_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema and name not in instance:
                    instance[name] = copy.deepcopy(subschema["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": properties_with_defaults})


_Validator = _filling_defaults(jsonschema.Draft202012Validator)


def _key_path(path) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "<top level>"


def _describe(error: jsonschema.ValidationError) -> str:
    where = _key_path(error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))
        prefix = f"{where}." if error.absolute_path else ""
        keys = ", ".join(f"'{prefix}{key}'" for key in unknown)
        return f"unknown config key {keys}; allowed here: {', '.join(allowed)}"
    if "propertyNames" in error.absolute_schema_path:
        rule = error.schema.get("pattern") and f"must match {error.schema['pattern']}" or "is reserved"
        return f"invalid name {error.instance!r} under config key '{where}': the name {rule}"
    if error.validator == "required":
        return f"config key '{where}' is incomplete: {error.message}"
    return f"config key '{where}': {error.message}"


def validate_config(config: dict | None, schema: dict | None = None) -> dict:
    """Return a validated deep copy of ``config`` with defaults filled in."""
    config = copy.deepcopy(config or {})
    validator = _Validator(schema or load_schema())
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is not None:
        raise ConfigError(_describe(error))
    _check_cross_references(config)
    return config


def _check_cross_references(config: dict) -> None:
    variants, models = config["variants"], config["models"]
    for name, experiment in config["experiments"].items():
        if experiment["model"] not in models:
            raise ConfigError(
                f"config key 'experiments.{name}.model': {experiment['model']!r} is not "
                f"an entry of 'models' ({', '.join(sorted(models)) or 'none defined'})"
            )
        for index, variant in enumerate(experiment["variants"]):
            if variant != "original" and variant not in variants:
                raise ConfigError(
                    f"config key 'experiments.{name}.variants[{index}]': {variant!r} is "
                    "neither 'original' nor an entry of 'variants'"
                )
    for index, entry in enumerate(config["report"]["text_results"]):
        where = f"report.text_results[{index}]"
        experiment = config["experiments"].get(entry["experiment"])
        if experiment is None:
            raise ConfigError(f"config key '{where}.experiment': {entry['experiment']!r} is not an entry of 'experiments'")
        if entry["variant"] not in experiment["variants"]:
            raise ConfigError(f"config key '{where}.variant': {entry['variant']!r} is not a row of experiment {entry['experiment']!r}")
    for name, panel in config["fig8"]["panels"].items():
        where = f"fig8.panels.{name}"
        for key in ("variant", "synthetic_variant"):
            if panel[key] is not None and panel[key] not in variants:
                raise ConfigError(f"config key '{where}.{key}': {panel[key]!r} is not an entry of 'variants'")
        for index, model in enumerate(panel["models"]):
            if model not in models:
                raise ConfigError(f"config key '{where}.models[{index}]': {model!r} is not an entry of 'models'")


def experiment_target(name: str, experiment: dict) -> str:
    """The named target (table1 ... table4, appendix) whose table holds an experiment."""
    return experiment["target"] or name


def fig8_variant(config: dict, panel: dict) -> str:
    """The anonymization a Fig. 8 panel plots: its synthetic stand-in on a twin."""
    synthetic = config["datasets"][panel["dataset"]]["synthetic"]
    return panel["synthetic_variant"] if synthetic and panel["synthetic_variant"] else panel["variant"]


def load_config(path: Path) -> dict:
    with open(path) as handle:
        return validate_config(yaml.safe_load(handle))


def enabled_datasets(config: dict) -> list[str]:
    return [name for name in DATASETS if config["datasets"][name]["enabled"]]


def twin_root(dataset: str) -> Path:
    return TWINS_DIR / dataset


def dataset_root(config: dict, dataset: str) -> Path:
    """Where the raw files of ``dataset`` are read from: its twin or the configured root."""
    settings = config["datasets"][dataset]
    return twin_root(dataset) if settings["synthetic"] else Path(settings["root"])


def check_dataset_roots(config: dict) -> None:
    """Fail before any job runs if an enabled real dataset has no root on disk."""
    for dataset in enabled_datasets(config):
        settings = config["datasets"][dataset]
        if settings["synthetic"]:
            continue
        key = f"datasets.{dataset}.root"
        if not settings["root"]:
            raise DatasetError(
                f"config key '{key}' is not set, but datasets.{dataset}.synthetic is false. "
                f"Set it to the dataset's root directory (see {README_DATA_SECTION}), "
                f"or set datasets.{dataset}.synthetic: true to use the synthetic twin."
            )
        if not Path(settings["root"]).is_dir():
            raise DatasetError(
                f"config key '{key}': dataset root {settings['root']!r} does not exist. "
                f"Download the data as described in {README_DATA_SECTION}, or set "
                f"datasets.{dataset}.synthetic: true to use the synthetic twin."
            )


def typed_overrides(overrides: dict) -> dict:
    """``--config`` values with YAML's types. Snakemake reads a nested ``--config key={...}`` or
    ``key=[...]`` with YAML's BaseLoader, which leaves every scalar inside a string ('false',
    '0'); they are read again as YAML here. A quoted string that looks like a number or a
    boolean cannot be told apart any more: write such values in a --configfile overlay."""

    def typed(value):
        if isinstance(value, dict):
            return {key: typed(item) for key, item in value.items()}
        if isinstance(value, list):
            return [typed(item) for item in value]
        if isinstance(value, str) and value.strip():
            try:
                return yaml.safe_load(value)
            except yaml.YAMLError:
                return value
        return value

    return {key: typed(value) if isinstance(value, (dict, list)) else value for key, value in overrides.items()}


def with_override_hint(message: str, overrides: dict) -> str:
    """A validation error about a key given with --config, with the --configfile way to set it."""
    if not any(re.search(rf"'{re.escape(key)}([.\[']|$)", message) for key in overrides):
        return message
    return (
        f"{message} (from --config, whose values are read as YAML: e.g. --config seeds=[0] "
        "datasets='{coco: {enabled: false}}'; or write the keys to overlay.yaml and pass "
        "--configfile config.yaml overlay.yaml)"
    )

