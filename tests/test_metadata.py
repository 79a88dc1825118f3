"""Lossless metadata removal (anonymization_impact.metadata): crafted JPEG and PNG files lose exactly
their metadata segments / chunks, every other byte and so every decoded pixel stays."""

from __future__ import annotations

import hashlib
import io
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from anonymization_impact.errors import DatasetError
from anonymization_impact.io import decode_image
from anonymization_impact.metadata import strip_metadata
from anonymization_impact.trees import encode_image

from conftest import exif_with_gps_and_thumbnail

PIXELS = np.random.default_rng(5).integers(0, 256, size=(48, 64, 3), dtype=np.uint8)
XMP = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:Description dc:creator="Jane Doe"/></x:xmpmeta>'


def jpeg(**options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(PIXELS).save(buffer, format="JPEG", quality=90, **options)
    return buffer.getvalue()


def png(image: Image.Image | None = None, **options) -> bytes:
    buffer = io.BytesIO()
    (image or Image.fromarray(PIXELS)).save(buffer, format="PNG", **options)
    return buffer.getvalue()


def segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def after_jfif(data: bytes, *inserted: bytes) -> bytes:
    jfif_end = 4 + struct.unpack(">H", data[4:6])[0]
    assert data[2:4] == b"\xff\xe0" and data[6:11] == b"JFIF\x00"
    return data[:jfif_end] + b"".join(inserted) + data[jfif_end:]


def decoded(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.array(image)


def thumbnail() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(PIXELS[:16, :16]).save(buffer, format="JPEG")
    return buffer.getvalue()


METADATA_SEGMENTS = [
    (segment(0xE1, exif_with_gps_and_thumbnail(thumbnail())), {"exif", "gps", "thumbnail"}),
    (segment(0xE1, b"http://ns.adobe.com/xap/1.0/\x00" + XMP), {"xmp"}),
    (segment(0xE2, b"ICC_PROFILE\x00\x01\x01" + b"\x00" * 128 + b"camera profile"), {"icc"}),
    (segment(0xED, b"Photoshop 3.0\x008BIM\x04\x04\x00\x00\x00\x00\x00\x0c\x1c\x02P\x00\x08Jane Doe"), {"iptc"}),
    (segment(0xE0, b"JFXX\x00\x10" + thumbnail()), {"thumbnail"}),
    (segment(0xEB, b"JP\x00\x00c2pa: signed by Jane Doe"), {"other"}),
    (segment(0xFE, b"photographer: Jane Doe"), {"comment"}),
]


def test_every_metadata_segment_goes_and_the_rest_is_the_original_byte_for_byte():
    base = jpeg()
    assert strip_metadata(base, "x.jpg").data == base  # JFIF (no thumbnail) and the coding segments stay
    crafted = after_jfif(base, *(data for data, _ in METADATA_SEGMENTS)) + b"\xff\xd8 second image of a multi-picture file"
    assert np.array_equal(decoded(crafted), decoded(base))  # the fixture decodes as the original
    stripped = strip_metadata(crafted, "x.jpg")
    assert stripped.data == base and stripped.orientation == 1
    assert stripped.removed == set().union(*(kinds for _, kinds in METADATA_SEGMENTS)) | {"trailing_data"}


@pytest.mark.parametrize("data, kinds", METADATA_SEGMENTS)
def test_each_segment_is_named_by_its_kind(data, kinds):
    assert strip_metadata(after_jfif(jpeg(), data), "x.jpg").removed == kinds


def test_fill_bytes_and_standalone_markers_are_parsed_and_kept_with_the_segment_they_precede():
    base = jpeg()
    quantization = base.index(b"\xff\xdb")
    crafted = after_jfif(base[:quantization] + b"\xff\xff\xff" + base[quantization:], b"\xff\xff" + segment(0xFE, b"Jane Doe"), b"\xff\x01")
    stripped = strip_metadata(crafted, "x.jpg")
    assert stripped.removed == {"comment"}
    assert stripped.data == after_jfif(base[:quantization] + b"\xff\xff\xff" + base[quantization:], b"\xff\x01")


def _scan_ends(data: bytes) -> list[int]:
    """Offsets of the markers that end the entropy-coded data of each scan (not 0xFF00, not RSTn)."""
    ends = []
    for start in [m.start() for m in re.finditer(b"\xff\xda", data)]:
        header_end = start + 2 + struct.unpack(">H", data[start + 2 : start + 4])[0]
        ends.append(re.compile(rb"\xff[^\x00\xd0-\xd7]").search(data, header_end).start())
    return ends


@pytest.mark.parametrize("options", [{"progressive": True}, {"restart_marker_blocks": 2}])
def test_segments_between_and_after_scans_go_in_progressive_and_restart_marker_files(options):
    base = jpeg(**options)
    ends = _scan_ends(base)
    assert len(ends) > (1 if options.get("progressive") else 0)
    if "restart_marker_blocks" in options:
        assert re.search(rb"\xff[\xd0-\xd7]", base)
    middle = ends[0]  # after the first scan: before the next scan's tables in a progressive file, before EOI otherwise
    crafted = base[:middle] + segment(0xFE, b"Jane Doe") + segment(0xE1, b"http://ns.adobe.com/xap/1.0/\x00" + XMP) + base[middle:]
    assert np.array_equal(decoded(crafted), decoded(base))
    stripped = strip_metadata(crafted, "x.jpg")
    assert stripped.data == base and stripped.removed == {"comment", "xmp"}


def test_a_jfif_thumbnail_takes_its_segment_and_the_adobe_colour_transform_stays():
    base = jpeg()
    jfif_end = 4 + struct.unpack(">H", base[4:6])[0]
    with_thumbnail = base[:4] + struct.pack(">H", 16 + 2 * 2 * 3) + base[6:18] + b"\x02\x02" + b"\x80" * 12 + base[jfif_end:]  # a 2x2 RGB thumbnail
    stripped = strip_metadata(with_thumbnail, "x.jpg")
    assert stripped.removed == {"thumbnail"} and stripped.data == base[:2] + base[jfif_end:]
    assert np.array_equal(decoded(stripped.data), decoded(base))
    cmyk = io.BytesIO()
    Image.fromarray(PIXELS).convert("CMYK").save(cmyk, format="JPEG", quality=90)
    adobe = cmyk.getvalue()
    assert re.search(b"\xff\xee\x00\x0eAdobe", adobe)
    assert strip_metadata(adobe, "x.jpg").data == adobe


@pytest.mark.parametrize("kind", ["jpeg", "png"])
def test_exif_orientation_is_kept_as_the_only_tag(kind, tmp_path):
    exif = Image.Exif()
    exif[0x0112], exif[0x010F], exif[0x9286] = 6, "Camera maker", "user comment: Jane Doe"
    raw = jpeg(exif=exif) if kind == "jpeg" else png(exif=exif)
    stripped = strip_metadata(raw, "x")
    assert stripped.removed == {"exif"} and stripped.orientation == 6
    assert b"Camera maker" not in stripped.data and b"Jane Doe" not in stripped.data
    with Image.open(io.BytesIO(stripped.data)) as image:
        assert dict(image.getexif()) == {0x0112: 6}
    assert np.array_equal(_decode(stripped.data, kind, tmp_path), _decode(raw, kind, tmp_path))  # as the workflow reads it: rotated


def test_an_orientation_only_in_xmp_is_kept_too(tmp_path):
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:Description tiff:Orientation="8" dc:creator="Jane Doe"/></x:xmpmeta>'
    raw = after_jfif(jpeg(), segment(0xE1, b"http://ns.adobe.com/xap/1.0/\x00" + xmp))
    stripped = strip_metadata(raw, "x.jpg")
    assert stripped.removed == {"xmp"} and stripped.orientation == 8 and b"Jane Doe" not in stripped.data
    assert np.array_equal(_decode(stripped.data, "jpeg", tmp_path), _decode(raw, "jpeg", tmp_path))
    assert _decode(raw, "jpeg", tmp_path).shape[:2] == (64, 48)


def _decode(data: bytes, kind: str, folder: Path) -> np.ndarray:
    """The pixels as the workflow reads a file (io.decode_image: EXIF orientation applied)."""
    path = folder / f"{hashlib.sha256(data).hexdigest()[:12]}.{'jpg' if kind == 'jpeg' else 'png'}"
    path.write_bytes(data)
    return decode_image(path)[0]


def _chunk_types(data: bytes) -> list[bytes]:
    types, position = [], 8
    while position < len(data):
        length = struct.unpack(">I", data[position : position + 4])[0]
        types.append(data[position + 4 : position + 8])
        position += 12 + length
    return types


def test_png_loses_its_text_exif_icc_and_time_chunks_and_keeps_what_renders_it():
    palette = Image.fromarray(PIXELS).quantize(16)
    base = png(palette, transparency=3, dpi=(300, 300))
    kept = chunk(b"gAMA", struct.pack(">I", 45455)) + chunk(b"sBIT", b"\x08\x08\x08") + chunk(b"bKGD", b"\x02")
    ihdr_end = 8 + 25
    base = base[:ihdr_end] + kept + base[ihdr_end:]
    assert _chunk_types(base) == [b"IHDR", b"gAMA", b"sBIT", b"bKGD", b"PLTE", b"tRNS", b"pHYs", b"IDAT", b"IEND"]
    info = PngImagePlugin.PngInfo()
    info.add_text("Author", "Jane Doe")
    info.add_text("Description", "taken at home", zip=True)
    info.add_itxt("XML:com.adobe.xmp", XMP.decode())
    metadata = png(palette, pnginfo=info, exif=Image.Exif(), icc_profile=b"\x00" * 128 + b"camera profile")
    texts = [metadata[m.start() - 4 : m.start() + 8 + struct.unpack(">I", metadata[m.start() - 4 : m.start()])[0]]
             for m in re.finditer(b"tEXt|zTXt|iTXt|iCCP", metadata)]
    extra = [*texts, chunk(b"eXIf", exif_with_gps_and_thumbnail(thumbnail())[6:]), chunk(b"tIME", b"\x07\xe8\x01\x02\x03\x04\x05"),
             chunk(b"prVt", b"Jane Doe's phone")]
    iend = base.index(b"IEND") - 4
    crafted = base[:ihdr_end] + b"".join(extra[:3]) + base[ihdr_end:iend] + b"".join(extra[3:]) + base[iend:] + b"appended video"
    assert np.array_equal(decoded(crafted), decoded(base))
    stripped = strip_metadata(crafted, "x.png")
    assert stripped.data == base and stripped.orientation == 1
    assert stripped.removed == {"text", "xmp", "icc", "exif", "gps", "thumbnail", "time", "other", "trailing_data"}
    with Image.open(io.BytesIO(stripped.data)) as image:
        assert image.info.get("transparency") == 3 and image.info.get("gamma") and not image.getexif() and "icc_profile" not in image.info


def test_anonymized_images_are_encoded_without_any_metadata():
    for mode, suffix in [("RGB", ".jpg"), ("RGB", ".png"), ("L", ".png"), ("RGBA", ".jpg")]:
        data = encode_image(PIXELS, mode, suffix)
        stripped = strip_metadata(data, f"x{suffix}")
        assert stripped.data == data and not stripped.removed, (mode, suffix)
        with Image.open(io.BytesIO(data)) as image:
            assert not image.getexif() and not {"icc_profile", "exif", "comment", "xmp", "dpi"} & set(image.info)


def test_other_files_and_broken_structures_are_named():
    with pytest.raises(DatasetError, match=r"train/a.bmp is neither a JPEG nor a PNG file.*untouched_images: copy"):
        strip_metadata(b"BM" + bytes(60), "train/a.bmp")
    base = jpeg()
    broken = after_jfif(base, b"\xff\xfe\xff\xf0 comment")
    with pytest.raises(DatasetError, match=r"train/a.jpg is corrupt \(segment 0xFFFE at byte 20 runs past"):
        strip_metadata(broken[:40], "train/a.jpg")
    with pytest.raises(DatasetError, match=r"a.png is corrupt \(PNG chunk b'IDAT'"):
        strip_metadata(png()[:60], "a.png")
