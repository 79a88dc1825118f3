"""DeepPrivacy2 for real, in the deepprivacy2 env twin (Python 3.9, torch 1.13.1, dp2's checkout at
DP2_COMMIT), on the Cityscapes twin configured as a real dataset root (``synthetic: false``, so
the plan builds the settings of a real dataset: ``kind: deepprivacy2``).

dp2's three generators (FDF128, FDF256, TriA-GAN L_im288) are built with dp2's own
``load_config`` + ``instantiate`` and saved with random weights in the checkpoint format dp2's
loader reads; each is registered as a `weights` entry of its own (path and md5) and named by
``realistic.weights``, the only way a file that is not the paper's loads. Then rule
anonymize_shard_realistic's calls run for every realistic variant: faces, HR faces, bodies with
no / unimodal / multi-modal truncation, HM and HM-LO (2 steps), on one image (one body per body
variant: the variants' min_size keeps the largest person), with the leak check where it applies.
The pixels say nothing about faces or bodies (random weights); every call, shape, checksum,
latent, paste and audit is the real one. Slow on a CPU (seconds per synthesis); run with -s for
the timings.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from anonymization_impact import plan
from anonymization_impact.annotations import normalize_split
from anonymization_impact.audit import audit_markdown, tree_audit
from anonymization_impact.config import validate_config
from anonymization_impact.geometry import FACE_SIZE, body_crop, expanded_box_area, face_box_expanded
from anonymization_impact.io import decode_image, read_json, write_json_atomic
from anonymization_impact.masks import decode
from anonymization_impact.regions import build_face_regions
from anonymization_impact.trees import HISTOGRAM_REASON, plan_targets, region_union
from anonymization_impact.twins.keypoints import simulate_keypoints
from anonymization_impact.variants import Variant
from anonymization_impact.weights import placed_weights

from conftest import REPO
from test_env_twins import _run, _twin, extra_paths, stacks_machine  # noqa: F401 (fixtures)

pytestmark = pytest.mark.stacks

DATASET = "cityscapes"
JOB = REPO / "tests" / "twin_jobs" / "realistic_job.py"
WEIGHTS = {"face": "fdf128", "face_hr": "fdf256", "body": "triagan"}
FACE_VARIANTS = ["face-realistic", "face-realistic-hrfaces"]
BODY_VARIANTS = [["body-realistic-notrunc", "body-realistic-unimodal", "body-realistic"], ["body-realistic-hm", "body-realistic-hmlo"]]
HMLO_STEPS = 2
ESTIMATE = re.compile(r"about ([\d.]+) (s|min|h) per person \(one synthesis\) on this CPU: ~([\d.]+) (s|min|h) for the (\d+) persons")


def run_job(python: Path, *args) -> None:
    argv = [str(JOB), *map(str, args)]
    result = _run(python, f"import runpy, sys; sys.argv = {argv!r}; runpy.run_path({str(JOB)!r}, run_name='__main__')")
    assert result.returncode == 0, result.stderr[-6000:]


def one_image(persons: dict, regions: dict) -> tuple[dict, dict]:
    """The first image with two matched faces and a person without one (it gets the HR face)."""
    for image in sorted(persons["images"], key=lambda image: image["file_name"]):
        annotations = [a for a in persons["annotations"] if a["image_id"] == image["id"]]
        with_face = {face["person_id"] for face in regions["images"][image["file_name"]]}
        without = [a for a in annotations if a["id"] not in with_face]
        if len(with_face) >= 2 and without:
            return image, without[0]
    raise AssertionError("the twin has no image with two matched faces and a person without one")


def hr_face_box(person: dict, image: dict) -> list[float]:
    """A face box on the person, grown until its FDF128-expanded box reaches 128x128 (so the
    "realistic + HR faces" variant refines it at 256x256)."""
    x, y, w, _ = person["bbox"]
    for side in range(16, image["height"] + 1, 4):
        left = min(max(x + w / 2 - side / 2, 0), image["width"] - side)
        box = [left, max(y - side / 4, 0), left + side, max(y - side / 4, 0) + side]
        x0, y0, x1, _ = face_box_expanded(box, image["height"], image["width"], fdf128_expand=True)
        if x1 - x0 >= FACE_SIZE[1]:
            return [float(v) for v in box]
    raise AssertionError("no face box on this person reaches the HR size")


@pytest.fixture(scope="module")
def study(stacks_machine, extra_paths, twins, tmp_path_factory):  # noqa: F811
    """The twin python, random dp2 checkpoints, the config of a real Cityscapes root with their
    weights entries, one image's persons / face regions / keypoints, as the rules hand them over."""
    if "deepprivacy2" not in extra_paths:
        pytest.skip("the wheelhouse has no deep_privacy2 archive at DP2_COMMIT")
    python = _twin(REPO / "envs" / "deepprivacy2.yaml") / "bin" / "python"
    work = tmp_path_factory.mktemp("dp2_study")
    dp2_root = extra_paths["deepprivacy2"][0]
    run_job(python, "checkpoints", dp2_root, work, 0, work / "checkpoints.json")
    made = read_json(work / "checkpoints.json")

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    root = twins[DATASET]["root"]
    config["datasets"][DATASET].update(synthetic=False, root=str(root))
    for role, generator in WEIGHTS.items():
        config["weights"][f"test_random_{generator}"] = {"path": made[generator]["path"], "md5": made[generator]["md5"], "url": None}
        config["realistic"]["weights"][role] = f"test_random_{generator}"

    documents = normalize_split(DATASET, root, "train")
    all_persons = documents["persons"]
    detections = read_json(twins[DATASET]["faces"])
    confidence, min_iou = config["face_detection"]["confidence"][DATASET], config["face_detection"]["min_match_iou"]
    image, faceless = one_image(all_persons, build_face_regions(detections, all_persons, dataset=DATASET, confidence=confidence, min_iou=min_iou))
    persons = {**all_persons, "images": [image], "annotations": [a for a in all_persons["annotations"] if a["image_id"] == image["id"]]}
    entry = detections["images"][image["file_name"]]
    hr_box = hr_face_box(faceless, image)
    detections = {**detections, "images": {image["file_name"]: {"boxes": entry["boxes"] + [hr_box], "scores": entry["scores"] + [0.99]}}}
    faces = build_face_regions(detections, persons, dataset=DATASET, confidence=confidence, min_iou=min_iou)
    assert {"person_id": faceless["id"], "box": hr_box} in [{k: f[k] for k in ("person_id", "box")} for f in faces["images"][image["file_name"]]]
    keypoints = simulate_keypoints(DATASET, twins[DATASET]["truth"], persons, score_threshold=config["regions"]["keypoint_score_threshold"], seed=0)
    largest = max(expanded_box_area(body_crop(decode(a["segmentation"]).astype(bool))) for a in persons["annotations"])
    for name in sum(BODY_VARIANTS, []):  # one body per variant: the largest person
        config["variants"][name].update(min_size=math.isqrt(largest), hmlo_steps=HMLO_STEPS)
    config = validate_config(config)
    for name, document in (("persons", persons), ("faces", faces), ("keypoints", keypoints)):
        write_json_atomic(work / f"{name}.json", document)
    return {"python": python, "work": work, "dp2_root": dp2_root, "config": config, "root": root, "image": image, "persons": persons,
            "faces": faces, "keypoints": keypoints, "excluded": documents["excluded"], "made": made}


