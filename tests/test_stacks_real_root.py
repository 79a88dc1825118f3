"""A dataset root in the real format through the GPU rules of the paper's stacks, as a user runs them:
`snakemake --sdm env-modules`, each rule in its env's twin. DSFD (rule detect_faces) and ViTPose-H
(rule detect_keypoints) in the detectors twin write the documents that match_faces and a face tree
(anonymize twin) read; then DeepPrivacy2's generators (rule anonymize_shard_realistic in the
deepprivacy2 twin: Python 3.9, torch 1.13.1, dp2's checkout) make every realistic variant's tree, the
body shards reading ViTPose-H's keypoints.

The root is one training image of the Cityscapes twin (two persons) copied in Cityscapes' layout and
configured as a real dataset (`datasets.cityscapes.synthetic: false`), so that the plan runs the
detectors and DeepPrivacy2 (`kind: deepprivacy2`). Every network has random weights of its real
architecture (tests/twin_jobs/ say how they are made), each file a `weights` entry of its own with
its checksum, named by face_detection.weights, keypoint_detection.weights and realistic.weights. dp2's
checkout, an input of every DeepPrivacy2 shard, is the wheelhouse's archive of DP2_COMMIT unpacked
where rule download_deepprivacy2 puts it, so nothing is downloaded. The faces DeepPrivacy2 replaces
come from `face_detection.precomputed`: the twin's simulated detection and one face made large enough
for the HR pass; the bodies' `min_size` keeps one person. Boxes, keypoints and pixels mean nothing
(random weights); every call, document, checksum, latent, paste and audit is the real one. Slow on a
CPU; -s prints each job's seconds. Marked `stacks` (`make test-stacks`).
"""

from __future__ import annotations

import copy
import csv
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from anonymization_impact.annotations import normalize_split
from anonymization_impact.audit import audit_markdown
from anonymization_impact.config import load_config
from anonymization_impact.detectors import aspect_box, rle_box
from anonymization_impact.downloads import extract_source_archive
from anonymization_impact.geometry import FACE_SIZE, body_crop, expanded_box_area, face_box_expanded
from anonymization_impact.io import decode_image, read_json, write_json_atomic
from anonymization_impact.keypoints import apply_keypoints
from anonymization_impact.masks import decode
from anonymization_impact.realistic import DP2_COMMIT
from anonymization_impact.regions import build_face_regions
from anonymization_impact.trees import HISTOGRAM_REASON, plan_targets, region_union
from anonymization_impact.weights import sha256_of

from conftest import REPO
from stacks import DP2_GENERATORS, dp2_checkpoints, env_twins, extra_paths, modulepath, ran_in, run_twin_job, run_with_modules, stacks_machine, twin  # noqa: F401 (fixtures)

pytestmark = pytest.mark.stacks

DATASET = "cityscapes"
FACE_VARIANTS = ["face-realistic", "face-realistic-hrfaces"]
BODY_VARIANTS = ["body-realistic-notrunc", "body-realistic-unimodal", "body-realistic", "body-realistic-hm", "body-realistic-hmlo"]
HMLO_STEPS = 2
GENERATOR_OF = {"face-realistic": ["face"], "face-realistic-hrfaces": ["face", "face_hr"], **{name: ["body"] for name in BODY_VARIANTS}}


