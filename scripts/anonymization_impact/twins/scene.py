"""Scene drawing shared by the three synthetic twins.

Produces, for one image, an RGB array, a map of which object is visible at every pixel and one
`Visible` record per surviving object (visible mask, box, COCO keypoints, face box, flags).
Everything is drawn from polygons rasterised with PIL's ``ImageDraw.polygon`` (the same call that
cityscapesscripts uses), in painter's order: later objects occlude earlier ones, and every stored mask
is exactly the set of pixels where the object is on top. Objects with fewer than `MIN_PIXELS` visible
pixels are dropped before painting, so no image shows an object that the annotations lack.

Persons are a single outline polygon (head, neck, torso, arms, legs) painted with clothing colours,
skin, hair and, when front-facing, a face (eyes, mouth, eyebrows). Crowds are several small
overlapping persons covered by one region (their convex hull).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw

MIN_PIXELS = 16

KEYPOINT_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)
SKELETON = [[16, 14], [14, 12], [17, 15], [15, 13], [12, 13], [6, 12], [7, 13], [6, 7], [6, 8], [7, 9],
            [8, 10], [9, 11], [2, 3], [1, 2], [1, 3], [2, 4], [3, 5], [4, 6], [5, 7]]
HUMAN_KINDS = ("person", "rider")

SKIN = [(241, 194, 125), (224, 172, 105), (198, 134, 66), (141, 85, 36), (255, 219, 172), (110, 70, 40)]
HAIR = [(20, 15, 10), (60, 40, 20), (110, 75, 35), (200, 170, 90), (150, 150, 150), (90, 30, 15)]
DARK = (25, 20, 20)

Point = tuple[float, float]


# ----------------------------------------------------------------------------------------------- geometry

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


def _ellipse_poly(cx, cy, rx, ry, n=12, start=0.0):
    return [(cx + rx * math.cos(start + 2 * math.pi * k / n), cy + ry * math.sin(start + 2 * math.pi * k / n)) for k in range(n)]


# ----------------------------------------------------------------------------------------------- objects

@dataclass
class SceneObject:
    kind: str                                   # stuff | person | rider | crowd | car | truck | bus | bicycle | motorcycle | dog
    polygon: np.ndarray                         # float (N, 2), image coordinates, not clipped
    base: tuple[int, int, int] | None = None    # colour filled over the whole polygon first (None: see-through)
    draw: Callable[[ImageDraw.ImageDraw], None] | None = None  # details drawn on an RGBA layer
    label: str | None = None                    # stuff class name (Cityscapes) / free text
    person: "PersonGeom | None" = None
    flags: dict = field(default_factory=dict)   # ignore, rle, no_keypoints, force_keypoints
    sort_y: float = 0.0                         # ground line used for the drawing order


@dataclass
class PersonGeom:
    keypoints: np.ndarray        # (17, 2) float, COCO order
    front: bool
    head: tuple[float, float, float, float]   # hx, hy, rx, ry

    def face_box(self) -> tuple[float, float, float, float]:
        hx, hy, rx, ry = self.head
        return hx - 0.85 * rx, hy - 0.6 * ry, hx + 0.85 * rx, hy + ry


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


def _limb(points: list[np.ndarray], thickness: float, outer_sign: float):
    """Outer and inner edges of a limb polyline (outer_sign +1: outer side is +normal)."""
    normals = []
    for a, b in zip(points[:-1], points[1:]):
        d = b - a
        n = np.array([d[1], -d[0]]) / (np.hypot(*d) + 1e-9)
        normals.append(n)
    per_point = [normals[0]] + [(normals[i] + normals[i + 1]) / 2 for i in range(len(normals) - 1)] + [normals[-1]]
    outer = [p + outer_sign * n * thickness / 2 for p, n in zip(points, per_point)]
    inner = [p - outer_sign * n * thickness / 2 for p, n in zip(points, per_point)]
    return outer, inner


def random_colour(rng, saturated=True):
    hue = rng.uniform(0, 1)
    sat = rng.uniform(0.55, 1.0) if saturated else rng.uniform(0.0, 0.25)
    val = rng.uniform(0.45, 1.0) if saturated else rng.uniform(0.35, 0.8)
    i = int(hue * 6) % 6
    f = hue * 6 - int(hue * 6)
    p, q, t = val * (1 - sat), val * (1 - f * sat), val * (1 - (1 - f) * sat)
    rgb = [(val, t, p), (q, val, p), (p, val, t), (p, q, val), (t, p, val), (val, p, q)][i]
    return tuple(int(round(255 * c)) for c in rgb)


def make_person(rng, cx: float, top: float, h: float, front: bool, kind: str = "person") -> SceneObject:
    """A person standing with hips around x=cx, head top at y=top and height h (head top to soles)."""
    u = h
    hx, hy = cx + rng.uniform(-0.01, 0.01) * u, top + 0.075 * u
    rx, ry = 0.062 * u, 0.075 * u
    sh_y = top + 0.19 * u
    s_l, s_r = np.array([cx - 0.11 * u, sh_y]), np.array([cx + 0.11 * u, sh_y])
    a_l, a_r = rng.uniform(0.12, 0.5, 2)
    f_l, f_r = a_l + rng.uniform(-0.05, 0.3), a_r + rng.uniform(-0.05, 0.3)
    e_l = s_l + 0.17 * u * np.array([-math.sin(a_l), math.cos(a_l)])
    e_r = s_r + 0.17 * u * np.array([math.sin(a_r), math.cos(a_r)])
    w_l = e_l + 0.15 * u * np.array([-math.sin(f_l), math.cos(f_l)])
    w_r = e_r + 0.15 * u * np.array([math.sin(f_r), math.cos(f_r)])
    hip_y = top + 0.53 * u
    h_l, h_r = np.array([cx - 0.065 * u, hip_y]), np.array([cx + 0.065 * u, hip_y])
    sp_l, sp_r = rng.uniform(-0.2, 0.8, 2)
    k_l = h_l + u * np.array([-0.06 * sp_l, 0.23])
    k_r = h_r + u * np.array([0.06 * sp_r, 0.23])
    an_l = k_l + u * np.array([-0.05 * sp_l, 0.22])
    an_r = k_r + u * np.array([0.05 * sp_r, 0.22])

    arm_t, leg_t = 0.055 * u, 0.075 * u
    al_out, al_in = _limb([s_l, e_l, w_l], arm_t, -1)
    ar_out, ar_in = _limb([s_r, e_r, w_r], arm_t, +1)
    ll_out, ll_in = _limb([h_l, k_l, an_l], leg_t, -1)
    lr_out, lr_in = _limb([h_r, k_r, an_r], leg_t, +1)
    foot = 0.025 * u
    neck_l, neck_r = (cx - 0.03 * u, top + 0.145 * u), (cx + 0.03 * u, top + 0.145 * u)
    head_arc = [(hx + rx * math.cos(math.radians(t)), hy + ry * math.sin(math.radians(t)))
                for t in np.linspace(115, 425, 11)]
    hand_l = w_l + (w_l - e_l) / (np.hypot(*(w_l - e_l)) + 1e-9) * 0.035 * u
    hand_r = w_r + (w_r - e_r) / (np.hypot(*(w_r - e_r)) + 1e-9) * 0.035 * u
    armpit_l, armpit_r = (cx - 0.085 * u, sh_y + 0.07 * u), (cx + 0.085 * u, sh_y + 0.07 * u)
    crotch = (cx, hip_y + 0.06 * u)
    outline = (
        [neck_l] + head_arc + [neck_r, (s_r[0], sh_y - 0.03 * u)]
        + [tuple(ar_out[0]), tuple(ar_out[1]), tuple(ar_out[2]), tuple(hand_r), tuple(ar_in[2]), tuple(ar_in[1]), armpit_r]
        + [tuple(lr_out[0]), tuple(lr_out[1]), tuple(lr_out[2]), (lr_out[2][0] + foot, lr_out[2][1] + foot),
           (lr_in[2][0], lr_in[2][1] + foot), tuple(lr_in[2]), tuple(lr_in[1]), crotch]
        + [tuple(ll_in[1]), tuple(ll_in[2]), (ll_in[2][0], ll_in[2][1] + foot),
           (ll_out[2][0] - foot, ll_out[2][1] + foot), tuple(ll_out[2]), tuple(ll_out[1]), tuple(ll_out[0])]
        + [armpit_l, tuple(al_in[1]), tuple(al_in[2]), tuple(hand_l), tuple(al_out[2]), tuple(al_out[1]), tuple(al_out[0])]
        + [(s_l[0], sh_y - 0.03 * u)]
    )
    legs = [tuple(lr_out[0]), tuple(lr_out[1]), tuple(lr_out[2]), (lr_out[2][0] + foot, lr_out[2][1] + foot),
            (lr_in[2][0], lr_in[2][1] + foot), tuple(lr_in[2]), tuple(lr_in[1]), crotch,
            tuple(ll_in[1]), tuple(ll_in[2]), (ll_in[2][0], ll_in[2][1] + foot),
            (ll_out[2][0] - foot, ll_out[2][1] + foot), tuple(ll_out[2]), tuple(ll_out[1]), tuple(ll_out[0])]
    forearm_l = [tuple(al_out[1]), tuple(al_out[2]), tuple(al_in[2]), tuple(al_in[1])]
    forearm_r = [tuple(ar_out[1]), tuple(ar_out[2]), tuple(ar_in[2]), tuple(ar_in[1])]

    shirt, pants = random_colour(rng), random_colour(rng)
    if rng.uniform() < 0.3:
        pants = (int(rng.integers(20, 70)), int(rng.integers(30, 80)), int(rng.integers(60, 140)))  # jeans
    skin = SKIN[int(rng.integers(len(SKIN)))]
    hair = HAIR[int(rng.integers(len(HAIR)))]
    short_sleeves = rng.uniform() < 0.4
    eye_l, eye_r = (hx - 0.4 * rx, hy - 0.05 * ry), (hx + 0.4 * rx, hy - 0.05 * ry)
    nose = (hx, hy + 0.2 * ry)

    def draw(d: ImageDraw.ImageDraw):
        d.polygon(legs, fill=pants + (255,))
        if short_sleeves:
            d.polygon(forearm_l, fill=skin + (255,))
            d.polygon(forearm_r, fill=skin + (255,))
        hr = max(0.8, 0.03 * u)
        for w in (w_l, w_r):
            d.ellipse([w[0] - hr, w[1] - hr, w[0] + hr, w[1] + hr], fill=skin + (255,))
        for an in (an_l, an_r):
            d.ellipse([an[0] - 0.04 * u, an[1] - 0.005 * u, an[0] + 0.04 * u, an[1] + 0.035 * u], fill=DARK + (255,))
        d.polygon([neck_l, neck_r, (neck_r[0], neck_r[1] + 0.04 * u), (neck_l[0], neck_l[1] + 0.04 * u)], fill=skin + (255,))
        d.ellipse([hx - rx, hy - ry, hx + rx, hy + ry], fill=hair + (255,))
        if front:
            d.ellipse([hx - 0.95 * rx, hy - 0.73 * ry, hx + 0.95 * rx, hy + 1.03 * ry], fill=skin + (255,))
            er = max(0.5, 0.16 * rx)
            for ex, ey in (eye_l, eye_r):
                d.ellipse([ex - er, ey - er, ex + er, ey + er], fill=DARK + (255,))
            if rx >= 4:
                for ex, ey in (eye_l, eye_r):
                    d.line([(ex - 1.3 * er, ey - 2.2 * er), (ex + 1.3 * er, ey - 2.2 * er)], fill=hair + (255,), width=max(1, int(0.1 * rx)))
                d.line([nose, (nose[0], nose[1] - 0.25 * ry)], fill=(150, 90, 70, 255), width=1)
            d.line([(hx - 0.35 * rx, hy + 0.5 * ry), (hx + 0.35 * rx, hy + 0.5 * ry)], fill=(140, 30, 40, 255),
                   width=max(1, int(round(0.13 * rx))))

    # COCO keypoints: "left" is the person's left, i.e. image right when facing the camera.
    L, R = (1, 0) if front else (0, 1)
    sides = {"shoulder": (s_l, s_r), "elbow": (e_l, e_r), "wrist": (w_l, w_r), "hip": (h_l, h_r),
             "knee": (k_l, k_r), "ankle": (an_l, an_r)}
    kps = [nose, (eye_l, eye_r)[L], (eye_l, eye_r)[R], ((hx - rx, hy), (hx + rx, hy))[L], ((hx - rx, hy), (hx + rx, hy))[R]]
    for part in ("shoulder", "elbow", "wrist", "hip", "knee", "ankle"):
        kps += [tuple(sides[part][L]), tuple(sides[part][R])]
    geom = PersonGeom(np.array(kps, dtype=float), front, (hx, hy, rx, ry))
    return SceneObject(kind, np.array(outline), base=shirt, draw=draw, person=geom, sort_y=top + h)


def make_crowd(rng, cx: float, bottom: float, height: float, n: int) -> SceneObject:
    members = []
    for _ in range(n):
        h = height * rng.uniform(0.75, 1.15)
        x = cx + rng.normal(0, 0.28 * height)
        b = bottom + rng.normal(0, 0.06 * height)
        members.append(make_person(rng, x, b - h, h, front=bool(rng.uniform() < 0.6)))
    members.sort(key=lambda m: m.sort_y)
    hull = convex_hull(np.concatenate([m.polygon for m in members]))

    def draw(d: ImageDraw.ImageDraw):
        for m in members:
            d.polygon([tuple(p) for p in m.polygon], fill=m.base + (255,))
            m.draw(d)

    return SceneObject("crowd", hull, base=None, draw=draw, sort_y=bottom)


def make_two_wheeler(rng, cx: float, ground: float, r: float, kind: str) -> SceneObject:
    d_ = 1.3 * r if kind == "bicycle" else 1.45 * r
    c1, c2 = (cx - d_, ground - r), (cx + d_, ground - r)
    top = ground - (2.5 * r if kind == "bicycle" else 2.3 * r)

    def arc(c, a0, a1, n=5):
        return [(c[0] + r * math.cos(math.radians(t)), c[1] + r * math.sin(math.radians(t))) for t in np.linspace(a0, a1, n)]

    outline = (arc(c1, 180, 0) + arc(c2, 180, 0) + arc(c2, 0, -70, 3)
               + [(cx + 0.9 * d_, top), (cx + 0.7 * d_, top), (cx - 0.2 * d_, ground - 1.9 * r), (cx - 0.55 * d_, ground - 2.05 * r)]
               + arc(c1, -80, -180, 4))
    frame = random_colour(rng)
    body = random_colour(rng, saturated=rng.uniform() < 0.5)

    def draw(d: ImageDraw.ImageDraw):
        w = max(1, int(round(0.25 * r)))
        for c in (c1, c2):
            d.ellipse([c[0] - r, c[1] - r, c[0] + r, c[1] + r], outline=DARK + (255,), width=w)
            d.ellipse([c[0] - 0.2 * r, c[1] - 0.2 * r, c[0] + 0.2 * r, c[1] + 0.2 * r], fill=(120, 120, 120, 255))
        if kind == "motorcycle":
            d.polygon([(c1[0] + 0.3 * r, c1[1] - 0.4 * r), (cx + 0.8 * d_, c2[1] - 0.5 * r), (cx + 0.6 * d_, ground - 2.0 * r),
                       (cx - 0.6 * d_, ground - 1.8 * r)], fill=frame + (255,))
        else:
            d.line([c1, (cx - 0.1 * d_, ground - 1.85 * r), (cx + 0.75 * d_, top + 0.1 * r), c2], fill=frame + (255,), width=w)
            d.line([c1, (cx, c1[1]), (cx - 0.1 * d_, ground - 1.85 * r)], fill=frame + (255,), width=w)

    grey = (150, 150, 150) if kind == "bicycle" else body
    return SceneObject(kind, np.array(outline), base=grey, draw=draw, sort_y=ground)


def make_rider(rng, cx: float, ground: float, h: float, front: bool, vehicle: str) -> tuple[SceneObject, SceneObject]:
    """A two-wheeler and the person riding it (drawn after it)."""
    r = 0.17 * h
    bike = make_two_wheeler(rng, cx, ground, r, vehicle)
    hip_y = ground - 2.05 * r
    top = hip_y - 0.53 * h
    rider = make_person(rng, cx - 0.25 * r, top, h, front, kind="rider")
    rider.sort_y = bike.sort_y = ground
    return bike, rider


def make_vehicle(rng, x0: float, ground: float, w: float, kind: str) -> SceneObject:
    colour = random_colour(rng, saturated=rng.uniform() < 0.5)
    if kind == "car":
        hh = 0.42 * w
        outline = [(x0, ground), (x0, ground - 0.45 * hh), (x0 + 0.18 * w, ground - 0.58 * hh), (x0 + 0.3 * w, ground - hh),
                   (x0 + 0.72 * w, ground - hh), (x0 + 0.86 * w, ground - 0.58 * hh), (x0 + w, ground - 0.45 * hh), (x0 + w, ground)]
        windows = [[(x0 + 0.33 * w, ground - 0.92 * hh), (x0 + 0.5 * w, ground - 0.92 * hh), (x0 + 0.5 * w, ground - 0.6 * hh),
                    (x0 + 0.23 * w, ground - 0.6 * hh)],
                   [(x0 + 0.54 * w, ground - 0.92 * hh), (x0 + 0.7 * w, ground - 0.92 * hh), (x0 + 0.8 * w, ground - 0.6 * hh),
                    (x0 + 0.54 * w, ground - 0.6 * hh)]]
        wheels = [(x0 + 0.2 * w, ground - 0.12 * w, 0.11 * w), (x0 + 0.8 * w, ground - 0.12 * w, 0.11 * w)]
    elif kind == "truck":
        hh = 0.6 * w
        outline = [(x0, ground), (x0, ground - hh), (x0 + 0.7 * w, ground - hh), (x0 + 0.7 * w, ground - 0.7 * hh),
                   (x0 + 0.9 * w, ground - 0.7 * hh), (x0 + w, ground - 0.4 * hh), (x0 + w, ground)]
        windows = [[(x0 + 0.74 * w, ground - 0.64 * hh), (x0 + 0.88 * w, ground - 0.64 * hh), (x0 + 0.95 * w, ground - 0.42 * hh),
                    (x0 + 0.74 * w, ground - 0.42 * hh)]]
        wheels = [(x0 + 0.15 * w, ground - 0.07 * w, 0.07 * w), (x0 + 0.35 * w, ground - 0.07 * w, 0.07 * w),
                  (x0 + 0.82 * w, ground - 0.07 * w, 0.07 * w)]
    elif kind == "bus":
        hh = 0.38 * w
        outline = [(x0, ground), (x0, ground - 0.9 * hh), (x0 + 0.03 * w, ground - hh), (x0 + 0.97 * w, ground - hh),
                   (x0 + w, ground - 0.9 * hh), (x0 + w, ground)]
        windows = [[(x0 + (0.05 + 0.15 * k) * w, ground - 0.85 * hh), (x0 + (0.17 + 0.15 * k) * w, ground - 0.85 * hh),
                    (x0 + (0.17 + 0.15 * k) * w, ground - 0.5 * hh), (x0 + (0.05 + 0.15 * k) * w, ground - 0.5 * hh)] for k in range(6)]
        wheels = [(x0 + 0.18 * w, ground - 0.05 * w, 0.05 * w), (x0 + 0.82 * w, ground - 0.05 * w, 0.05 * w)]
    elif kind == "dog":
        hh = 0.6 * w
        outline = [(x0, ground - 0.75 * hh), (x0 + 0.75 * w, ground - 0.75 * hh), (x0 + 0.8 * w, ground - hh), (x0 + w, ground - hh),
                   (x0 + w, ground - 0.7 * hh), (x0 + 0.85 * w, ground - 0.55 * hh), (x0 + 0.85 * w, ground),
                   (x0 + 0.72 * w, ground), (x0 + 0.72 * w, ground - 0.4 * hh), (x0 + 0.2 * w, ground - 0.4 * hh),
                   (x0 + 0.2 * w, ground), (x0 + 0.08 * w, ground), (x0 + 0.08 * w, ground - 0.45 * hh), (x0 - 0.1 * w, ground - 0.9 * hh)]
        colour = HAIR[int(rng.integers(len(HAIR)))]
        windows, wheels = [], []
    else:
        raise ValueError(kind)

    def draw(d: ImageDraw.ImageDraw):
        for win in windows:
            d.polygon(win, fill=(70, 90, 110, 255))
        for x, y, r in wheels:
            d.ellipse([x - r, y - r, x + r, y + r], fill=DARK + (255,))
        if kind == "dog":
            d.ellipse([x0 + 0.88 * w, ground - 0.92 * hh, x0 + 0.93 * w, ground - 0.86 * hh], fill=DARK + (255,))

    return SceneObject(kind, np.array(outline), base=colour, draw=draw, sort_y=ground)


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
        objs.append(stuff("vegetation", _ellipse_poly(tx, ty, tr * 1.2, tr, 10, rng.uniform(0, 1)),
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


# ----------------------------------------------------------------------------------------------- rendering

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


# ----------------------------------------------------------------------------------------------- scene plans

def plan_objects(rng, width: int, height: int, slot: str, *, riders_kind: str, vehicles: tuple[str, ...],
                 dog: bool) -> list[SceneObject]:
    """Foreground objects for one image, in drawing order.

    `slot` is one of: "empty" (no persons), "crowd" (only crowd persons), "showcase_a" (a large
    front-facing person, a back-facing one, one cut by the border), "showcase_b" (two small persons,
    a tiny unlabelled one, an RLE/ignore one, a rider), "random".
    `riders_kind`: "rider" (Cityscapes/BDD class) or "person" (COCO: riders are persons).
    """
    W, H = width, height
    objs: list[SceneObject] = []

    def add_vehicles(n, ground_lo=0.55, ground_hi=1.05):
        for _ in range(n):
            kind = vehicles[int(rng.integers(len(vehicles)))]
            w = rng.uniform(0.2, 0.5) * W if kind != "bus" else rng.uniform(0.35, 0.7) * W
            objs.append(make_vehicle(rng, rng.uniform(-0.2 * w, W - 0.8 * w), H * rng.uniform(ground_lo, ground_hi), w, kind))
        if dog and rng.uniform() < 0.3:
            w = rng.uniform(0.08, 0.2) * W
            objs.append(make_vehicle(rng, rng.uniform(0, W - w), H * rng.uniform(0.7, 1.0), w, "dog"))

    if slot == "empty":
        add_vehicles(int(rng.integers(1, 4)))
        return sorted(objs, key=lambda o: o.sort_y)
    if slot == "crowd":
        add_vehicles(int(rng.integers(0, 2)), 0.5, 0.7)
        objs.sort(key=lambda o: o.sort_y)
        objs.append(make_crowd(rng, W * rng.uniform(0.3, 0.7), H * rng.uniform(0.8, 0.9), 0.2 * H, int(rng.integers(5, 9))))
        return objs
    if slot == "showcase_a":
        add_vehicles(1, 0.45, 0.55)
        h = 0.7 * H
        objs.append(make_person(rng, 0.22 * W, 0.15 * H, h, front=True))
        objs.append(make_person(rng, 0.52 * W, 0.3 * H, 0.45 * H, front=False))
        h3 = 0.45 * H
        objs.append(make_person(rng, W - 0.05 * h3, 0.35 * H, h3, front=True))
        for o in objs[-3:]:
            o.flags["force_keypoints"] = True
        return objs
    if slot == "showcase_b":
        add_vehicles(1, 0.45, 0.55)
        hs = 0.2 * H
        for x in (0.07, 0.17):
            objs.append(make_person(rng, x * W, 0.55 * H, hs, front=True))
            objs[-1].flags["force_keypoints"] = True
        objs.append(make_person(rng, 0.27 * W, 0.6 * H, 0.14 * H, front=True))
        objs[-1].flags.update(no_keypoints=True, ignore=True)
        objs.append(make_person(rng, 0.42 * W, 0.4 * H, 0.4 * H, front=bool(rng.uniform() < 0.5)))
        objs[-1].flags.update(rle=True, force_keypoints=True)
        bike, rider = make_rider(rng, 0.75 * W, 0.95 * H, 0.5 * H, front=True, vehicle="bicycle")
        if riders_kind == "person":
            rider.kind = "person"
        objs += [bike, rider]
        return objs
    if slot != "random":
        raise ValueError(slot)

    add_vehicles(int(rng.choice([0, 1, 1, 2, 3])))
    n_persons = int(rng.choice([0, 1, 2, 2, 3, 3, 4, 5, 6]))
    for _ in range(n_persons):
        h = H * math.exp(rng.uniform(math.log(0.06), math.log(0.85)))
        bottom = H * rng.uniform(0.45, 1.12)
        cx = W * rng.uniform(-0.05, 1.05)
        u = rng.uniform()
        if u < 0.12 and not any(o.kind == "crowd" for o in objs):  # one crowd region per image at most
            objs.append(make_crowd(rng, cx, bottom, min(h, 0.25 * H), int(rng.integers(4, 8))))
        elif u < 0.3:
            veh = "bicycle" if rng.uniform() < 0.6 else "motorcycle"
            bike, rider = make_rider(rng, cx, bottom, max(h, 0.15 * H), front=bool(rng.uniform() < 0.5), vehicle=veh)
            if riders_kind == "person":
                rider.kind = "person"
            objs += [bike, rider]
        else:
            person = make_person(rng, cx, bottom - h, h, front=bool(rng.uniform() < 0.6))
            if rng.uniform() < 0.1:
                person.flags["rle"] = True
            if h < 0.12 * H and rng.uniform() < 0.5:
                person.flags["ignore"] = True
            if rng.uniform() < 0.03:
                person.flags["no_keypoints"] = True
            objs.append(person)
    # farther (higher ground line) first; a rider stays right after its vehicle (stable sort, equal keys)
    return sorted(objs, key=lambda o: o.sort_y)


def slot_for(index: int) -> str:
    return {0: "empty", 1: "crowd", 2: "showcase_a", 3: "showcase_b"}.get(index, "random")


# ----------------------------------------------------------------------------------------------- truth

def instance_truth(vis: Visible, category: str, *, iscrowd: bool, ignore: bool, num_keypoints: int | None) -> dict:
    human = vis.obj.kind in HUMAN_KINDS
    return {
        "category": category,
        "iscrowd": bool(iscrowd),
        "ignore": bool(ignore),
        "bbox": [int(v) for v in vis.bbox],
        "area": int(vis.area),
        "front_facing": bool(vis.obj.person.front) if human else None,
        "face_box": vis.face_box if human else None,
        "num_keypoints": num_keypoints,
        "touches_border": bool(vis.touches_border),
        "keypoints": [int(v) for v in vis.keypoints] if human and vis.keypoints is not None else None,
    }


def split_counts(images: list[dict], person: str, keypoints: bool) -> dict:
    per_cat: dict[str, dict[str, int]] = {}
    eligible = touching = small = faces = no_person = only_crowd = 0
    for image in images:
        persons = [i for i in image["instances"] if i["category"] == person]
        if not persons:
            no_person += 1
        elif all(i["iscrowd"] for i in persons):
            only_crowd += 1
        for inst in image["instances"]:
            c = per_cat.setdefault(inst["category"], {"total": 0, "crowd": 0, "ignore": 0})
            c["total"] += 1
            c["crowd"] += int(inst["iscrowd"])
            c["ignore"] += int(inst["ignore"])
            if inst["face_box"] is not None:
                faces += 1
        for inst in persons:
            if is_eligible(inst, keypoints):
                eligible += 1
                touching += int(inst["touches_border"])
                small += int(inst["bbox"][2] * inst["bbox"][3] < 32 * 32)
    return {
        "images": len(images),
        "images_without_persons": no_person,
        "images_only_crowd_persons": only_crowd,
        "instances": {k: per_cat[k] for k in sorted(per_cat)},
        "persons_eligible": eligible,
        "persons_touching_border": touching,
        "persons_below_32sq": small,
        "faces_visible": faces,
    }


def is_eligible(inst: dict, keypoints: bool) -> bool:
    return not inst["iscrowd"] and not inst["ignore"] and (not keypoints or (inst["num_keypoints"] or 0) >= 1)


def check_requirements(dataset: str, split: str, images: list[dict], person: str) -> None:
    """Raise if a split lacks one of the special cases every twin promises."""
    keypoints = dataset == "coco"
    counts = split_counts(images, person, keypoints)
    insts = [(img, i) for img in images for i in img["instances"]]
    elig = [(img, i) for img, i in insts if i["category"] == person and is_eligible(i, keypoints)]
    humans = [i for _, i in insts if i["front_facing"] is not None]
    problems = []
    if counts["images_without_persons"] < 1:
        problems.append("an image without persons")
    if counts["images_only_crowd_persons"] < 1:
        problems.append("an image with only crowd persons")
    if counts["persons_touching_border"] < 1:
        problems.append("an eligible person touching the border")
    if counts["persons_below_32sq"] < 2:
        problems.append("two eligible persons below 32x32")
    if not any(i["bbox"][3] * 3 >= img["height"] for img, i in elig):
        problems.append("an eligible person at least a third of the image height")
    if not any(i["front_facing"] for i in humans) or not any(i["front_facing"] is False for i in humans):
        problems.append("front- and back-facing persons")
    if dataset == "coco":
        if not any(i["category"] == person and not i["iscrowd"] and i["num_keypoints"] == 0 for _, i in insts):
            problems.append("a non-crowd person with num_keypoints 0")
    else:
        if not any(i["category"] == "rider" for _, i in insts):
            problems.append("a rider")
    if dataset == "bdd100k" and not any(i["category"] == person and i["ignore"] for _, i in insts):
        problems.append("an ignore pedestrian")
    if problems:
        raise RuntimeError(f"{dataset} twin, {split} split lacks: {', '.join(problems)} (generator bug)")


# ----------------------------------------------------------------------------------------------- faces

def simulate_faces(rng, faces: list[list[int]], width: int, height: int) -> dict:
    """Simulated DSFD output for one image from its true face boxes (misses, low scores, false positives)."""
    boxes, scores = [], []
    for x0, y0, x1, y1 in faces:
        u = rng.uniform()
        size = max(x1 - x0, y1 - y0)
        jitter = rng.normal(0, 0.06 * size + 0.3, 4)
        if u < 0.12:
            continue
        score = rng.uniform(0.05, 0.35) if u < 0.3 else rng.uniform(0.55, 0.995)
        box = [min(max(v + j, 0.0), lim) for v, j, lim in zip((x0, y0, x1, y1), jitter, (width, height, width, height))]
        if box[2] - box[0] < 1 or box[3] - box[1] < 1:
            continue
        boxes.append([round(float(v), 2) for v in box])
        scores.append(round(float(score), 2))
    for _ in range(int(rng.poisson(0.5))):
        s = rng.uniform(3, 14)
        x, y = rng.uniform(0, width - s), rng.uniform(0, height - s)
        boxes.append([round(float(v), 2) for v in (x, y, x + s, y + s)])
        scores.append(round(float(rng.uniform(0.05, 0.7) if rng.uniform() < 0.85 else rng.uniform(0.7, 0.95)), 2))
    return {"boxes": boxes, "scores": scores}


def faces_document(split_images: dict) -> dict:
    return {
        "format": "face-detections/v1",
        "detector": {"name": "synthetic-dsfd-standin", "note": "simulated from the twin's truth"},
        "split": "train",
        "images": split_images,
    }


def image_rng(seed: int, dataset_index: int, split_index: int, image_index: int, stream: int = 0):
    return np.random.default_rng(np.random.SeedSequence([seed, dataset_index, split_index, image_index, stream]))