def anonymize(study: dict, groups: list[list[str]], label: str) -> dict:
    """Rule anonymize_shard_realistic's calls in the twin, one generator load per group of variants."""
    config, work = study["config"], study["work"]
    job = {"root": str(study["root"]), "dp2_root": str(study["dp2_root"]), "persons": str(work / "persons.json"),
           "faces": str(work / "faces.json") if label == "faces" else None,
           "keypoints": str(work / "keypoints.json") if label == "bodies" else None, "output": str(work / "out"),
           "leak_check_images": config["anonymization"]["leak_check_images"], "hide_pending": config["anonymization"]["pending_regions"] == "hidden",
           "groups": []}
    for names in groups:
        names_by_role = plan.generator_weights(config, DATASET, names[0])
        job["groups"].append({
            "generators": plan.generator_settings(config, DATASET, names[0]),
            "weights": {role: placed_weights(config, name, f"realistic.weights.{role}")["path"] for role, name in names_by_role.items()},
            "variants": {name: Variant.of(config, name).settings for name in names},
        })
    write_json_atomic(work / f"job-{label}-{len(groups[0])}.json", job)
    run_job(study["python"], "anonymize", work / f"job-{label}-{len(groups[0])}.json", work / f"result-{label}-{len(groups[0])}.json")
    return read_json(work / f"result-{label}-{len(groups[0])}.json")


