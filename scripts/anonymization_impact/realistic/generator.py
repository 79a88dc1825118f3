"""What the realistic pipeline needs from a trained generator, and the crop tensors it gets.

DeepPrivacy2's generators (FDF128 / FDF256 face U-Nets, the TriA-GAN body generator) and the
stand-ins of the tests and of the synthetic twins all honour this one interface, so sampling,
truncation, HM, HM-LO, pasting and the leak check are the same code for every generator.

Conventions are DeepPrivacy2's (``dp2.anonymizer.Anonymizer.forward_G`` and
``dp2.detection.structures.PersonDetection.get_crop``):

- images are float tensors in [-1, 1], shape (1, 3, H, W);
- ``mask`` is 1 where the original is kept and 0 in the region to synthesize;
- ``condition`` is ``mask * image``: the region's pixels are zero before the generator sees them;
- ``person_mask`` is dp2's ``maskrcnn_mask``: 1 on the background, 0 on the person's
  (undilated) segmentation; bodies only;
- ``keypoints`` is (1, 17, 3): x and y relative to the crop box (0..1), visibility 0 / 1, COCO order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch


@dataclass
class CropTensors:
    condition: torch.Tensor                 # (1, 3, H, W) in [-1, 1], zero inside the region
    mask: torch.Tensor                      # (1, 1, H, W) float, 1 = keep, 0 = synthesize
    person_mask: torch.Tensor | None = None  # (1, 1, H, W) float, 1 = background, 0 = person
    keypoints: torch.Tensor | None = None    # (1, 17, 3) crop-relative x, y and visibility 0/1


class Generator(Protocol):
    """A trained conditional generator with a StyleGAN-like latent space."""

    label: str                         # what made the pixels, for audits and tables
    region: str                        # "face" or "body"
    size: tuple[int, int]              # crop (height, width) it synthesizes
    z_dim: int
    w_avg: torch.Tensor                # (w_dim,): unimodal truncation target
    w_centers: torch.Tensor | None     # (k, w_dim): multi-modal truncation targets, or None

    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        """(n, z_dim) -> (n, w_dim)."""

    def synthesize(self, inputs: CropTensors, w: torch.Tensor) -> torch.Tensor:
        """(1, 3, H, W) in [-1, 1] for one crop; differentiable with respect to ``w``. Pixels
        outside the region may be anything: only the region is pasted back."""


def crop_tensors(crop: np.ndarray, known: np.ndarray, person: np.ndarray | None, keypoints: np.ndarray | None,
                 device: str | torch.device = "cpu") -> CropTensors:
    """The generator's inputs from a uint8 (H, W, 3) crop, its bool ``known`` mask (True = keep),
    the bool person mask in crop space (True = person) and crop-relative keypoints (17, 3)."""
    known_t = torch.from_numpy(np.ascontiguousarray(known, dtype=np.float32))[None, None]
    image = torch.from_numpy(np.ascontiguousarray(crop, dtype=np.float32)).permute(2, 0, 1)[None]
    image = image / 127.5 - 1  # dp2: normalize(mean 0.5 * 255, std 0.5 * 255)
    inputs = CropTensors(condition=(image * known_t).to(device), mask=known_t.to(device))
    if person is not None:
        inputs.person_mask = torch.from_numpy(np.ascontiguousarray(~np.asarray(person, dtype=bool), dtype=np.float32))[None, None].to(device)
    if keypoints is not None:
        inputs.keypoints = torch.from_numpy(np.asarray(keypoints, dtype=np.float32))[None].to(device)
    return inputs


def to_pixels(image: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 255] float, as dp2 (``(x + 1) / 2``, clamped, times 255)."""
    return (image + 1).div(2).clamp(0, 1).mul(255)


def crop_keypoints(keypoints: np.ndarray | None, box: tuple[int, int, int, int]) -> np.ndarray | None:
    """Image-space (17, 3) keypoints -> crop-relative, as dp2's ``shift_and_preprocess_keypoints``:
    x, y divided by the box size; visible only if v > 0 and the point lies inside the box."""
    if keypoints is None:
        return None
    x0, y0, x1, y1 = box
    points = np.array(keypoints, dtype=np.float32).reshape(-1, 3)
    points[:, 0] = (points[:, 0] - x0) / np.float32(x1 - x0)
    points[:, 1] = (points[:, 1] - y0) / np.float32(y1 - y0)
    inside = (points[:, 0] >= 0) & (points[:, 0] <= 1) & (points[:, 1] >= 0) & (points[:, 1] <= 1)
    points[:, 2] = ((points[:, 2] > 0) & inside).astype(np.float32)
    return points
