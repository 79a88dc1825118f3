"""Latent sampling of the realistic variants: no truncation, unimodal and multi-modal truncation.

As DeepPrivacy2's ``Anonymizer.forward_G`` with the paper's dataset scripts (``--sampler``
None / SMT / MMT, ``truncation_value`` 1 / 0 / 0): w = target.lerp(mapping(z), psi), with the
target w_avg (unimodal) or one of the checkpoint's cluster centres (multi-modal, 512 by
default); psi = 1 means no truncation. Every draw comes from the instance's own random
generator, seeded from (variant seed, image, instance), in a fixed order: z, then the centre,
then the seed of torch's noise inputs. So a tree's bytes do not depend on sharding or order.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import WorkflowInputError
from .generator import Generator

TRUNCATIONS = ("none", "unimodal", "multimodal")


def initial_w(generator: Generator, truncation: str, psi: float, rng: np.random.Generator) -> torch.Tensor:
    """The (1, w_dim) latent of one instance, before any HM-LO optimization."""
    if truncation not in TRUNCATIONS:
        raise ValueError(f"unknown truncation {truncation!r}; expected one of {TRUNCATIONS}")
    z = torch.from_numpy(rng.standard_normal((1, generator.z_dim)).astype(np.float32))
    centre_draw = int(rng.integers(2**31))  # drawn for every truncation: later draws stay aligned
    with torch.no_grad():
        w = generator.mapping(z)
        if truncation == "none":
            return w.detach()
        if truncation == "unimodal":
            target = generator.w_avg[None]
        else:
            centres = generator.w_centers
            if centres is None or len(centres) == 0:
                raise WorkflowInputError(
                    f"multi-modal truncation needs the w cluster centres of {generator.label}, and its "
                    "checkpoint has none; use truncation 'unimodal' or a checkpoint with 'w_centers'"
                )
            target = centres[centre_draw % len(centres)][None]
        return target.to(w.dtype).lerp(w, float(psi)).detach()


def seed_torch_noise(rng: np.random.Generator) -> None:
    """Generators draw noise inputs from torch's global generator: seed it per instance."""
    torch.manual_seed(int(rng.integers(2**63 - 1)))