def persons_of(persons: dict, image: dict) -> dict:
    return {**persons, "images": [image], "annotations": [a for a in persons["annotations"] if a["image_id"] == image["id"]]}


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
def study(stacks_machine, modulepath, dp2_checkpoints, twins, tmp_path_factory):  # noqa: F811
    """The root of one image, the random detector weights, the precomputed face detections and the
    working directory with dp2's checkout in place; the config overlays of both runs."""
    base = tmp_path_factory.mktemp("real_root")
    twin_root = twins[DATASET]["root"]
    persons = normalize_split(DATASET, twin_root, "train")["persons"]
    simulated = read_json(twins[DATASET]["faces"])
    settings = load_config(REPO / "config.yaml")["face_detection"]
    confidence, min_iou = settings["confidence"][DATASET], settings["min_match_iou"]  # what match_faces applies
    regions = build_face_regions(simulated, persons, dataset=DATASET, confidence=confidence, min_iou=min_iou)
    candidates = []  # two persons (ViTPose-H's cost), one with a matched simulated face, one without (it gets the HR face)
    for image in persons["images"]:
        on_image = persons_of(persons, image)["annotations"]
        with_face = {face["person_id"] for face in regions["images"][image["file_name"]]}
        if len(on_image) == 2 and len(with_face) == 1:
            candidates.append((max(a["area"] for a in on_image), image["file_name"], image))
    assert candidates, "the Cityscapes twin has no image with two persons of which one has a matched face"
    image = max(candidates)[2]

    root = base / "cityscapes"  # the image in Cityscapes' layout: its leftImg8bit and gtFine files
    stem = Path(image["file_name"]).name.removesuffix("_leftImg8bit.png")
    city = Path(image["file_name"]).parent.name
    for folder in ("leftImg8bit", "gtFine"):
        (root / folder / "train" / city).mkdir(parents=True)
        for path in (twin_root / folder / "train" / city).glob(f"{stem}_*"):
            shutil.copy2(path, root / folder / "train" / city / path.name)
    persons = normalize_split(DATASET, root, "train")["persons"]
    (image,) = persons["images"]
    entry = simulated["images"][image["file_name"]]
    matched = build_face_regions({**simulated, "images": {image["file_name"]: entry}}, persons, dataset=DATASET, confidence=confidence, min_iou=min_iou)
    faceless = next(a for a in persons["annotations"] if a["id"] not in {face["person_id"] for face in matched["images"][image["file_name"]]})
    hr_box = hr_face_box(faceless, image)
    detections = {**simulated, "images": {image["file_name"]: {"boxes": entry["boxes"] + [hr_box], "scores": entry["scores"] + [0.99]}}}
    write_json_atomic(base / "precomputed-faces.json", detections)
    faces = build_face_regions(detections, persons, dataset=DATASET, confidence=confidence, min_iou=min_iou)  # what match_faces will write
    assert {"person_id": faceless["id"], "box": hr_box} in [{k: f[k] for k in ("person_id", "box")} for f in faces["images"][image["file_name"]]]

    detectors_python = twin(REPO / "envs" / "detectors.yaml") / "bin" / "python"
    run_twin_job(detectors_python, "detectors_job.py", "dsfd", root / image["file_name"], base / "dsfd_random.pth")
    run_twin_job(detectors_python, "detectors_job.py", "vitpose", base / "vitpose_h_random.pth")
    workdir = base / "workdir"
    archive = env_twins.find_wheelhouse() / "sources" / f"deep_privacy2-{DP2_COMMIT}.tar.gz"
    (workdir / "resources" / "deepprivacy2").mkdir(parents=True)
    extract_source_archive(archive, workdir / "resources" / "deepprivacy2" / DP2_COMMIT)  # what rule download_deepprivacy2 leaves

    detectors = {
        "datasets": {DATASET: {"synthetic": False, "root": str(root)}, "coco": {"enabled": False}, "bdd100k": {"enabled": False}},
        "weights": {"test_random_dsfd": {"path": str(base / "dsfd_random.pth"), "sha256": sha256_of(base / "dsfd_random.pth"), "url": None},
                    "test_random_vitpose_h": {"path": str(base / "vitpose_h_random.pth"), "sha256": sha256_of(base / "vitpose_h_random.pth"), "url": None}},
        "face_detection": {"weights": "test_random_dsfd", "device": "cpu"},
        "keypoint_detection": {"weights": "test_random_vitpose_h", "device": "cpu"},
        "anonymization": {"shards": 1},
    }
    largest = max(expanded_box_area(body_crop(decode(a["segmentation"]).astype(bool))) for a in persons["annotations"])
    realistic = copy.deepcopy(detectors)
    realistic["weights"].update(dp2_checkpoints["config"]["weights"])
    realistic["realistic"] = dp2_checkpoints["config"]["realistic"]
    realistic["face_detection"]["precomputed"] = {DATASET: str(base / "precomputed-faces.json")}
    realistic["variants"] = {name: {"min_size": math.isqrt(largest)} for name in BODY_VARIANTS}  # one body per variant: the largest person
    realistic["variants"]["body-realistic-hmlo"]["hmlo_steps"] = HMLO_STEPS
    return {"root": root, "image": image, "persons": persons, "faces": faces, "workdir": workdir, "made": dp2_checkpoints["made"], "base": base,
            "overlays": {"detectors": detectors, "realistic": realistic}}


def seconds(workdir: Path, benchmark: str) -> float:
    with open(workdir / "benchmarks" / benchmark, newline="") as handle:
        return float(next(csv.DictReader(handle, delimiter="\t"))["s"])


