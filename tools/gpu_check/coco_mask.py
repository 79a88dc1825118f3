"""A pure-Python stand-in for ``pycocotools.mask`` (encode, decode, frPyObjects, area, toBbox on
RLEs; the same RLE strings), for the device, which has no pycocotools; ``--prepare`` checks it
against the real one."""

from __future__ import annotations

import sys
import types

import numpy as np

PROVIDED = ("encode", "decode", "frPyObjects", "area", "toBbox")


def _rle_counts(flat: np.ndarray) -> list[int]:
    """Run lengths of a column-major flattened binary mask, starting with a run of zeros."""
    values = flat.astype(bool)
    if values.size == 0:
        return [0]
    change = np.flatnonzero(values[1:] != values[:-1]) + 1
    runs = np.diff(np.concatenate(([0], change, [values.size]))).tolist()
    return ([0] + runs) if values[0] else runs


def _counts_to_bytes(counts: list[int]) -> bytes:
    """pycocotools' rleToString (LEB128-like, 5 bits per character, deltas after the 3rd)."""
    out = bytearray()
    for index, count in enumerate(counts):
        x = int(count) - (int(counts[index - 2]) if index > 2 else 0)
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = (x != -1) if (c & 0x10) else (x != 0)
            if more:
                c |= 0x20
            out.append(c + 48)
    return bytes(out)


def _bytes_to_counts(text: bytes) -> list[int]:
    """pycocotools' rleFrString."""
    counts, position = [], 0
    while position < len(text):
        x, k, more = 0, 0, True
        while more:
            c = text[position] - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            position += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def _counts_of(rle: dict) -> list[int]:
    counts = rle["counts"]
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    return _bytes_to_counts(counts) if isinstance(counts, (bytes, bytearray)) else [int(c) for c in counts]


def encode(bimask):
    bimask = np.asarray(bimask)
    if bimask.ndim == 3:
        return [encode(bimask[:, :, i]) for i in range(bimask.shape[2])]
    height, width = bimask.shape
    return {"size": [int(height), int(width)], "counts": _counts_to_bytes(_rle_counts(bimask.ravel(order="F")))}


def _decode_one(rle):
    height, width = rle["size"]
    counts = _counts_of(rle)
    values = np.zeros(len(counts), dtype=np.uint8)
    values[1::2] = 1
    flat = np.repeat(values, counts)
    if flat.size != height * width:
        raise ValueError(f"invalid RLE: counts sum to {flat.size}, size {height}x{width}")
    return flat.reshape((width, height)).T


def decode(rle_objects):
    if isinstance(rle_objects, list):
        return np.stack([_decode_one(r) for r in rle_objects], axis=2)
    return _decode_one(rle_objects)


def frPyObjects(pyobj, height, width):  # noqa: N802 - pycocotools' name
    if isinstance(pyobj, dict) and "counts" in pyobj and "size" in pyobj:
        return {"size": [int(v) for v in pyobj["size"]], "counts": _counts_to_bytes(_counts_of(pyobj))}
    if isinstance(pyobj, list) and pyobj and all(isinstance(o, dict) for o in pyobj):
        return [frPyObjects(o, height, width) for o in pyobj]
    raise NotImplementedError("the gpu_check RLE stand-in does not rasterize polygons")


def _area_one(rle):
    return int(sum(_counts_of(rle)[1::2]))


def area(rle_objects):
    if isinstance(rle_objects, list):
        return np.array([_area_one(r) for r in rle_objects], dtype=np.uint32)
    return np.uint32(_area_one(rle_objects))


def _bbox_one(rle):  # pycocotools' rleToBbox, quirks included
    height, width = rle["size"]
    counts = _counts_of(rle)
    m = (len(counts) // 2) * 2
    if m == 0:
        return [0.0, 0.0, 0.0, 0.0]
    xs, ys, xe, ye, cc, xp = width, height, 0, 0, 0, 0
    for j in range(m):
        cc += counts[j]
        t = cc - j % 2
        y = t % height
        x = (t - y) // height
        if j % 2 == 0:
            xp = x
        elif xp < x:
            ys, ye = 0, height - 1
        xs, xe, ys, ye = min(xs, x), max(xe, x), min(ys, y), max(ye, y)
    return [float(xs), float(ys), float(xe - xs + 1), float(ye - ys + 1)]


def toBbox(rle_objects):  # noqa: N802 - pycocotools' name
    if isinstance(rle_objects, list):
        return np.array([_bbox_one(r) for r in rle_objects], dtype=np.float64).reshape(-1, 4)
    return np.array(_bbox_one(rle_objects), dtype=np.float64)


def stand_in() -> types.ModuleType:
    """A ``pycocotools.mask`` module holding the functions above (and nothing else of this module)."""
    module = types.ModuleType("pycocotools.mask", __doc__)
    for name in PROVIDED:
        setattr(module, name, globals()[name])
    return module


def install(force_fallback: bool) -> str:
    """pycocotools if it imports (and not forced off), else the stand-in; returns which."""
    if not force_fallback:
        try:
            import pycocotools.mask  # noqa: F401

            return "pycocotools"
        except ImportError:
            pass
    package = types.ModuleType("pycocotools")
    package.__path__ = []
    package.mask = stand_in()
    sys.modules["pycocotools"], sys.modules["pycocotools.mask"] = package, package.mask
    return "gpu_check pure-Python RLE (pycocotools missing)" if not force_fallback else "gpu_check pure-Python RLE (forced)"


def check_against_pycocotools(documents: list[dict], rounds: int = 200) -> dict:
    """The stand-in against the real pycocotools: every annotation mask and random masks."""
    from pycocotools import mask as real

    fake = stand_in()
    checked, rng = 0, np.random.default_rng(0)
    for document in documents:
        for annotation in document["annotations"]:
            rle = annotation["segmentation"]
            if not isinstance(rle, dict):
                continue
            compressed = real.frPyObjects(rle, *rle["size"]) if isinstance(rle["counts"], list) else {**rle, "counts": rle["counts"].encode()}
            mask = real.decode(compressed)
            assert np.array_equal(fake.decode(rle), mask), annotation["id"]
            assert fake.encode(mask)["counts"] == real.encode(np.asfortranarray(mask))["counts"], annotation["id"]
            assert int(fake.area(rle)) == int(real.area(compressed))
            assert np.array_equal(fake.toBbox(rle), real.toBbox(compressed)), annotation["id"]
            checked += 1
    for index in range(rounds):
        height, width = rng.integers(1, 80, size=2)
        kind = index % 4
        mask = (rng.random((height, width)) < [0.0, 1.0, 0.5, 0.97][kind]).astype(np.uint8)
        if kind == 3:
            mask[: height // 2] = 1
        encoded = real.encode(np.asfortranarray(mask))
        assert fake.encode(mask)["counts"] == encoded["counts"]
        assert np.array_equal(fake.decode({"size": [int(height), int(width)], "counts": encoded["counts"].decode()}), mask)
        assert np.array_equal(fake.toBbox(encoded), real.toBbox(encoded)) and int(fake.area(encoded)) == int(real.area(encoded))
        uncompressed = {"size": [int(height), int(width)], "counts": _rle_counts(mask.ravel(order="F"))}
        assert fake.frPyObjects(uncompressed, height, width)["counts"] == real.frPyObjects(uncompressed, height, width)["counts"]
        checked += 1
    return {"masks_checked": checked}
