"""Anonymized image trees: plan the regions of an image, anonymize them, write the shard.

One tree = one (dataset, variant): the training split's images with every target region
anonymized, smallest instance first (as deep_privacy2 did). Work is split into shards by a
stable hash of the file name, and every random draw is seeded from (variant seed, image,
instance), so the bytes do not depend on the shard count or the order of work.
"""

from __future__ import annotations

import copy
import hashlib
import io
import os
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
from PIL import Image

from .errors import DatasetError, WorkflowInputError
from .geometry import FACE_SIZE, HR_FACE_SIZE, CropGeometry, body_crop, cut_mask, cut_resize, expanded_box_area, face_box_expanded, face_crop, paste
from .io import decode_image, require_file, write_bytes_atomic
from .masks import decode
from .metadata import KINDS, strip_metadata
from .methods import Method, gaussian_blur
from .shard_journal import ShardJournal, add_statistics, statistics_since
from .walltime import Deadline, TimeLimitReached

REASON_TOO_SMALL = "too small (expanded box below min_size x min_size)"
REASON_NO_FACE = "no matched face detection"
VISIBLE_PENDING_REASON = ("anonymization.pending_regions is 'visible' (as deep_privacy2): the persons still to be "
                          "anonymized in an image are shown to the generator as they were")
SEES_REGION_REASON = "the method transforms the original pixels of the region (blur): its output depends on them by design"
HISTOGRAM_REASON = ("HM / HM-LO adjust the synthesized person to the colour histogram of the original crop, "
                    "region included (paper Sec. 3.4); the generator's own input is zero inside the region")
SNAKEMAKE_MARKER = ".snakemake_timestamp"  # Snakemake's mtime file in directory outputs (twins, shards)
JPEG_OPTIONS = {"quality": 100, "subsampling": 0, "optimize": False}  # as the paper's data


class LeakCheckError(RuntimeError):
    """An anonymized image depended on the original pixels inside a region."""


def name_hash(file_name: str) -> int:
    return int(hashlib.sha256(file_name.encode()).hexdigest()[:16], 16)


def shard_of(file_name: str, shards: int) -> int:
    return name_hash(file_name) % shards


def persons_in_shard(persons: dict, shard: int, shards: int) -> int:
    images = {image["id"] for image in persons["images"] if shard_of(image["file_name"], shards) == shard}
    return sum(1 for annotation in persons["annotations"] if annotation["image_id"] in images)


def instance_rng(seed: int, file_name: str, instance_id: int, stream: int = 0) -> np.random.Generator:
    """The random draws of one instance; ``stream`` separates a second pass over the same
    instance (HR faces)."""
    entropy = [seed, name_hash(file_name), instance_id] + ([stream] if stream else [])
    return np.random.default_rng(np.random.SeedSequence(entropy))


@dataclass
class Target:
    instance_id: int
    geometry: CropGeometry
    keypoints: np.ndarray | None
    area: int
    stream: int = 0  # 1: the HR-face pass over a face already anonymized at 128x128


def plan_targets(region: str, image: dict, annotations: list[dict], faces: list[dict] | None, min_size: int,
                 hr_faces: bool = False) -> tuple[list[Target], list[dict]]:
    """Targets of one image in processing order (smallest first) and the instances skipped, with why.

    ``hr_faces`` ("realistic + HR faces", dp2 ``tools/anonymization/coco/refine_faces.py``): after
    every face was anonymized at 128x128, the faces whose FDF128-expanded box is at least 128x128
    are anonymized again, at 256x256 with the FDF256 expansion."""
    height, width = image["height"], image["width"]
    targets, skipped = [], []
    if region == "body":
        for annotation in annotations:
            mask = decode(annotation["segmentation"]).astype(bool)
            geometry = body_crop(mask)
            if expanded_box_area(geometry) < min_size * min_size:
                skipped.append({"id": annotation["id"], "reason": REASON_TOO_SMALL})
                continue
            keypoints = np.asarray(annotation["keypoints"], dtype=np.float32).reshape(17, 3) if "keypoints" in annotation else None
            targets.append(Target(annotation["id"], geometry, keypoints, int(mask.sum())))
    else:
        with_face = {face["person_id"] for face in faces}
        skipped = [{"id": a["id"], "reason": REASON_NO_FACE} for a in annotations if a["id"] not in with_face]
        for face in faces:
            x0, y0, x1, y1 = face["box"]
            targets.append(Target(face["person_id"], face_crop(face["box"], height, width), None, int(round((x1 - x0) * (y1 - y0)))))
    targets.sort(key=lambda target: (target.area, target.instance_id))
    if hr_faces and region == "face":
        targets += _hr_face_targets(faces, height, width)
    return targets, skipped


