"""The torchvision backend: determinism, kill-and-resume, and its errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import pytest
import torch
import torchvision

from anonymization_impact.annotations import normalize_split
from anonymization_impact.config import validate_config
from anonymization_impact.errors import DatasetError, WorkflowInputError
from anonymization_impact.io import write_json_atomic
from anonymization_impact.training import torchvision_backend as backend
from anonymization_impact.training.job import TrainingJob
from anonymization_impact.training.schedule import learning_rate
from anonymization_impact.weights import verify_weights

from conftest import REPO

TINY = {
    "image_min_size": 64, "image_max_size": 128, "batch_size": 2, "iterations": 6, "base_lr": 0.005,
    "lr_steps": [0.5], "warmup_iterations": 2, "fpn_channels": 16, "head_channels": 16,
    "rpn_pre_nms_top_n": 50, "rpn_post_nms_top_n": 25, "box_batch_size_per_image": 16,
    "trainable_backbone_layers": 5, "init": "scratch",
    "backbone_width": 16,  # narrow: keeps each run's weights and checkpoint at a few MB on disk
}


def tiny_schedule(**overrides) -> dict:
    return validate_config({"training": {"synthetic": {**TINY, **overrides}}})["training"]["synthetic"]


@pytest.fixture(scope="module")
def annotations(twins, tmp_path_factory):
    base = tmp_path_factory.mktemp("annotations")
    paths = {}
    for dataset in ("cityscapes", "coco"):
        path = base / f"{dataset}.json"
        write_json_atomic(path, normalize_split(dataset, twins[dataset]["root"], "train")["instances"])
        paths[dataset] = path
    return paths


def make_job(twins, annotations, tmp_path, dataset="cityscapes", name="run", **overrides) -> TrainingJob:
    settings = dict(
        image_root=twins[dataset]["root"], annotation=annotations[dataset],
        architecture="keypoint_rcnn" if dataset == "coco" else "mask_rcnn", backbone="resnet18",
        schedule=tiny_schedule(), seed=0, output=tmp_path / name / "model.pth",
        checkpoint_dir=tmp_path / name / "checkpoints", checkpoint_every=2, device="cpu", threads=1,
    )
    settings.update(overrides)
    return TrainingJob(**settings)


def weights(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)["model"]


def same_weights(a: Path, b: Path) -> bool:
    first, second = weights(a), weights(b)
    return first.keys() == second.keys() and all(torch.equal(first[key], second[key]) for key in first)


def test_learning_rate_warms_up_then_steps():
    schedule = tiny_schedule(iterations=100, warmup_iterations=10, lr_steps=[0.5, 0.8], base_lr=0.1, warmup_factor=0.001)
    assert learning_rate(0, schedule) == pytest.approx(0.0001)
    assert learning_rate(10, schedule) == pytest.approx(0.1)
    assert learning_rate(50, schedule) == pytest.approx(0.01)
    assert learning_rate(80, schedule) == pytest.approx(0.001)


@pytest.mark.parametrize("backbone", ["resnet18", "resnet50"])
def test_backbones_at_full_width_are_torchvisions_resnets(backbone):
    """Full width builds torchvision's own ResNet (its ImageNet weights load by name)."""
    torch.manual_seed(0)
    ours = backend.resnet(backbone, 64, torch.nn.BatchNorm2d)
    reference = getattr(torchvision.models, backbone)(weights=None)
    assert type(ours) is torchvision.models.ResNet
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in reference.state_dict().items()}


def test_narrow_backbones_keep_the_stage_layout_and_train():
    narrow = backend.resnet("resnet34", 16, torch.nn.BatchNorm2d)
    assert [len(getattr(narrow, f"layer{i}")) for i in range(1, 5)] == [3, 4, 6, 3]
    assert [getattr(narrow, f"layer{i}")[-1].conv2.out_channels for i in range(1, 5)] == [16, 32, 64, 128]
    shallow = backend.resnet("resnet10", 16, torch.nn.BatchNorm2d)
    assert [len(getattr(shallow, f"layer{i}")) for i in range(1, 5)] == [1, 1, 1, 1]
    model = backend.build_model("mask_rcnn", "resnet10", 3, tiny_schedule(backbone_width=16), None)
    model.train()
    images = [torch.rand(3, 64, 96)]
    targets = [{"boxes": torch.tensor([[10.0, 10.0, 40.0, 50.0]]), "labels": torch.tensor([1]), "masks": torch.zeros(1, 64, 96, dtype=torch.uint8)}]
    losses = model(images, targets)
    assert all(torch.isfinite(value) for value in losses.values())


