"""The realistic path with the stand-in generator: inputs, latents, HM, HM-LO, pasting, leak check."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from anonymization_impact.annotations import normalize_split
from anonymization_impact.config import validate_config
from anonymization_impact.errors import WorkflowInputError
from anonymization_impact.geometry import body_crop, cut_resize
from anonymization_impact.io import read_json
from anonymization_impact.keypoints import apply_keypoints, attach_keypoints
from anonymization_impact.masks import decode
from anonymization_impact.realistic.generator import crop_keypoints, crop_tensors, to_pixels
from anonymization_impact.realistic.latents import initial_w
from anonymization_impact.realistic.loading import load_generators
from anonymization_impact.realistic.method import build_realistic, realistic_settings
from anonymization_impact.realistic.postprocess import histogram_loss, hsv_histograms, match_histogram_blend, optimize_latent
from anonymization_impact.realistic.standin import STANDIN_LABEL, StandinGenerator
from anonymization_impact.weights import verify_weights
from anonymization_impact.trees import HISTOGRAM_REASON, anonymize_shard, plan_targets
from anonymization_impact.twins.keypoints import simulate_keypoints

BODY = (288, 160)


def variant(**settings) -> dict:
    config = validate_config({"variants": {"v": settings}})
    return config["variants"]["v"]


@pytest.fixture(scope="module")
def body_generator():
    return StandinGenerator("body", BODY, seed=0)


@pytest.fixture(scope="module")
def cityscapes(twins):
    """The Cityscapes twin's persons with the simulated estimator's keypoints attached."""
    persons = normalize_split("cityscapes", twins["cityscapes"]["root"], "train")["persons"]
    document = simulate_keypoints("cityscapes", twins["cityscapes"]["truth"], persons, score_threshold=0.3, seed=0)
    apply_keypoints(persons, document)
    return {"root": twins["cityscapes"]["root"], "persons": persons, "keypoints": document}


def a_body_crop(cityscapes, index=0):
    """A real body crop of the twin: the crop, its geometry and its keypoints."""
    annotation = max(cityscapes["persons"]["annotations"], key=lambda a: a["area"])
    image = next(i for i in cityscapes["persons"]["images"] if i["id"] == annotation["image_id"])
    from anonymization_impact.io import decode_image

    pixels = decode_image(Path(cityscapes["root"]) / image["file_name"])[0]
    geometry = body_crop(decode(annotation["segmentation"]).astype(bool))
    return pixels, geometry, np.asarray(annotation["keypoints"], dtype=np.float32).reshape(17, 3)


def generator_inputs(cityscapes):
    """The largest twin person's geometry, its generator inputs (region zeroed before the cut)
    and the original crop in [0, 1], as the realistic method builds them."""
    pixels, geometry, keypoints = a_body_crop(cityscapes)
    source = pixels.copy()
    window, region = geometry.region_in_image(*pixels.shape[:2])
    source[window][region] = 0
    inputs = crop_tensors(cut_resize(source, geometry), geometry.known, geometry.person, crop_keypoints(keypoints, geometry.box))
    original = torch.from_numpy(cut_resize(pixels, geometry).astype(np.float32)).permute(2, 0, 1)[None] / 255
    return geometry, inputs, original


def test_keypoints_become_crop_relative_and_invisible_outside_the_box():
    points = np.array([[10, 20, 2], [30, 60, 1], [5, 20, 2], [12, 25, 0]] + [[0, 0, 0]] * 13, dtype=np.float32)
    relative = crop_keypoints(points, (10, 20, 30, 60))
    assert relative[0].tolist() == [0.0, 0.0, 1.0]
    assert relative[1].tolist() == [1.0, 1.0, 1.0]
    assert relative[2, 2] == 0  # left of the box
    assert relative[3, 2] == 0  # not labelled
    assert crop_keypoints(None, (0, 0, 1, 1)) is None


def test_the_generator_input_is_zero_inside_the_region_and_in_minus_one_to_one():
    crop = np.full((*BODY, 3), 255, dtype=np.uint8)
    crop[0, 0] = 0
    known = np.ones(BODY, dtype=bool)
    known[100:200, 40:120] = False
    person = ~known
    inputs = crop_tensors(crop, known, person, np.zeros((17, 3), dtype=np.float32))
    assert inputs.condition.shape == (1, 3, *BODY) and inputs.mask.shape == (1, 1, *BODY)
    assert float(inputs.condition[0, :, 150, 80].abs().max()) == 0.0
    assert float(inputs.condition.max()) == 1.0 and float(inputs.condition.min()) == -1.0
    assert float(inputs.person_mask[0, 0, 150, 80]) == 0.0 and float(inputs.person_mask[0, 0, 0, 0]) == 1.0
    assert float(to_pixels(inputs.condition)[0, 0, 1, 1]) == 255.0


def test_latent_sampling_per_truncation(body_generator):
    def draw(truncation, seed=5, psi=0.0):
        return initial_w(body_generator, truncation, psi, np.random.default_rng(seed))

    assert torch.equal(draw("none"), draw("none")) and not torch.equal(draw("none", 5), draw("none", 6))
    assert torch.equal(draw("unimodal")[0], body_generator.w_avg)
    assert any(torch.equal(draw("multimodal", seed)[0], centre) for seed in range(3) for centre in body_generator.w_centers)
    chosen = {int(torch.cdist(draw("multimodal", seed), body_generator.w_centers).argmin()) for seed in range(40)}
    assert len(chosen) > 1  # the centre is drawn, not fixed
    z = torch.from_numpy(np.random.default_rng(5).standard_normal((1, body_generator.z_dim)).astype(np.float32))
    halfway = body_generator.w_avg[None].lerp(body_generator.mapping(z), 0.5)
    assert torch.allclose(draw("unimodal", psi=0.5), halfway)
    without = StandinGenerator("body", BODY, seed=0)
    without.w_centers = None
    with pytest.raises(WorkflowInputError, match="cluster centres"):
        initial_w(without, "multimodal", 0.0, np.random.default_rng(0))


def test_the_cluster_centres_are_the_means_of_their_clusters(body_generator):
    """Lloyd's fixed point, as k-means in DeepPrivacy2's compute_cluster_means.py."""
    w = body_generator.mapping(torch.randn((1024, body_generator.z_dim), generator=torch.Generator().manual_seed(0)))
    centres = body_generator.w_centers
    assert centres.shape == (8, w.shape[1])
    assert len({tuple(c.tolist()) for c in centres}) == 8


def test_paper_defaults_faces_without_truncation_bodies_multimodal():
    assert realistic_settings(variant(region="face", method="realistic")).truncation == "none"
    assert realistic_settings(variant(region="face", method="realistic")).truncation_value == 1.0
    body = realistic_settings(variant(region="body", method="realistic"))
    assert (body.truncation, body.truncation_value, body.postprocess, body.hmlo_steps, body.hmlo_threshold) == ("multimodal", 0.0, "none", 100, 0.02)


def test_histogram_matching_changes_the_person_only_and_moves_towards_the_original():
    rng = np.random.default_rng(0)
    synthesized = rng.uniform(0, 80, (*BODY, 3)).astype(np.float32)
    original = rng.uniform(150, 255, (*BODY, 3)).astype(np.uint8)
    person = np.zeros(BODY, dtype=bool)
    person[100:200, 50:110] = True
    blended = match_histogram_blend(synthesized, original, person)
    assert np.allclose(blended[:40], synthesized[:40])  # far from the person: untouched
    assert blended[150, 80].mean() > 140  # inside: the original's brighter colours
    per_channel = match_histogram_blend(synthesized, original, person, per_channel=True)
    assert not np.allclose(per_channel, blended)


def test_hmlo_lowers_the_histogram_loss_and_stops_at_the_threshold(cityscapes, body_generator):
    geometry, inputs, original = generator_inputs(cityscapes)
    w0 = initial_w(body_generator, "multimodal", 0.0, np.random.default_rng(1))
    free = optimize_latent(body_generator, inputs, original, w0, max_steps=40, threshold=0.0, lr=0.05)
    assert free.steps == 40 and len(free.losses) == 40
    assert min(free.losses[1:]) < free.losses[0]  # the optimization works on w
    threshold = sorted(free.losses)[len(free.losses) // 2]
    stop = next(i for i, loss in enumerate(free.losses) if loss < threshold)
    stopped = optimize_latent(body_generator, inputs, original, w0, max_steps=40, threshold=threshold, lr=0.05)
    assert len(stopped.losses) == stop + 1 and stopped.losses[-1] < threshold
    # the returned image is the one whose loss was measured last
    with torch.no_grad():
        reference = hsv_histograms(original)
        assert float(histogram_loss(reference, to_pixels(stopped.image) / 255)) == pytest.approx(stopped.losses[-1], rel=1e-5)
    one = optimize_latent(body_generator, inputs, original, w0, max_steps=1, threshold=0.0)
    assert one.steps == 1 and len(one.losses) == 1


def _shard(cityscapes, settings, shards=1, shard=0, tmp_path=None, leak_check_images=2):
    generators = load_generators({"kind": "standin", "roles": ["body"], "standin_seed": 0}, {}, "cpu")
    method = build_realistic(settings, generators)
    out = tmp_path / f"out-{shards}-{shard}-{settings.get('postprocess')}"
    audit = anonymize_shard(root=Path(cityscapes["root"]), persons=cityscapes["persons"], faces=None, variant=settings, method=method,
                            shard=shard, shards=shards, output_dir=out, leak_check_images=leak_check_images)
    return audit, out


def _bytes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def test_realistic_bodies_pass_the_leak_check_and_do_not_depend_on_sharding(cityscapes, tmp_path):
    settings = variant(region="body", method="realistic")
    audit, whole = _shard(cityscapes, settings, tmp_path=tmp_path)
    assert audit["leak_check"]["applies"] and audit["leak_check"]["passed"] and len(audit["leak_check"]["images_checked"]) == 2
    assert audit["method"]["generator"] == STANDIN_LABEL and audit["method"]["truncation"] == "multimodal"
    assert audit["method"]["syntheses"] == sum(len(record["anonymized"]) for record in audit["images"]) > 0
    parts = {}
    for shard in range(3):
        parts.update(_bytes(_shard(cityscapes, settings, shards=3, shard=shard, tmp_path=tmp_path, leak_check_images=0)[1]))
    assert parts == _bytes(whole)


def test_hm_and_hmlo_state_that_they_use_the_region_histogram(cityscapes, tmp_path):
    for postprocess in ("hm", "hmlo"):
        settings = variant(region="body", method="realistic", postprocess=postprocess, hmlo_steps=3)
        audit, out = _shard(cityscapes, settings, tmp_path=tmp_path)
        assert not audit["leak_check"]["applies"] and audit["leak_check"]["not_applicable_because"] == HISTOGRAM_REASON
        assert any(out.rglob("*.png"))
    assert audit["method"]["hmlo"]["max_steps"] <= 3


def test_hr_faces_are_a_second_pass_at_256_over_large_faces():
    image = {"height": 600, "width": 800}
    faces = [{"person_id": 1, "box": [100, 100, 140, 140]}, {"person_id": 2, "box": [300, 100, 500, 300]}]
    plain, _ = plan_targets("face", image, [], faces, 8)
    refined, _ = plan_targets("face", image, [], faces, 8, hr_faces=True)
    assert [t.geometry.size for t in plain] == [(128, 128)] * 2
    assert [t.instance_id for t in refined] == [1, 2, 2]  # every face at 128, then the large one
    assert [t.geometry.box for t in refined[:2]] == [t.geometry.box for t in plain]
    assert refined[2].geometry.size == (256, 256) and refined[2].stream == 1


def test_an_hr_face_is_one_face_anonymized_in_two_passes_and_counted_once(tmp_path):
    """Two faces, the large one refined at 256x256: the audit lists each face once (the second
    pass under refined_at_256), the tree audit counts 2 faces, the generator 3 syntheses."""
    from PIL import Image

    from anonymization_impact.audit import audit_markdown, tree_audit
    from anonymization_impact.masks import encode

    height, width = 600, 800
    root = tmp_path / "raw"
    (root / "train").mkdir(parents=True)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)).save(root / "train" / "a.png")
    masks = [np.zeros((height, width), dtype=bool) for _ in range(2)]
    masks[0][100:400, 90:150] = True
    masks[1][90:590, 280:520] = True
    image = {"id": 1, "file_name": "train/a.png", "width": width, "height": height}
    persons = {"images": [image], "annotations": [{"id": i + 1, "image_id": 1, "segmentation": encode(m)} for i, m in enumerate(masks)]}
    faces = {"images": {"train/a.png": [{"person_id": 1, "box": [100, 100, 140, 140]}, {"person_id": 2, "box": [300, 100, 500, 300]}]}}
    settings = variant(region="face", method="realistic", hr_faces=True)
    generators = {size: StandinGenerator("face", size, seed=i) for i, size in enumerate([(128, 128), (256, 256)])}
    audit = anonymize_shard(root=root, persons=persons, faces=faces, variant=settings, method=build_realistic(settings, generators),
                            shard=0, shards=1, output_dir=tmp_path / "out", leak_check_images=1)
    record, = audit["images"]
    assert record["anonymized"] == [1, 2] and record["refined_at_256"] == [2]  # was [1, 2, 2]
    assert audit["method"]["syntheses"] == 3 and audit["leak_check"]["passed"]
    excluded = {"counts": {"excluded_by_reason": {}}}
    tree = tree_audit("coco", "face-realistic-hrfaces", settings, [audit], excluded, None)
    assert tree["instances"]["anonymized"] == 2 and tree["instances"]["refined_at_256"] == 1 and tree["generator"]["syntheses"] == 3
    assert "- Faces anonymized: 2 (1 of them refined at 256x256 in a second pass)." in audit_markdown(tree)


def test_weights_are_checked_by_md5_and_a_hand_placed_file_is_accepted(tmp_path):
    path = tmp_path / "fdf128.ckpt"
    entry = {"path": str(path), "md5": hashlib.md5(b"weights").hexdigest(), "url": None, "mirrors": ["https://mirror.example/fdf128.ckpt"]}
    with pytest.raises(WorkflowInputError, match="place the file with md5 .* by hand; known mirrors: https://mirror.example"):
        verify_weights("deepprivacy2_fdf128", entry)
    path.write_bytes(b"weights")
    assert verify_weights("deepprivacy2_fdf128", entry) == path
    path.write_bytes(b"other weights")
    with pytest.raises(WorkflowInputError, match="have md5"):
        verify_weights("deepprivacy2_fdf128", entry)


def test_simulated_keypoints_cover_the_twins_persons_and_are_deterministic(cityscapes, twins):
    document = cityscapes["keypoints"]
    persons = cityscapes["persons"]
    entries = [entry for image in document["images"].values() for entry in image]
    assert len(entries) == len(persons["annotations"])
    visible = [entry for entry in entries if any(entry["keypoints"][2::3])]
    assert 0 < len(visible) <= len(entries)
    again = simulate_keypoints("cityscapes", twins["cityscapes"]["truth"], persons, score_threshold=0.3, seed=0)
    assert again == document
    for entry in entries:
        assert entry["keypoints"][2::3] == [1 if s >= 0.3 else 0 for s in entry["scores"]]


@pytest.fixture(scope="module")
def renderer():
    from anonymization_impact.realistic.twin_renderer import TwinPersonRenderer

    return TwinPersonRenderer("body", BODY, seed=0)


def test_the_twin_renderer_draws_a_person_in_the_silhouette_from_w(cityscapes, renderer):
    geometry, inputs, _ = generator_inputs(cityscapes)
    assert renderer.w_centers.shape == (512, renderer.z_dim)
    first, second = (renderer.w_centers[i:i + 1] for i in (0, 1))
    one, two = renderer.synthesize(inputs, first), renderer.synthesize(inputs, second)
    person = torch.from_numpy(geometry.person.copy())
    assert float((one - two)[0, :, person].abs().mean()) > 0.05  # another w, another person
    assert torch.equal(one[0, :, torch.from_numpy(geometry.known.copy())], inputs.condition[0, :, torch.from_numpy(geometry.known.copy())])
    w = first.clone().requires_grad_(True)
    renderer.synthesize(inputs, w).sum().backward()
    assert bool(torch.all(torch.isfinite(w.grad))) and float(w.grad.abs().sum()) > 0


def test_hmlo_with_the_twin_renderer_moves_towards_the_original_histogram(cityscapes, renderer):
    geometry, inputs, original = generator_inputs(cityscapes)
    w0 = initial_w(renderer, "multimodal", 0.0, np.random.default_rng(3))
    result = optimize_latent(renderer, inputs, original, w0, max_steps=100, threshold=0.0, lr=0.05)
    assert min(result.losses) < 0.8 * result.losses[0]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_twin_renderer_draws_on_the_gpu_what_it_draws_on_the_cpu(cityscapes, renderer):
    """realistic.device: cuda with the twin renderer (the demo's config on a GPU machine): every
    part is drawn on the crop's device, bodies and faces, and HM-LO's gradients reach w there."""
    from anonymization_impact.realistic.generator import CropTensors
    from anonymization_impact.realistic.twin_renderer import TwinPersonRenderer

    geometry, inputs, original = generator_inputs(cityscapes)
    on_gpu = CropTensors(*(None if t is None else t.cuda() for t in (inputs.condition, inputs.mask, inputs.person_mask, inputs.keypoints)))
    w = renderer.w_centers[:1]
    drawn = renderer.synthesize(on_gpu, w.cuda())
    assert drawn.device.type == "cuda" and torch.allclose(drawn.cpu(), renderer.synthesize(inputs, w), atol=1e-4)
    result = optimize_latent(renderer, on_gpu, original.cuda(), w.cuda(), max_steps=5, threshold=0.0, lr=0.05)
    assert result.image.device.type == "cuda" and all(np.isfinite(result.losses)) and result.losses[-1] < result.losses[0]
    face = TwinPersonRenderer("face", (128, 128), seed=0)
    known = np.ones((128, 128), dtype=bool)
    known[40:90, 45:85] = False
    crop = np.full((128, 128, 3), 90, dtype=np.uint8)
    cpu, gpu = (face.synthesize(crop_tensors(crop, known, None, None, device), face.w_avg[None].to(device)) for device in ("cpu", "cuda"))
    assert torch.allclose(gpu.cpu(), cpu, atol=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("kind", ["standin", "twin_renderer"])
def test_synthetic_generators_run_a_shard_with_realistic_device_cuda(kind, cityscapes, tmp_path):
    generators = load_generators({"kind": kind, "roles": ["body"], "standin_seed": 0}, {}, "cuda")
    settings = variant(region="body", method="realistic", postprocess="hmlo", hmlo_steps=3)
    audit = anonymize_shard(root=Path(cityscapes["root"]), persons=cityscapes["persons"], faces=None, variant=settings,
                            method=build_realistic(settings, generators, device="cuda"), shard=0, shards=1,
                            output_dir=tmp_path / kind, leak_check_images=0)
    assert audit["method"]["syntheses"] > 0


def test_twin_renderer_trees_pass_the_leak_check_and_name_their_generator(cityscapes, twins, tmp_path):
    from anonymization_impact.realistic.twin_renderer import TWIN_RENDERER_LABEL

    generators = load_generators({"kind": "twin_renderer", "roles": ["body"], "standin_seed": 0}, {}, "cpu")
    settings = variant(region="body", method="realistic")
    audit = anonymize_shard(root=Path(cityscapes["root"]), persons=cityscapes["persons"], faces=None, variant=settings,
                            method=build_realistic(settings, generators), shard=0, shards=1, output_dir=tmp_path / "body", leak_check_images=3)
    assert audit["leak_check"]["passed"] and audit["method"]["generator"] == TWIN_RENDERER_LABEL
    from anonymization_impact.regions import build_face_regions

    persons = normalize_split("cityscapes", twins["cityscapes"]["root"], "train")["persons"]
    faces = build_face_regions(read_json(twins["cityscapes"]["faces"]), persons, dataset="cityscapes", confidence=0.2, min_iou=0.01)
    generators = load_generators({"kind": "twin_renderer", "roles": ["face"], "standin_seed": 0}, {}, "cpu")
    settings = variant(region="face", method="realistic")
    audit = anonymize_shard(root=Path(twins["cityscapes"]["root"]), persons=persons, faces=faces, variant=settings,
                            method=build_realistic(settings, generators), shard=0, shards=1, output_dir=tmp_path / "face", leak_check_images=3)
    assert audit["leak_check"]["passed"] and audit["method"]["syntheses"] > 0


def test_without_a_gpu_auto_runs_the_generators_on_the_cpu_with_an_estimate(monkeypatch, caplog):
    import logging

    from anonymization_impact.realistic import loading

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    standin = load_generators({"kind": "standin", "roles": ["body"], "standin_seed": 0}, {}, "cpu")
    monkeypatch.setattr(loading, "load_generators", lambda settings, weights, device, dp2_root=None: standin)
    settings = {"kind": "deepprivacy2", "roles": ["body"], "device": "auto", "standin_seed": 0}
    with caplog.at_level(logging.INFO):
        generators, device = loading.prepare_generators(settings, {}, None, 1234, logging.getLogger("shard"))
    assert device == "cpu" and generators is standin
    assert "device cpu (realistic.device auto)" in caplog.text and "s per person (one synthesis) on this CPU" in caplog.text and "1234 persons" in caplog.text
    asked = {**settings, "device": "cuda"}  # a job that asked for a GPU never runs on the CPU
    with pytest.raises(WorkflowInputError, match="realistic.device is cuda, but the job cannot use it: .*Refusing to run on the CPU"):
        loading.prepare_generators(asked, {}, None, 1234, logging.getLogger("shard"))


@pytest.mark.parametrize("per_person, persons, expected", [
    (7.5, 8, "about 7.5 s per person (one synthesis) on this CPU: ~60 s for the 8 persons of this shard"),  # printed "~0.0 h" before
    (0.043, 3, "about 0.04 s per person (one synthesis) on this CPU: ~0.13 s for the 3 persons"),
    (7.5, 300, "~38 min for the 300 persons"),
    (25.0, 2000, "about 25 s per person (one synthesis) on this CPU: ~13.9 h for the 2000 persons"),
])
def test_the_cpu_estimate_reads_in_a_unit_that_shows_it(per_person, persons, expected):
    from anonymization_impact.realistic.loading import cpu_estimate

    assert expected in cpu_estimate(per_person, persons)


def test_keypoint_documents_must_belong_to_the_persons(cityscapes):
    from anonymization_impact.errors import DatasetError

    persons, document = cityscapes["persons"], cityscapes["keypoints"]
    name, entries = next((name, entries) for name, entries in document["images"].items() if entries)
    moved = {**document, "images": {**document["images"], "elsewhere.png": entries}}
    with pytest.raises(DatasetError, match="elsewhere.png.*not in persons.json"):
        attach_keypoints(persons, moved)
    other = next(n for n, e in document["images"].items() if n != name)
    swapped = {**document, "images": {**document["images"], other: entries}}
    with pytest.raises(DatasetError, match=f"keypoints of '{other}' refer to person"):
        attach_keypoints(persons, swapped)
    short = {**document, "images": {name: [{**entries[0], "keypoints": entries[0]["keypoints"][:50]}]}}
    with pytest.raises(DatasetError, match="expected 51 numbers"):
        attach_keypoints(persons, short)


def test_persons_still_to_come_are_hidden_from_the_generator():
    """Two overlapping persons: the smaller one goes first and its crop shows the larger one.
    Shown as it was (deep_privacy2), the larger person's original pixels reach the generator
    and the leak check fails; hidden (the default), it passes."""
    from anonymization_impact.masks import encode
    from anonymization_impact.trees import LeakCheckError, anonymize_pixels, check_no_leak

    height, width = 120, 160
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    small, large = np.zeros((height, width), bool), np.zeros((height, width), bool)
    small[40:80, 60:75] = True
    large[30:100, 77:110] = True
    annotations = [{"id": i, "segmentation": encode(m)} for i, m in ((1, small), (2, large))]
    targets, _ = plan_targets("body", {"height": height, "width": width}, annotations, None, 8)
    assert [t.instance_id for t in targets] == [1, 2]
    generators = load_generators({"kind": "twin_renderer", "roles": ["body"], "standin_seed": 0}, {}, "cpu")
    method = build_realistic(variant(region="body", method="realistic"), generators)
    hidden = anonymize_pixels(pixels, targets, method, 0, "x.png")
    check_no_leak(pixels, targets, method, 0, "x.png", hidden)
    visible = anonymize_pixels(pixels, targets, method, 0, "x.png", hide_pending=False)
    with pytest.raises(LeakCheckError, match="leaks region content"):
        check_no_leak(pixels, targets, method, 0, "x.png", visible, hide_pending=False)
