"""Anonymization methods, image trees, sharding, metadata stripping and the leak check."""

from __future__ import annotations

import hashlib
import io
import json
import stat
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin
from scipy import ndimage

from anonymization_impact.annotations import normalize_split
from anonymization_impact.audit import NOTHING_CHECKED, audit_markdown, leak_check_summary, tree_audit
from anonymization_impact.config import validate_config
from anonymization_impact.errors import DatasetError, WorkflowInputError
from anonymization_impact.io import decode_image, write_json_atomic
from anonymization_impact.masks import encode
from anonymization_impact.methods import Blur, MaskOut, build_method
from anonymization_impact.regions import build_face_regions
from anonymization_impact.trees import (
    REASON_TOO_SMALL,
    SEES_REGION_REASON,
    VISIBLE_PENDING_REASON,
    LeakCheckError,
    Target,
    anonymize_pixels,
    anonymize_shard,
    assemble_tree,
    check_no_leak,
    plan_targets,
    region_union,
    shard_of,
)

from conftest import SMALL, exif_with_gps_and_thumbnail


def variant(**settings) -> dict:
    return validate_config({"variants": {"v": settings}})["variants"]["v"]


def _scene(height=120, width=200, seed=0):
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    masks = []
    for (top, left, h, w) in [(30, 20, 60, 25), (10, 120, 100, 40), (100, 180, 20, 20)]:
        mask = np.zeros((height, width), dtype=bool)
        mask[top : top + h, left : left + w] = True
        masks.append(mask)
    image = {"id": 1, "file_name": "train/scene.png", "width": width, "height": height}
    annotations = [{"id": i + 1, "image_id": 1, "segmentation": encode(m)} for i, m in enumerate(masks)]
    return pixels, image, annotations


def test_maskout_fills_exactly_the_dilated_body_region_with_127():
    pixels, image, annotations = _scene()
    targets, skipped = plan_targets("body", image, annotations, None, min_size=8)
    assert not skipped
    result = anonymize_pixels(pixels, targets, MaskOut(127), 0, image["file_name"])
    union = region_union(targets, image["height"], image["width"])
    assert np.all(result[union] == 127)
    assert np.array_equal(result[~union], pixels[~union])
    for annotation in annotations:  # the dilated region covers every mask pixel
        mask = ndimage.binary_erosion(decode_mask(annotation), iterations=1)
        assert union[mask].all()


def test_maskout_fast_fill_equals_pasting_the_constant_crop():
    from anonymization_impact.geometry import paste

    pixels, image, annotations = _scene()
    targets, _ = plan_targets("body", image, annotations, None, min_size=8)
    expected = pixels.copy()
    for target in targets:
        paste(expected, target.geometry, MaskOut(127).synthesize(np.zeros((*target.geometry.size, 3)), None, None, None))
    assert np.array_equal(anonymize_pixels(pixels, targets, MaskOut(127), 0, image["file_name"]), expected)


class _RecordingMethod:
    """A crop-space method that never sees the region and records the crops it is given."""

    name, space, sees_region = "recording", "crop", False

    def __init__(self):
        self.crops = []

    def synthesize(self, crop, geometry, keypoints, rng):
        self.crops.append(crop.copy())
        return np.full((*geometry.size, 3), 50, dtype=np.float32)


@pytest.mark.parametrize("hide_pending", [True, False])
def test_each_crop_hides_its_own_and_the_pending_regions_only(hide_pending):
    from anonymization_impact.geometry import cut_resize

    pixels, image, annotations = _scene(seed=3)
    pixels = np.maximum(pixels, 1)  # zero then means "hidden"
    targets, _ = plan_targets("body", image, annotations, None, min_size=8)
    method = _RecordingMethod()
    anonymize_pixels(pixels, targets, method, 0, image["file_name"], hide_pending=hide_pending)
    height, width = pixels.shape[:2]
    done = np.zeros((height, width), dtype=bool)
    for index, (target, crop) in enumerate(zip(targets, method.crops)):
        hidden = region_union(targets[index:] if hide_pending else [target], height, width)
        expected = pixels.copy()
        expected[done] = 50  # what earlier targets pasted
        expected[hidden] = 0
        assert np.array_equal(crop, cut_resize(expected, target.geometry))
        done |= region_union([target], height, width)


