"""Crop geometry of one anonymization target, reproducing deep_privacy2 (dp2, commit f4d8f09).

dp2 anonymizes a person (body) or a face by cutting an *expanded box* around it out of the
image, resizing that crop to the generator's resolution (288x160 bodies, 128x128 faces),
letting the generator fill the crop's region to anonymize, resizing the result back to the box
and pasting it over the region only. This module computes the same boxes, crop-space masks and
resampling in numpy / PIL (no torch), written from a reading of dp2's
``dp2/detection/{box_utils,box_utils_fdf,structures,utils}.py`` and
``dp2/anonymizer/anonymizer.py``.

Conventions kept from dp2 (they change which pixels are anonymized):

* boxes are integer ``x0, y0, x1, y1`` with ``x1``/``y1`` exclusive and may extend outside the
  image (the outside part is zero padding in crop space);
* body boxes are expanded by a minimum per axis, then to the 288/160 aspect ratio, then until
  >= 30 % of the box is background; the scalar arithmetic of the background step runs in float32
  as dp2's torch tensors did, so ``ceil`` lands on the same integer;
* masks are resized with *torch's* legacy nearest rule ``src = min(floor(dst * in/out), in-1)``
  (scale in float32; identity and exact 2x handled as torch does), not PIL's pixel-centre rule:
  the two differ by one pixel at many positions, and the mask decides which pixels are replaced;
* the resampling choice of ``cut_pad_resize`` is made on the part of the box *inside* the image
  (dp2 clips the box before deciding), a dp2 quirk kept on purpose.

Deliberate deviations (documented where they happen):

* bicubic resampling uses PIL's antialiased BICUBIC (a = -0.5, support scaled when shrinking) on
  float32 single-channel ("F") images; torchvision's ``antialias=True`` bicubic is a port of the
  same PIL filter, so results agree up to float rounding (rarely 1 grey level after rounding);
* the FDF "area" downscaling (dp2: ``cv2.resize(..., INTER_AREA)``) is computed here exactly as
  area-overlap weights in float64, rounded half to even. That is what cv2's INTER_AREA computes
  when shrinking; PIL's BOX filter / ``Image.reduce`` only agree for integer factors, so they are
  not used. cv2's integer-factor fast path may round exact .5 ties up (<= 1 grey level);
* dp2 returns the crop un-resized when the *clipped* box size equals the target but the box
  does not (a crop of the wrong shape that would make dp2 fail); here the crop is always
  resized to the target;
* an empty mask raises ``ValueError`` (dp2's ``masks_to_boxes`` would return the whole image).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

BODY_SIZE = (288, 160)
FACE_SIZE = (128, 128)
HR_FACE_SIZE = (256, 256)  # FDF256, the "HR faces" pass

Box = tuple[int, int, int, int]


@dataclass(frozen=True, eq=False)
class CropGeometry:
    """Where one instance's crop lies in the image and which crop pixels are anonymized.

    ``eq=False``: the numpy field makes generated ``==`` ambiguous; compare fields explicitly.
    """

    box: Box                    # expanded box x0, y0, x1, y1 (x1/y1 exclusive); may leave the image
    size: tuple[int, int]       # crop (height, width): (288, 160) body, (128, 128) face
    known: np.ndarray           # bool (height, width): True = keep the original, False = anonymize
    fdf_resize: bool            # faces: FDF rule (bicubic when enlarging, area when shrinking)
    person: np.ndarray | None = None  # bodies: bool (height, width) undilated person mask (HM's blend)

    def __post_init__(self) -> None:
        known = np.asarray(self.known, dtype=bool)
        if known.shape != tuple(self.size):
            raise ValueError(f"known mask has shape {known.shape}, expected {tuple(self.size)}")
        x0, y0, x1, y1 = self.box
        if x1 <= x0 or y1 <= y0:
            raise ValueError(f"empty crop box {self.box}")
        known = known.copy()
        known.flags.writeable = False
        object.__setattr__(self, "known", known)
        if self.person is not None:
            person = np.array(self.person, dtype=bool)
            if person.shape != known.shape:
                raise ValueError(f"person mask has shape {person.shape}, expected {tuple(self.size)}")
            person.flags.writeable = False
            object.__setattr__(self, "person", person)
        object.__setattr__(self, "box", tuple(int(v) for v in self.box))
        object.__setattr__(self, "size", (int(self.size[0]), int(self.size[1])))

    @property
    def box_size(self) -> tuple[int, int]:
        """(height, width) of the expanded box in image pixels."""
        x0, y0, x1, y1 = self.box
        return y1 - y0, x1 - x0

    def _padding(self, image_height: int, image_width: int) -> tuple[int, int, int, int]:
        """Box pixels outside the image: left, top, right, bottom."""
        x0, y0, x1, y1 = self.box
        return max(-x0, 0), max(-y0, 0), max(x1 - image_width, 0), max(y1 - image_height, 0)

    def window(self, image_height: int, image_width: int) -> tuple[slice, slice]:
        """The box clipped to the image, as (rows, columns) slices."""
        x0, y0, x1, y1 = self.box
        return slice(max(y0, 0), min(y1, image_height)), slice(max(x0, 0), min(x1, image_width))

    def region_in_image(self, image_height: int, image_width: int) -> tuple[tuple[slice, slice], np.ndarray]:
        """The image-space window (the box clipped to the image) and the bool region mask inside it:
        the crop's region (~known) resized back to the box size with nearest neighbour, padding removed.
        These are exactly the pixels `paste` replaces."""
        h, w = self.box_size
        region = _resize_nearest(~self.known, h, w)
        left, top, right, bottom = self._padding(image_height, image_width)
        region = region[top:h - bottom, left:w - right]
        return self.window(image_height, image_width), region


# ----------------------------------------------------------------------------------------------- boxes

def tight_box(mask: np.ndarray) -> Box:
    """Tight box of a bool HxW mask: x0, y0 of the first set column / row, x1, y1 one past the last."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"expected a 2-D mask, got shape {mask.shape}")
    columns = np.flatnonzero(mask.any(axis=0))
    rows = np.flatnonzero(mask.any(axis=1))
    if columns.size == 0:
        raise ValueError("empty mask has no box")
    return int(columns[0]), int(rows[0]), int(columns[-1]) + 1, int(rows[-1]) + 1


