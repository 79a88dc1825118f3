"""The paper-exact backends as pure config translations, tested without detectron2 / MMDetection.

What is checked: our paper schedules + the model-zoo files (transcribed in the backend modules)
give the zoo's own values, so that only plumbing keys differ; dataset records, predictions and
weight names convert as detectron2 / MMDetection expect; the modules import without the
frameworks and fail naming the conda env; and a dry run of the study on real dataset roots
trains each dataset with the paper's backend while the twins stay on torchvision.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from anonymization_impact import DATASETS
from anonymization_impact.config import load_config, validate_config
from anonymization_impact.errors import WorkflowInputError
from anonymization_impact.io import write_json_atomic
from anonymization_impact.masks import decode, encode
from anonymization_impact.plan import init_weights_name
from anonymization_impact.training import BACKEND_ENVS, backend
from anonymization_impact.training import detectron2_backend as d2
from anonymization_impact.training import mmdetection as mm
from anonymization_impact.training.common import TrainingDiverged, framework_record, kept_categories
from anonymization_impact.training.job import TrainingJob
from anonymization_impact.walltime import Deadline, TimeLimitReached

from conftest import REPO, run_snakemake

CONFIG = load_config(REPO / "config.yaml")


def job(dataset: str, architecture: str = "mask_rcnn", backbone: str = "resnet50", schedule: dict | None = None, **extra) -> TrainingJob:
    return TrainingJob(
        image_root=Path("/data") / dataset,
        annotation=Path(f"results/annotations/{dataset}/train/instances.json"),
        architecture=architecture,
        backbone=backbone,
        schedule=schedule or CONFIG["training"][dataset],
        seed=1,
        output=Path("out/model_final.pth"),
        checkpoint_dir=Path("out/checkpoints"),
        **extra,
    )


def d2_overrides(dataset, architecture="mask_rcnn", backbone="resnet50", weights="resources/weights/R-50.pkl", **extra):
    return d2.config_overrides(
        job(dataset, architecture, backbone, **extra),
        dataset=dataset,
        num_classes=8 if dataset == "cityscapes" else (1 if architecture == "keypoint_rcnn" else 80),
        train_name="train_set",
        weights_path=weights,
        weights_kind=d2.weights_format(weights),
        output_dir="out/detectron2",
    )


def _same(a, b) -> bool:
    normalize = lambda v: [normalize(x) for x in v] if isinstance(v, (list, tuple)) else v  # noqa: E731
    return normalize(a) == normalize(b)


# --------------------------------------------------------------------------- detectron2


@pytest.mark.parametrize(
    ("dataset", "architecture", "base"),
    [
        ("cityscapes", "mask_rcnn", "Cityscapes/mask_rcnn_R_50_FPN.yaml"),
        ("coco", "keypoint_rcnn", "COCO-Keypoints/keypoint_rcnn_R_50_FPN_3x.yaml"),
        ("coco", "mask_rcnn", "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml"),
    ],
)
def test_paper_schedules_plus_overrides_reproduce_the_model_zoo_files(dataset, architecture, base):
    assert d2.base_config(dataset, architecture) == base
    zoo = d2.MODEL_ZOO[base]
    weights = "resources/weights/mask_rcnn_R_50_FPN_3x_f10217.pkl" if dataset == "cityscapes" else "resources/weights/R-50.pkl"
    merged = d2.apply_overrides(zoo, d2_overrides(dataset, architecture, weights=weights))
    changed = sorted(key for key in zoo if not _same(merged[key], zoo[key]))
    assert set(changed) <= set(d2.PLUMBING_KEYS), f"schedule keys differ from {base}: {set(changed) - set(d2.PLUMBING_KEYS)}"
    assert merged["INPUT.MASK_FORMAT"] == "bitmask" and merged["SEED"] == 1 and merged["DATASETS.TRAIN"] == ("train_set",)


def test_the_translated_solver_is_the_papers():
    cityscapes = d2_overrides("cityscapes", weights="w.pkl")
    assert cityscapes["SOLVER.STEPS"] == (18000,) and cityscapes["SOLVER.MAX_ITER"] == 24000
    assert (cityscapes["SOLVER.IMS_PER_BATCH"], cityscapes["SOLVER.BASE_LR"], cityscapes["SOLVER.WARMUP_ITERS"]) == (8, 0.01, 1000)
    assert cityscapes["INPUT.MIN_SIZE_TRAIN"] == (800, 832, 864, 896, 928, 960, 992, 1024) and cityscapes["INPUT.MIN_SIZE_TEST"] == 1024
    keypoints = d2_overrides("coco", "keypoint_rcnn")
    assert keypoints["SOLVER.STEPS"] == (210000, 250000) and keypoints["SOLVER.MAX_ITER"] == 270000
    assert "MODEL.RPN.POST_NMS_TOPK_TRAIN" not in keypoints  # null: the file's 1500 (keypoints) / 1000
    assert keypoints["MODEL.BACKBONE.FREEZE_AT"] == 2 and keypoints["SOLVER.WARMUP_FACTOR"] == 0.001


def test_deeper_models_change_depth_and_weights_only():
    """The zoo's R101 3x files are the R50 3x files with DEPTH 101 and MSRA's R-101 weights."""
    r50 = d2_overrides("coco", "keypoint_rcnn", weights="resources/weights/R-50.pkl")
    r101 = d2_overrides("coco", "keypoint_rcnn", "resnet101", weights="resources/weights/R-101.pkl")
    assert {key for key in r50 if r50[key] != r101[key]} == {"MODEL.RESNETS.DEPTH", "MODEL.WEIGHTS"}
    assert r101["MODEL.RESNETS.DEPTH"] == 101
    # ResNet-152 starts from torchvision's ResNet (converted): RGB, its mean / std, stride in the 3x3
    r152 = d2_overrides("coco", "keypoint_rcnn", "resnet152", weights="resources/weights/resnet152-394f9c45.pth")
    assert r152["MODEL.RESNETS.DEPTH"] == 152 and r152["INPUT.FORMAT"] == "RGB" and r152["MODEL.RESNETS.STRIDE_IN_1X1"] is False
    assert r152["MODEL.PIXEL_MEAN"] == [123.675, 116.280, 103.530] and r152["MODEL.PIXEL_STD"] == [58.395, 57.120, 57.375]


def test_initial_weights_are_the_zoo_files_the_paper_started_from():
    weights = CONFIG["weights"]
    cityscapes = init_weights_name("detectron2", CONFIG["training"]["cityscapes"]["init"], "resnet50")
    assert weights[cityscapes]["url"] == d2.MODEL_ZOO["Cityscapes/mask_rcnn_R_50_FPN.yaml"]["MODEL.WEIGHTS"].replace("detectron2://", d2.ZOO_URL)
    coco = init_weights_name("detectron2", CONFIG["training"]["coco"]["init"], "resnet50")
    assert weights[coco]["url"] == d2.MODEL_ZOO["COCO-Keypoints/keypoint_rcnn_R_50_FPN_3x.yaml"]["MODEL.WEIGHTS"].replace("detectron2://", d2.ZOO_URL)
    for name in d2.ZOO_WEIGHTS:
        assert weights[name]["url"] == d2.zoo_weights_url(name) and weights[name]["path"].endswith(".pkl")
    assert init_weights_name("detectron2", "coco", "resnet152") == "resnet152_imagenet"  # no zoo file: documented
    assert init_weights_name("mmdetection", "imagenet", "resnet50") == "resnet50_imagenet"  # = mmcv's torchvision://resnet50
    assert init_weights_name("torchvision", "imagenet", "resnet101") == "resnet101_imagenet"
    with pytest.raises(WorkflowInputError, match="only available with the detectron2 backend"):
        init_weights_name("mmdetection", "coco", "resnet50")


def test_the_twins_schedule_translates_to_detectron2s_slim_resnet_fpns():
    """The twins' narrow ResNet-10 (one basic block per stage, 16 channels), 32-channel FPN and
    heads, small RPN and clipped gradients, as detectron2 keys; a checkpoint every
    training.checkpoint_every iterations (the file's 5000 is longer than the run)."""
    twins = CONFIG["training"]["synthetic"]
    mask = d2_overrides("cityscapes", "mask_rcnn", "resnet10", weights="resources/twins/pretraining/resnet10.pth", schedule=twins, checkpoint_every=50)
    assert mask["MODEL.BACKBONE.NAME"] == d2.BASIC_RESNET_FPN_BUILDER and mask["MODEL.RESNETS.DEPTH"] == 10
    assert (mask["MODEL.RESNETS.STEM_OUT_CHANNELS"], mask["MODEL.RESNETS.RES2_OUT_CHANNELS"], mask["MODEL.FPN.OUT_CHANNELS"]) == (16, 16, 32)
    assert "MODEL.RESNETS.WIDTH_PER_GROUP" not in mask  # bottleneck blocks only
    assert (mask["MODEL.ROI_BOX_HEAD.FC_DIM"], mask["MODEL.ROI_MASK_HEAD.CONV_DIM"]) == (128, 32) and "MODEL.ROI_KEYPOINT_HEAD.CONV_DIMS" not in mask
    rpn = ("PRE_NMS_TOPK_TRAIN", "POST_NMS_TOPK_TRAIN", "PRE_NMS_TOPK_TEST", "POST_NMS_TOPK_TEST")
    assert [mask[f"MODEL.RPN.{key}"] for key in rpn] == [300, 150, 300, 150] and mask["MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE"] == 32
    assert mask["SOLVER.CLIP_GRADIENTS.CLIP_TYPE"] == d2.FULL_MODEL_CLIPPING and mask["SOLVER.CLIP_GRADIENTS.CLIP_VALUE"] == 10.0
    assert mask["SOLVER.CLIP_GRADIENTS.ENABLED"] is True and mask["SOLVER.CHECKPOINT_PERIOD"] == 50
    assert (mask["SOLVER.MAX_ITER"], mask["SOLVER.STEPS"], mask["SOLVER.WARMUP_ITERS"], mask["SOLVER.IMS_PER_BATCH"]) == (300, (225,), 50, 2)
    assert (mask["INPUT.MIN_SIZE_TRAIN"], mask["INPUT.MAX_SIZE_TRAIN"], mask["MODEL.BACKBONE.FREEZE_AT"]) == ((256,), 512, 2)
    assert mask["INPUT.FORMAT"] == "RGB" and mask["MODEL.PIXEL_STD"] == d2.TORCHVISION_PIXEL_STD  # the twins' backbones are torchvision files
    keypoints = d2_overrides("coco", "keypoint_rcnn", "resnet34", weights="resnet34.pth", schedule=twins)
    assert keypoints["MODEL.ROI_KEYPOINT_HEAD.CONV_DIMS"] == (32,) * 8 and "MODEL.ROI_MASK_HEAD.CONV_DIM" not in keypoints
    assert keypoints["MODEL.RESNETS.DEPTH"] == 34 and keypoints["MODEL.BACKBONE.NAME"] == d2.BASIC_RESNET_FPN_BUILDER
    # a narrow bottleneck ResNet needs no builder of ours: detectron2's widths, 4 x the inner width out
    bottleneck = d2.model_size_overrides(twins, "resnet50", "mask_rcnn")
    assert "MODEL.BACKBONE.NAME" not in bottleneck
    assert [bottleneck[f"MODEL.RESNETS.{key}"] for key in ("STEM_OUT_CHANNELS", "RES2_OUT_CHANNELS", "WIDTH_PER_GROUP")] == [16, 64, 16]


def test_steps_at_or_after_the_last_iteration_are_left_out():
    """They change no learning rate (schedule.learning_rate) and detectron2 refuses them."""
    twins = CONFIG["training"]["synthetic"]
    assert d2.schedule_overrides({**twins, "iterations": 2}, "resnet10")["SOLVER.STEPS"] == ()  # round(0.75 * 2) = 2
    assert d2.schedule_overrides({**twins, "iterations": 3}, "resnet10")["SOLVER.STEPS"] == (2,)
    assert d2.schedule_overrides({**CONFIG["training"]["coco"], "iterations": 10}, "resnet50")["SOLVER.STEPS"] == (8, 9)


def test_the_paper_schedules_get_no_key_of_the_slim_models():
    for dataset, architecture in (("cityscapes", "mask_rcnn"), ("coco", "keypoint_rcnn"), ("coco", "mask_rcnn"), ("bdd100k", "mask_rcnn")):
        for backbone in ("resnet50", "resnet101", "resnet152"):
            assert d2.model_size_overrides(CONFIG["training"][dataset], backbone, architecture) == {}
        assert "SOLVER.CHECKPOINT_PERIOD" not in d2_overrides(dataset, architecture)  # the file's 5000


def test_the_basic_block_builder_has_torchvisions_layouts():
    pytest.importorskip("torchvision")
    from torchvision.models.resnet import BasicBlock

    from anonymization_impact.training.torchvision_backend import RESNET_LAYOUTS

    basic = {d2.DEPTHS[name]: tuple(layers) for name, (block, layers) in RESNET_LAYOUTS.items() if block is BasicBlock}
    assert basic == d2.BASIC_BLOCK_STAGES


def test_what_detectron2_cannot_express_is_refused_with_the_reason():
    twins = CONFIG["training"]["synthetic"]
    refused = {
        "init scratch": {**twins, "init": "scratch"},
        "horizontal_flip 0.3": {**twins, "horizontal_flip": 0.3},
        "anchor_sizes": {**twins, "anchor_sizes": [32, 64, 128]},
        "init coco with backbone_width": {**twins, "init": "coco"},
    }
    for reason, schedule in refused.items():
        with pytest.raises(WorkflowInputError, match=f"cannot translate this schedule: {reason}.*Use the torchvision backend"):
            d2.schedule_overrides(schedule, "resnet10")
    with pytest.raises(WorkflowInputError, match="backbone resnet26"):
        d2.schedule_overrides(CONFIG["training"]["coco"], "resnet26")


def test_detectron2s_divergence_errors_become_training_diverged(tmp_path):
    from anonymization_impact.training.common import TrainingDiverged

    rpn = FloatingPointError("Predicted boxes or scores contain Inf/NaN. Training has diverged.")
    error = d2.diverged(rpn, 7, tmp_path)
    assert isinstance(error, TrainingDiverged) and "iteration 7: Predicted boxes or scores contain Inf/NaN" in str(error)
    assert "no checkpoint had been written yet" in str(error)
    (tmp_path / "last_checkpoint").write_text("model_0000004.pth")
    loss = FloatingPointError("Loss became infinite or NaN at iteration=12!\nloss_dict = {'loss_cls': nan}")
    error = d2.diverged(loss, 12, tmp_path)
    assert "Loss became infinite or NaN at iteration=12!;" in str(error) and f"(model_0000004.pth) is kept in {tmp_path}" in str(error)


def test_a_backbone_the_model_did_not_take_is_named():
    initial = {"stem.conv1.weight": np.ones((16, 3, 7, 7)), "res2.0.conv1.weight": np.ones((16, 16, 3, 3))}
    model = {"backbone.bottom_up." + name: value.copy() for name, value in initial.items()}
    model["roi_heads.box_head.fc1.weight"] = np.zeros((4, 4))  # not the backbone's: not compared
    assert d2.unloaded_backbone_weights(initial, model) == []
    model["backbone.bottom_up.res2.0.conv1.weight"] = np.zeros((16, 16, 3, 3))
    model["backbone.bottom_up.res2.0.conv2.weight"] = np.zeros((16, 16, 3, 3))
    initial["stem.conv1.weight"] = np.ones((64, 3, 7, 7))
    initial["res5.0.conv1.weight"] = np.ones(1)
    assert d2.unloaded_backbone_weights(initial, model) == [
        "res2.0.conv2.weight: not in the file",
        "res5.0.conv1.weight: not in the model",
        "res2.0.conv1.weight: not loaded",
        "stem.conv1.weight: shape (64, 3, 7, 7) in the file, (16, 3, 7, 7) in the model",
    ]


def test_as_opts_is_a_flat_key_value_list():
    opts = d2.as_opts({"SOLVER.MAX_ITER": 5, "SEED": 0})
    assert opts == ["SEED", 0, "SOLVER.MAX_ITER", 5]


DOCUMENT = {
    "info": {"dataset": "coco"},
    "images": [
        {"id": 2, "file_name": "train2017/b.jpg", "width": 4, "height": 3},
        {"id": 1, "file_name": "train2017/a.jpg", "width": 4, "height": 3},
    ],
    "categories": [{"id": 18, "name": "dog"}, {"id": 1, "name": "person"}, {"id": 3, "name": "car"}],
    "annotations": [
        {"id": 10, "image_id": 1, "category_id": 1, "bbox": [0, 0, 2, 2], "iscrowd": 0, "segmentation": {"size": [3, 4], "counts": "0"}, "keypoints": [1, 1, 2] + [0, 0, 0] * 16},
        {"id": 11, "image_id": 1, "category_id": 18, "bbox": [1, 1, 2, 1], "iscrowd": 0, "segmentation": {"size": [3, 4], "counts": "1"}},
        {"id": 12, "image_id": 1, "category_id": 1, "bbox": [0, 0, 4, 3], "iscrowd": 1, "segmentation": {"size": [3, 4], "counts": [0, 12]}},
        {"id": 13, "image_id": 2, "category_id": 3, "bbox": [0, 0, 1, 1], "iscrowd": 0, "segmentation": {"size": [3, 4], "counts": "2"}},
    ],
}


def test_dataset_dicts_follow_detectron2s_coco_loader():
    records, categories = d2.dataset_dicts(copy.deepcopy(DOCUMENT), "/data/coco", "instance_segmentation")
    assert [c["name"] for c in categories] == ["person", "car", "dog"]  # contiguous in id order
    assert [r["image_id"] for r in records] == [1, 2] and records[0]["file_name"] == "/data/coco/train2017/a.jpg"
    first = records[0]["annotations"]
    assert [(a["category_id"], a["iscrowd"], a["bbox_mode"]) for a in first] == [(0, 0, 1), (2, 0, 1), (0, 1, 1)]
    assert first[0]["segmentation"] == DOCUMENT["annotations"][0]["segmentation"] and "keypoints" not in first[0]
    records, categories = d2.dataset_dicts(copy.deepcopy(DOCUMENT), "/data/coco", "instance_segmentation", exclude_classes=["person"])
    assert [c["name"] for c in categories] == ["car", "dog"]
    assert [a["category_id"] for a in records[0]["annotations"]] == [1] and records[1]["annotations"][0]["category_id"] == 0
    records, categories = d2.dataset_dicts(copy.deepcopy(DOCUMENT), "/data/coco", "keypoints")
    assert [c["name"] for c in categories] == ["person"] and records[1]["annotations"] == []  # kept: detectron2 filters empties
    kept = records[0]["annotations"][0]
    assert kept["keypoints"][:3] == [1.5, 1.5, 2] and kept["keypoints"][3:6] == [0.5, 0.5, 0] and "segmentation" not in kept


def test_predictions_convert_to_our_coco_results():
    mask = np.zeros((2, 3, 4), dtype=bool)
    mask[0, 1, 1:3] = True
    keypoints = np.zeros((2, 17, 3))
    keypoints[0, 0] = [10.5, 20.5, 0.9]
    fields = {"pred_boxes": np.array([[1, 2, 11, 22], [0, 0, 1, 1]], dtype=np.float32), "scores": np.array([0.9, 0.123456]), "pred_classes": np.array([1, 0]), "pred_masks": mask, "pred_keypoints": keypoints}
    results = d2.instances_to_results(7, fields, [1, 3])
    assert results[0]["category_id"] == 3 and results[1]["category_id"] == 1 and results[0]["image_id"] == 7
    assert results[0]["bbox"] == [1.0, 2.0, 10.0, 20.0] and results[1]["score"] == 0.12346
    assert (decode(results[0]["segmentation"]) == mask[0]).all() and isinstance(results[0]["segmentation"]["counts"], str)
    assert results[0]["keypoints"][:3] == [10.0, 20.0, 0.9] and len(results[0]["keypoints"]) == 51
    assert d2.instances_to_results(7, {"pred_boxes": np.zeros((0, 4)), "scores": [], "pred_classes": []}, [1]) == []


def test_torchvision_resnet_names_map_one_to_one_onto_detectron2s():
    torchvision = pytest.importorskip("torchvision")
    keys = list(torchvision.models.resnet50(weights=None).state_dict())
    mapped = [d2.detectron2_key(key) for key in keys]
    kept = [key for key in mapped if key is not None]
    assert len(kept) == len(set(kept)) == len([k for k in keys if not k.startswith("fc.") and "num_batches_tracked" not in k])
    assert d2.detectron2_key("conv1.weight") == "stem.conv1.weight"
    assert d2.detectron2_key("bn1.running_var") == "stem.conv1.norm.running_var"
    assert d2.detectron2_key("layer1.0.downsample.0.weight") == "res2.0.shortcut.weight"
    assert d2.detectron2_key("layer4.2.bn3.bias") == "res5.2.conv3.norm.bias"
    assert d2.detectron2_key("layer3.1.downsample.1.running_mean") == "res4.1.shortcut.norm.running_mean"
    assert all(re.match(r"^(stem|res[2-5]\.\d+)\.", key) for key in kept)


# --------------------------------------------------------------------------- MMDetection


def _flatten(value, prefix=""):
    if isinstance(value, dict):
        items = {}
        for key, sub in value.items():
            items.update(_flatten(sub, f"{prefix}.{key}" if prefix else str(key)))
        return items or {prefix: {}}
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        items = {}
        for index, sub in enumerate(value):
            items.update(_flatten(sub, f"{prefix}[{index}]"))
        return items
    return {prefix: list(value) if isinstance(value, tuple) else value}


def _differences(ours: dict, zoo: dict) -> set[str]:
    a, b = _flatten(ours), _flatten(zoo)
    return {key for key in set(a) | set(b) if not _same(a.get(key, "<absent>"), b.get(key, "<absent>"))}


def _is_plumbing(key: str) -> bool:
    return any(key == p or key.startswith(p + ".") or key.startswith(p + "[") for p in mm.PLUMBING_KEYS)


def mm_config(schedule=None, n_images=7000, **job_extra):
    return mm.mmdet2_config(
        job("bdd100k", schedule=schedule, **job_extra),
        class_names=["pedestrian", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle"],
        n_images=n_images,
        ann_file="results/annotations/bdd100k/train/instances.json",
        img_prefix="/data/bdd100k",
        init_weights="resources/weights/resnet50-0676ba61.pth",
        work_dir="out/mmdetection",
    )


def test_bdd100k_paper_schedule_reproduces_bdd100ks_3x_config():
    ours = mm_config()
    differences = _differences(ours, mm.BDD100K_ZOO[mm.PAPER_CONFIG])
    assert all(_is_plumbing(key) for key in differences), sorted(key for key in differences if not _is_plumbing(key))
    assert ours["runner"]["max_epochs"] == 36 and ours["lr_config"]["step"] == [24, 33]
    assert ours["data"]["samples_per_gpu"] == 16 == mm.BDD100K_ZOO[mm.PAPER_CONFIG]["data"]["samples_per_gpu"] * mm.ZOO_GPUS
    assert ours["train_pipeline"][2]["img_scale"][0] == (1280, 600) and ours["train_pipeline"][2]["multiscale_mode"] == "value"
    assert ours["load_from"] is None and "pretrained" not in ours["model"]
    assert ours["model"]["backbone"]["init_cfg"] == {"type": "Pretrained", "checkpoint": "resources/weights/resnet50-0676ba61.pth"}
    assert ours["data"]["train"]["classes"][0] == "pedestrian" and ours["seed"] == 1 and ours["auto_resume"] is True


def test_a_1x_schedule_reproduces_bdd100ks_1x_config():
    one_x = validate_config({"training": {"bdd100k": {"image_min_size": 720, "image_max_size": 1280, "batch_size": 16, "iterations": 5250, "base_lr": 0.02, "lr_steps": [0.6666667, 0.9166667], "warmup_iterations": 500}}})
    differences = _differences(mm_config(one_x["training"]["bdd100k"]), mm.BDD100K_ZOO["mask_rcnn_r50_fpn_1x_ins_seg_bdd100k.py"])
    assert all(_is_plumbing(key) for key in differences), sorted(key for key in differences if not _is_plumbing(key))


def test_schedule_and_model_values_reach_the_mmdetection_config():
    schedule = {**CONFIG["training"]["bdd100k"], "trainable_backbone_layers": 5, "rpn_post_nms_top_n": 1500, "lr_gamma": 0.5, "horizontal_flip": 0.0}
    ours = mm_config(schedule, backbone="resnet101", amp=True)
    assert ours["model"]["backbone"]["depth"] == 101 and ours["model"]["backbone"]["frozen_stages"] == -1
    assert ours["model"]["train_cfg"]["rpn_proposal"]["max_per_img"] == 1500 and ours["lr_config"]["gamma"] == 0.5
    assert ours["train_pipeline"][3]["flip_ratio"] == 0.0 and ours["fp16"] == {"loss_scale": "dynamic"}
    unexpressible = {**CONFIG["training"]["synthetic"], "anchor_sizes": [16, 32, 64, 128, 256], "init": "scratch"}
    with pytest.raises(WorkflowInputError, match=r"MMDetection backend cannot translate.*anchor_sizes \[16.*init scratch"):
        mm_config(unexpressible)
    with pytest.raises(WorkflowInputError, match="backbone resnet200"):
        mm_config(backbone="resnet200")


def test_the_twins_schedule_is_the_twins_narrow_model_on_mmdetections_iteration_runner():
    """The synthetic schedule (300 iterations of 2 images: 6.25 epochs of 96) in both formats: the
    torchvision backend's narrow ResNet-FPN, slim heads, proposals, clipping and learning rates."""
    twins = CONFIG["training"]["synthetic"]
    ours = mm_config(twins, n_images=96, backbone="resnet10", checkpoint_every=50)
    backbone, roi = ours["model"]["backbone"], ours["model"]["roi_head"]
    assert backbone["type"] == mm.RESNET10_TYPE and backbone["depth"] == 10 and backbone["base_channels"] == 16 and backbone["frozen_stages"] == 1
    assert ours["model"]["neck"]["in_channels"] == [16, 32, 64, 128] and ours["model"]["neck"]["out_channels"] == 32
    assert roi["bbox_head"]["fc_out_channels"] == 128 and roi["mask_head"]["conv_out_channels"] == 32  # torchvision_backend's 4 x / 1 x head_channels
    assert ours["model"]["train_cfg"]["rpn_proposal"]["nms_pre"] == 300 and ours["model"]["train_cfg"]["rpn_proposal"]["max_per_img"] == 150
    assert ours["optimizer_config"]["grad_clip"] == {"max_norm": 10.0, "norm_type": 2}
    assert ours["runner"] == {"type": "IterBasedRunner", "max_iters": 300} and mm.final_checkpoint(ours) == "iter_300.pth"
    assert ours["lr_config"]["step"] == [225] and ours["lr_config"]["by_epoch"] is False and ours["lr_config"]["warmup_iters"] == 50
    assert ours["checkpoint_config"] == {"interval": 50, "by_epoch": False, "max_keep_ckpts": 2}
    assert mm_config(twins, backbone="resnet34")["model"]["backbone"]["type"] == "ResNet"  # mmdet's own for 18 / 34
    three = mm.mmdet3_config(ours)
    assert three["train_cfg"] == {"type": "IterBasedTrainLoop", "max_iters": 300, "val_interval": 301}
    assert three["param_scheduler"][1] == {"type": "MultiStepLR", "begin": 0, "end": 300, "by_epoch": False, "milestones": [225], "gamma": 0.1}
    assert three["optim_wrapper"]["clip_grad"] == {"max_norm": 10.0, "norm_type": 2} and three["train_dataloader"]["sampler"]["type"] == "InfiniteSampler"
    assert three["default_hooks"]["checkpoint"]["by_epoch"] is False and three["default_hooks"]["checkpoint"]["interval"] == 50
    assert three["model"]["backbone"]["base_channels"] == 16 and three["log_processor"] == {"by_epoch": False}
    paper = mm.mmdet3_config(mm_config())
    assert paper["default_hooks"]["checkpoint"]["by_epoch"] is True and paper["train_dataloader"]["sampler"]["type"] == "DefaultSampler"
    assert mm.final_checkpoint(mm_config()) == "epoch_36.pth" and "clip_grad" not in paper["optim_wrapper"]


def _test_scales(cfg2: dict) -> set:
    three = mm.mmdet3_config(cfg2)
    return {
        tuple(cfg2["test_pipeline"][1]["img_scale"]),
        tuple(cfg2["data"]["test"]["pipeline"][1]["img_scale"]),  # what 2.x's inference_detector reads
        tuple(three["test_dataloader"]["dataset"]["pipeline"][1]["scale"]),  # and 3.x's
    }


def test_predictions_run_at_the_schedules_test_size_in_both_versions():
    """Was: the zoo's (1280, 720) whatever the schedule trained at (AP_person 0.74 -> 0.015 on the twin)."""
    assert _test_scales(mm_config()) == {(1280, 720)}  # the paper's: the zoo's own
    assert _test_scales(mm_config(CONFIG["training"]["synthetic"], n_images=96, backbone="resnet10")) == {(512, 256)}
    assert _test_scales(mm_config({**CONFIG["training"]["bdd100k"], "image_min_size": [640, 800], "image_max_size": 1333})) == {(1333, 800)}  # the largest, as detectron2


def test_prediction_proposals_are_translated_in_both_versions():
    schedule = {**CONFIG["training"]["bdd100k"], "rpn_pre_nms_top_n_test": 300, "rpn_post_nms_top_n_test": 150}
    for model in (mm_config(schedule)["model"], mm.mmdet3_config(mm_config(schedule))["model"]):
        assert model["test_cfg"]["rpn"]["nms_pre"] == 300 and model["test_cfg"]["rpn"]["max_per_img"] == 150
    assert mm_config()["model"]["test_cfg"]["rpn"] == mm.BDD100K_ZOO[mm.PAPER_CONFIG]["model"]["test_cfg"]["rpn"]  # the paper's 1000 / 1000


def test_an_mmdetection_job_at_its_deadline_stops_where_its_runner_can_resume():
    """DeadlineWatch, the deadline hook's logic; the hooks in MMDetection 2.x and 3.x:
    tests/test_mmdetection_stacks.py."""
    saved = []
    passed = Deadline(0.0, "the test's")
    watch = mm.DeadlineWatch(passed, "work")
    watch.epoch_starts(0, 3)  # the job's first epoch always runs
    with pytest.raises(TimeLimitReached, match=r"stopped after iteration 5 of 12 .*the test's.*checkpoint in work: the next attempt resumes there"):
        watch.iteration_ended(4, 12, by_epoch=False, save=lambda: saved.append(5))
    assert saved == [5]
    watch.iteration_ended(11, 12, by_epoch=False, save=lambda: saved.append(12))  # the last iteration: the run ends anyway
    watch.iteration_ended(4, 12, by_epoch=True, save=lambda: saved.append("epoch"))  # within the job's first epoch: on
    assert saved == [5]
    watch.epoch_ended()
    with pytest.raises(TimeLimitReached, match=r"stopped in iteration 6 of 12, within an epoch, .*the last epoch's checkpoint in work"):
        watch.iteration_ended(5, 12, by_epoch=True, save=lambda: saved.append("epoch"))
    with pytest.raises(TimeLimitReached, match=r"stopped after epoch 1 of 3 .*would not end before its time limit"):
        watch.epoch_starts(1, 3)
    later = mm.DeadlineWatch(Deadline(time.time() + 3600, "an hour away"), "work")
    later.epoch_starts(0, 3)
    later.epoch_ended()
    later.epoch_starts(1, 3)  # an epoch of ~0 s fits
    later.iteration_ended(4, 12, by_epoch=False, save=lambda: saved.append("never"))
    mm.DeadlineWatch(None, "work").iteration_ended(4, 12, by_epoch=False, save=lambda: saved.append("never"))
    assert saved == [5]


def test_mmdetection_3_runner_gets_test_cfg_and_evaluator_with_its_test_dataloader():
    """mmengine's Runner refuses a test_dataloader without test_cfg and test_evaluator (ValueError)."""
    three = mm.mmdet3_config(mm_config())
    assert three["test_cfg"] == {"type": "TestLoop"} and three["test_evaluator"]["type"] == "CocoMetric"
    assert three["test_evaluator"]["ann_file"] == three["test_dataloader"]["dataset"]["ann_file"]


def test_every_mmdetection_run_stops_on_a_non_finite_loss():
    two = mm_config()
    stop = {"type": mm.STOP_HOOK, "priority": "VERY_HIGH"}  # before 2.x's OptimizerHook (ABOVE_NORMAL), 3.x's CheckpointHook
    deadline = {"type": mm.DEADLINE_HOOK, "priority": "LOWEST"}  # after both
    assert two["custom_hooks"][-2:] == [stop, deadline] and mm.mmdet3_config(two)["custom_hooks"] == [stop, deadline]
    assert mm.finite_loss(7, {"loss": 1.5, "loss_cls": 1.0}, "work") == 1.5
    for value in (float("nan"), float("inf")):
        with pytest.raises(TrainingDiverged, match=r"non-finite loss at iteration 7 .*loss_cls.*last good checkpoint is kept in work"):
            mm.finite_loss(7, {"loss": value, "loss_cls": value}, "work")
    record = {}
    for iteration in range(2):
        mm.iteration_seconds(record, iteration, {"loss": 2.0 - iteration}, "work")
    assert record["last_loss"] == 1.0 and mm.seconds_per_iteration(record) is None  # the two warm-up iterations only
    mm.iteration_seconds(record, 2, {"loss": 0.5}, "work")
    assert mm.seconds_per_iteration(record) == record["ends"][2] - record["ends"][1] >= 0
    with pytest.raises(TrainingDiverged):
        mm.iteration_seconds(record, 3, {"loss": float("nan")}, "work")


def test_epochs_count_whole_passes_over_the_trained_images():
    assert mm.epochs(CONFIG["training"]["bdd100k"], 7000) == (36, [24, 33])
    assert mm.epochs(CONFIG["training"]["bdd100k"], 6950)[0] == 36  # a few images without instances
    with pytest.raises(WorkflowInputError, match="whole epochs"):
        mm.epochs({"iterations": 10, "batch_size": 2, "lr_steps": [0.5]}, 8)
    assert mm.whole_epochs(CONFIG["training"]["bdd100k"], 6950) and not mm.whole_epochs(CONFIG["training"]["synthetic"], 96)
    categories = kept_categories(DOCUMENT["categories"], "instance_segmentation", ["car"])
    assert mm.trained_images(DOCUMENT, categories) == 1


def test_mmdetection_3_config_is_the_same_run():
    three = mm.mmdet3_config(mm_config())
    assert three["train_cfg"]["max_epochs"] == 36 and three["param_scheduler"][1]["milestones"] == [24, 33]
    assert three["param_scheduler"][0] == {"type": "LinearLR", "start_factor": 0.001, "by_epoch": False, "begin": 0, "end": 500}
    assert three["train_pipeline"][2]["type"] == "RandomChoiceResize" and three["train_pipeline"][2]["scales"][-1] == (1280, 720)
    assert three["model"]["data_preprocessor"]["bgr_to_rgb"] is True and "pretrained" not in three["model"]
    assert three["train_dataloader"]["batch_size"] == 16 and three["randomness"]["seed"] == 1 and three["resume"] is True
    assert three["train_dataloader"]["dataset"]["metainfo"]["classes"][0] == "pedestrian"
    assert three["optim_wrapper"]["optimizer"]["lr"] == 0.02


def test_mmdetection_2_output_converts_to_our_coco_results():
    masks = [np.zeros((3, 4), dtype=bool), np.ones((3, 4), dtype=bool)]
    bbox_results = [np.array([[0, 0, 2, 2, 0.5]]), np.zeros((0, 5)), np.array([[1, 1, 3, 2, 0.25]])]
    results = mm.mmdet2_results(3, bbox_results, [[masks[0]], [], [masks[1]]], [5, 6, 7])
    assert [r["category_id"] for r in results] == [5, 7] and results[1]["bbox"] == [1.0, 1.0, 2.0, 1.0]
    assert decode(results[1]["segmentation"]).all() and results[0]["score"] == 0.5
    with pytest.raises(ValueError, match="masks"):
        mm.mmdet2_results(3, bbox_results, [[], [], [masks[1]]], [5, 6, 7])


# --------------------------------------------------------------------------- without the frameworks


def test_backends_import_without_their_frameworks_and_name_the_env(tmp_path):
    for framework in ("detectron2", "mmdet"):
        if importlib.util.find_spec(framework) is not None:
            pytest.skip(f"{framework} is installed here")
    assert backend("detectron2") is d2 and backend("mmdetection") is mm
    assert "detectron2" not in sys.modules and "mmdet" not in sys.modules
    annotation = tmp_path / "instances.json"
    write_json_atomic(annotation, DOCUMENT)
    run = job("coco", "keypoint_rcnn")
    for name, module in (("detectron2", d2), ("mmdetection", mm)):
        envs = BACKEND_ENVS[name]
        with pytest.raises(WorkflowInputError) as error:
            module.train(run)
        assert envs["paper"] in str(error.value) and envs["current"] in str(error.value)
        with pytest.raises(WorkflowInputError, match=re.escape(envs["paper"])):
            module.predict(tmp_path / "model.pth", DOCUMENT, tmp_path)
    with pytest.raises(WorkflowInputError, match="unknown training backend"):
        backend("caffe")


def test_torchvision_training_data_leaves_excluded_classes_out(tmp_path):
    from anonymization_impact.training.data import DetectionSamples

    annotation = tmp_path / "instances.json"
    write_json_atomic(annotation, DOCUMENT)
    samples = DetectionSamples(tmp_path, annotation, "instance_segmentation", exclude_classes=["person"])
    assert samples.category_ids == [3, 18]
    assert [image["id"] for image in samples.images] == [1, 2]
    assert [i["category_id"] for i in samples.instances[1]] == [18]
    assert DetectionSamples(tmp_path, annotation, "instance_segmentation").category_ids == [1, 3, 18]
    with pytest.raises(WorkflowInputError, match=r"exclude_classes \['pedestrian'\] are not classes"):
        DetectionSamples(tmp_path, annotation, "instance_segmentation", exclude_classes=["pedestrian"])


def test_torchvision_builds_the_paper_schedules_list_of_sizes_and_null_proposals():
    torch = pytest.importorskip("torch")
    from anonymization_impact.training.torchvision_backend import build_model

    schedule = {**CONFIG["training"]["synthetic"], "image_min_size": [48, 64], "image_max_size": 96, "rpn_post_nms_top_n": None, "init": "scratch"}
    model = build_model("mask_rcnn", "resnet10", 2, schedule, None)
    assert model.transform.min_size == (48, 64) or list(model.transform.min_size) == [48, 64]
    assert model.rpn._post_nms_top_n["training"] == 2000
    torch.manual_seed(0)
    target = {"boxes": torch.tensor([[4.0, 4.0, 30.0, 40.0]]), "labels": torch.tensor([1]), "masks": torch.zeros((1, 60, 50), dtype=torch.uint8)}
    target["masks"][0, 4:40, 4:30] = 1
    losses = model([torch.rand(3, 60, 50)], [target])
    assert all(torch.isfinite(value) for value in losses.values())


def test_excluded_classes_are_part_of_the_run_description():
    plain, without = job("cityscapes"), job("cityscapes", exclude_classes=("person",))
    assert "exclude_classes" not in plain.description()  # the runs before this option keep their fingerprint
    assert without.description()["exclude_classes"] == ["person"] and plain.fingerprint() != without.fingerprint()


# --------------------------------------------------------------------------- the DAG


TRAIN_MESSAGE = re.compile(r"^Job \d+: train_model (\w+)/([\w-]+)/(\w+)/seed(\d+) with backend (\w+) -> ", re.MULTILINE)


def _trainings(result) -> dict[tuple[str, str, str, int], str]:
    return {(d, v, m, int(s)): b for d, v, m, s, b in TRAIN_MESSAGE.findall(result.stdout + result.stderr)}


def _expected_runs(config) -> set[tuple[str, str, str, int]]:
    """Every run of the experiments and Fig. 8; realistic ones on a twin only with a synthetic generator."""
    def runnable(dataset, variant):
        realistic = variant != "original" and config["variants"][variant]["method"] == "realistic"
        return not (realistic and config["datasets"][dataset]["synthetic"]) or config["realistic"]["synthetic_generator"] is not None

    runs = {(e["dataset"], v, e["model"]) for e in config["experiments"].values() for v in e["variants"] if runnable(e["dataset"], v)}
    for panel in config["fig8"]["panels"].values():
        synthetic = config["datasets"][panel["dataset"]]["synthetic"]
        variant = panel["synthetic_variant"] if synthetic and panel["synthetic_variant"] else panel["variant"]
        runs |= {(panel["dataset"], v, m) for m in panel["models"] for v in ("original", variant) if runnable(panel["dataset"], v)}
    return {(d, v, m, s) for d, v, m in runs for s in config["seeds"]}


def test_dry_run_of_the_paper_config_trains_each_dataset_with_the_papers_backend(twins, tmp_path):
    overlay = {"datasets": {}}
    for dataset in DATASETS:
        root = tmp_path / "raw" / dataset
        shutil.copytree(twins[dataset]["root"], root)
        overlay["datasets"][dataset] = {"synthetic": False, "root": str(root)}
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "overlay.yaml").write_text(yaml.safe_dump(overlay))
    result = run_snakemake(workdir, "all", "-n", "--configfile", str(REPO / "config.yaml"), str(workdir / "overlay.yaml"))
    assert result.returncode == 0, result.stderr[-3000:]
    trainings = _trainings(result)
    config = load_config(REPO / "config.yaml")
    config["datasets"] = validate_config(overlay)["datasets"]
    assert set(trainings) == _expected_runs(config)
    paper = {"coco": "detectron2", "cityscapes": "detectron2", "bdd100k": "mmdetection"}
    assert {(dataset, b) for (dataset, *_), b in trainings.items()} == set(paper.items())
    assert ("cityscapes", "original", "mask_rcnn_r50_fpn_no_person", 0) in trainings
    assert ("coco", "face-blur", "mask_rcnn_r50_fpn", 2) in trainings  # Appendix A.2
    assert ("cityscapes", "original", "mask_rcnn_r152_fpn", 1) in trainings  # Fig. 8
    assert ("cityscapes", "body-realistic", "mask_rcnn_r152_fpn", 1) in trainings  # Fig. 8, realistic
    assert ("coco", "face-realistic-hrfaces", "keypoint_rcnn_r50_fpn", 2) in trainings  # Table 3
    output = result.stdout + result.stderr
    for weights in ("R-50.pkl", "R-101.pkl", "mask_rcnn_R_50_FPN_3x_f10217.pkl", "mask_rcnn_R_101_FPN_3x_a3ec72.pkl", "resnet152-394f9c45.pth", "resnet50-0676ba61.pth"):
        assert f"resources/weights/{weights}" in output, weights


def test_dry_run_of_the_demo_trains_the_twins_with_torchvision(tmp_path):
    result = run_snakemake(tmp_path, "all", "-n", "--configfile", str(REPO / "config.yaml"))
    assert result.returncode == 0, result.stderr[-3000:]
    trainings = _trainings(result)
    assert set(trainings) == _expected_runs(CONFIG) and set(trainings.values()) == {"torchvision"}
    assert ("cityscapes", "body-maskout", "mask_rcnn_r50_fpn_no_person", 2) in trainings


def test_mmdetection_weights_round_trip_and_bgr_images(tmp_path):
    """The framework-free parts shared by the MMDetection 2.x / 3.x train and predict."""
    import torch
    from PIL import Image

    mm.save_weights(tmp_path / "w.pth", {"layer": torch.ones(2)}, {"anonymization_impact": {"api": 2, "category_ids": [7]}})
    assert mm.weights_meta(tmp_path / "w.pth", api=2)["category_ids"] == [7]
    with pytest.raises(WorkflowInputError, match="not written by this workflow's MMDetection 3.x backend"):
        mm.weights_meta(tmp_path / "w.pth", api=3)
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[..., 0] = 200  # red
    Image.fromarray(rgb).save(tmp_path / "a.png")
    [(image, pixels)] = list(mm.images_bgr({"images": [{"id": 1, "file_name": "a.png"}]}, tmp_path))
    assert image["id"] == 1 and pixels.shape == (4, 6, 3) and pixels[0, 0].tolist() == [0, 0, 200]
    assert pixels.flags["C_CONTIGUOUS"]


class HistoryBuffer:  # stands for mmengine's, which its checkpoints pickle (message_hub)
    def __init__(self, values):
        self.values = values


def test_mmdetection_checkpoints_load_whatever_torchs_weights_only_default(tmp_path):
    """torch >= 2.6 loads with weights_only=True unless told otherwise and refuses mmengine's
    checkpoints (UnpicklingError ... HistoryBuffer); torch 1.12 (the paper's) has no such argument."""
    import torch

    path = tmp_path / "iter_4.pth"
    torch.save({"state_dict": {"w": torch.ones(1)}, "message_hub": HistoryBuffer([1.0]), "meta": {"anonymization_impact": {"api": 3}}}, path)
    assert mm.load_checkpoint(path)["message_hub"].values == [1.0] and mm.weights_meta(path, api=3) == {"api": 3}
    if tuple(int(part) for part in torch.__version__.split(".")[:2]) >= (2, 6):
        with pytest.raises(Exception, match="HistoryBuffer"):
            torch.load(path)  # the defect's own error: the default refuses it


def test_initial_weights_that_do_not_fit_the_mmdetection_backbone_are_named():
    import torch
    from torch import nn

    from anonymization_impact.training.torchvision_backend import resnet

    narrow = {k: v for k, v in resnet("resnet10", 16, nn.BatchNorm2d).state_dict().items() if not k.startswith("fc.")}
    assert mm.backbone_misfits({**narrow, "fc.weight": torch.zeros(1)}, narrow) == []  # torchvision's names are mmdet's ResNet's
    frozen = {k: v for k, v in narrow.items() if not k.endswith("num_batches_tracked")}  # FrozenBatchNorm2d keeps no counter
    assert mm.backbone_misfits(frozen, narrow) == []
    wide = {k: v for k, v in resnet("resnet10", 32, nn.BatchNorm2d).state_dict().items() if not k.startswith("fc.")}
    assert "conv1.weight (32, 3, 7, 7) for (16, 3, 7, 7)" in mm.backbone_misfits(wide, narrow)
    deeper = {k: v for k, v in resnet("resnet18", 16, nn.BatchNorm2d).state_dict().items() if not k.startswith("fc.")}
    assert "layer1.1.conv1.weight unexpected" in mm.backbone_misfits(deeper, narrow)


def test_framework_record_gives_no_commit_for_a_pypi_stand_in(tmp_path, monkeypatch):
    """The mmdetection twin's mmdet is PyPI's 2.28.2 standing in for b95583270c: not that commit."""
    marker = {"plan": {"substitutions": [
        "pyyaml @ github.com/yaml/pyyaml@b95583270c -> PyPI pyyaml==6.0: not mirrored",
        "numpy @ github.com/numpy/numpy@0123456789abcdef -> the wheelhouse's prebuilt numpy.whl",
    ]}}
    (tmp_path / ".env-twin.json").write_text(json.dumps(marker))
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    record = framework_record("pyyaml", "numpy")
    assert record["pyyaml"]["commit"] is None and "PyPI pyyaml==6.0" in record["pyyaml"]["source"]
    assert record["numpy"]["commit"] == "0123456789abcdef"