def test_a_trained_detectors_backbone_initializes_another_and_a_misfit_is_named(tmp_path):
    """The twins' stand-in for ImageNet: the backbone of a pre-trained detector, without fc."""
    schedule = tiny_schedule(backbone_width=16)
    donor = backend.build_model("mask_rcnn", "resnet10", 5, schedule, None)
    torch.save({"model": donor.state_dict()}, tmp_path / "detector.pth")
    state = backend.backbone_state(tmp_path / "detector.pth")
    assert not any(key.startswith("fc.") for key in state)
    torch.save(state, tmp_path / "backbone.pth")
    pretrained = tiny_schedule(backbone_width=16, init="imagenet", trainable_backbone_layers=3)
    model = backend.build_model("mask_rcnn", "resnet10", 3, pretrained, tmp_path / "backbone.pth")
    loaded = model.backbone.body.state_dict()  # FrozenBatchNorm2d keeps no num_batches_tracked
    assert loaded and all(torch.equal(value, state[key]) for key, value in loaded.items())
    with pytest.raises(WorkflowInputError, match="do not fit a resnet18 of width 16"):
        backend.build_model("mask_rcnn", "resnet18", 3, pretrained, tmp_path / "backbone.pth")
    with pytest.raises(WorkflowInputError, match="do not fit a resnet10 of width 32"):
        backend.build_model("mask_rcnn", "resnet10", 3, tiny_schedule(backbone_width=32, init="imagenet"), tmp_path / "backbone.pth")


@pytest.mark.parametrize("dataset", ["cityscapes", "coco"])
def test_same_seed_gives_bit_identical_weights(twins, annotations, tmp_path, dataset):
    first = make_job(twins, annotations, tmp_path, dataset, "a")
    second = make_job(twins, annotations, tmp_path, dataset, "b")
    other_seed = make_job(twins, annotations, tmp_path, dataset, "c", seed=1)
    for job in (first, second, other_seed):
        backend.train(job)
    assert same_weights(first.output, second.output)
    assert first.output.read_bytes() == second.output.read_bytes()
    assert not same_weights(first.output, other_seed.output)


def test_gradient_clipping_changes_the_steps_and_stays_deterministic(twins, annotations, tmp_path):
    plain = make_job(twins, annotations, tmp_path, "cityscapes", "plain")
    clipped = [make_job(twins, annotations, tmp_path, "cityscapes", name, schedule=tiny_schedule(clip_gradient_norm=0.01)) for name in ("c1", "c2")]
    for job in (plain, *clipped):
        backend.train(job)
    assert clipped[0].output.read_bytes() == clipped[1].output.read_bytes()
    assert not same_weights(plain.output, clipped[0].output)


def _train_in_subprocess(job: TrainingJob) -> subprocess.Popen:
    arguments = {key: str(value) if isinstance(value, Path) else value for key, value in job.__dict__.items()}
    code = (
        "import json, sys; from pathlib import Path; sys.path.insert(0, 'scripts');"
        "from anonymization_impact.training.job import TrainingJob;"
        "from anonymization_impact.training import torchvision_backend as b;"
        "a = json.loads(sys.argv[1]);"
        "[a.__setitem__(k, Path(a[k])) for k in ('image_root', 'annotation', 'output', 'checkpoint_dir')];"
        "b.train(TrainingJob(**a))"
    )
    return subprocess.Popen([sys.executable, "-c", code, json.dumps(arguments)], cwd=REPO, stderr=subprocess.PIPE)


def test_a_killed_run_resumes_to_the_same_weights(twins, annotations, tmp_path):
    schedule = tiny_schedule(iterations=10)
    uninterrupted = make_job(twins, annotations, tmp_path, name="whole", schedule=schedule)
    backend.train(uninterrupted)
    killed = make_job(twins, annotations, tmp_path, name="killed", schedule=schedule)
    process = _train_in_subprocess(killed)
    checkpoint = backend._checkpoint_path(killed)
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        if checkpoint.exists() and torch.load(checkpoint, weights_only=False)["iteration"] >= 4:
            break
        time.sleep(0.05)
    assert process.poll() is None, f"the run ended before it could be killed: {process.stderr.read().decode()[-2000:]}"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not killed.output.exists()
    resumed_from = torch.load(checkpoint, weights_only=False)["iteration"]
    assert 0 < resumed_from < 10
    summary = backend.train(killed)
    assert summary["resumed_at"] == resumed_from
    assert same_weights(uninterrupted.output, killed.output)
    assert summary["frameworks"]["torchvision"]["version"] == metadata.version("torchvision")  # training.json records what trained it


