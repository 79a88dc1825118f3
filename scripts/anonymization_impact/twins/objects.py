"""The objects of a twin scene: persons, crowds, two-wheelers with riders, vehicles and dogs.

Persons are a single outline polygon (head, neck, torso, arms, legs) painted with clothing colours,
skin, hair and, when front-facing, a face (eyes, mouth, eyebrows). Crowds are several small
overlapping persons covered by one region (their convex hull).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from PIL import ImageDraw

from .polygons import convex_hull

# the COCO order of PersonGeom.keypoints
KEYPOINT_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)
SKELETON = [[16, 14], [14, 12], [17, 15], [15, 13], [12, 13], [6, 12], [7, 13], [6, 7], [6, 8], [7, 9],
            [8, 10], [9, 11], [2, 3], [1, 2], [1, 3], [2, 4], [3, 5], [4, 6], [5, 7]]

SKIN = [(241, 194, 125), (224, 172, 105), (198, 134, 66), (141, 85, 36), (255, 219, 172), (110, 70, 40)]
HAIR = [(20, 15, 10), (60, 40, 20), (110, 75, 35), (200, 170, 90), (150, 150, 150), (90, 30, 15)]
DARK = (25, 20, 20)


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