def decode_mask(annotation):
    from anonymization_impact.masks import decode

    return decode(annotation["segmentation"]).astype(bool)


def test_processing_order_is_smallest_first():
    pixels, image, annotations = _scene()
    targets, _ = plan_targets("body", image, annotations, None, min_size=8)
    assert [t.instance_id for t in targets] == [3, 1, 2]


def test_image_space_blur_equals_an_independent_gaussian_inside_the_region():
    pixels, image, annotations = _scene()
    targets, _ = plan_targets("body", image, annotations, None, min_size=8)
    method = Blur(sigma=7, kernel=21, space="image")
    result = anonymize_pixels(pixels, targets[:1], method, 0, image["file_name"])
    reference = np.stack(
        [ndimage.gaussian_filter(pixels[..., c].astype(np.float64), sigma=7, truncate=10 / 7, mode="mirror") for c in range(3)], axis=-1
    )
    union = region_union(targets[:1], image["height"], image["width"])
    assert np.abs(result[union].astype(int) - np.round(reference[union]).astype(int)).max() <= 1
    assert np.array_equal(result[~union], pixels[~union])


def test_crop_space_blur_equals_an_independent_gaussian_of_the_crop():
    from anonymization_impact.geometry import cut_resize, paste

    pixels, image, annotations = _scene()
    targets, _ = plan_targets("body", image, annotations, None, min_size=8)
    target = targets[0]
    result = anonymize_pixels(pixels, [target], Blur(), 0, image["file_name"])
    crop = cut_resize(pixels, target.geometry).astype(np.float64)
    blurred = np.stack([ndimage.gaussian_filter(crop[..., c], sigma=7, truncate=10 / 7, mode="mirror") for c in range(3)], axis=-1)
    expected = pixels.copy()
    paste(expected, target.geometry, blurred.astype(np.float32))
    assert np.abs(result.astype(int) - expected.astype(int)).max() <= 1
    assert not np.array_equal(result, pixels)


def test_maskout_output_does_not_depend_on_the_region_pixels():
    pixels, image, annotations = _scene()
    targets, _ = plan_targets("body", image, annotations, None, min_size=8)
    expected = anonymize_pixels(pixels, targets, MaskOut(), 0, image["file_name"])
    check_no_leak(pixels, targets, MaskOut(), 0, image["file_name"], expected)


class _LeakyMethod:
    """Sees the region and copies it: the leak check must catch that."""

    name, sees_region, space = "leaky", True, "crop"

    def synthesize(self, crop, geometry, keypoints, rng):
        return crop.astype(np.float32) + 1.0


def test_the_leak_check_catches_a_method_that_uses_region_pixels():
    pixels, image, annotations = _scene()
    targets, _ = plan_targets("body", image, annotations, None, min_size=8)
    method = _LeakyMethod()
    expected = anonymize_pixels(pixels, targets, method, 0, image["file_name"])
    with pytest.raises(LeakCheckError, match="leaks region content"):
        check_no_leak(pixels, targets, method, 0, image["file_name"], expected)


def test_min_size_filter_skips_small_persons():
    pixels, image, annotations = _scene()
    targets, skipped = plan_targets("body", image, annotations, None, min_size=60)
    assert {s["reason"] for s in skipped} == {REASON_TOO_SMALL}
    assert len(targets) + len(skipped) == len(annotations)
    assert len(skipped) >= 1


def test_shard_membership_is_stable_and_complete():
    names = [f"train2017/{i:012d}.jpg" for i in range(200)]
    assert [shard_of(n, 3) for n in names] == [shard_of(n, 3) for n in names]
    assert {shard_of(n, 3) for n in names} == {0, 1, 2}
    assert all(shard_of(n, 1) == 0 for n in names)