def _hr_face_targets(faces: list[dict], height: int, width: int) -> list[Target]:
    refined = []
    for face in faces:
        x0, y0, x1, y1 = face_box_expanded(face["box"], height, width, fdf128_expand=True)
        if (x1 - x0) * (y1 - y0) >= FACE_SIZE[0] * FACE_SIZE[1]:
            geometry = face_crop(face["box"], height, width, target=HR_FACE_SIZE, fdf128_expand=False)
            fx0, fy0, fx1, fy1 = face["box"]
            refined.append(Target(face["person_id"], geometry, None, int(round((fx1 - fx0) * (fy1 - fy0))), stream=1))
    return sorted(refined, key=lambda target: (target.area, target.instance_id))


def anonymize_pixels(pixels: np.ndarray, targets: list[Target], method: Method, seed: int, file_name: str,
                     hide_pending: bool = True) -> np.ndarray:
    """A new array with every target's region anonymized, in the targets' order.

    A method that must not see the region gets it zeroed before the crop is cut. With
    ``hide_pending`` (default) the regions of the targets still to come are zeroed as well and
    marked as to be synthesized in the crop's keep mask, so no original pixel of any region
    reaches any generator; deep_privacy2 showed them as they were (``hide_pending=False``)."""
    image = pixels.copy()
    height, width = image.shape[:2]
    # how many targets still to come cover each pixel: the pending union in O(n), not O(n^2)
    pending_count = region_coverage(targets, height, width) if hide_pending and not method.sees_region else None
    for index, target in enumerate(targets):
        window, region = target.geometry.region_in_image(height, width)
        if pending_count is not None:
            pending_count[window] -= region
        if method.space == "image":
            _blur_in_image_space(image, window, region, method)
            continue
        if getattr(method, "fill_value", None) is not None:
            image[window][region] = method.fill_value
            continue
        geometry, source = target.geometry, image
        if not method.sees_region:
            source = image.copy()
            source[window][region] = 0  # the method never sees what was there
            if pending_count is not None and index + 1 < len(targets):
                pending = pending_count > 0
                source[pending] = 0
                geometry = replace(geometry, known=geometry.known & ~cut_mask(pending, geometry))
        crop = cut_resize(source, geometry)
        rng = instance_rng(seed, file_name, target.instance_id, target.stream)
        if getattr(method, "uses_region_histogram", False):  # HM / HM-LO: the original's colours
            synthesized = method.synthesize(crop, geometry, target.keypoints, rng, original=cut_resize(image, geometry))
        else:
            synthesized = method.synthesize(crop, geometry, target.keypoints, rng)
        paste(image, target.geometry, synthesized)
    return image


def _blur_in_image_space(image: np.ndarray, window: tuple[slice, slice], region: np.ndarray, method) -> None:
    """I_new = I (1 - M) + I_blur M, with I_blur the whole image blurred (the paper's formula);
    blurring a window with a margin of the kernel radius gives the same values inside it."""
    height, width = image.shape[:2]
    radius = method.kernel // 2
    rows, cols = window
    top, left = max(rows.start - radius, 0), max(cols.start - radius, 0)
    bottom, right = min(rows.stop + radius, height), min(cols.stop + radius, width)
    blurred = gaussian_blur(image[top:bottom, left:right], method.sigma, method.kernel)
    inner = blurred[rows.start - top : rows.stop - top, cols.start - left : cols.stop - left]
    image[window][region] = np.clip(np.round(inner[region]), 0, 255).astype(np.uint8)


