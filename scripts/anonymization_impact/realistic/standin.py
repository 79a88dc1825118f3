"""A small stand-in generator with DeepPrivacy2's interface, for tests and for the twins' plumbing.

It is a randomly initialized (seeded) conditional conv net, not a trained model: its output is
a smooth, w-dependent pattern inside the region, never a person. It exists so that every part
of the realistic path (inputs, truncation, HM, HM-LO gradients, pasting, leak check, audits)
runs for real on machines without DeepPrivacy2 and its weights. Everything it makes is
labelled ``STANDIN_LABEL``.
"""

from __future__ import annotations

import torch
from torch import nn

from . import SYNTHETIC_GENERATORS
from .generator import CropTensors

STANDIN_LABEL = SYNTHETIC_GENERATORS["standin"]


def compute_w_centres(mapping, z_dim: int, *, samples: int, centres: int, iterations: int = 20,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Multi-modal truncation targets as DeepPrivacy2's ``tools/compute_cluster_means.py``: k-means
    (Euclidean) of mapped standard-normal z; here Lloyd's algorithm from the first k samples."""
    with torch.no_grad():
        w = mapping(torch.randn((samples, z_dim), generator=generator))
        centre = w[:centres].clone()
        for _ in range(iterations):
            nearest = torch.cdist(w, centre).argmin(dim=1)
            for index in range(centres):
                members = w[nearest == index]
                if len(members):
                    centre[index] = members.mean(dim=0)
    return centre


class StandinGenerator(nn.Module):
    """Honours ``realistic.generator.Generator``; deterministic for a given ``seed``."""

    label = STANDIN_LABEL

    def __init__(self, region: str, size: tuple[int, int], *, seed: int = 0, z_dim: int = 16, w_dim: int = 16,
                 channels: int = 16, n_centres: int = 8):
        super().__init__()
        self.region, self.size, self.z_dim = region, tuple(size), z_dim
        torch_generator = torch.Generator().manual_seed(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.mapping_net = nn.Sequential(nn.Linear(z_dim, w_dim), nn.LeakyReLU(0.2), nn.Linear(w_dim, w_dim))
            inputs = 3 + 1 + 1 + 17  # condition, mask, person mask, one keypoint map per joint
            self.encode = nn.Conv2d(inputs, channels, 3, padding=1)
            self.style = nn.Linear(w_dim, 2 * channels)
            self.decode = nn.Conv2d(channels, 3, 3, padding=1)
        self.requires_grad_(False)
        self.eval()
        self.w_avg = self.mapping(torch.randn((1024, z_dim), generator=torch_generator)).mean(dim=0)
        self.w_centers = compute_w_centres(self.mapping, z_dim, samples=1024, centres=n_centres, generator=torch_generator)

    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        return self.mapping_net(z)

    def synthesize(self, inputs: CropTensors, w: torch.Tensor) -> torch.Tensor:
        """Runs on the CPU whatever the crop's device (a test network: speed does not matter),
        and returns the image on the crop's device."""
        device = inputs.condition.device
        inputs = CropTensors(*(None if t is None else t.cpu() for t in (inputs.condition, inputs.mask, inputs.person_mask, inputs.keypoints)))
        return self._synthesize_on_cpu(inputs, w.cpu()).to(device)

    def _synthesize_on_cpu(self, inputs: CropTensors, w: torch.Tensor) -> torch.Tensor:
        height, width = inputs.condition.shape[-2:]
        person = inputs.person_mask if inputs.person_mask is not None else inputs.mask
        joints = torch.zeros((1, 17, height, width))
        if inputs.keypoints is not None:
            for index, (x, y, visible) in enumerate(inputs.keypoints[0].tolist()):
                if visible > 0:
                    joints[0, index, min(int(y * height), height - 1), min(int(x * width), width - 1)] = 1
        features = torch.relu(self.encode(torch.cat([inputs.condition, inputs.mask, person, joints], dim=1)))
        scale, shift = self.style(w).chunk(2, dim=1)
        features = features * (1 + scale[..., None, None]) + shift[..., None, None]
        return torch.tanh(self.decode(features))