def _tree_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def _make_tree(twins, dataset, variant_settings, shards, out: Path, faces=None):
    root = twins[dataset]["root"]
    persons = normalize_split(dataset, root, "train")["persons"]
    settings = variant(**variant_settings)
    audits, shard_dirs = [], []
    for shard in reversed(range(shards)):  # order of work must not matter
        shard_dir = out / "shards" / str(shard)
        shard_dir.mkdir(parents=True)
        audits.append(
            anonymize_shard(
                root=root, persons=persons, faces=faces, variant=settings, method=build_method(settings),
                shard=shard, shards=shards, output_dir=shard_dir, leak_check_images=2,
            )
        )
        shard_dirs.append(shard_dir)
    assemble_tree(root, out / "root", [i["file_name"] for i in persons["images"]], shard_dirs)
    return audits, persons


@pytest.mark.parametrize("dataset", ["cityscapes", "bdd100k"])
def test_trees_are_byte_identical_for_one_and_three_shards(twins, tmp_path, dataset):
    _make_tree(twins, dataset, {"region": "body", "method": "maskout"}, 1, tmp_path / "one")
    _make_tree(twins, dataset, {"region": "body", "method": "maskout"}, 3, tmp_path / "three")
    one, three = _tree_hashes(tmp_path / "one" / "root"), _tree_hashes(tmp_path / "three" / "root")
    assert one == three and len(one) == SMALL["n_train"]


def test_tree_is_a_drop_in_root_with_validation_and_annotations_linked(twins, tmp_path):
    audits, persons = _make_tree(twins, "coco", {"region": "body", "method": "maskout"}, 2, tmp_path / "t")
    tree, raw = tmp_path / "t" / "root", twins["coco"]["root"]
    assert (tree / "val2017").is_symlink() and (tree / "val2017").resolve() == (raw / "val2017").resolve()
    assert (tree / "annotations").is_symlink()
    changed = {r["image"] for a in audits for r in a["images"] if r["anonymized"]}
    assert changed
    for image in persons["images"]:
        path = tree / image["file_name"]
        if image["file_name"] in changed:
            assert not path.is_symlink()
            with Image.open(path) as anonymized, Image.open(raw / image["file_name"]) as original:
                assert anonymized.size == original.size and anonymized.format == "JPEG"
        else:  # untouched images are the raw bytes
            assert path.read_bytes() == (raw / image["file_name"]).read_bytes()


