"""The backgrounds of the twins' scenes: a street (sky, buildings, vegetation, sidewalk, road,
poles) or an indoor room (wall, floor, furniture), as a canvas and its stuff polygons."""

from __future__ import annotations

import numpy as np

from .objects import SceneObject, random_colour
from .polygons import ellipse_poly


def stuff(label: str, polygon, colour, draw=None) -> SceneObject:
    return SceneObject("stuff", np.array(polygon, dtype=float), base=colour, draw=draw, label=label, sort_y=-1e9)


def street_background(rng, width: int, height: int) -> tuple[np.ndarray, list[SceneObject]]:
    """Sky gradient plus stuff polygons: buildings, vegetation, poles, sidewalk, road."""
    W, H = width, height
    horizon = H * rng.uniform(0.38, 0.5)
    grad = np.linspace(0, 1, H)[:, None, None]
    top, low = np.array([90, 130, 190]) + rng.integers(-20, 20, 3), np.array([190, 205, 220]) + rng.integers(-15, 15, 3)
    canvas = np.broadcast_to(top * (1 - grad) + low * grad, (H, W, 3)).astype(np.float32)
    objs = [stuff("sky", [(0, 0), (W, 0), (W, horizon + 2), (0, horizon + 2)], None)]
    x = -rng.uniform(0, 20)
    while x < W:
        bw = rng.uniform(0.12, 0.35) * W
        bt = H * rng.uniform(0.03, 0.3)
        colour = random_colour(rng, saturated=False)
        wins = [(x + i, bt + j) for i in np.arange(0.1 * bw, bw - 4, max(6.0, bw / 5)) for j in np.arange(6, horizon - bt, 9)]

        def draw(d, wins=wins):
            for wx, wy in wins:
                d.rectangle([wx, wy, wx + 2, wy + 3], fill=(60, 60, 70, 255))

        objs.append(stuff("building", [(x, bt), (x + bw, bt), (x + bw, horizon + 4), (x, horizon + 4)], colour, draw))
        x += bw + rng.uniform(-4, 8)
    for _ in range(int(rng.integers(1, 4))):
        tx, ty, tr = rng.uniform(0, W), horizon - rng.uniform(0, 0.15) * H, rng.uniform(0.06, 0.16) * H
        objs.append(stuff("vegetation", ellipse_poly(tx, ty, tr * 1.2, tr, 10, rng.uniform(0, 1)),
                          (int(rng.integers(40, 90)), int(rng.integers(90, 130)), int(rng.integers(40, 70)))))
    side = horizon + rng.uniform(0.03, 0.08) * H
    objs.append(stuff("sidewalk", [(0, horizon + 2), (W, horizon + 2), (W, H), (0, H)], (170, 160, 165)))
    vx = W * rng.uniform(0.35, 0.65)
    road = [(vx - 0.08 * W, side), (vx + 0.08 * W, side), (W, 0.72 * H), (W, H), (0, H), (0, 0.72 * H)]

    def lanes(d):
        for k in range(6):
            y = side + (H - side) * k / 6
            d.rectangle([vx - 0.5, y, vx + 0.5 + 0.5 * k, y + 0.5 * (H - side) / 6 * 0.6], fill=(220, 220, 210, 255))

    objs.append(stuff("road", road, (95, 95, 100), lanes))
    for _ in range(int(rng.integers(0, 3))):
        px = rng.uniform(0, W)
        objs.append(stuff("pole", [(px, H * 0.15), (px + 2, H * 0.15), (px + 2, side + 6), (px, side + 6)], (110, 110, 110)))
    return canvas, objs


def indoor_background(rng, width: int, height: int) -> tuple[np.ndarray, list[SceneObject]]:
    W, H = width, height
    wall = np.array(random_colour(rng, saturated=False), dtype=np.float32)
    shade = np.linspace(0.85, 1.1, W)[None, :, None]
    canvas = np.clip(np.broadcast_to(wall * shade, (H, W, 3)), 0, 255).astype(np.float32)
    floor_y = H * rng.uniform(0.5, 0.7)
    objs = [stuff("floor", [(0, floor_y), (W, floor_y), (W, H), (0, H)], random_colour(rng, saturated=False))]
    for _ in range(int(rng.integers(1, 4))):
        x, y = rng.uniform(0, W), rng.uniform(0.1, 0.6) * H
        w, h = rng.uniform(0.1, 0.35) * W, rng.uniform(0.1, 0.35) * H
        objs.append(stuff("furniture", [(x, y), (x + w, y), (x + w, y + h), (x, y + h)], random_colour(rng, saturated=False)))
    return canvas, objs
