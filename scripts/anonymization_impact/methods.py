"""Anonymization methods behind one per-instance interface.

A method receives one instance's crop (already cut from the image and resized to the
generator's size), its ``CropGeometry`` (box, crop-space ``known`` mask: True = keep, False =
region; the person mask for bodies), the instance's image-space keypoints (or None) and a
random generator seeded for that instance; it returns the synthesized crop (float, 0..255),
which the caller pastes back through the region. Methods with ``sees_region = False`` get a
crop whose region pixels were zeroed in the image before cutting, so their output cannot
depend on what was there (the leak check of the audit verifies that). The realistic method
(``realistic.method.Realistic``) implements the same API; with HM / HM-LO it also receives
``original``, the crop of the untouched image, for its colour histogram.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from scipy import ndimage

from .geometry import CropGeometry


class Method(Protocol):
    name: str
    sees_region: bool  # False: the region's pixels are never shown to the method
    space: str  # "crop" (synthesize in crop space) or "image" (apply in image space)

    def synthesize(self, crop: np.ndarray, geometry: CropGeometry, keypoints: np.ndarray | None, rng: np.random.Generator) -> np.ndarray: ...


def gaussian_kernel(sigma: float, size: int) -> np.ndarray:
    """Normalized 1-D Gaussian taps at integer offsets -(size-1)/2 .. (size-1)/2."""
    offsets = np.arange(size, dtype=np.float64) - (size - 1) / 2
    taps = np.exp(-0.5 * (offsets / sigma) ** 2)
    return taps / taps.sum()


def gaussian_blur(pixels: np.ndarray, sigma: float, size: int) -> np.ndarray:
    """Separable Gaussian blur of an HxWxC array with reflect padding (as torchvision's
    ``gaussian_blur``, which deep_privacy2 used); returns float32."""
    if size % 2 == 0:
        size -= 1  # an even kernel has no centre tap; torchvision refuses it
    taps = gaussian_kernel(sigma, size)
    if min(pixels.shape[:2]) <= size // 2:
        raise ValueError(f"cannot blur an array of shape {pixels.shape} with a {size}-tap kernel")
    result = pixels.astype(np.float32)
    for axis in (0, 1):  # scipy's "mirror" is numpy's / torch's "reflect" (edge not repeated)
        result = ndimage.correlate1d(result, taps, axis=axis, mode="mirror")
    return result


class MaskOut:
    """Constant fill of the region (paper: 127)."""

    name = "maskout"
    sees_region = False
    space = "crop"

    def __init__(self, value: int = 127):
        self.value = value
        # Pasting a constant crop writes exactly that constant into the region, so the
        # caller may skip cutting and resampling (same bytes, several times faster).
        self.fill_value = value

    def synthesize(self, crop, geometry, keypoints, rng):
        return np.full(crop.shape, float(self.value), dtype=np.float32)


class Blur:
    """Gaussian blur (sigma 7, kernel 21). In crop space (deep_privacy2's code: the resized
    crop is blurred, kernel capped at the crop width) or in image space (the paper's text)."""

    name = "blur"
    sees_region = True

    def __init__(self, sigma: float = 7, kernel: int = 21, space: str = "crop"):
        self.sigma, self.kernel, self.space = sigma, kernel, space

    def synthesize(self, crop, geometry, keypoints, rng):
        return gaussian_blur(crop, self.sigma, min(self.kernel, crop.shape[1]))


def build_method(variant: dict) -> Method:
    """The method object of a validated traditional variant (realistic ones:
    ``realistic.method.build_realistic``, which needs generators)."""
    if variant["method"] == "maskout":
        return MaskOut(variant["maskout_value"])
    if variant["method"] == "blur":
        return Blur(variant["blur_sigma"], variant["blur_kernel"], variant["blur_space"])
    raise ValueError(f"variant {variant!r} is realistic: build it with realistic.method.build_realistic and its generators")