def test_a_tree_written_under_umask_002_is_group_readable(twins, tmp_path, umask):
    umask(0o002)
    audits, _ = _make_tree(twins, "coco", {"region": "body", "method": "maskout"}, 2, tmp_path / "t")
    changed = next(r["image"] for a in audits for r in a["images"] if r["anonymized"])
    untouched = next(r["image"] for a in audits for r in a["images"] if not r["anonymized"])  # a stripped copy
    write_json_atomic(tmp_path / "t" / "audit.json", audits)
    for path in (tmp_path / "t" / "root" / changed, tmp_path / "t" / "root" / untouched, tmp_path / "t" / "audit.json"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o664, path


def test_png_trees_keep_png_and_untouched_pixels(twins, tmp_path):
    audits, persons = _make_tree(twins, "cityscapes", {"region": "body", "method": "maskout"}, 1, tmp_path / "t")
    record = next(r for r in audits[0]["images"] if r["anonymized"])
    tree, raw = tmp_path / "t" / "root", twins["cityscapes"]["root"]
    with Image.open(tree / record["image"]) as anonymized:
        assert anonymized.format == "PNG"
        result = np.array(anonymized.convert("RGB"))
    original = np.array(Image.open(raw / record["image"]).convert("RGB"))
    changed = np.any(result != original, axis=-1)
    assert np.all(result[changed] == 127)


def test_no_metadata_of_the_original_survives(tmp_path):
    pixels, image, annotations = _scene()
    thumb = io.BytesIO()
    Image.fromarray(pixels[:40, :40]).save(thumb, format="JPEG")
    exif = exif_with_gps_and_thumbnail(thumb.getvalue())
    icc = b"\x00" * 128 + b"fake-icc-profile-for-test"
    raw = tmp_path / "raw"
    (raw / "train").mkdir(parents=True)
    Image.fromarray(pixels).save(raw / "train" / "scene.jpg", format="JPEG", exif=exif, icc_profile=icc, comment=b"photographer: Jane Doe")
    with Image.open(raw / "train" / "scene.jpg") as original:  # the fixture really carries it all
        assert original.getexif().get_ifd(0x8825) and original.info.get("icc_profile") and b"Jane Doe" in original.info.get("comment", b"")
        assert b"Exif" in (raw / "train" / "scene.jpg").read_bytes() and thumb.getvalue()[2:40] in (raw / "train" / "scene.jpg").read_bytes()
    image = {**image, "file_name": "train/scene.jpg"}
    persons = {"images": [image], "annotations": annotations}
    settings = variant(region="body", method="blur")
    out = tmp_path / "out"
    anonymize_shard(root=raw, persons=persons, faces=None, variant=settings, method=build_method(settings), shard=0, shards=1, output_dir=out, leak_check_images=1)
    data = (out / "train" / "scene.jpg").read_bytes()
    for marker in (b"Exif", b"ICC_PROFILE", b"Jane Doe", thumb.getvalue()[2:40]):
        assert marker not in data
    with Image.open(out / "train" / "scene.jpg") as result:
        assert not result.getexif() and "icc_profile" not in result.info and "comment" not in result.info
        assert JpegImagePlugin.get_sampling(result) == 0  # 4:4:4
        assert all(max(table) == 1 for table in result.quantization.values())  # quality 100


def _metadata_tree(tmp_path, untouched: str, shards: int = 1):
    """A raw root with a person in train/scene.jpg and nobody in train/private.jpg, which carries EXIF
    with GPS and a thumbnail, an ICC profile and a comment; its tree and audit."""
    pixels, image, annotations = _scene()
    raw = tmp_path / "raw"
    if not raw.exists():
        (raw / "train").mkdir(parents=True)
        Image.fromarray(pixels).save(raw / "train" / "scene.jpg", format="JPEG")
        thumb = io.BytesIO()
        Image.fromarray(pixels[:40, :40]).save(thumb, format="JPEG")
        Image.fromarray(pixels[::-1]).save(raw / "train" / "private.jpg", format="JPEG", exif=exif_with_gps_and_thumbnail(thumb.getvalue()),
                                           icc_profile=b"\x00" * 128 + b"fake-icc-profile-for-test", comment=b"photographer: Jane Doe")
        (raw / "val").mkdir()
    persons = {"images": [{**image, "file_name": "train/scene.jpg"}, {**image, "id": 2, "file_name": "train/private.jpg"}], "annotations": annotations}
    settings = variant(region="body", method="maskout")
    out = tmp_path / f"{untouched}-{shards}"
    audits = []
    for shard in range(shards):
        audits.append(anonymize_shard(root=raw, persons=persons, faces=None, variant=settings, method=build_method(settings), shard=shard,
                                      shards=shards, output_dir=out / "shards" / str(shard), leak_check_images=1))
    counts = assemble_tree(raw, out / "root", ["train/scene.jpg", "train/private.jpg"], [out / "shards" / str(s) for s in range(shards)], untouched)
    audit = tree_audit("coco", "body-maskout", settings, audits, {"counts": {"excluded_by_reason": {}}}, None, tree=counts)
    return raw, out / "root", audit


def test_an_image_with_nobody_on_it_leaves_no_metadata_in_the_tree(tmp_path):
    raw, tree, audit = _metadata_tree(tmp_path, "strip")
    private = (tree / "train" / "private.jpg").read_bytes()
    assert not (tree / "train" / "private.jpg").is_symlink() and (tree / "val").is_symlink()
    for marker in (b"Exif", b"ICC_PROFILE", b"Jane Doe", b"fake-icc"):
        assert marker not in private and marker not in (tree / "train" / "scene.jpg").read_bytes()
    with Image.open(tree / "train" / "private.jpg") as stripped, Image.open(raw / "train" / "private.jpg") as original:
        assert original.getexif().get_ifd(0x8825) and original.info.get("icc_profile")  # the fixture carries it all
        assert np.array_equal(np.array(stripped), np.array(original))
        assert not stripped.getexif() and not {"icc_profile", "comment", "exif"} & set(stripped.info)
    assert audit["tree"]["untouched"] == 1 and audit["tree"]["anonymized"] == 1
    assert audit["metadata"]["raw_metadata_kept"] is False and audit["metadata"]["files"] == 1
    assert audit["metadata"]["files_by_kind"] == {"exif": 1, "gps": 1, "thumbnail": 1, "icc": 1, "comment": 1}
    text = audit_markdown(audit)
    assert "1 copies with their metadata removed losslessly (nothing re-encoded); 1 carried some (files with exif 1, gps 1, thumbnail 1, icc 1, comment 1)." in text
    assert "RAW METADATA KEPT" not in text
    _, two_shards, _ = _metadata_tree(tmp_path, "strip", shards=2)
    assert _tree_hashes(tree) == _tree_hashes(two_shards)  # deterministic, whatever the sharding


@pytest.mark.parametrize("untouched", ["symlink", "copy"])
def test_training_only_trees_say_that_raw_metadata_is_kept(tmp_path, untouched):
    raw, tree, audit = _metadata_tree(tmp_path, untouched)
    assert (tree / "train" / "private.jpg").read_bytes() == (raw / "train" / "private.jpg").read_bytes()
    assert (tree / "train" / "private.jpg").is_symlink() == (untouched == "symlink")
    assert audit["metadata"]["raw_metadata_kept"] is True and audit["metadata"]["untouched_images"] == untouched
    assert "RAW METADATA KEPT: the 1 untouched images are" in audit["metadata"]["statement"]
    assert "RAW METADATA KEPT" in audit_markdown(audit) and "set it to strip before releasing this tree" in audit_markdown(audit)


def test_unreadable_image_is_named(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(DatasetError, match="bad.jpg"):
        decode_image(bad)


def test_face_variant_anonymizes_matched_faces_and_names_unmatched_persons(twins, tmp_path):
    root = twins["coco"]["root"]
    persons = normalize_split("coco", root, "train")["persons"]
    faces = build_face_regions(json.loads(twins["coco"]["faces"].read_text()), persons, dataset="coco", confidence=0.3, min_iou=0.01)
    audits, _ = _make_tree(twins, "coco", {"region": "face", "method": "maskout"}, 2, tmp_path / "t", faces=faces)
    anonymized = sum(len(r["anonymized"]) for a in audits for r in a["images"])
    unmatched = sum(1 for a in audits for r in a["images"] for s in r["skipped"] if s["reason"] == "no matched face detection")
    assert anonymized == faces["counts"]["matched"] > 0
    assert anonymized + unmatched == len(persons["annotations"])
    assert all(a["leak_check"]["passed"] for a in audits)


def test_face_regions_referring_to_unknown_images_or_persons_are_rejected(twins):
    root = twins["coco"]["root"]
    persons = normalize_split("coco", root, "train")["persons"]
    settings = variant(region="face", method="maskout")
    bad_image = {"images": {"train2017/999999999999.jpg": []}}
    with pytest.raises(WorkflowInputError, match="999999999999"):
        anonymize_shard(root=root, persons=persons, faces=bad_image, variant=settings, method=build_method(settings), shard=0, shards=1, output_dir=Path("/nonexistent"), leak_check_images=0)
    first = persons["images"][0]["file_name"]
    bad_person = {"images": {first: [{"person_id": 10**9, "box": [0, 0, 4, 4], "score": 1.0}]}}
    with pytest.raises(WorkflowInputError, match="person 1000000000"):
        anonymize_shard(root=root, persons=persons, faces=bad_person, variant=settings, method=build_method(settings), shard=0, shards=1, output_dir=Path("/nonexistent"), leak_check_images=0)


def test_audit_reconciles_every_person(twins, tmp_path):
    root = twins["bdd100k"]["root"]
    documents = normalize_split("bdd100k", root, "train")
    settings = variant(region="body", method="maskout", min_size=32)
    audits, persons = _make_tree(twins, "bdd100k", {"region": "body", "method": "maskout", "min_size": 32}, 2, tmp_path / "t")
    audit = tree_audit("bdd100k", "body-maskout-minsize32", settings, audits, documents["excluded"], None)
    reasons = audit["instances"]["not_anonymized_by_reason"]
    assert reasons[REASON_TOO_SMALL] > 0
    total_persons = len(persons["annotations"]) + sum(documents["excluded"]["counts"]["excluded_by_reason"].values())
    assert audit["instances"]["anonymized"] + sum(reasons.values()) == total_persons
    assert audit["leak_check"]["applies"] and audit["leak_check"]["passed"] and audit["leak_check"]["images_checked"] > 0
    text = audit_markdown(audit)
    assert "Leak check" in text and REASON_TOO_SMALL in text


def test_audit_reports_the_face_boxes_clipped_to_the_image(twins, tmp_path):
    root = twins["coco"]["root"]
    documents = normalize_split("coco", root, "train")
    detections = json.loads(twins["coco"]["faces"].read_text())
    key = next(k for k, v in detections["images"].items() if v["boxes"])
    width = next(i["width"] for i in documents["persons"]["images"] if i["file_name"] == key)
    detections["images"][key]["boxes"][0][2] = width + 1.25
    faces = build_face_regions(detections, documents["persons"], dataset="coco", confidence=0.3, min_iou=0.01)
    audits, _ = _make_tree(twins, "coco", {"region": "face", "method": "maskout"}, 1, tmp_path / "t", faces=faces)
    audit = tree_audit("coco", "face-maskout", variant(region="face", method="maskout"), audits, documents["excluded"], faces)
    assert audit["face_detection"]["counts"]["clipped_to_image"] == 1
    assert "- Face boxes clipped to the image border: 1 (the farthest reached 1.25 px outside)." in audit_markdown(audit)


def test_blur_audit_says_obfuscated_not_removed(twins, tmp_path):
    root = twins["cityscapes"]["root"]
    documents = normalize_split("cityscapes", root, "train")
    audits, _ = _make_tree(twins, "cityscapes", {"region": "body", "method": "blur"}, 1, tmp_path / "t")
    audit = tree_audit("cityscapes", "body-blur", variant(region="body", method="blur"), audits, documents["excluded"], None)
    assert "obfuscated" in audit["statement"] and "not removed" in audit["statement"]
    # not applicable is never "passed" (it read passed: true); the audit says why instead
    assert audit["leak_check"] == {"applies": False, "images_checked": 0, "passed": None, "not_applicable_because": SEES_REGION_REASON}
    assert f"- Leak check: not applicable: {SEES_REGION_REASON}." in audit_markdown(audit)


def test_the_leak_check_summary_passes_only_where_every_applying_shard_passed():
    checked = {"applies": True, "images_checked": ["a.png"], "passed": True}
    assert leak_check_summary([checked, {**checked, "images_checked": []}]) == {"applies": True, "images_checked": 1, "passed": True}
    assert leak_check_summary([checked, {**checked, "passed": False}])["passed"] is False
    hidden = {"applies": False, "images_checked": [], "passed": None, "not_applicable_because": VISIBLE_PENDING_REASON}
    assert leak_check_summary([hidden, hidden]) == {"applies": False, "images_checked": 0, "passed": None, "not_applicable_because": VISIBLE_PENDING_REASON}
    unchecked = {"applies": True, "images_checked": [], "passed": None}  # leak_check_images 0: nothing was checked
    assert leak_check_summary([unchecked]) == {"applies": True, "images_checked": 0, "passed": None, "not_checked_because": NOTHING_CHECKED}
    assert leak_check_summary([checked, unchecked])["passed"] is True


def test_a_shard_whose_leak_check_ran_on_no_image_does_not_say_passed(twins, tmp_path):
    root = twins["cityscapes"]["root"]
    documents = normalize_split("cityscapes", root, "train")
    settings = variant(region="body", method="maskout")
    audit = anonymize_shard(root=root, persons=documents["persons"], faces=None, variant=settings, method=build_method(settings),
                            shard=0, shards=1, output_dir=tmp_path / "out", leak_check_images=0)
    assert audit["leak_check"] == {"applies": True, "images_checked": [], "passed": None}  # it read passed: true
    tree = tree_audit("cityscapes", "body-maskout", settings, [audit], documents["excluded"], None)
    assert "- Leak check: applies, but not run: no image was re-anonymized" in audit_markdown(tree)


def test_realistic_variants_need_their_generators():
    with pytest.raises(ValueError, match="build_realistic"):
        build_method(variant(region="body", method="realistic"))
