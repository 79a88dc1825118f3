"""Global-context corrections of realistic bodies (paper Sec. 3.4): HM and HM-LO.

Both compare the synthesized crop with the *original* crop, region included: they use the
colour statistics of the person being replaced, by design. The generator itself still never
sees the region's pixels (its condition is zero there). Audits say so.

HM (DeepPrivacy2's ``HistogramMatchAnonymizer``): ``skimage.exposure.match_histograms`` of the
rounded synthesized crop to the original crop (jointly over RGB, as dp2; per channel as the
paper's text describes is an option), blended into the synthesized crop with the person's
mask blurred by a 19x19 Gaussian (dp2 sigma 10, paper text 9) and normalized to max 1.

HM-LO (the paper's Eq. 1; dp2's ``LatentHistogramMatchAnonymizer`` crashes at HEAD, this is our
implementation): Adam on w (lr 1e-3) minimizing the sum of Wasserstein-1 distances between the
kernel-density histograms (256 bins on [0, 1], bandwidth 1, as dp2 with kornia; computed
from moments, ``soft_histogram``) of the S and V
channels of the original and synthesized crops, for at most 100 steps or until the loss is
below 0.02. As dp2, the returned image is the last one whose loss was computed.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
from skimage.exposure import match_histograms

from ..methods import gaussian_blur
from .generator import CropTensors, Generator, to_pixels

HISTOGRAM_BINS = 256


def match_histogram_blend(synthesized: np.ndarray, original: np.ndarray, person: np.ndarray, *,
                          sigma: float = 10, kernel: int = 19, per_channel: bool = False) -> np.ndarray:
    """HM: float (H, W, 3) 0..255 synthesized crop, uint8 original crop, bool person mask -> float crop."""
    rounded = np.clip(np.round(synthesized), 0, 255).astype(np.uint8)
    matched = match_histograms(rounded, original, channel_axis=-1 if per_channel else None).astype(np.float32)
    weight = gaussian_blur(np.asarray(person, dtype=np.float32)[..., None], sigma, kernel)
    peak = weight.max()
    if peak > 0:
        weight = weight / peak
    return weight * matched + (1 - weight) * synthesized.astype(np.float32)


def saturation_value(pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """S and V of HSV (kornia's ``rgb_to_hsv``: s = (max - min) / (max + 1e-8)) of (n, 3, H, W) in [0, 1]."""
    value = pixels.max(dim=1).values
    minimum = pixels.min(dim=1).values
    return (value - minimum) / (value + 1e-8), value


SERIES_TERMS = 12  # exp(-d^2 / 2) for |d| <= 1: the first omitted term is below 1e-12


@functools.lru_cache(maxsize=4)
def _series_matrix(bins: int) -> torch.Tensor:
    """T[k, b] with mean_i exp(-(x_i - c_b)^2 / 2) = sum_k mean_i(x_i^k) T[k, b] (Taylor series of
    the kernel, binomial expansion of (x - c)^(2n)); exact to ~1e-12 for x, c in [0, 1]."""
    centres = torch.linspace(0, 1, bins, dtype=torch.float64)
    matrix = torch.zeros((2 * SERIES_TERMS + 1, bins), dtype=torch.float64)
    for n in range(SERIES_TERMS + 1):
        weight = (-0.5) ** n / math.factorial(n)
        for k in range(2 * n + 1):
            matrix[k] += weight * math.comb(2 * n, k) * (-centres) ** (2 * n - k)
    return matrix


def soft_histogram(values: torch.Tensor, bins: int = HISTOGRAM_BINS) -> torch.Tensor:
    """Gaussian kernel-density histogram (bandwidth 1, as dp2 called kornia's ``histogram``) of
    (n, ...) values in [0, 1], (n, bins). Computed from the first moments of the values, which
    equals kornia's pixel-by-bin sum without its (pixels x bins) intermediate."""
    flat = values.flatten(start_dim=1).to(torch.float64)
    powers = [torch.ones_like(flat)]
    for _ in range(2 * SERIES_TERMS):
        powers.append(powers[-1] * flat)
    moments = torch.stack([power.mean(dim=1) for power in powers], dim=1)
    density = moments @ _series_matrix(bins).to(values.device)
    density = density / (density.sum(dim=-1, keepdim=True) + 1e-10)
    return density.to(values.dtype)


def wasserstein1(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Sum over bins of |CDF difference| of two (n, bins) histograms, mean over n (dp2 ``torch_cdf_loss``)."""
    first = first / (first.sum(dim=-1, keepdim=True) + 1e-14)
    second = second / (second.sum(dim=-1, keepdim=True) + 1e-14)
    return (first.cumsum(dim=-1) - second.cumsum(dim=-1)).abs().sum(dim=-1).mean()


def hsv_histograms(pixels: torch.Tensor) -> list[torch.Tensor]:
    return [soft_histogram(channel) for channel in saturation_value(pixels)]


def histogram_loss(reference: list[torch.Tensor], pixels: torch.Tensor) -> torch.Tensor:
    return sum(wasserstein1(ref, hist) for ref, hist in zip(reference, hsv_histograms(pixels)))


@dataclass
class LatentOptimization:
    image: torch.Tensor   # (1, 3, H, W) in [-1, 1]
    losses: list[float]   # the loss of every synthesized image, first to last
    steps: int            # optimizer steps taken


def optimize_latent(generator: Generator, inputs: CropTensors, original: torch.Tensor, w: torch.Tensor, *,
                    max_steps: int = 100, threshold: float = 0.02, lr: float = 1e-3) -> LatentOptimization:
    """HM-LO for one crop; ``original`` is the original crop, (1, 3, H, W) in [0, 1]."""
    with torch.no_grad():
        reference = hsv_histograms(original)
    w = w.detach().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([w], lr=lr)
    losses, steps, image = [], 0, None
    for _ in range(max(1, max_steps)):
        with torch.enable_grad():
            image = generator.synthesize(inputs, w)
            loss = histogram_loss(reference, to_pixels(image) / 255)
            optimizer.zero_grad()
            loss.backward()
        losses.append(float(loss.detach()))
        if not torch.any(w.grad != 0):  # the generator ignores w here: nothing to optimize
            break
        optimizer.step()
        steps += 1
        if losses[-1] < threshold:
            break
    return LatentOptimization(image=image.detach(), losses=losses, steps=steps)