def test_a_checkpoint_of_another_config_is_never_resumed(twins, annotations, tmp_path):
    first = make_job(twins, annotations, tmp_path, name="run", schedule=tiny_schedule(iterations=4))
    backend.train(first)  # leaves a checkpoint at iteration 2
    changed = make_job(twins, annotations, tmp_path, name="run", schedule=tiny_schedule(iterations=4, base_lr=0.001))
    assert backend.train(changed)["resumed_at"] == 0  # its own checkpoint directory: starts over
    # A checkpoint of the first configuration planted where the second one looks is refused.
    planted = backend._checkpoint_path(changed)
    planted.write_bytes(backend._checkpoint_path(first).read_bytes())
    with pytest.raises(WorkflowInputError, match="another configuration.*refusing to resume"):
        backend.train(changed)


def test_a_non_finite_loss_stops_with_a_clear_error(twins, annotations, tmp_path):
    job = make_job(twins, annotations, tmp_path, schedule=tiny_schedule(base_lr=1e12, warmup_iterations=0, iterations=20))
    with pytest.raises(backend.TrainingDiverged, match="non-finite loss at iteration"):
        backend.train(job)
    assert not job.output.exists()


def test_an_empty_training_set_is_an_error(twins, annotations, tmp_path):
    document = json.loads(annotations["cityscapes"].read_text())
    document["annotations"] = [a for a in document["annotations"] if a["iscrowd"]]
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps(document))
    with pytest.raises(DatasetError, match="empty training set"):
        backend.train(make_job(twins, {"cityscapes": empty}, tmp_path))


def test_an_annotation_image_mismatch_names_the_image(twins, annotations, tmp_path):
    document = json.loads(annotations["cityscapes"].read_text())
    document["images"][0]["width"] += 1
    document["images"] = document["images"][:1]
    mismatched = tmp_path / "mismatched.json"
    mismatched.write_text(json.dumps(document))
    with pytest.raises(DatasetError, match=document["images"][0]["file_name"].split("/")[-1]):
        backend.train(make_job(twins, {"cityscapes": mismatched}, tmp_path))


def test_missing_or_wrong_initial_weights_name_the_download_rule(tmp_path):
    entry = {"path": str(tmp_path / "resnet18.pth"), "sha256": "f37072fd", "url": "https://example.invalid/resnet18.pth"}
    with pytest.raises(WorkflowInputError, match="download_weights"):
        verify_weights("resnet18_imagenet", entry)
    Path(entry["path"]).write_bytes(b"not the weights")
    with pytest.raises(WorkflowInputError, match="corrupt or another release"):
        verify_weights("resnet18_imagenet", entry)


def test_predictions_are_coco_results_on_every_validation_image(twins, annotations, tmp_path):
    job = make_job(twins, annotations, tmp_path, "coco")
    backend.train(job)
    validation = normalize_split("coco", twins["coco"]["root"], "val")["instances"]
    predictions = backend.predict(job.output, validation, twins["coco"]["root"], device="cpu", threads=1)
    assert predictions
    image_ids = {image["id"] for image in validation["images"]}
    for prediction in predictions:
        assert prediction["image_id"] in image_ids and prediction["category_id"] == 1
        assert len(prediction["keypoints"]) == 51 and 0 <= prediction["score"] <= 1


def test_pretraining_job_is_the_twins_schedule_from_scratch_with_every_stage_trained():
    from anonymization_impact.plan import pretraining_job_settings

    config = validate_config({"synthetic": {"pretraining": {"seed": 7, "images": 10, "iterations": 40, "base_lr": 0.05}}})
    job = pretraining_job_settings(config, "resnet10")
    schedule = job["schedule"]
    assert (schedule["init"], schedule["trainable_backbone_layers"], schedule["iterations"], schedule["base_lr"]) == ("scratch", 5, 40, 0.05)
    kept = {k: v for k, v in config["training"]["synthetic"].items() if k not in ("init", "trainable_backbone_layers", "iterations", "base_lr")}
    assert kept.items() <= schedule.items()
    assert (job["architecture"], job["backbone"], job["seed"], job["init_weights"]) == ("mask_rcnn", "resnet10", 7, None)