def _grow_interval(start: int, end: int, length: int, limit: int) -> tuple[int, int]:
    """Grow [start, end) symmetrically to `length` (the odd pixel goes to the end), then slide it
    back inside [0, limit) where one side sticks out and the other has room. The result may still
    leave [0, limit) when it is longer than the limit (dp2's ``expand_axis``)."""
    grow = (length - (end - start)) // 2
    start, end = start - grow, end + grow
    if end - start != length:
        end += 1
    if start < 0 and end > limit:
        return start, end
    if start < 0 and end < limit:
        shift = min(-start, limit - end)
        start, end = start + shift, end + shift
    if end > limit and start > 0:
        shift = min(end - limit, start)
        start, end = start - shift, end - shift
    return start, end


def _expand_axes(box: Box, height: int, width: int, fraction: float) -> Box:
    x0, y0, x1, y1 = box
    extra = int(((y1 - y0) * (x1 - x0)) ** 0.5 * fraction)  # ** 0.5 as dp2 (pow, not sqrt)
    x0, x1 = _grow_interval(x0, x1, min(x1 - x0 + extra, width), width)
    y0, y1 = _grow_interval(y0, y1, min(y1 - y0 + extra, height), height)
    return x0, y0, x1, y1


def _expand_to_ratio(box: Box, height: int, width: int, ratio: float) -> Box:
    """Grow one axis so that box height / width reaches `ratio` (int() truncation as dp2)."""
    x0, y0, x1, y1 = box
    h, w = y1 - y0, x1 - x0
    if h / w == ratio:
        return box
    if h / w < ratio:
        y0, y1 = _grow_interval(y0, y1, int(w * ratio), height)
    else:
        x0, x1 = _grow_interval(x0, x1, int(h / ratio), width)
    return x0, y0, x1, y1


