"""Lossless metadata removal from the training images a tree leaves as they were
(``anonymization.untouched_images: strip``, docs/anonymization.md "Metadata").

The file's segments (JPEG) or chunks (PNG) that carry metadata are left out and every other byte is
copied as it was: nothing is decoded or re-encoded, so the pixels are identical.

JPEG: the marker segments are parsed by their lengths (fill bytes 0xFF and standalone markers
allowed) up to each SOS; the entropy-coded data that follows is copied verbatim up to the next marker
that is neither a stuffed 0xFF00 nor RSTn, so the segments between the scans of a progressive file
are seen too. Removed: every APPn segment but the two below (APP1 EXIF with its GPS IFD and thumbnail,
APP1 XMP, APP2 ICC profile and MPF index, APP13 Photoshop / IPTC, APP11 JUMBF / C2PA, ...), every COM
segment, stray bytes between segments (decoders skip them) and everything after EOI (the other
images of a multi-picture file, a motion photo's video). Kept: APP0 JFIF without a thumbnail
(version and pixel density only; with a thumbnail the segment goes), APP14 Adobe (its colour
transform decides how a CMYK or RGB JPEG decodes) and every coding segment (SOFn, DHT, DQT, DRI,
DAC, DNL, SOS).

PNG: chunks are copied byte for byte with their CRCs, none recomputed. Kept: IHDR, PLTE, IDAT,
IEND, what renders the same colours and transparency (tRNS, gAMA, cHRM, sRGB, cICP, mDCV, cLLI,
sBIT, bKGD) and pHYs (pixel density only). Removed: tEXt / zTXt / iTXt (text, XMP, raw profiles),
eXIf, iCCP, tIME, every other chunk (sPLT, hIST, oFFs, pCAL, sCAL, sTER, APNG frames, private
chunks) and everything after IEND. Without iCCP a colour-managing viewer shows the image as sRGB
(or by gAMA / cHRM) instead of in the profile's space; decoders that do not manage colour (PIL,
OpenCV, the training code) read the same values, as they did for the JPEG's ICC profile.

EXIF orientation: images are read with their orientation applied (``io.decode_image``, as detectron2
and deep_privacy2 do), so an image whose orientation as PIL reads it (EXIF, a raw profile, XMP's
tiff:Orientation) is not 1 gets a new EXIF holding that one tag and nothing else (JPEG: an APP1
after SOI and JFIF; PNG: an eXIf chunk before the first IDAT).
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass

from PIL import Image

from .errors import DatasetError

JPEG_SIGNATURE = b"\xff\xd8\xff"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SOS, EOI, APP0, APP14, COM = 0xDA, 0xD9, 0xE0, 0xEE, 0xFE
STANDALONE_MARKERS = {0x01, *range(0xD0, 0xD8)}  # TEM, RST0-7: no length follows
JPEG_APP_KINDS = [  # (marker, payload prefix, kind) of the APPn segments that are named in the audit
    (0xE1, b"Exif\x00", "exif"),
    (0xE1, b"http://ns.adobe.com/xap/1.0/\x00", "xmp"),
    (0xE1, b"http://ns.adobe.com/xmp/extension/\x00", "xmp"),
    (0xE2, b"ICC_PROFILE\x00", "icc"),
    (0xE0, b"JFXX\x00", "thumbnail"),
    (0xED, b"Photoshop 3.0\x00", "iptc"),
]
PNG_KEPT = {b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"cICP", b"mDCV", b"cLLI", b"sBIT", b"bKGD", b"pHYs"}
PNG_KINDS = {b"eXIf": "exif", b"iCCP": "icc", b"tIME": "time", b"tEXt": "text", b"zTXt": "text", b"iTXt": "text"}
PNG_TEXT_KINDS = [  # (keyword prefix, kind): text chunks that are another kind of metadata (ImageMagick, exiftool)
    (b"XML:com.adobe.xmp", "xmp"),
    (b"Raw profile type exif", "exif"),
    (b"Raw profile type APP1", "exif"),
    (b"Raw profile type icc", "icc"),
    (b"Raw profile type icm", "icc"),
    (b"Raw profile type iptc", "iptc"),
    (b"Comment", "comment"),
]
ORIENTATION_SOURCES = {"exif", "xmp"}  # where PIL finds an orientation (raw profiles count as exif)
KINDS = ("exif", "gps", "thumbnail", "xmp", "icc", "iptc", "comment", "text", "time", "trailing_data", "other")


@dataclass(frozen=True)
class Stripped:
    data: bytes
    removed: frozenset  # the KINDS of metadata the file had
    orientation: int  # the EXIF orientation written back (1: no EXIF at all)


def strip_metadata(data: bytes, where: str) -> Stripped:
    """The JPEG or PNG file ``data`` without its metadata (module docstring); ``where`` names it in errors."""
    if data.startswith(JPEG_SIGNATURE):
        parts, exif_at, removed = _jpeg_parts(data, where)
        orientation_segment = _jpeg_orientation_segment
    elif data.startswith(PNG_SIGNATURE):
        parts, exif_at, removed = _png_parts(data, where)
        orientation_segment = _png_orientation_chunk
    else:
        raise DatasetError(f"{where} is neither a JPEG nor a PNG file, so its metadata cannot be removed losslessly; convert it, "
                           "or set anonymization.untouched_images: copy for a tree used for training only (raw metadata kept)")
    orientation = _orientation(data, where) if removed & ORIENTATION_SOURCES else 1
    if orientation != 1:
        parts.insert(exif_at, orientation_segment(orientation))
    return Stripped(b"".join(parts), frozenset(removed), orientation)


def _corrupt(where: str, problem: str) -> DatasetError:
    return DatasetError(f"image {where} is corrupt ({problem}); replace it with an intact copy from the dataset's archive")


def _jpeg_parts(data: bytes, where: str) -> tuple[list[bytes], int, set[str]]:
    """The kept pieces in file order, where an EXIF APP1 may go (after SOI and a leading JFIF), the kinds removed."""
    parts, removed, exif_at, position = [data[:2]], set(), 1, 2
    while position < len(data):
        if data[position] != 0xFF:  # stray bytes before a marker: decoders skip them, so do we
            following = data.find(b"\xff", position)
            position = len(data) if following < 0 else following
            removed.add("other")
            continue
        start = position
        while position < len(data) and data[position] == 0xFF:  # fill bytes belong to the marker they precede
            position += 1
        if position + 1 > len(data):
            raise _corrupt(where, "it ends inside a marker")
        marker, position = data[position], position + 1
        if marker == EOI:
            parts.append(data[start:position])
            if position < len(data):
                removed.add("trailing_data")
            return parts, exif_at, removed
        if marker in STANDALONE_MARKERS:
            parts.append(data[start:position])
            continue
        end = position + int.from_bytes(data[position : position + 2], "big")
        if end - position < 2 or end > len(data):
            raise _corrupt(where, f"segment 0xFF{marker:02X} at byte {start} runs past the end of the file")
        kinds = _jpeg_segment_kinds(marker, data[position + 2 : end])
        removed |= kinds
        if not kinds:
            parts.append(data[start:end])
            exif_at = 2 if marker == APP0 and len(parts) == 2 else exif_at  # JFIF must stay right after SOI
        position = end
        if marker == SOS:
            position = _scan_end(data, position)
            parts.append(data[end:position])
    return parts, exif_at, removed  # no EOI: a truncated file is copied as far as it goes


def _scan_end(data: bytes, position: int) -> int:
    """Where the entropy-coded data from ``position`` ends: the next 0xFF that is not a stuffed 0xFF00 or RSTn."""
    while True:
        position = data.find(b"\xff", position)
        if position < 0 or position + 1 >= len(data):
            return len(data)
        following = data[position + 1]
        if following != 0x00 and not 0xD0 <= following <= 0xD7:
            return position
        position += 2


def _jpeg_segment_kinds(marker: int, payload: bytes) -> set[str]:
    """The kinds of metadata a segment carries; empty: the segment is kept."""
    if marker == COM:
        return {"comment"}
    if not 0xE0 <= marker <= 0xEF:
        return set()
    if marker == APP0 and payload.startswith(b"JFIF\x00") and len(payload) >= 14:
        return set() if len(payload) == 14 else {"thumbnail"}  # 14 bytes: no thumbnail, nothing after the density
    if marker == APP14 and payload.startswith(b"Adobe") and len(payload) == 12:
        return set()
    kind = next((kind for app, prefix, kind in JPEG_APP_KINDS if marker == app and payload.startswith(prefix)), "other")
    return {kind} | (_exif_contents(payload[6:]) if kind == "exif" else set())


def _exif_contents(tiff: bytes) -> set[str]:
    """What an EXIF block (TIFF structure) holds besides camera tags: a GPS IFD, a thumbnail (IFD1)."""
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    try:
        (ifd0,) = struct.unpack_from(order + "I", tiff, 4)
        (entries,) = struct.unpack_from(order + "H", tiff, ifd0)
        tags = {struct.unpack_from(order + "H", tiff, ifd0 + 2 + 12 * i)[0] for i in range(entries)}
        (ifd1,) = struct.unpack_from(order + "I", tiff, ifd0 + 2 + 12 * entries)
    except (TypeError, struct.error):  # not TIFF, or cut short: counted as EXIF only
        return set()
    return ({"gps"} if 0x8825 in tags else set()) | ({"thumbnail"} if ifd1 else set())


def _png_parts(data: bytes, where: str) -> tuple[list[bytes], int, set[str]]:
    """The kept chunks in file order, where an eXIf chunk may go (before the first IDAT), the kinds removed."""
    parts, removed, exif_at, position = [data[:8]], set(), None, 8
    while position < len(data):
        if position + 12 > len(data):
            raise _corrupt(where, f"a PNG chunk header at byte {position} is cut short")
        length, kind = int.from_bytes(data[position : position + 4], "big"), data[position + 4 : position + 8]
        end = position + 12 + length
        if end > len(data):
            raise _corrupt(where, f"PNG chunk {kind!r} at byte {position} runs past the end of the file")
        if kind in PNG_KEPT:
            exif_at = len(parts) if exif_at is None and kind in (b"IDAT", b"IEND") else exif_at
            parts.append(data[position:end])
        else:
            removed |= _png_chunk_kinds(kind, data[position + 8 : end - 4])
        position = end
        if kind == b"IEND":
            if position < len(data):
                removed.add("trailing_data")
            break
    return parts, len(parts) if exif_at is None else exif_at, removed


def _png_chunk_kinds(kind: bytes, payload: bytes) -> set[str]:
    name = PNG_KINDS.get(kind, "other")
    if name == "text":
        name = next((named for prefix, named in PNG_TEXT_KINDS if payload.startswith(prefix)), "text")
    return {name} | (_exif_contents(payload) if kind == b"eXIf" else set())


def _orientation(data: bytes, where: str) -> int:
    """The orientation ``io.decode_image`` applies (PIL's reading: EXIF, a raw profile, XMP); 1 when none applies."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            orientation = image.getexif().get(0x0112, 1)
    except (OSError, SyntaxError, ValueError) as error:
        raise DatasetError(f"image {where} is corrupt or unreadable ({error}); replace it with an intact copy") from None
    return orientation if orientation in range(2, 9) else 1


def _orientation_tiff(orientation: int) -> bytes:
    """A little-endian TIFF structure with one IFD holding one tag: Orientation (SHORT)."""
    return b"II*\x00" + struct.pack("<IHHHIHHI", 8, 1, 0x0112, 3, 1, orientation, 0, 0)


def _jpeg_orientation_segment(orientation: int) -> bytes:
    payload = b"Exif\x00\x00" + _orientation_tiff(orientation)
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


def _png_orientation_chunk(orientation: int) -> bytes:
    payload = _orientation_tiff(orientation)
    return struct.pack(">I", len(payload)) + b"eXIf" + payload + struct.pack(">I", zlib.crc32(b"eXIf" + payload))
