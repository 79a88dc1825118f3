"""Polygon geometry of the twins' scenes: clipping to the image, rasterising as cityscapesscripts
does, convex hulls, mask boxes and ellipse outlines."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw


def clip_polygon(poly: np.ndarray, width: int, height: int) -> list[tuple[int, int]] | None:
    """Clip a float polygon to the image rectangle [0, W-1] x [0, H-1] and round it to integers."""
    pts = [tuple(map(float, p)) for p in poly]
    for axis, limit, keep_above in ((0, 0.0, True), (0, width - 1.0, False), (1, 0.0, True), (1, height - 1.0, False)):
        if not pts:
            return None
        out = []
        for i, cur in enumerate(pts):
            prev = pts[i - 1]
            cur_in = cur[axis] >= limit if keep_above else cur[axis] <= limit
            prev_in = prev[axis] >= limit if keep_above else prev[axis] <= limit
            if cur_in != prev_in:
                t = (limit - prev[axis]) / (cur[axis] - prev[axis])
                cross = [prev[0] + t * (cur[0] - prev[0]), prev[1] + t * (cur[1] - prev[1])]
                cross[axis] = limit
                out.append(tuple(cross))
            if cur_in:
                out.append(cur)
        pts = out
    ints: list[tuple[int, int]] = []
    for x, y in pts:
        p = (int(round(x)), int(round(y)))
        if not ints or ints[-1] != p:
            ints.append(p)
    while len(ints) > 1 and ints[0] == ints[-1]:
        ints.pop()
    if len(set(ints)) < 3:
        return None
    return ints


def rasterize(points: list[tuple[int, int]], width: int, height: int) -> np.ndarray:
    """Boolean mask of a polygon, rasterised exactly like cityscapesscripts (PIL ImageDraw.polygon)."""
    image = Image.new("L", (width, height), 0)
    ImageDraw.Draw(image).polygon(points, fill=1)
    return np.asarray(image, dtype=bool)


def convex_hull(points: np.ndarray) -> np.ndarray:
    pts = sorted(set((float(x), float(y)) for x, y in points))
    if len(pts) < 3:
        return np.array(pts)

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower, upper = [], []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return np.array(lower[:-1] + upper[:-1])


def bbox_of(mask: np.ndarray) -> list[int]:
    ys, xs = np.nonzero(mask)
    x0, x1, y0, y1 = int(xs.min()), int(xs.max()), int(ys.min()), int(ys.max())
    return [x0, y0, x1 - x0 + 1, y1 - y0 + 1]


def ellipse_poly(cx, cy, rx, ry, n=12, start=0.0):
    return [(cx + rx * math.cos(start + 2 * math.pi * k / n), cy + ry * math.sin(start + 2 * math.pi * k / n)) for k in range(n)]
