"""A realistic anonymizer for the synthetic twins: a differentiable renderer of the twins' persons.

The twins draw a person as flat-coloured parts (``twins.objects.make_person``): the outline filled
with the shirt colour, legs in the trouser colour, hands and (short sleeves) forearms in skin,
a head of hair with a skin-coloured face when the person faces the camera. This renderer draws
a *new* person of that kind into a crop, from what DeepPrivacy2's generators get as well: the
person's silhouette (``person_mask``), the crop-relative keypoints and a latent w. w holds the
colours (shirt, trousers, skin, hair, as logits) and the sleeve length; a mapping z -> w, w_avg
and k-means cluster centres of mapped samples (DeepPrivacy2's ``compute_cluster_means.py``
procedure) make the same latent sampling and HM-LO possible, and the output is differentiable
with respect to w (torch autograd through soft part masks and sigmoid colours).

The region's background (the dilation ring around the silhouette) is filled from the known
pixels around it (normalized convolution); the region's own pixels are never read: the input
is the condition, zero inside the region. It exists for the twins only (the schema never lets
a real dataset use it), and everything it makes is labelled ``TWIN_RENDERER_LABEL``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import SYNTHETIC_GENERATORS
from .generator import CropTensors
from .standin import compute_w_centres

TWIN_RENDERER_LABEL = SYNTHETIC_GENERATORS["twin_renderer"]
COLOURS = ("shirt", "trousers", "skin", "hair")
W_DIM = 3 * len(COLOURS) + 1  # + short-sleeve logit
# keypoint indices (COCO order)
NOSE, EYES, EARS = 0, (1, 2), (3, 4)
SHOULDERS, ELBOWS, WRISTS, HIPS, KNEES, ANKLES = (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)
# part sizes relative to the person's height u, as the twins draw them
ARM, LEG, HEAD_RX, HEAD_RY, HAND = 0.055, 0.075, 0.062, 0.075, 0.03
SOFTNESS = 0.6  # pixels: width of the soft edge of every part (keeps w's gradients smooth)
FILL_KERNEL = 15


def _grid(height: int, width: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-centre coordinates on ``device``: the crop's, so that every part's mask is drawn
    where the crop is (keypoints and centres stay small CPU tensors, used as scalars)."""
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float32, device=device) + 0.5,
                            torch.arange(width, dtype=torch.float32, device=device) + 0.5, indexing="ij")
    return xs, ys


def _segment_coverage(xs, ys, a, b, radius: float) -> torch.Tensor:
    """Soft coverage of a capsule (segment a-b with a radius)."""
    ab = b - a
    length2 = float((ab * ab).sum()) or 1e-6
    t = (((xs - a[0]) * ab[0] + (ys - a[1]) * ab[1]) / length2).clamp(0, 1)
    distance = torch.sqrt((xs - a[0] - t * ab[0]) ** 2 + (ys - a[1] - t * ab[1]) ** 2)
    return torch.sigmoid((radius - distance) / SOFTNESS)


def _ellipse_coverage(xs, ys, centre, rx: float, ry: float) -> torch.Tensor:
    radius = torch.sqrt(((xs - centre[0]) / max(rx, 0.5)) ** 2 + ((ys - centre[1]) / max(ry, 0.5)) ** 2)
    return torch.sigmoid((1 - radius) * min(rx, ry) / SOFTNESS)


