"""Rendering of one twin scene.

Produces, for one image, an RGB array, a map of which object is visible at every pixel and one
`Visible` record per surviving object (visible mask, box, COCO keypoints, face box, flags).
Everything is drawn from polygons rasterised with PIL's ``ImageDraw.polygon`` (the same call that
cityscapesscripts uses), in painter's order: later objects occlude earlier ones, and every stored mask
is exactly the set of pixels where the object is on top. Objects with fewer than `MIN_PIXELS` visible
pixels are dropped before painting, so no image shows an object that the annotations lack.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from .objects import SceneObject
from .polygons import bbox_of, clip_polygon, rasterize

MIN_PIXELS = 16


@dataclass
class Visible:
    """One object after rendering: what the annotation files describe."""
    obj: SceneObject
    polygon: list[tuple[int, int]]   # clipped integer polygon (what Cityscapes stores)
    full: np.ndarray                 # rasterised polygon (before occlusion)
    mask: np.ndarray                 # visible pixels
    bbox: list[int]
    area: int
    truncated: bool                  # the unclipped shape leaves the image
    occluded: bool                   # part of it is hidden by later objects
    touches_border: bool
    keypoints: list[int] | None = None      # 51 ints, before any labelling policy (v: 2 visible, 1 occluded, 0 outside)
    face_box: list[int] | None = None


def render(rng, canvas: np.ndarray, objects: list[SceneObject]) -> tuple[np.ndarray, list[Visible]]:
    """Rasterise `objects` in order, drop those with < MIN_PIXELS visible pixels, paint the survivors.

    Returns the uint8 RGB image and the survivors (in drawing order) with visible masks.
    """
    H, W = canvas.shape[:2]
    candidates = []
    for obj in objects:
        poly = clip_polygon(obj.polygon, W, H)
        if poly is None:
            continue
        full = rasterize(poly, W, H)
        if full.sum() < MIN_PIXELS:
            continue
        candidates.append((obj, poly, full))
    while True:
        top = np.full((H, W), -1, dtype=np.int32)
        for k, (_, _, full) in enumerate(candidates):
            top[full] = k
        counts = np.bincount(top[top >= 0].ravel(), minlength=len(candidates))
        keep = [c for k, c in enumerate(candidates) if counts[k] >= MIN_PIXELS]
        if len(keep) == len(candidates):
            break
        candidates = keep

    image = canvas.astype(np.float32).copy()
    survivors: list[Visible] = []
    for k, (obj, poly, full) in enumerate(candidates):
        if obj.base is not None:
            image[full] = obj.base
        if obj.draw is not None:
            layer = Image.new("RGBA", (W, H), (0, 0, 0, 0))
            obj.draw(ImageDraw.Draw(layer))
            arr = np.asarray(layer)
            sel = full & (arr[..., 3] > 0)
            image[sel] = arr[..., :3][sel]
        mask = top == k
        xs, ys = obj.polygon[:, 0], obj.polygon[:, 1]
        truncated = bool(xs.min() < 0 or ys.min() < 0 or xs.max() > W - 1 or ys.max() > H - 1)
        box = bbox_of(mask)
        touches = box[0] == 0 or box[1] == 0 or box[0] + box[2] == W or box[1] + box[3] == H
        vis = Visible(obj, poly, full, mask, box, int(mask.sum()), truncated,
                      bool(mask.sum() < full.sum()), bool(touches))
        if obj.person is not None:
            _person_annotations(vis, k, top)
        survivors.append(vis)
    noise = rng.normal(0, 3.0, size=(H, W, 3))
    return np.clip(np.round(image + noise), 0, 255).astype(np.uint8), survivors


def _person_annotations(vis: Visible, k: int, top: np.ndarray) -> None:
    H, W = top.shape
    geom = vis.obj.person
    kps = []
    for i, (x, y) in enumerate(geom.keypoints):
        xi, yi = int(round(x)), int(round(y))
        if not (0 <= xi < W and 0 <= yi < H) or (not geom.front and i <= 2):
            kps += [0, 0, 0]  # outside the image, or a back-facing person's nose/eyes
            continue
        kps += [xi, yi, 1 if top[yi, xi] > k else 2]
    vis.keypoints = kps
    if geom.front:
        x0, y0, x1, y1 = geom.face_box()
        bx0, by0 = max(0, int(math.floor(x0))), max(0, int(math.floor(y0)))
        bx1, by1 = min(W - 1, int(math.ceil(x1))), min(H - 1, int(math.ceil(y1)))
        if bx1 - bx0 >= 2 and by1 - by0 >= 2:
            drawn = vis.full[by0:by1 + 1, bx0:bx1 + 1].sum()
            seen = vis.mask[by0:by1 + 1, bx0:bx1 + 1].sum()
            # the face must be mostly inside the image and mostly unoccluded
            inside = (bx1 - bx0) * (by1 - by0) / max(1e-9, (x1 - x0) * (y1 - y0))
            if drawn >= 4 and seen >= 0.6 * drawn and inside >= 0.6:
                vis.face_box = [bx0, by0, bx1, by1]
