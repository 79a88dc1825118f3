"""Helpers the backends share: the classes a model trains on, the device, and the errors of a
framework that is missing or a schedule a model zoo cannot express, the error of a diverged run, and
the record of the frameworks a run used."""

from __future__ import annotations

from pathlib import Path

from ..errors import WorkflowInputError
# BACKEND_ENVS stays in the package's __init__ (rules/common.smk reads it there), which imports its modules only inside
# backend(): loading this module never meets a half-built package.
from . import BACKEND_ENVS


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite: every backend stops with this error, its last good
    checkpoint kept."""


def kept_categories(categories: list[dict], task: str, exclude_classes=()) -> list[dict]:
    """The categories a model is trained on, in id order: every category of the annotation
    (only person for keypoints) but the excluded class names, which must exist."""
    names = {category["name"] for category in categories}
    unknown = sorted(set(exclude_classes) - names)
    if unknown:
        raise WorkflowInputError(f"exclude_classes {unknown} are not classes of this dataset ({', '.join(sorted(names))})")
    kept = sorted((c for c in categories if c["name"] not in set(exclude_classes)), key=lambda category: category["id"])
    if task == "keypoints":
        kept = [category for category in kept if category["name"] == "person"]
    if not kept:
        raise WorkflowInputError(f"no class is left to train on after excluding {sorted(exclude_classes)}")
    return kept


def resolve_device(requested: str) -> str:
    """'cuda' or 'cpu' for training.device, through the GPU guard (devices.resolve)."""
    from ..devices import resolve

    return resolve(requested, "training.device")[0]


def missing_framework(backend_name: str, error: ImportError) -> WorkflowInputError:
    """The error of a backend whose framework does not import in this environment."""
    envs = BACKEND_ENVS[backend_name]
    return WorkflowInputError(
        f"the {backend_name} backend needs {error.name or 'its framework'}, which does not import here ({error}). "
        f"Run this rule in its conda env: {envs['paper']} (training.stack: paper, the paper's PyTorch 1.12 stack) "
        f"or {envs['current']} (training.stack: current), e.g. `snakemake --sdm conda ...` on a GPU node "
        "(docs/training.md). On a machine without the framework, train with `models.<name>.backend: torchvision` "
        "or `training.backends`."
    )


def model_zoo_mismatches(schedule: dict, backbone: str, depths) -> list[str]:
    """What a model-zoo R-CNN of the paper's frameworks cannot express (the twins' slim
    models): the backend names each, then adds its own."""
    problems = []
    if backbone not in depths:
        problems.append(f"backbone {backbone} (their ResNets: {', '.join(depths)})")
    if schedule["backbone_width"] != 64:
        problems.append(f"backbone_width {schedule['backbone_width']} (64 only)")
    if schedule["head_channels"] is not None:
        problems.append(f"head_channels {schedule['head_channels']} (null only: the model-zoo heads)")
    if schedule["clip_gradient_norm"] is not None:
        problems.append(f"clip_gradient_norm {schedule['clip_gradient_norm']} (null only: not translated)")
    return problems


def framework_record(*distributions: str) -> dict:
    """{distribution: {"version", "commit", "source"}} of the frameworks a run used (training.json
    and the metric provenance record it). The commit is the one pip recorded for a git install
    (its direct_url.json); an env twin built from a wheelhouse wheel names the commit in its
    marker file (tools/env_twins.py); else None."""
    import json
    import sys
    from importlib import metadata

    twin_marker = Path(sys.prefix) / ".env-twin.json"
    substitutions = json.loads(twin_marker.read_text())["plan"]["substitutions"] if twin_marker.is_file() else []
    record = {}
    for name in distributions:
        try:
            distribution = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            record[name] = {"version": None, "commit": None, "source": "not installed"}
            continue
        direct_url = json.loads(distribution.read_text("direct_url.json") or "{}")
        commit, source = direct_url.get("vcs_info", {}).get("commit_id"), direct_url.get("url", "an index")
        for line in substitutions:  # "<name> @ github.com/<owner>/<repo>@<commit> -> the wheelhouse's ..." (or "-> PyPI <release>: ...")
            pinned, _, substitute = line.partition(" -> ")
            if pinned.split(" @ ")[0] == name and "@" in pinned.split(" @ ")[-1]:
                # a wheelhouse build is of that commit; a PyPI stand-in (mmdet 2.28.2 for b95583270c) is not
                commit, source = pinned.split("@")[-1] if substitute.startswith("the wheelhouse's") else None, f"env twin: {line}"
        record[name] = {"version": distribution.version, "commit": commit, "source": source}
    return record