def fill_from_known(condition: torch.Tensor, mask: torch.Tensor, passes: int = 3) -> torch.Tensor:
    """The region filled from the known pixels around it (normalized convolution, repeated);
    reads only ``condition``, which is zero inside the region."""
    value, weight = condition * mask, mask
    for _ in range(passes):
        value = F.avg_pool2d(value, FILL_KERNEL, stride=1, padding=FILL_KERNEL // 2, count_include_pad=False)
        weight = F.avg_pool2d(weight, FILL_KERNEL, stride=1, padding=FILL_KERNEL // 2, count_include_pad=False)
    known = mask.sum().clamp(min=1)
    overall = (condition * mask).sum(dim=(2, 3), keepdim=True) / known
    filled = torch.where(weight > 1e-3, value / weight.clamp(min=1e-3), overall)
    return condition * mask + filled * (1 - mask)


class TwinPersonRenderer:
    """Honours ``realistic.generator.Generator`` for body (288 x 160) and face crops."""

    label = TWIN_RENDERER_LABEL
    z_dim = W_DIM

    def __init__(self, region: str, size: tuple[int, int], *, seed: int = 0, n_centres: int = 512):
        self.region, self.size = region, tuple(size)
        self._cached = None
        generator = torch.Generator().manual_seed(seed)
        self.w_avg = self.mapping(torch.randn((4096, self.z_dim), generator=generator)).mean(dim=0)
        self.w_centers = compute_w_centres(self.mapping, self.z_dim, samples=8192, centres=n_centres, iterations=8, generator=generator)

    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        """Colour logits: saturated, varied colours as the twins' random_colour, skin tones darker."""
        return z * 1.5

    def colours(self, w: torch.Tensor) -> dict[str, torch.Tensor]:
        """(1, 3, 1, 1) colours in [-1, 1] and the short-sleeve weight, from (1, W_DIM) w."""
        rgb = torch.sigmoid(w[0, : 3 * len(COLOURS)]).reshape(len(COLOURS), 3) * 2 - 1
        found = {name: rgb[i].reshape(1, 3, 1, 1) for i, name in enumerate(COLOURS)}
        found["sleeves"] = torch.sigmoid(w[0, -1])
        found["dark"] = torch.full((1, 3, 1, 1), -0.8, dtype=w.dtype, device=w.device)
        return found

    def synthesize(self, inputs: CropTensors, w: torch.Tensor) -> torch.Tensor:
        background, person, layers = self._layers(inputs)
        colours = self.colours(w)
        drawn = colours[layers[0][1]].expand_as(background)
        for coverage, colour in layers[1:]:
            weight = coverage * colours["sleeves"] if colour == "forearm" else coverage
            paint = colours["skin"] if colour == "forearm" else colours[colour]
            drawn = drawn * (1 - weight) + paint * weight
        return background * (1 - person) + drawn * person

    def _layers(self, inputs: CropTensors):
        """The parts' soft masks do not depend on w: computed once per crop (HM-LO calls
        ``synthesize`` with the same inputs up to 100 times)."""
        if self._cached is not None and self._cached[0] is inputs:
            return self._cached[1]
        height, width = inputs.condition.shape[-2:]
        xs, ys = _grid(height, width, inputs.condition.device)
        person, layers = (self._face if self.region == "face" else self._body)(xs, ys, inputs)
        result = (fill_from_known(inputs.condition, inputs.mask), person, layers)
        self._cached = (inputs, result)
        return result

    # -- bodies ---------------------------------------------------------------------------------

    def _body(self, xs, ys, inputs: CropTensors):
        """The silhouette and the parts in drawing order: (soft mask, colour name)."""
        height, width = xs.shape
        if inputs.person_mask is not None:
            silhouette = 1 - inputs.person_mask[0, 0]
        else:
            silhouette = 1 - inputs.mask[0, 0]
        rows = torch.nonzero(silhouette.sum(dim=1) > 0)
        u = float(rows.max() - rows.min() + 1) if len(rows) else float(height)
        points, visible = self._keypoints(inputs, width, height)
        layers = [(None, "shirt")]  # the outline, filled with the shirt colour

        def limb(chain, radius):
            coverage = torch.zeros_like(xs)
            for a, b in zip(chain[:-1], chain[1:]):
                if visible[a] and visible[b]:
                    coverage = torch.maximum(coverage, _segment_coverage(xs, ys, points[a], points[b], radius))
            return coverage

        for side in (0, 1):
            layers.append((limb([HIPS[side], KNEES[side], ANKLES[side]], LEG * u / 2), "trousers"))
            layers.append((limb([ELBOWS[side], WRISTS[side]], ARM * u / 2), "forearm"))
            if visible[WRISTS[side]]:
                layers.append((_ellipse_coverage(xs, ys, points[WRISTS[side]], HAND * u, HAND * u), "skin"))
        head = [i for i in (NOSE, *EYES, *EARS) if visible[i]]
        if head:
            centre = torch.stack([points[i] for i in head]).mean(dim=0)
        else:  # no head keypoint: the top of the silhouette
            top = float(rows.min()) if len(rows) else 0.0
            cols = torch.nonzero(silhouette[int(top)] > 0)
            centre = torch.tensor([float(cols.float().mean()) if len(cols) else width / 2, top + HEAD_RY * u])
        layers.append((_ellipse_coverage(xs, ys, centre, HEAD_RX * u, HEAD_RY * u), "hair"))
        if visible[NOSE] or (visible[EYES[0]] and visible[EYES[1]]):  # facing the camera
            face = _ellipse_coverage(xs, ys, centre + torch.tensor([0.0, 0.1 * HEAD_RY * u]), 0.95 * HEAD_RX * u, 0.85 * HEAD_RY * u)
            layers.append((face, "skin"))
        return silhouette[None, None], layers

    @staticmethod
    def _keypoints(inputs: CropTensors, width: int, height: int) -> tuple[torch.Tensor, list[bool]]:
        if inputs.keypoints is None:
            return torch.zeros((17, 2)), [False] * 17
        keypoints = inputs.keypoints[0].detach().cpu()
        points = keypoints[:, :2] * torch.tensor([width, height], dtype=torch.float32)
        return points, [bool(v > 0) for v in keypoints[:, 2]]

    # -- faces ----------------------------------------------------------------------------------

    def _face(self, xs, ys, inputs: CropTensors):
        """A head in the face box: hair, a skin-coloured face and two eyes."""
        region = 1 - inputs.mask[0, 0]
        rows, cols = torch.nonzero(region.sum(dim=1) > 0), torch.nonzero(region.sum(dim=0) > 0)
        if not len(rows):
            return region[None, None], [(None, "hair")]
        y0, y1, x0, x1 = float(rows.min()), float(rows.max() + 1), float(cols.min()), float(cols.max() + 1)
        centre = torch.tensor([(x0 + x1) / 2, (y0 + y1) / 2])
        rx, ry = (x1 - x0) / 2, (y1 - y0) / 2
        layers = [(None, "hair"), (_ellipse_coverage(xs, ys, centre + torch.tensor([0.0, 0.12 * ry]), 0.85 * rx, 0.85 * ry), "skin")]
        for side in (-1, 1):
            layers.append((_ellipse_coverage(xs, ys, centre + torch.tensor([side * 0.35 * rx, -0.05 * ry]), 0.1 * rx, 0.1 * ry), "dark"))
        return region[None, None], layers