def _expand_for_background(box: Box, height: int, width: int, mask_pixels: int, background: float) -> Box:
    """Scale both axes by the same factor so that the mask covers at most 1 - `background` of the box.

    float32 throughout: dp2 computed these scalars on torch tensors (int tensor / int -> float32).
    """
    if not 0 < background < 1:
        raise ValueError(f"percentage_background must be in (0, 1), got {background}")
    x0, y0, x1, y1 = box
    h, w = y1 - y0, x1 - x0
    f32 = np.float32
    covered = f32(mask_pixels) / f32(h * w)
    if f32(1) - covered > f32(background):
        return box
    wanted = f32(mask_pixels) / f32(1 - background)
    scale = np.sqrt(wanted / f32(h * w), dtype=np.float32)
    new_w = int(np.ceil(scale * f32(w)))
    new_h = int(np.ceil(scale * f32(h)))
    x0, x1 = _grow_interval(x0, x1, new_w, width)
    y0, y1 = _grow_interval(y0, y1, new_h, height)
    return x0, y0, x1, y1


def expand_body_box(box: Box, image_height: int, image_width: int, mask_pixels: int, *, target=BODY_SIZE,
                    percentage_background: float = 0.3, axis_minimum_expansion: float = 0.1) -> Box:
    """dp2 ``get_expanded_bbox``: the tight box of a person whose mask has `mask_pixels` pixels,
    expanded per axis, to the target aspect ratio, then for background. May leave the image."""
    box = tuple(int(v) for v in box)
    box = _expand_axes(box, image_height, image_width, axis_minimum_expansion)
    box = _expand_to_ratio(box, image_height, image_width, target[0] / target[1])
    return _expand_for_background(box, image_height, image_width, int(mask_pixels), percentage_background)


def expanded_body_box(mask: np.ndarray, *, target=BODY_SIZE, percentage_background: float = 0.3,
                      axis_minimum_expansion: float = 0.1) -> Box:
    """``expand_body_box`` of a person's bool HxW instance mask."""
    mask = np.asarray(mask, dtype=bool)
    return expand_body_box(tight_box(mask), *mask.shape, int(mask.sum()), target=target,
                           percentage_background=percentage_background,
                           axis_minimum_expansion=axis_minimum_expansion)


def expanded_box_area(geometry: CropGeometry) -> int:
    """Area of the expanded box (also outside the image): dp2's ``minimum_area`` filter tests this."""
    x0, y0, x1, y1 = geometry.box
    return (x1 - x0) * (y1 - y0)


# ----------------------------------------------------------------------------------------------- resampling

def _nearest_source(in_size: int, out_size: int) -> np.ndarray:
    """Source index of every output index under torch's legacy 'nearest' (floor(dst * in/out))."""
    if out_size == in_size:
        return np.arange(out_size)
    if out_size == 2 * in_size:
        return np.arange(out_size) >> 1
    scale = np.float32(in_size) / np.float32(out_size)
    source = np.floor(np.arange(out_size, dtype=np.float32) * scale).astype(np.int64)
    return np.minimum(source, in_size - 1)