def check_variant(study: dict, name: str, result: dict) -> np.ndarray:
    """What every realistic variant must show; returns the anonymized image."""
    config, image = study["config"], study["image"]
    variant = Variant.of(config, name)
    audit = result["audit"]
    assert result["device"] == "cpu"  # realistic.device auto, no GPU: the CPU, with the estimate below
    assert result["weights_differing"] and not any(result["weights_differing"].values())  # every tensor came from the checkpoint
    assert not [w for w in result["warnings"] if "Did not find key" in w or "Incorrect shape" in w], result["warnings"]
    for role in variant.generator_roles:
        generator = WEIGHTS[role]
        assert f"weights 'test_random_{generator}' (md5 {study['made'][generator]['md5'][:6]}…; not the paper's weights)" in audit["method"]["generator"]
    estimate = next(ESTIMATE.search(message) for message in result["log"] if ESTIMATE.search(message))
    assert float(estimate.group(1)) > 0 and float(estimate.group(3)) > 0 and int(estimate.group(5)) == len(study["persons"]["annotations"])

    targets, _ = plan_targets(variant.settings["region"], image, study["persons"]["annotations"],
                              study["faces"]["images"][image["file_name"]] if variant.settings["region"] == "face" else None,
                              variant.settings["min_size"], variant.settings["hr_faces"])
    record, = audit["images"]
    assert record["anonymized"] == [t.instance_id for t in targets if not t.stream] and targets
    original = decode_image(Path(study["root"]) / image["file_name"])[0]
    pixels = decode_image(Path(study["work"]) / "out" / name / image["file_name"])[0]
    union = region_union(targets, image["height"], image["width"])
    changed = np.any(pixels != original, axis=-1)
    assert pixels.shape == original.shape and not changed[~union].any() and changed[union].mean() > 0.5

    tree = tree_audit(DATASET, name, variant.settings, [audit], study["excluded"], study["faces"] if variant.settings["region"] == "face" else None)
    assert tree["instances"]["anonymized"] == len(record["anonymized"])
    if variant.uses_original_colours:  # HM / HM-LO read the original's histogram: no leak check, and said so
        assert tree["leak_check"] == {"applies": False, "images_checked": 0, "passed": None, "not_applicable_because": HISTOGRAM_REASON}
    else:
        assert audit["leak_check"] == {"applies": True, "images_checked": [image["file_name"]], "passed": True}
        assert tree["leak_check"]["passed"] is True and "output identical: yes" in audit_markdown(tree)
    seconds = result["synthesis_seconds"]
    print(f"\n{name}: {len(record['anonymized'])} {tree['instances']['unit']}, {len(seconds)} syntheses (leak check included), "
          f"{np.mean(seconds):.1f} s per synthesis, shard {result['shard_seconds']:.0f} s, generators loaded in {result['load_seconds']:.0f} s; "
          f"{estimate.group(0)}")
    return pixels


def test_deepprivacy2_faces_and_hr_faces(study):
    results = anonymize(study, [FACE_VARIANTS[:1], FACE_VARIANTS[1:]], "faces")
    plain, refined = (check_variant(study, name, results[name]) for name in FACE_VARIANTS)
    audit = results["face-realistic-hrfaces"]["audit"]
    record, = audit["images"]
    assert len(record["refined_at_256"]) == 1 and audit["method"]["syntheses"] == len(record["anonymized"]) + 1  # the leak check's rerun not counted
    tree = tree_audit(DATASET, "face-realistic-hrfaces", Variant.of(study["config"], "face-realistic-hrfaces").settings, [audit],
                      study["excluded"], study["faces"])
    assert tree["instances"]["refined_at_256"] == 1 and "1 of them refined at 256x256" in audit_markdown(tree)
    assert not np.array_equal(plain, refined)  # the large face was synthesized again by FDF256


def test_deepprivacy2_bodies_with_each_truncation_hm_and_hmlo(study):
    results = anonymize(study, BODY_VARIANTS[:1], "bodies")
    results.update(anonymize(study, BODY_VARIANTS[1:], "bodies"))
    outputs = {name: check_variant(study, name, results[name]) for name in sum(BODY_VARIANTS, [])}
    truncations = {name: results[name]["audit"]["method"]["truncation"] for name in BODY_VARIANTS[0]}
    assert truncations == {"body-realistic-notrunc": "none", "body-realistic-unimodal": "unimodal", "body-realistic": "multimodal"}
    samples = [outputs[name] for name in BODY_VARIANTS[0]]
    assert not np.array_equal(samples[0], samples[1]) and not np.array_equal(samples[1], samples[2]) and not np.array_equal(samples[0], samples[2])
    hmlo = results["body-realistic-hmlo"]["audit"]["method"]
    assert hmlo["postprocess"] == "hmlo" and 1 <= hmlo["hmlo"]["max_steps"] <= HMLO_STEPS and hmlo["syntheses"] == 1
    assert results["body-realistic-hm"]["audit"]["method"]["postprocess"] == "hm"
    assert not np.array_equal(outputs["body-realistic-hm"], outputs["body-realistic"])  # HM matched the original's histogram
