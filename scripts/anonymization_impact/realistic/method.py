"""The realistic method: one instance's crop -> a synthesized crop, through a ``Generator``.

Per instance (DeepPrivacy2's ``Anonymizer.anonymize_detections``, smallest person first, as the
caller orders them): the condition is the crop of the image whose region pixels were zeroed
before cutting, so nothing of the region reaches the generator; w is drawn as configured
(``latents``); HM-LO optimizes w, HM matches the histogram afterwards (``postprocess``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..geometry import CropGeometry
from . import effective_truncation
from .generator import Generator, crop_keypoints, crop_tensors, to_pixels
from .latents import initial_w, seed_torch_noise
from .postprocess import match_histogram_blend, optimize_latent

@dataclass
class RealisticSettings:
    """A realistic variant's options (defaults and meanings: schemas/config.schema.yaml)."""

    truncation: str         # none | unimodal | multimodal
    truncation_value: float  # psi; 1 for no truncation
    postprocess: str        # none | hm | hmlo
    hm_sigma: float
    hm_kernel: int
    hm_per_channel: bool
    hmlo_steps: int
    hmlo_threshold: float
    hmlo_lr: float


@dataclass
class Realistic:
    """A method of ``methods.Method``'s interface; ``generators`` keyed by crop size (h, w)."""

    generators: dict[tuple[int, int], Generator]
    settings: RealisticSettings
    device: str = "cpu"
    name: str = "realistic"
    sees_region: bool = False
    space: str = "crop"
    statistics: dict = field(default_factory=lambda: {"syntheses": 0, "hmlo_steps": [], "hmlo_final_loss": []})

    @property
    def uses_region_histogram(self) -> bool:
        """HM and HM-LO read the colour histogram of the original crop, region included."""
        return self.settings.postprocess in ("hm", "hmlo")

    @property
    def label(self) -> str:
        return "; ".join(sorted({generator.label for generator in self.generators.values()}))

    def generator_for(self, geometry: CropGeometry) -> Generator:
        try:
            return self.generators[tuple(geometry.size)]
        except KeyError:
            raise ValueError(f"no generator for {geometry.size[0]}x{geometry.size[1]} crops; have {sorted(self.generators)}") from None

    def synthesize(self, crop: np.ndarray, geometry: CropGeometry, keypoints: np.ndarray | None,
                   rng: np.random.Generator, original: np.ndarray | None = None) -> np.ndarray:
        generator = self.generator_for(geometry)
        settings = self.settings
        inputs = crop_tensors(crop, geometry.known, geometry.person, crop_keypoints(keypoints, geometry.box), self.device)
        w = initial_w(generator, settings.truncation, settings.truncation_value, rng).to(self.device)
        seed_torch_noise(rng)
        self.statistics["syntheses"] += 1
        if settings.postprocess == "hmlo":
            reference = torch.from_numpy(np.ascontiguousarray(original, dtype=np.float32)).permute(2, 0, 1)[None] / 255
            result = optimize_latent(generator, inputs, reference.to(self.device), w, max_steps=settings.hmlo_steps,
                                     threshold=settings.hmlo_threshold, lr=settings.hmlo_lr)
            self.statistics["hmlo_steps"].append(result.steps)
            self.statistics["hmlo_final_loss"].append(result.losses[-1])
            image = result.image
        else:
            with torch.no_grad():
                image = generator.synthesize(inputs, w)
        pixels = to_pixels(image)[0].permute(1, 2, 0).cpu().numpy().astype(np.float32)
        if settings.postprocess == "hm":
            person = geometry.person if geometry.person is not None else ~geometry.known
            pixels = match_histogram_blend(pixels, original, person, sigma=settings.hm_sigma,
                                           kernel=settings.hm_kernel, per_channel=settings.hm_per_channel)
        return pixels

    def summary(self) -> dict:
        """What the shard audit records about this method's work."""
        steps, losses = self.statistics["hmlo_steps"], self.statistics["hmlo_final_loss"]
        summary = {"generator": self.label, "syntheses": self.statistics["syntheses"],
                   "truncation": self.settings.truncation, "postprocess": self.settings.postprocess}
        if steps:
            summary["hmlo"] = {"mean_steps": float(np.mean(steps)), "max_steps": int(max(steps)),
                               "below_threshold": int(sum(loss < self.settings.hmlo_threshold for loss in losses))}
        return summary


def realistic_settings(variant: dict) -> RealisticSettings:
    """Settings of a validated realistic variant (the schema filled its defaults)."""
    truncation = effective_truncation(variant)
    options = {name: variant[name] for name in ("postprocess", "hm_sigma", "hm_kernel", "hm_per_channel", "hmlo_steps", "hmlo_threshold", "hmlo_lr")}
    return RealisticSettings(truncation=truncation, truncation_value=1.0 if truncation == "none" else variant["truncation_value"], **options)


def build_realistic(variant: dict, generators: dict[tuple[int, int], Generator], device: str = "cpu") -> Realistic:
    return Realistic(generators, realistic_settings(variant), device)