def test_dsfd_and_vitpose_rules_write_what_match_faces_a_face_tree_and_the_body_targets_read(study, modulepath):  # noqa: F811
    workdir, image, persons = study["workdir"], study["image"], study["persons"]
    targets = ["results/faces/cityscapes/detections.json", "results/regions/cityscapes/faces.json", "results/regions/cityscapes/keypoints-vitpose.json",
               "results/anonymized/cityscapes/face-maskout/audit.json"]
    result = run_with_modules(workdir, modulepath, study["overlays"]["detectors"], *targets, timeout=1800)
    assert result.returncode == 0, result.stderr[-4000:]
    for log, env in (("faces/cityscapes/detections.log", "detectors"), ("regions/cityscapes/keypoints-vitpose.log", "detectors"),
                     ("regions/cityscapes/faces.log", "anonymize"), ("anonymized/cityscapes/face-maskout/shard-0.log", "anonymize")):
        assert ran_in(workdir / "logs" / log, env), f"{log} did not run in the {env} twin"

    document = read_json(workdir / targets[0])  # DSFD
    assert (document["format"], document["dataset"], document["split"]) == ("face-detections/v1", DATASET, "train")
    assert document["detector"]["package"] == "face_detection==0.2.2" and document["detector"]["confidence_threshold"] == 0.2
    assert document["detector"]["weights"] == {"file": "dsfd_random.pth", "sha256": sha256_of(study["base"] / "dsfd_random.pth")}
    assert set(document["images"]) == {image["file_name"]} and document["counts"]["images"] == 1
    boxes, scores = np.array(document["images"][image["file_name"]]["boxes"]).reshape(-1, 4), np.array(document["images"][image["file_name"]]["scores"])
    assert len(boxes) == len(scores) == document["counts"]["detections"] > 0 and np.isfinite(boxes).all() and ((scores >= 0.2) & (scores <= 1)).all()
    assert (boxes[:, [0, 1]] >= 0).all() and (boxes[:, 2] <= image["width"]).all() and (boxes[:, 3] <= image["height"]).all()
    assert ((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])).all()

    regions = read_json(workdir / targets[1])  # match_faces on DSFD's boxes
    assert regions["counts"]["detections"] == document["counts"]["detections"] and 0 < regions["counts"]["matched"] <= len(persons["annotations"])
    matched = regions["images"][image["file_name"]]
    assert len({face["person_id"] for face in matched}) == len(matched) and all(face["iou"] >= 0.01 for face in matched)
    tree = read_json(workdir / targets[3])  # a face tree from them
    assert tree["instances"]["anonymized"] == regions["counts"]["matched"] and tree["leak_check"]["passed"] is True

    keypoints = read_json(workdir / targets[2])  # ViTPose-H
    assert (keypoints["format"], keypoints["dataset"], keypoints["split"], keypoints["score_threshold"]) == ("person-keypoints/v1", DATASET, "train", 0.3)
    assert "not dp2's file" in keypoints["source"] and "flip test off" in keypoints["source"]
    entries = keypoints["images"][image["file_name"]]
    assert [entry["person_id"] for entry in entries] == [a["id"] for a in persons["annotations"]]
    assert keypoints["counts"]["persons"] == 2 and keypoints["counts"]["empty_masks"] == 0
    for entry, annotation in zip(entries, persons["annotations"]):
        points = np.array(entry["keypoints"]).reshape(17, 3)
        assert np.isfinite(points).all() and set(points[:, 2]) <= {0, 1} and len(entry["scores"]) == 17
        assert (points[:, 2] == [int(s >= 0.3) for s in entry["scores"]]).all()
        x0, y0, x1, y1 = aspect_box(rle_box(annotation["segmentation"]))  # the crop ViTPose saw (dp2's)
        cell = (x1 - x0) / 48  # one heatmap cell: DARK-UDP refines within it
        assert ((points[:, 0] >= x0 - cell) & (points[:, 0] <= x1 + cell) & (points[:, 1] >= y0 - cell) & (points[:, 1] <= y1 + cell)).all()
    with_keypoints = copy.deepcopy(persons)
    apply_keypoints(with_keypoints, keypoints)  # what the body shards do with them (scripts/anonymize_shard.py)
    targets_, _ = plan_targets("body", image, with_keypoints["annotations"], None, min_size=8)
    by_id = {entry["person_id"]: np.array(entry["keypoints"], dtype=np.float32).reshape(17, 3) for entry in entries}
    assert targets_ and all(np.array_equal(target.keypoints, by_id[target.instance_id]) for target in targets_)
    print(f"\nDSFD {seconds(workdir, 'faces/cityscapes/detections.tsv'):.0f} s ({len(scores)} boxes), "
          f"ViTPose-H {seconds(workdir, 'regions/cityscapes/keypoints-vitpose.tsv'):.0f} s (2 persons), match_faces {regions['counts']['matched']} matched")


