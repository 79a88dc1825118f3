"""DSFD (face_detection 0.2.2) and ViTPose-H (the ViTPose fork as mmpose 0.24.0 on mmcv-full 1.3.9)
for real, in the detectors env twin (Python 3.9, torch 1.9.0), on the Cityscapes twin's training
images, with random weights of their own architectures (tests/twin_jobs/detectors_job.py says
how they are made). The rule scripts' calls produce the ``face-detections/v1`` and
``person-keypoints/v1`` documents; then the readers downstream take them, as the workflow does:
``regions.build_face_regions`` (rule match_faces) and a face tree, ``keypoints.apply_keypoints``
(rule anonymize_shard) and the body targets. The boxes and keypoints mean nothing (random
weights); their form, bounds and the hand-over are the real ones. Slow on a CPU; -s prints timings.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from anonymization_impact import detectors
from anonymization_impact.annotations import normalize_split
from anonymization_impact.config import validate_config
from anonymization_impact.io import read_json, write_json_atomic
from anonymization_impact.keypoints import apply_keypoints
from anonymization_impact.methods import build_method
from anonymization_impact.regions import build_face_regions
from anonymization_impact.trees import anonymize_shard, plan_targets
from anonymization_impact.weights import sha256_of

from conftest import REPO
from test_env_twins import _run, _twin, stacks_machine  # noqa: F401 (fixtures)

pytestmark = pytest.mark.stacks

DATASET = "cityscapes"
JOB = REPO / "tests" / "twin_jobs" / "detectors_job.py"


def subset(persons: dict, images: list[dict]) -> dict:
    ids = {image["id"] for image in images}
    return {**persons, "images": images, "annotations": [a for a in persons["annotations"] if a["image_id"] in ids]}


@pytest.fixture(scope="module")
def setup(stacks_machine, twins, tmp_path_factory):  # noqa: F811
    """The twin python, the config of a real Cityscapes root, and two small persons documents: two
    images with persons (DSFD) and the first image with exactly two persons (ViTPose-H)."""
    python = _twin(REPO / "envs" / "detectors.yaml") / "bin" / "python"
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["datasets"][DATASET].update(synthetic=False, root=str(twins[DATASET]["root"]))
    config = validate_config(config)
    persons = normalize_split(DATASET, twins[DATASET]["root"], "train")["persons"]
    counts = {image["id"]: sum(a["image_id"] == image["id"] for a in persons["annotations"]) for image in persons["images"]}
    with_persons = sorted((image for image in persons["images"] if counts[image["id"]]), key=lambda image: image["file_name"])
    two = next(image for image in with_persons if counts[image["id"]] == 2)
    return {"python": python, "config": config, "root": twins[DATASET]["root"], "work": tmp_path_factory.mktemp("detectors"),
            "faces_persons": subset(persons, with_persons[:2]), "pose_persons": subset(persons, [two])}


def run_job(setup: dict, command: str, persons: dict) -> dict:
    work = setup["work"]
    write_json_atomic(work / f"{command}-persons.json", persons)
    argv = [str(JOB), command, str(setup["root"]), str(work / f"{command}-persons.json"), str(work), str(work / f"{command}.json")]
    result = _run(setup["python"], f"import runpy, sys; sys.argv = {argv!r}; runpy.run_path({str(JOB)!r}, run_name='__main__')")
    assert result.returncode == 0, result.stderr[-6000:]
    output = read_json(work / f"{command}.json")
    print(f"\n{command}: " + ", ".join(f"{key} {value:.1f} s" for key, value in output["seconds"].items()) + f"; counts {output['document']['counts']}")
    return output["document"]


def test_dsfd_face_detections_feed_match_faces_and_a_face_tree(setup, tmp_path):
    persons = setup["faces_persons"]
    document = run_job(setup, "faces", persons)
    images = {image["file_name"]: image for image in persons["images"]}
    assert (document["format"], document["dataset"], document["split"]) == ("face-detections/v1", DATASET, "train")
    assert document["detector"]["package"] == "face_detection==0.2.2" and document["detector"]["confidence_threshold"] == 0.2
    assert document["detector"]["weights"] == {"file": "dsfd_random.pth", "sha256": sha256_of(setup["work"] / "dsfd_random.pth")}
    assert set(document["images"]) == set(images) and document["counts"]["images"] == 2
    for key, entry in document["images"].items():
        boxes, scores = np.array(entry["boxes"]).reshape(-1, 4), np.array(entry["scores"])
        assert len(boxes) == len(scores) > 0 and np.isfinite(boxes).all() and ((scores >= 0.2) & (scores <= 1)).all()
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= images[key]["width"]).all() and (boxes[:, 1] >= 0).all() and (boxes[:, 3] <= images[key]["height"]).all()
        assert ((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])).all()
    assert document["counts"]["detections"] == sum(len(entry["scores"]) for entry in document["images"].values())

    config = setup["config"]
    regions = build_face_regions(document, persons, dataset=DATASET, confidence=config["face_detection"]["confidence"][DATASET],
                                 min_iou=config["face_detection"]["min_match_iou"])  # rule match_faces
    assert regions["counts"]["detections"] == document["counts"]["detections"] and 0 < regions["counts"]["matched"] <= len(persons["annotations"])
    for key, faces in regions["images"].items():
        assert len({face["person_id"] for face in faces}) == len(faces) and all(face["iou"] >= 0.01 for face in faces)
    variant = config["variants"]["face-maskout"]
    audit = anonymize_shard(root=Path(setup["root"]), persons=persons, faces=regions, variant=variant, method=build_method(variant), shard=0, shards=1,
                            output_dir=tmp_path / "tree", leak_check_images=1)
    assert sum(len(record["anonymized"]) for record in audit["images"]) == regions["counts"]["matched"] and audit["leak_check"]["passed"]


def test_vitpose_keypoints_feed_apply_keypoints_and_the_body_targets(setup):
    persons = setup["pose_persons"]
    document = run_job(setup, "keypoints", persons)
    image, = persons["images"]
    assert (document["format"], document["dataset"], document["split"], document["score_threshold"]) == ("person-keypoints/v1", DATASET, "train", 0.3)
    assert "not dp2's file" in document["source"] and "flip test off" in document["source"]
    entries = document["images"][image["file_name"]]
    assert [entry["person_id"] for entry in entries] == [a["id"] for a in persons["annotations"]]
    assert document["counts"]["persons"] == 2 and document["counts"]["empty_masks"] == 0
    for entry, annotation in zip(entries, persons["annotations"]):
        points = np.array(entry["keypoints"]).reshape(17, 3)
        assert np.isfinite(points).all() and set(points[:, 2]) <= {0, 1} and len(entry["scores"]) == 17
        assert (points[:, 2] == [int(s >= 0.3) for s in entry["scores"]]).all()
        x0, y0, x1, y1 = detectors.aspect_box(detectors.rle_box(annotation["segmentation"]))  # the crop ViTPose saw (dp2's)
        cell = (x1 - x0) / 48  # one heatmap cell: DARK-UDP refines within it
        assert ((points[:, 0] >= x0 - cell) & (points[:, 0] <= x1 + cell) & (points[:, 1] >= y0 - cell) & (points[:, 1] <= y1 + cell)).all()

    apply_keypoints(persons, document)  # rule anonymize_shard, Cityscapes / BDD100K bodies
    for entry, annotation in zip(entries, persons["annotations"]):
        assert annotation["keypoints"] == [float(v) for v in entry["keypoints"]]
    targets, _ = plan_targets("body", image, persons["annotations"], None, min_size=8)
    assert targets and all(np.array_equal(target.keypoints, np.array(entries[[a["id"] for a in persons["annotations"]].index(target.instance_id)]["keypoints"],
                                                                     dtype=np.float32).reshape(17, 3)) for target in targets)
