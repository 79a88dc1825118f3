"""Building the generators of a realistic variant, and where they run."""

from __future__ import annotations

import logging
import time

import numpy as np
import torch

from ..devices import resolve
from ..errors import WorkflowInputError
from ..geometry import BODY_SIZE, FACE_SIZE, HR_FACE_SIZE
from .generator import Generator, crop_tensors
from .standin import StandinGenerator
from .twin_renderer import TwinPersonRenderer

# crop (height, width) of each generator role (docs/anonymization.md, "Regions")
ROLE_SIZES = {"face": FACE_SIZE, "face_hr": HR_FACE_SIZE, "body": BODY_SIZE}
ROLE_REGIONS = {"face": "face", "face_hr": "face", "body": "body"}
# the DeepPrivacy2 generator (realistic.deepprivacy2.GENERATORS) of each role
DEEPPRIVACY2_GENERATORS = {"face": "fdf128", "face_hr": "fdf256", "body": "triagan"}


def resolve_device(requested: str, log: logging.Logger) -> str:
    """realistic.device through the GPU guard (devices.resolve): a job that asked for a GPU never
    runs on the CPU; auto runs on the CPU where there is none (an estimate follows)."""
    return resolve(requested, "realistic.device", log)[0]


def load_generators(settings: dict, weights: dict[str, str], device: str,
                    dp2_root: str | None = None) -> dict[tuple[int, int], Generator]:
    """Generators keyed by crop size, for the roles in ``settings`` (``plan.generator_settings``);
    DeepPrivacy2's need ``weights`` (role -> checkpoint file, md5-checked against the role's
    `weights` entry: ``settings["md5"]``) and its checkout ``dp2_root``."""
    kind, generators = settings["kind"], {}
    for role in settings["roles"]:
        size = ROLE_SIZES[role]
        if kind == "standin":
            generators[size] = StandinGenerator(ROLE_REGIONS[role], size, seed=settings["standin_seed"] + len(generators))
        elif kind == "twin_renderer":
            generators[size] = TwinPersonRenderer(ROLE_REGIONS[role], size, seed=settings["standin_seed"] + len(generators))
        elif kind == "deepprivacy2":
            from .deepprivacy2 import load_generator

            generators[size] = load_generator(DEEPPRIVACY2_GENERATORS[role], weights[role], device, dp2_root=dp2_root,
                                              md5=settings.get("md5", {}).get(role), weights_name=settings["names"][role])
        else:
            raise WorkflowInputError(
                f"no generator for realistic anonymization ({kind!r}): a twin needs realistic.synthetic_generator"
            )
    return generators


def seconds_per_instance(generators: dict[tuple[int, int], Generator], device: str, repeats: int = 2) -> float:
    """Measured time of one synthesis of the largest crop (the estimate a CPU run warns with)."""
    size = max(generators, key=lambda s: s[0] * s[1])
    generator = generators[size]
    blank = np.zeros((*size, 3), dtype=np.uint8)
    known = np.zeros(size, dtype=bool)
    keypoints = np.zeros((17, 3), dtype=np.float32) if generator.region == "body" else None
    inputs = crop_tensors(blank, known, known if generator.region == "body" else None, keypoints, device)
    with torch.no_grad():
        w = generator.w_avg[None].to(device)
        generator.synthesize(inputs, w)  # warm-up
        start = time.perf_counter()
        for _ in range(repeats):
            generator.synthesize(inputs, w)
    return (time.perf_counter() - start) / repeats


def duration_text(seconds: float) -> str:
    """A duration a person reads at a glance: seconds (two significant digits below 10 s) up to two
    minutes, then minutes up to two hours, then hours; never a rounded-away "0.0 h"."""
    if seconds < 120:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s" if seconds >= 1 else f"{seconds:.2f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def cpu_estimate(seconds_per_person: float, persons: int) -> str:
    """The warning of a CPU run: the measured time of one person and what the shard will take."""
    return (f"about {duration_text(seconds_per_person)} per person (one synthesis) on this CPU: "
            f"~{duration_text(seconds_per_person * persons)} for the {persons} persons of this shard, more with HM-LO's passes")


def prepare_generators(settings: dict, weights: dict[str, str], dp2_root: str | None, persons_in_shard: int,
                       log: logging.Logger) -> tuple[dict[tuple[int, int], Generator], str]:
    """Generators and device of one shard job; on a CPU, DeepPrivacy2 runs with a measured estimate."""
    device = resolve_device(settings["device"], log)
    generators = load_generators(settings, weights, device, dp2_root)
    if device == "cpu" and settings["kind"] == "deepprivacy2":
        log.warning("%s", cpu_estimate(seconds_per_instance(generators, device), persons_in_shard))
    return generators, device