def region_coverage(targets: list[Target], height: int, width: int) -> np.ndarray:
    """For every pixel, the number of targets whose region covers it."""
    coverage = np.zeros((height, width), dtype=np.int32)
    for target in targets:
        window, region = target.geometry.region_in_image(height, width)
        coverage[window] += region
    return coverage


def region_union(targets: list[Target], height: int, width: int) -> np.ndarray:
    return region_coverage(targets, height, width) > 0


def encode_image(pixels: np.ndarray, mode: str, suffix: str) -> bytes:
    """Encode a fresh image from pixels only: nothing of the original's metadata (EXIF, GPS,
    thumbnails, ICC, comments) can survive. JPEG at quality 100, 4:4:4; PNG stays PNG."""
    image = Image.fromarray(pixels, "RGB")
    if mode in ("L", "RGBA", "P", "LA"):
        image = image.convert("L" if mode in ("L", "LA") else "RGB")
    buffer = io.BytesIO()
    if suffix.lower() in (".jpg", ".jpeg"):
        image.save(buffer, format="JPEG", **JPEG_OPTIONS)
    elif suffix.lower() == ".png":
        image.save(buffer, format="PNG")
    else:
        raise DatasetError(f"cannot write anonymized image with suffix {suffix!r} (only JPEG and PNG)")
    return buffer.getvalue()


