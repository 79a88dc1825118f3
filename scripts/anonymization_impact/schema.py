"""The config schema (``schemas/config.schema.yaml``) as data: its path and its defaults.

Kept apart from :mod:`.config` (which validates with jsonschema) so that code running in the
frameworks' envs can read the schema's defaults with PyYAML alone.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "config.schema.yaml"


# libyaml's loader where PyYAML has it: the schema is read at every DAG build (~6x faster)
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_schema(path: Path = SCHEMA_PATH) -> dict:
    with open(path) as handle:
        return yaml.load(handle, Loader=SAFE_LOADER)


@lru_cache(maxsize=None)
def definition_defaults(definition: str) -> dict:
    """The default of every option of a schema definition (``$defs.<definition>``) that has one."""
    properties = load_schema()["$defs"][definition]["properties"]
    return {name: spec["default"] for name, spec in properties.items() if "default" in spec}
