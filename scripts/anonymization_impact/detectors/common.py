"""What both detector rules share: the libraries (imported on use; a missing one raises
:class:`WorkflowInputError` naming :data:`ENV_FILE`), the fields a rule must hand its script, and
the images of a ``persons.json`` as the detectors read them."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..errors import DatasetError, WorkflowInputError
from ..io import decode_image

ENV_FILE = "envs/detectors.yaml"


def require(module: str, purpose: str):
    """Import ``module`` or raise WorkflowInputError naming the conda env that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        problem = f"the Python package '{module.split('.')[0]}' does not import here ({error})"
    except AssertionError as error:  # mmpose 0.x asserts its mmcv version at import time
        problem = f"'{module}' refuses the installed versions ({error})"
    raise WorkflowInputError(
        f"{purpose} needs {problem}. Run this rule in its conda env {ENV_FILE} "
        "(`snakemake --sdm conda ...` on a GPU node; docs/detectors.md)"
    )


def require_rule_fields(rule: str, given_inputs, given_params, *, inputs: Sequence[str] = (), params: Sequence[str] = ()) -> None:
    """WorkflowInputError unless the rule hands its script these named inputs and params."""
    missing = [f"input.{name}" for name in inputs if not hasattr(given_inputs, name)]
    missing += [f"params.{name}" for name in params if not hasattr(given_params, name)]
    if missing:
        raise WorkflowInputError(f"rule {rule} does not give its script {', '.join(missing)} "
                                 "(docs/detectors.md lists what the detector rules need)")


def persons_by_image(persons: dict) -> list[tuple[dict, list[dict]]]:
    """(image, its person annotations) for every image of a ``persons.json``, in file order."""
    by_image: dict = {}
    for annotation in persons.get("annotations", []):
        by_image.setdefault(annotation["image_id"], []).append(annotation)
    return [(image, by_image.get(image["id"], [])) for image in persons.get("images", [])]


@dataclass(frozen=True)
class ImageJob:
    """One image to run a detector on: its key in the output (path relative to the dataset
    root), the file, and the size the annotation gives it."""

    key: str
    path: Path
    width: int
    height: int


def read_rgb(job: ImageJob, read_image: Callable = decode_image) -> np.ndarray:
    """The image as dp2 fed the detectors (EXIF orientation applied, RGB, uint8), size-checked."""
    if not Path(job.path).is_file():
        raise DatasetError(f"image {job.path} (in persons.json) does not exist; the dataset root does not match the annotations")
    pixels = read_image(job.path)
    pixels = pixels[0] if isinstance(pixels, tuple) else pixels
    if pixels.shape[:2] != (job.height, job.width):
        raise DatasetError(f"image {job.path} is {pixels.shape[1]}x{pixels.shape[0]} but persons.json says "
                           f"{job.width}x{job.height}; the annotations belong to another release")
    return np.ascontiguousarray(pixels, dtype=np.uint8)