def anonymize_shard(
    *,
    root: Path,
    persons: dict,
    faces: dict | None,
    variant: dict,
    method: Method,
    shard: int,
    shards: int,
    output_dir: Path,
    leak_check_images: int,
    progress: Callable[[Iterable], Iterable] = iter,
    hide_pending: bool = True,
    journal: ShardJournal | None = None,
    deadline: Deadline | None = None,
) -> dict:
    """Anonymize the images of one shard into ``output_dir`` (same relative paths as the
    raw root; images without targets are not written) and return the shard's audit.
    ``hide_pending``: see ``anonymize_pixels``. With a ``journal``, the images are made in its
    work directory, those an earlier attempt finished are taken from it, and, once this
    attempt has made one, the job stops at the ``deadline`` (TimeLimitReached)."""
    by_image: dict[int, list[dict]] = {}
    for annotation in persons["annotations"]:
        by_image.setdefault(annotation["image_id"], []).append(annotation)
    if faces is not None:
        _check_faces_refer_to_persons(faces, persons)
    # Name-hash order makes the leak-check sample (the shard's first images with targets)
    # independent of the input order, and it is checked at once: no image stays in memory.
    images = sorted((image for image in persons["images"] if shard_of(image["file_name"], shards) == shard), key=lambda image: name_hash(image["file_name"]))
    records, oriented = [], 0
    leak_check = {"applies": not method.sees_region and not getattr(method, "uses_region_histogram", False),
                  "images_checked": [], "passed": None}
    if method.sees_region:
        leak_check["not_applicable_because"] = SEES_REGION_REASON
    elif getattr(method, "uses_region_histogram", False):
        leak_check["not_applicable_because"] = HISTOGRAM_REASON
    elif leak_check["applies"] and not hide_pending and getattr(method, "fill_value", None) is None:
        leak_check.update(applies=False, not_applicable_because=VISIBLE_PENDING_REASON)
    finished = journal.open() if journal is not None else {}
    written_to = journal.images if journal is not None else Path(output_dir)
    counted = hasattr(method, "statistics")  # read anew each time: the leak check puts back a copy
    made = 0
    for image in progress(images):
        if image["file_name"] in finished:  # by an earlier attempt of this job
            entry = finished[image["file_name"]]
            records.append(entry["record"])
            oriented += entry["oriented"]
            leak_check["images_checked"] += [image["file_name"]] * entry["leak_checked"]
            if counted:
                add_statistics(method.statistics, entry["statistics"])
            continue
        annotations = by_image.get(image["id"], [])
        image_faces = None if faces is None else faces["images"].get(image["file_name"], [])
        targets, skipped = plan_targets(variant["region"], image, annotations, image_faces, variant["min_size"], variant.get("hr_faces", False))
        records.append(image_record(image["file_name"], targets, skipped))
        if not targets:
            continue
        if deadline is not None and made and deadline.reached():
            raise TimeLimitReached(
                f"stopped after {len(finished) + made} anonymized images of shard {shard} ({made} by this job; {len(images)} images in the shard) "
                f"by {deadline.describe()}, before its time limit; {journal.directory}: the next attempt continues there")
        before = copy.deepcopy(method.statistics) if counted else None
        path = Path(root) / image["file_name"]
        require_file(path, f"persons.json (image id {image['id']})")
        pixels, mode, was_oriented = decode_image(path)
        oriented += was_oriented
        if pixels.shape[:2] != (image["height"], image["width"]):
            raise DatasetError(f"image {path} is {pixels.shape[1]}x{pixels.shape[0]}, its annotation says {image['width']}x{image['height']}")
        result = anonymize_pixels(pixels, targets, method, variant["seed"], image["file_name"], hide_pending)
        write_bytes_atomic(written_to / image["file_name"], encode_image(result, mode, path.suffix))
        checked = leak_check["applies"] and len(leak_check["images_checked"]) < leak_check_images
        if checked:
            check_no_leak(pixels, targets, method, variant["seed"], image["file_name"], result, hide_pending)
            leak_check["images_checked"].append(image["file_name"])
        made += 1
        if journal is not None:
            journal.add({"record": records[-1], "oriented": bool(was_oriented), "leak_checked": checked,
                         "statistics": statistics_since(before, method.statistics) if counted else None})
    if journal is not None:
        journal.finish(output_dir)
    if leak_check["applies"]:  # passed only where an image was re-anonymized (leak_check_images may be 0)
        leak_check["passed"] = True if leak_check["images_checked"] else None
    records.sort(key=lambda record: record["image"])
    audit = {"shard": shard, "shards": shards, "images": records, "exif_oriented_images": oriented, "leak_check": leak_check}
    if finished:  # made over several jobs: the benchmark holds the last one's time only (cost.measured_benchmarks)
        audit["images_from_earlier_attempts"] = len(finished)
    if hasattr(method, "summary"):
        audit["method"] = method.summary()
    return audit


def image_record(file_name: str, targets: list[Target], skipped: list[dict]) -> dict:
    """The audit's entry of one image: the instances anonymized, each once (an HR face is one
    face anonymized in two passes: listed again under ``refined_at_256``), and those skipped."""
    record = {"image": file_name, "anonymized": [t.instance_id for t in targets if not t.stream], "skipped": skipped}
    refined = [t.instance_id for t in targets if t.stream]
    if refined:
        record["refined_at_256"] = refined
    return record


def check_no_leak(pixels, targets, method, seed, file_name, expected, hide_pending: bool = True) -> None:
    """Replace every region's original pixels with noise, anonymize again, demand the same output."""
    statistics = copy.deepcopy(getattr(method, "statistics", None))  # the rerun is not new work
    height, width = pixels.shape[:2]
    union = region_union(targets, height, width)
    noise_rng = np.random.default_rng(np.random.SeedSequence([seed, name_hash(file_name), 2**32 - 1]))
    noisy = pixels.copy()
    noisy[union] = noise_rng.integers(0, 256, size=(int(union.sum()), 3), dtype=np.uint8)
    again = anonymize_pixels(noisy, targets, method, seed, file_name, hide_pending)
    if statistics is not None:
        method.statistics = statistics
    if not np.array_equal(again, expected):
        changed = int(np.any(again != expected, axis=-1).sum())
        raise LeakCheckError(
            f"{file_name}: the anonymized image changed in {changed} pixels when the original "
            f"pixels inside the regions were replaced by noise; method {method.name!r} leaks region content"
        )