def _resize_nearest(array: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    rows = _nearest_source(array.shape[0], out_h)
    cols = _nearest_source(array.shape[1], out_w)
    return array[rows[:, None], cols[None, :]]


# Pillow's enum since 9.1; envs/deepprivacy2.yaml runs this module with Pillow 8.4 (dp2's pins), which has the constant only
BICUBIC = getattr(Image, "Resampling", Image).BICUBIC


def _resize_bicubic(array: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Antialiased bicubic (PIL, a = -0.5) of an HxWxC array, per channel in float32 ("F" mode)."""
    if array.shape[:2] == (out_h, out_w):
        return array.astype(np.float32)
    channels = []
    for c in range(array.shape[2]):
        plane = Image.fromarray(np.ascontiguousarray(array[:, :, c], dtype=np.float32))
        channels.append(np.asarray(plane.resize((out_w, out_h), BICUBIC), dtype=np.float32))
    return np.stack(channels, axis=2)


def _area_weights(in_size: int, out_size: int) -> np.ndarray:
    """(out, in) matrix: share of each input pixel in each output pixel's footprint (shrinking)."""
    scale = in_size / out_size
    edges = np.arange(out_size + 1, dtype=np.float64) * scale
    pixels = np.arange(in_size, dtype=np.float64)
    overlap = np.minimum(edges[1:, None], pixels[None, :] + 1) - np.maximum(edges[:-1, None], pixels[None, :])
    return np.clip(overlap, 0, None) / scale


def _resize_area(array: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Area-average downscaling (what cv2 INTER_AREA computes when shrinking), float64 result."""
    rows = _area_weights(array.shape[0], out_h)
    cols = _area_weights(array.shape[1], out_w)
    return np.einsum("ij,jkc,lk->ilc", rows, array.astype(np.float64), cols, optimize=True)


def _to_uint8(values: np.ndarray) -> np.ndarray:
    """torch ``.round().clamp(0, 255).byte()``: round half to even, then clip."""
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def _cut_padded(array: np.ndarray, box: Box) -> tuple[np.ndarray, tuple[int, int]]:
    """The box's pixels of an HxW[xC] array, zero outside the image, and the (h, w) inside the image."""
    x0, y0, x1, y1 = box
    height, width = array.shape[:2]
    out = np.zeros((y1 - y0, x1 - x0, *array.shape[2:]), dtype=array.dtype)
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if cx1 > cx0 and cy1 > cy0:
        out[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0] = array[cy0:cy1, cx0:cx1]
    return out, (max(cy1 - cy0, 0), max(cx1 - cx0, 0))


def cut_resize(image: np.ndarray, geometry: CropGeometry) -> np.ndarray:
    """The generator's input crop: uint8 HxWxC -> uint8 (target h, w, C), as dp2's ``cut_pad_resize``.

    Bodies: bicubic (antialiased) or, when the in-image part of the box is smaller than the target
    in both dimensions, nearest (torch convention). Faces (``fdf_resize``): bicubic when the
    in-image area is smaller than the target area, else area averaging. Outside the image: zeros.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3:
        raise ValueError(f"expected a uint8 HxWxC image, got {image.dtype} with shape {image.shape}")
    crop, (inside_h, inside_w) = _cut_padded(image, geometry.box)
    th, tw = geometry.size
    if crop.shape[:2] == (th, tw):
        return crop
    if geometry.fdf_resize:
        if inside_h * inside_w < th * tw:
            return _to_uint8(_resize_bicubic(crop, th, tw))
        return _to_uint8(_resize_area(crop, th, tw))
    if inside_h < th and inside_w < tw:
        return _resize_nearest(crop, th, tw)
    return _to_uint8(_resize_bicubic(crop, th, tw))


def cut_mask(mask: np.ndarray, geometry: CropGeometry) -> np.ndarray:
    """An image-space bool mask in the crop's space (nearest; False outside the image)."""
    cut, _ = _cut_padded(np.asarray(mask, dtype=bool), geometry.box)
    return _resize_nearest(cut, *geometry.size)


def paste(image: np.ndarray, geometry: CropGeometry, synthesized: np.ndarray) -> None:
    """Write a synthesized crop back into `image` (uint8 HxWxC, modified in place), as dp2's
    ``anonymize_detections``: resize the crop to the box (antialiased bicubic; float input is
    resampled in float32 without intermediate rounding), drop the padding, round and clip, and
    replace only the pixels of ``region_in_image``. Every other pixel stays bit-identical."""
    if image.dtype != np.uint8 or image.ndim != 3:
        raise ValueError(f"expected a uint8 HxWxC image, got {image.dtype} with shape {image.shape}")
    synthesized = np.asarray(synthesized)
    expected = (*geometry.size, image.shape[2])
    if synthesized.shape != expected:
        raise ValueError(f"synthesized crop has shape {synthesized.shape}, expected {expected}")
    height, width = image.shape[:2]
    window, region = geometry.region_in_image(height, width)
    if not region.any():
        return
    h, w = geometry.box_size
    values = _resize_bicubic(synthesized.astype(np.float32), h, w)
    left, top, right, bottom = geometry._padding(height, width)
    values = values[top:h - bottom, left:w - right]
    target = image[window]
    target[region] = _to_uint8(values[region])


# ----------------------------------------------------------------------------------------------- bodies

def _disk_offsets(radius: int) -> list[tuple[int, int]]:
    """Offsets of skimage.morphology.disk(radius): dx^2 + dy^2 <= radius^2."""
    return [(dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)
            if dx * dx + dy * dy <= radius * radius]


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation by a disk, pixels outside the array count as unset (dp2: zero-padded conv)."""
    if radius <= 0:
        return mask.copy()
    h, w = mask.shape
    padded = np.zeros((h + 2 * radius, w + 2 * radius), dtype=bool)
    padded[radius:radius + h, radius:radius + w] = mask
    out = np.zeros_like(mask, dtype=bool)
    for dy, dx in _disk_offsets(radius):
        out |= padded[radius + dy:radius + dy + h, radius + dx:radius + dx + w]
    return out


def _clear_padding(region: np.ndarray, box: Box, height: int, width: int) -> None:
    """dp2 ``remove_dilate_in_pad``: unset crop rows / columns that map to outside the image.

    The padding in image pixels is scaled to crop pixels with the *vertical* ratio for both axes
    and floored, in float32, as dp2 does.
    """
    x0, y0, x1, y1 = box
    ratio = np.float32(region.shape[0]) / np.float32(y1 - y0)
    left, top, right, bottom = (int(np.floor(np.float32(p) * ratio)) for p in
                                (max(0, -x0), max(0, -y0), max(x1 - width, 0), max(y1 - height, 0)))
    region[:top, :] = False
    region[:, :left] = False
    region[region.shape[0] - bottom:, :] = False
    region[:, region.shape[1] - right:] = False


def body_crop(mask: np.ndarray, *, target=BODY_SIZE, percentage_background: float = 0.3,
              axis_minimum_expansion: float = 0.1, dilation_percentage: float = 0.02) -> CropGeometry:
    """Crop geometry of one person (dp2 ``PersonDetection.pre_process``) from its bool HxW mask.

    Region in crop space: the mask cut to the expanded box (zero outside the image), resized to
    `target` with nearest, dilated by a disk of radius int(sqrt(h * w) * dilation_percentage)
    (4 for 288x160), and the dilation removed again in the padded rows / columns.
    """
    mask = np.asarray(mask, dtype=bool)
    height, width = mask.shape
    th, tw = int(target[0]), int(target[1])
    box = expanded_body_box(mask, target=(th, tw), percentage_background=percentage_background,
                            axis_minimum_expansion=axis_minimum_expansion)
    cut, _ = _cut_padded(mask, box)
    person = _resize_nearest(cut, th, tw)
    region = _dilate(person, int((th * tw) ** 0.5 * dilation_percentage))
    _clear_padding(region, box, height, width)
    return CropGeometry(box=box, size=(th, tw), known=~region, fdf_resize=False, person=person)


# ----------------------------------------------------------------------------------------------- faces

def _fdf_square_box(box: Box, height: int, width: int, expansion: float) -> Box | None:
    """FDF128 expansion (dp2 ``expand_bounding_box``): make the box square by growing its short
    side, then grow all sides by int(side * expansion), limited so that the square fits the image,
    shifting it back inside. None where dp2's checks fail (then dp2 falls back to the simple rule).
    Floats as in dp2 (the box comes in as float)."""
    ox0, oy0, ox1, oy1 = (float(v) for v in box)
    x0, y0 = ox0, oy0
    w, h = ox1 - ox0, oy1 - oy0
    if w > min(height, width) or h > min(height, width):
        return None
    if h != w:
        diff = abs(h - w)
        # the short side grows to the long one; it always fits because the long side does
        if h < w:
            h += diff
            y0 = max(0.0, y0 - diff // 2)
        else:
            w += diff
            x0 = max(0.0, x0 - diff // 2)
        if x0 + w > width:
            x0 -= x0 + w - width
        if y0 + h > height:
            y0 -= y0 + h - height
    if x0 < 0 or y0 < 0 or x0 + w > width or y0 + h > height:
        return None
    grow = min((height - w) // 2, (width - h) // 2, int(max(h, w) * expansion))
    if grow > 0:
        y0 = max(0.0, y0 - grow)
        h += 2 * grow
        if y0 + h > height:
            y0 -= y0 + h - height
        x0 = max(0.0, x0 - grow)
        w += 2 * grow
        if x0 + w > width:
            x0 -= x0 + w - width
    ok = (x0 >= 0 and y0 >= 0 and w == h and x0 + w <= width and y0 + h <= height
          and x0 <= ox0 and x0 + w >= ox1 and y0 <= oy0 and y0 + h >= oy1)
    if not ok:
        return None
    x0, y0, w, h = int(x0), int(y0), int(w), int(h)
    return x0, y0, x0 + w, y0 + h


def _simple_square_box(box: Box, expansion: float) -> Box:
    """dp2 ``expand_bbox_simple``: a square of side (1 + expansion) * long side around the box
    centre (floor divisions on floats, then int()). May leave the image."""
    x0, y0, x1, y1 = (float(v) for v in box)
    w, h = x1 - x0, y1 - y0
    cx, cy = int(x0) + w // 2, int(y0) + h // 2
    half = (max(w, h) * (1 + expansion)) // 2
    return int(cx - half), int(cy - half), int(cx + half), int(cy + half)


def face_box_expanded(box_ltrb, image_height: int, image_width: int, *, fdf128_expand: bool = True) -> Box:
    """The expanded square box of a face box (rounded to int first, as dp2's long tensors were).

    fdf128_expand (dp2 FDF128 config): FDF expansion 0.35 inside the image, else the simple one with
    0.7; otherwise (FDF256 config) the simple expansion with 0.4.
    """
    box = tuple(int(v) for v in np.round(np.asarray(box_ltrb, dtype=np.float64)[:4]))
    if not fdf128_expand:
        return _simple_square_box(box, 0.4)
    expansion = 0.35
    square = _fdf_square_box(box, image_height, image_width, expansion)
    return square if square is not None else _simple_square_box(box, expansion * 2)


def face_crop(box_ltrb, image_height: int, image_width: int, *, target=FACE_SIZE,
              fdf128_expand: bool = True) -> CropGeometry:
    """Crop geometry of one face (dp2 ``FaceDetection.get_crop``): the expanded square box, and as
    region the face box rectangle shifted to the box origin, scaled by target / box width and
    truncated to int (then clipped to the crop)."""
    th, tw = int(target[0]), int(target[1])
    face = np.round(np.asarray(box_ltrb, dtype=np.float64)[:4]).astype(np.int64)
    box = face_box_expanded(face, image_height, image_width, fdf128_expand=fdf128_expand)
    scale = th / (box[2] - box[0])
    rect = (face.astype(np.float64) - np.array([box[0], box[1], box[0], box[1]], dtype=np.float64)) * scale
    rx0, ry0, rx1, ry1 = (int(v) for v in rect)  # truncation toward zero (numpy astype(int))
    known = np.ones((th, tw), dtype=bool)
    known[max(ry0, 0):min(ry1, th), max(rx0, 0):min(rx1, tw)] = False
    return CropGeometry(box=box, size=(th, tw), known=known, fdf_resize=True)
