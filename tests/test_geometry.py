"""Crop geometry of bodies and faces (dp2's boxes, masks and resampling) on synthetic masks."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from anonymization_impact.geometry import (
    CropGeometry,
    body_crop,
    cut_resize,
    expand_body_box,
    expanded_box_area,
    face_box_expanded,
    face_crop,
    paste,
    tight_box,
)

BODY = (288, 160)


def disk(radius: int) -> np.ndarray:
    """skimage.morphology.disk(radius) (strict radius)."""
    y, x = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    return x * x + y * y <= radius * radius


def torch_nearest(array: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Reference for torch's legacy nearest: source = floor(dst * in / out) with a float32 scale."""
    def index(n_in, n_out):
        scale = np.float32(n_in / n_out)
        return np.minimum(np.floor(np.arange(n_out, dtype=np.float32) * scale).astype(int), n_in - 1)
    return array[np.ix_(index(array.shape[0], out_h), index(array.shape[1], out_w))]


def rectangle(height, width, x0, y0, x1, y1) -> np.ndarray:
    mask = np.zeros((height, width), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


def ellipse(height, width, cx, cy, rx, ry) -> np.ndarray:
    y, x = np.mgrid[:height, :width]
    return ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1


def full_region(geometry: CropGeometry, height: int, width: int) -> np.ndarray:
    window, region = geometry.region_in_image(height, width)
    full = np.zeros((height, width), dtype=bool)
    full[window] = region
    return full


def check_body_box(geometry: CropGeometry, mask: np.ndarray) -> None:
    x0, y0, x1, y1 = geometry.box
    h, w = y1 - y0, x1 - x0
    assert abs(h - 1.8 * w) <= 2, (h, w)                  # 288/160 up to rounding
    assert mask.sum() <= 0.7 * h * w                         # >= 30 % background
    tx0, ty0, tx1, ty1 = tight_box(mask)
    assert x0 <= tx0 and y0 <= ty0 and x1 >= tx1 and y1 >= ty1
    assert expanded_box_area(geometry) == h * w
    assert geometry.size == BODY and geometry.known.shape == BODY and not geometry.fdf_resize


# Outputs of dp2's own box functions (commit f4d8f09: get_expanded_bbox with percentage_background 0.3,
# axis_minimum_expansion 0.1, ratio 288/160; expand_bbox for FDF128 and FDF256) on random inputs,
# the mask-pixel arithmetic emulated in float32 as its torch tensors did.
DP2_BODY_BOXES = [  # (image h, w), tight box, mask pixels, expanded box
    ((274, 325), (7, 127, 264, 203), 15921, (1, -77, 271, 409)),
    ((175, 69), (3, 8, 4, 33), 25, (0, 8, 13, 33)),
    ((42, 141), (20, 21, 117, 32), 688, (19, -63, 119, 117)),
    ((139, 301), (59, 130, 223, 137), 945, (58, -16, 225, 284)),
    ((283, 339), (214, 106, 331, 165), 6208, (210, 23, 335, 248)),
    ((91, 335), (274, 14, 275, 68), 38, (260, 14, 290, 68)),
    ((142, 220), (218, 77, 219, 109), 24, (203, 77, 220, 109)),
    ((300, 242), (120, 206, 145, 281), 1591, (111, 204, 154, 283)),
    ((114, 65), (4, 21, 34, 76), 1384, (2, 18, 36, 79)),
    ((143, 386), (35, 132, 227, 138), 786, (34, -40, 229, 311)),
    ((293, 178), (74, 20, 137, 288), 12540, (23, 13, 178, 293)),
    ((179, 320), (119, 64, 213, 152), 4384, (115, 0, 218, 185)),
    ((306, 188), (46, 278, 50, 283), 18, (46, 277, 50, 284)),
    ((63, 296), (120, 49, 132, 61), 73, (120, 40, 133, 63)),
]
DP2_FACE_BOXES = [  # (image h, w), face box, FDF128 expansion (True: fell back to simple), FDF256 expansion
    ((274, 325), (92, 267, 97, 271), (91, 266, 98, 273), False, (91, 266, 97, 272)),
    ((175, 69), (12, 113, 26, 140), (0, 104, 45, 149), False, (1, 108, 37, 144)),
    ((120, 390), (152, 79, 287, 98), (105, -26, 333, 202), True, (125, -6, 313, 182)),
    ((231, 363), (44, 200, 68, 228), (33, 185, 79, 231), False, (37, 195, 75, 233)),
    ((355, 351), (0, 118, 123, 151), (0, 30, 209, 239), False, (-25, 48, 147, 220)),
    ((143, 132), (75, 63, 116, 82), (61, 38, 130, 107), False, (67, 44, 123, 100)),
    ((91, 335), (63, 77, 270, 79), (-9, -97, 341, 253), True, (22, -66, 310, 222)),
    ((164, 64), (62, 76, 63, 157), (-6, 48, 130, 184), True, (6, 60, 118, 172)),
    ((28, 344), (189, 21, 276, 25), (159, -50, 305, 96), True, (172, -37, 292, 83)),
    ((60, 276), (67, 56, 186, 59), (25, -44, 227, 158), True, (43, -26, 209, 140)),
]


@pytest.mark.parametrize("shape, tight, pixels, expected", DP2_BODY_BOXES)
def test_body_boxes_equal_dp2(shape, tight, pixels, expected):
    assert tuple(expand_body_box(tight, *shape, pixels)) == expected


@pytest.mark.parametrize("shape, face, fdf128, fell_back, fdf256", DP2_FACE_BOXES)
def test_face_boxes_equal_dp2(shape, face, fdf128, fell_back, fdf256):
    assert tuple(face_box_expanded(face, *shape)) == fdf128
    assert tuple(face_box_expanded(face, *shape, fdf128_expand=False)) == fdf256


def test_tight_box_is_exclusive_and_rejects_empty_masks():
    assert tight_box(rectangle(10, 12, 3, 2, 7, 9)) == (3, 2, 7, 9)
    with pytest.raises(ValueError):
        tight_box(np.zeros((4, 4), dtype=bool))


def test_body_crop_inside_image_region_is_the_dilated_nearest_resized_mask():
    height, width = 400, 600
    mask = rectangle(height, width, 250, 80, 330, 300)
    geometry = body_crop(mask)
    check_body_box(geometry, mask)
    x0, y0, x1, y1 = geometry.box
    assert x0 >= 0 and y0 >= 0 and x1 <= width and y1 <= height
    expected = ndimage.binary_dilation(torch_nearest(mask[y0:y1, x0:x1], *BODY), structure=disk(4))
    np.testing.assert_array_equal(~geometry.known, expected)
    assert full_region(geometry, height, width)[mask].all()


@pytest.mark.parametrize("shape, blob", [
    ((200, 400), (200, 100, 80, 120)),  # a wide person cut by the top and bottom: the box leaves there
    ((300, 110), (25, 150, 30, 140)),   # a tall person in a narrow image: the box leaves left and right
])
def test_body_crop_outside_the_image_drops_the_dilation_in_the_padding(shape, blob):
    height, width = shape
    mask = ellipse(height, width, *blob)
    geometry = body_crop(mask)
    check_body_box(geometry, mask)
    x0, y0, x1, y1 = geometry.box
    pads = (max(-x0, 0), max(-y0, 0), max(x1 - width, 0), max(y1 - height, 0))
    assert any(pads), "the case needs a box that leaves the image"
    padded = np.zeros((y1 - y0, x1 - x0), dtype=bool)
    padded[pads[1]:pads[1] + min(y1, height) - max(y0, 0), pads[0]:pads[0] + min(x1, width) - max(x0, 0)] = \
        mask[max(y0, 0):min(y1, height), max(x0, 0):min(x1, width)]
    dilated = ndimage.binary_dilation(torch_nearest(padded, *BODY), structure=disk(4))
    # padding in crop pixels: image pixels scaled by the vertical ratio, floored (dp2)
    left, top, right, bottom = (int(np.floor(np.float32(p) * (np.float32(BODY[0]) / np.float32(y1 - y0))))
                                for p in pads)
    outside = np.zeros(BODY, dtype=bool)
    outside[:top] = outside[BODY[0] - bottom:] = True
    outside[:, :left] = outside[:, BODY[1] - right:] = True
    assert (dilated & outside).any(), "without the removal the dilation would reach the padding"
    np.testing.assert_array_equal(~geometry.known, dilated & ~outside)
    window, region = geometry.region_in_image(height, width)
    assert region.shape == (window[0].stop - window[0].start, window[1].stop - window[1].start)
    assert full_region(geometry, height, width)[mask].all()


def test_body_crop_of_a_large_mask_downsamples_and_still_covers_it():
    height, width = 900, 700
    mask = ellipse(height, width, 350, 450, 150, 400)
    geometry = body_crop(mask)
    check_body_box(geometry, mask)
    assert geometry.box[3] - geometry.box[1] > BODY[0]
    assert full_region(geometry, height, width)[mask].all()


def test_tiny_body_uses_nearest_and_has_a_small_box():
    height, width = 60, 80
    mask = rectangle(height, width, 40, 30, 42, 33)
    geometry = body_crop(mask)
    check_body_box(geometry, mask)
    assert expanded_box_area(geometry) < 8 * 8 * 2
    x0, y0, x1, y1 = geometry.box
    expected = ndimage.binary_dilation(torch_nearest(mask[y0:y1, x0:x1], *BODY), structure=disk(4))
    np.testing.assert_array_equal(~geometry.known, expected)
    image = np.random.default_rng(0).integers(1, 256, (height, width, 3), dtype=np.uint8)
    crop = cut_resize(image, geometry)
    np.testing.assert_array_equal(crop, torch_nearest(image[y0:y1, x0:x1], *BODY))
    assert full_region(geometry, height, width)[mask].all()


def test_face_crop_well_inside_the_image():
    height, width = 300, 400
    face = [180.4, 100.6, 219.5, 151.2]  # rounded: 180, 101, 220, 151 (40 x 50)
    geometry = face_crop(face, height, width)
    x0, y0, x1, y1 = geometry.box
    assert x1 - x0 == y1 - y0 == 50 + 2 * int(50 * 0.35)
    assert 0 <= x0 <= 180 and 0 <= y0 <= 101 and x1 >= 220 and y1 >= 151 and x1 <= width and y1 <= height
    assert geometry.size == (128, 128) and geometry.fdf_resize
    scale = 128 / (x1 - x0)
    expected = np.ones((128, 128), dtype=bool)
    expected[int((101 - y0) * scale):int((151 - y0) * scale), int((180 - x0) * scale):int((220 - x0) * scale)] = False
    np.testing.assert_array_equal(geometry.known, expected)
    window, region = geometry.region_in_image(height, width)
    full = full_region(geometry, height, width)
    assert full[101:151, 180:220].mean() > 0.9 and not full[:, :x0].any()


def test_face_near_the_border_is_shifted_inside():
    box = face_box_expanded([2, 3, 22, 33], 100, 150)
    x0, y0, x1, y1 = box
    assert x1 - x0 == y1 - y0 and x0 == 0 and y0 == 0 and x1 >= 22 and y1 >= 33


def test_face_larger_than_the_short_side_falls_back_to_the_simple_expansion():
    height, width = 100, 300
    geometry = face_crop([50, 10, 170, 90], height, width)
    x0, y0, x1, y1 = geometry.box
    side = 2 * int((120 * 1.7) // 2)
    assert (x1 - x0, y1 - y0) == (side, side)
    assert (x0, y0) == (110 - side // 2, 50 - side // 2)
    assert y0 < 0 and y1 > height
    image = np.full((height, width, 3), 200, dtype=np.uint8)
    crop = cut_resize(image, geometry)
    rows_outside = int(-y0 * 128 / side)
    assert (crop[:rows_outside - 3] == 0).all() and (crop[64] == 200).any()


def test_face_area_downscaling_averages_blocks():
    height, width = 600, 800
    geometry = face_crop([300, 200, 526, 426], height, width)  # 226 -> 226 + 2 * 79 = 384 = 3 x 128
    x0, y0, x1, y1 = geometry.box
    assert x1 - x0 == 384
    image = np.random.default_rng(1).integers(0, 256, (height, width, 3), dtype=np.uint8)
    crop = cut_resize(image, geometry)
    blocks = image[y0:y1, x0:x1].astype(float).reshape(128, 3, 128, 3, 3).mean(axis=(1, 3))
    np.testing.assert_array_equal(crop, np.rint(blocks).astype(np.uint8))


def test_face_upsampling_is_bicubic():
    image = np.zeros((200, 200, 3), dtype=np.uint8)
    image[:, 100:] = 255
    geometry = face_crop([90, 90, 110, 110], 200, 200)
    crop = cut_resize(image, geometry)
    assert crop.shape == (128, 128, 3)
    values = set(np.unique(crop))
    assert {0, 255} <= values and len(values) > 2  # interpolated edge, not nearest


@pytest.mark.parametrize("case", ["inside", "border", "tiny", "face", "face_fallback"])
def test_cut_resize_paste_round_trip(case):
    height, width = 240, 320
    y, x = np.mgrid[:height, :width]
    smooth = np.stack([x * 0.7, y * 0.9, 128 + 60 * np.sin(x / 15.0) * np.cos(y / 11.0)], axis=2)
    noise = np.random.default_rng(7).integers(-3, 4, (height, width, 3))
    image = np.clip(np.rint(smooth) + noise, 0, 255).astype(np.uint8)
    geometry = {
        "inside": lambda: body_crop(ellipse(height, width, 160, 120, 30, 80)),
        "border": lambda: body_crop(ellipse(height, width, 310, 200, 40, 90)),
        "tiny": lambda: body_crop(rectangle(height, width, 100, 100, 103, 104)),
        "face": lambda: face_crop([140, 60, 170, 95], height, width),
        "face_fallback": lambda: face_crop([100, 10, 360, 230], height, width),
    }[case]()
    region = full_region(geometry, height, width)
    assert region.any()

    crop = cut_resize(image, geometry)
    assert crop.shape == (*geometry.size, 3) and crop.dtype == np.uint8
    pasted = image.copy()
    paste(pasted, geometry, crop)
    np.testing.assert_array_equal(pasted[~region], image[~region])
    assert np.abs(pasted[region].astype(int) - image[region]).mean() < 6  # a faithful crop

    as_float = image.copy()
    paste(as_float, geometry, crop.astype(np.float32))
    np.testing.assert_array_equal(as_float, pasted)

    constant = image.copy()
    paste(constant, geometry, np.full((*geometry.size, 3), 127, dtype=np.uint8))
    assert (constant[region] == 127).all()
    np.testing.assert_array_equal(constant[~region], image[~region])

    rounded = image.copy()
    paste(rounded, geometry, np.full((*geometry.size, 3), 127.6, dtype=np.float64))
    assert (rounded[region] == 128).all()  # float input rounded once, at the end
    np.testing.assert_array_equal(rounded[~region], image[~region])


def test_paste_rejects_a_crop_of_the_wrong_size():
    image = np.zeros((50, 50, 3), dtype=np.uint8)
    geometry = face_crop([20, 20, 30, 30], 50, 50)
    with pytest.raises(ValueError):
        paste(image, geometry, np.zeros((64, 64, 3), dtype=np.uint8))


def test_geometry_known_is_read_only():
    geometry = face_crop([20, 20, 30, 30], 50, 50)
    with pytest.raises(ValueError):
        geometry.known[0, 0] = False