def _check_faces_refer_to_persons(faces: dict, persons: dict) -> None:
    files = {image["file_name"]: image for image in persons["images"]}
    person_ids = {annotation["id"]: annotation["image_id"] for annotation in persons["annotations"]}
    for file_name, entries in faces["images"].items():
        if file_name not in files:
            raise WorkflowInputError(f"face regions refer to image {file_name!r}, which is not in persons.json")
        for entry in entries:
            if person_ids.get(entry["person_id"]) != files[file_name]["id"]:
                raise WorkflowInputError(f"face regions of {file_name!r} refer to person {entry['person_id']}, which is not a target person of that image")


def assemble_tree(raw_root: Path, tree_root: Path, split_files: list[str], shard_dirs: list[Path], untouched: str = "strip") -> dict:
    """Build the drop-in dataset root: the raw root's layout with the training images
    replaced by their anonymized versions. Everything else (validation split, annotation
    files, other images' directories) is a symlink to the raw original. Images without any
    anonymized region are copied with their metadata removed, pixels untouched (``untouched="strip"``,
    ``metadata.strip_metadata``), or, for training only, symlinked (``"symlink"``) or copied
    (``"copy"``) byte for byte, metadata included. The counts say what was removed."""
    raw_root, tree_root = Path(raw_root).resolve(), Path(tree_root)
    anonymized = {}
    for shard_dir in shard_dirs:
        for path in Path(shard_dir).rglob("*"):
            if path.is_file() and path.name != SNAKEMAKE_MARKER:
                anonymized[str(path.relative_to(shard_dir))] = path
    unknown = sorted(set(anonymized) - set(split_files))
    if unknown:
        raise WorkflowInputError(f"shard output {unknown[0]!r} is not an image of the split; delete the stale shard directories")
    split_set = set(split_files)
    needed_dirs = {Path(name).parent for name in split_files}
    ancestors = {parent for directory in needed_dirs for parent in [directory, *directory.parents]}
    counts = {"anonymized": 0, "untouched": 0, "linked_entries": 0, "untouched_images": untouched}
    removed = Counter()  # files per kind of metadata removed, "files" any, "orientation_kept"

    def build(relative: Path) -> None:
        (tree_root / relative).mkdir(parents=True, exist_ok=True)
        for entry in sorted((raw_root / relative).iterdir()):
            if entry.name == SNAKEMAKE_MARKER:
                continue
            name = relative / entry.name
            if str(name) in anonymized:
                _hardlink_or_copy(anonymized[str(name)], tree_root / name)
                counts["anonymized"] += 1
            elif str(name) in split_set:
                removed.update(_place_untouched(entry, tree_root / name, untouched))
                counts["untouched"] += 1
            elif entry.is_dir() and name in ancestors:
                build(name)
            else:
                os.symlink(entry, tree_root / name)
                counts["linked_entries"] += 1

    build(Path("."))
    missing = len(split_set) - counts["anonymized"] - counts["untouched"]
    if missing:
        raise DatasetError(f"{missing} images of the split are missing under {raw_root}")
    if untouched == "strip":
        counts["metadata_removed"] = {"files": removed.pop("files", 0), "orientation_kept": removed.pop("orientation_kept", 0),
                                      "files_by_kind": {kind: removed[kind] for kind in KINDS if removed[kind]}}
    return counts


def _hardlink_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system
        write_bytes_atomic(target, source.read_bytes())


def _place_untouched(source: Path, target: Path, untouched: str) -> list[str]:
    """Put an image without anonymized regions into the tree; returns what of its metadata was removed."""
    if untouched == "symlink":
        os.symlink(source, target)
        return []
    if untouched == "copy":
        write_bytes_atomic(target, source.read_bytes())
        return []
    stripped = strip_metadata(source.read_bytes(), str(source))
    write_bytes_atomic(target, stripped.data)
    return [*stripped.removed, *(["files"] if stripped.removed else []), *(["orientation_kept"] if stripped.orientation != 1 else [])]