def test_deepprivacy2_every_realistic_variant_through_anonymize_shard_realistic(study, modulepath):  # noqa: F811
    workdir, image, persons = study["workdir"], study["image"], study["persons"]
    targets = [f"results/anonymized/cityscapes/{name}/audit.json" for name in FACE_VARIANTS + BODY_VARIANTS]
    result = run_with_modules(workdir, modulepath, study["overlays"]["realistic"], *targets, timeout=3600)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "rule download_deepprivacy2" not in result.stderr and "rule detect_faces" not in result.stderr  # dp2's checkout in place; faces precomputed
    assert read_json(workdir / "results/regions/cityscapes/faces.json") == study["faces"]  # match_faces on the precomputed detections
    keypoints = read_json(workdir / "results/regions/cityscapes/keypoints-vitpose.json")
    original = decode_image(study["root"] / image["file_name"])[0]
    outputs, times = {}, []
    for name in FACE_VARIANTS + BODY_VARIANTS:
        log = workdir / "logs" / "anonymized" / "cityscapes" / name / "shard-0.log"
        assert ran_in(log, "deepprivacy2") and "Python 3.9." in log.read_text().splitlines()[0]
        text = log.read_text()
        assert "on this CPU: ~" in text and "Did not find key" not in text and "Incorrect shape" not in text, text[-3000:]
        shard, tree = read_json(workdir / f"results/anonymized/cityscapes/{name}/shards/0.audit.json"), read_json(workdir / targets[len(outputs)])
        for role in GENERATOR_OF[name]:
            generator = DP2_GENERATORS[role]
            assert f"weights 'test_random_{generator}' (md5 {study['made'][generator]['md5'][:6]}…; not the paper's weights)" in shard["method"]["generator"]
        region = "face" if name in FACE_VARIANTS else "body"
        annotations = copy.deepcopy(persons["annotations"])
        if region == "body":
            apply_keypoints({"images": persons["images"], "annotations": annotations}, keypoints)
        planned, _ = plan_targets(region, image, annotations, study["faces"]["images"][image["file_name"]] if region == "face" else None,
                                  study["overlays"]["realistic"]["variants"].get(name, {}).get("min_size", 0), name == "face-realistic-hrfaces")
        (record,) = shard["images"]
        assert record["anonymized"] == [t.instance_id for t in planned if not t.stream] and planned, name
        pixels = decode_image(workdir / f"results/anonymized/cityscapes/{name}/root" / image["file_name"])[0]
        changed, union = np.any(pixels != original, axis=-1), region_union(planned, image["height"], image["width"])
        assert pixels.shape == original.shape and not changed[~union].any() and changed[union].mean() > 0.5
        assert tree["instances"]["anonymized"] == len(record["anonymized"])
        if name in ("body-realistic-hm", "body-realistic-hmlo"):  # they read the original's histogram: no leak check, and said so
            assert tree["leak_check"] == {"applies": False, "images_checked": 0, "passed": None, "not_applicable_because": HISTOGRAM_REASON}
        else:
            assert shard["leak_check"] == {"applies": True, "images_checked": [image["file_name"]], "passed": True}
            assert tree["leak_check"]["passed"] is True and "output identical: yes" in (workdir / f"results/anonymized/cityscapes/{name}/audit.md").read_text()
        outputs[name] = pixels
        times.append(f"{name} {seconds(workdir, f'anonymized/cityscapes/{name}/shard-0.tsv'):.0f} s ({shard['method']['syntheses']} syntheses)")

    hr = read_json(workdir / "results/anonymized/cityscapes/face-realistic-hrfaces/audit.json")
    (record,) = read_json(workdir / "results/anonymized/cityscapes/face-realistic-hrfaces/shards/0.audit.json")["images"]
    assert len(record["refined_at_256"]) == 1 and hr["instances"]["refined_at_256"] == 1
    assert "1 of them refined at 256x256" in audit_markdown(hr)
    assert not np.array_equal(outputs["face-realistic"], outputs["face-realistic-hrfaces"])  # the large face synthesized again by FDF256
    methods = {name: read_json(workdir / f"results/anonymized/cityscapes/{name}/shards/0.audit.json")["method"] for name in BODY_VARIANTS}
    assert [methods[name]["truncation"] for name in BODY_VARIANTS[:3]] == ["none", "unimodal", "multimodal"]
    samples = [outputs[name] for name in BODY_VARIANTS[:3]]
    assert not np.array_equal(samples[0], samples[1]) and not np.array_equal(samples[1], samples[2]) and not np.array_equal(samples[0], samples[2])
    assert methods["body-realistic-hm"]["postprocess"] == "hm" and not np.array_equal(outputs["body-realistic-hm"], outputs["body-realistic"])
    assert methods["body-realistic-hmlo"]["postprocess"] == "hmlo" and 1 <= methods["body-realistic-hmlo"]["hmlo"]["max_steps"] <= HMLO_STEPS
    print("\n" + "; ".join(times))
