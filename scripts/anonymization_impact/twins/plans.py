"""What each image of a twin shows: its slot (the first images hold the special cases), the
foreground objects of that slot, and the image's own random stream."""

from __future__ import annotations

import math

import numpy as np

from .objects import SceneObject, make_crowd, make_person, make_rider, make_vehicle


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


def image_rng(seed: int, dataset_index: int, split_index: int, image_index: int, stream: int = 0):
    return np.random.default_rng(np.random.SeedSequence([seed, dataset_index, split_index, image_index, stream]))
