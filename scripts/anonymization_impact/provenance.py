"""Provenance of the results: the metric JSON's block (code version, seed, packages, inputs) and
the manifest, the one record of the whole config and its hash.

No timestamps, so that the same inputs give byte-identical metric files. Package versions
come from ``importlib.metadata``: torch is never imported here (importing it costs seconds
and initialises CUDA).
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path

from .errors import WorkflowInputError
from .io import file_digest

PACKAGES = ("numpy", "pillow", "pycocotools", "cityscapesScripts", "scipy", "torch", "torchvision")
PACKAGE_DIR = Path(__file__).resolve().parent


def md5_file(path: Path) -> str:
    try:
        return file_digest(path, "md5")
    except OSError as error:
        raise WorkflowInputError(f"cannot read {path} to record its md5 ({error.strerror or error})") from None


def config_sha256(config: dict) -> str:
    """sha256 of the config as canonical JSON (sorted keys, no whitespace, UTF-8)."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _git(*args: str) -> str | None:
    try:
        completed = subprocess.run(["git", "-C", str(PACKAGE_DIR), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return completed.stdout.strip() if completed.returncode == 0 else None


def git_state() -> tuple[str | None, bool | None]:
    """(HEAD commit, whether tracked files differ from it) of the repository holding this
    package; (None, None) outside a git checkout or without git."""
    commit = _git("rev-parse", "HEAD")
    if commit is None:
        return None, None
    status = _git("status", "--porcelain", "--untracked-files=no")
    return commit, (None if status is None else bool(status))


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def own_version() -> str:
    try:
        return metadata.version("anonymization-impact")
    except metadata.PackageNotFoundError:
        pass
    pyproject = PACKAGE_DIR.parents[1] / "pyproject.toml"
    try:
        import tomllib

        with open(pyproject, "rb") as handle:
            return str(tomllib.load(handle)["project"]["version"])
    except (OSError, KeyError, ValueError):
        return "unknown"


def provenance(
    *,
    seed: int,
    annotation_files: list[Path],
    extra_files: dict[str, Path] | None = None,
    training_time_s: float | None = None,
    device: str | None = None,
    frameworks: dict | None = None,
) -> dict:
    """The provenance block: ``annotation_md5`` is keyed by the path as given (pass paths
    relative to the workflow directory for reproducible files), ``files_md5`` by the names of
    ``extra_files`` (e.g. ``{"weights": ..., "predictions": ...}``). No config hash: a metric file
    follows from its weights (whose training.json holds the job's settings) and its inputs, and
    the config is recorded once, in the manifest, so that editing an unrelated key reruns no
    evaluation."""
    commit, dirty = git_state()
    return {
        "git_commit": commit,
        "dirty": dirty,
        "seed": seed,
        "packages": package_versions(),
        "python": platform.python_version(),
        "device": device or "cpu",
        "annotation_md5": {str(path): md5_file(path) for path in annotation_files},
        "files_md5": {name: md5_file(path) for name, path in sorted((extra_files or {}).items())},
        "training_time_s": None if training_time_s is None else float(training_time_s),
        "frameworks": frameworks or {},  # what trained the weights (training.json); the packages above are the evaluator's
        "created_by": f"anonymization_impact {own_version()}",
    }


def raw_files_used(root: Path, documents: list[dict], raw_inputs: list[Path]) -> list[Path]:
    """The raw files a dataset contributed: every image the normalized annotations name, and
    every file of the raw annotation inputs (files, or all files under directories)."""
    files = {Path(root) / image["file_name"] for document in documents for image in document["images"]}
    for path in map(Path, raw_inputs):
        if path.is_dir():
            files.update(child for child in path.rglob("*") if child.is_file() and child.name != ".snakemake_timestamp")
        elif path.is_file():
            files.add(path)
    return sorted(files)


def manifest(*, config: dict, raw: dict[str, tuple[Path, list[Path]]], results: list[Path], env_files: list[Path], progress=iter) -> dict:
    """Everything the results were made from, with checksums: code, config, envs, the raw
    files of each dataset (relative to its root), and the result files (weights, metrics)."""
    commit, dirty = git_state()
    datasets = {}
    for dataset, (root, files) in sorted(raw.items()):
        datasets[dataset] = {
            "root": str(root),
            "files": len(files),
            "md5": {str(path.relative_to(root)) if path.is_relative_to(root) else str(path): md5_file(path) for path in progress(files)},
        }
    return {
        "schema": "anonymization-impact/manifest/v1",
        "version": own_version(),
        "git_commit": commit,
        "dirty": dirty,
        "config_sha256": config_sha256(config),
        "config": config,
        "packages": package_versions(),
        "python": platform.python_version(),
        "envs_md5": {Path(path).name: md5_file(path) for path in sorted(env_files)},
        "raw_datasets": datasets,
        "results_md5": {str(path): md5_file(path) for path in sorted(results)},
        "created_by": f"anonymization_impact {own_version()}",
    }
