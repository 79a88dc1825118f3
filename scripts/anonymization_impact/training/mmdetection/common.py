"""What the MMDetection backend's 2.x and 3.x halves share, all of it pure or framework-free and
tested without MMDetection (tests/test_backends.py):

* :data:`BDD100K_ZOO` - the merged config (``_base_`` files resolved) of BDD100K's
  ``ins_seg/configs/ins_seg/mask_rcnn_r50_fpn_{1x,3x}_ins_seg_bdd100k.py`` at
  :data:`BDD100K_MODELS_COMMIT`, transcribed as Python dicts (MMDetection 2.x config format).
* :func:`mmdet2_config` - our job as a full MMDetection 2.x config: the zoo config with our
  schedule's values written into it (the paper's BDD100K schedule reproduces the 3x file) and
  the plumbing of :data:`PLUMBING_KEYS` (data paths, classes, weights file, work dir, seed).
* :func:`mmdet3_config` - the same run in MMDetection 3.x's format (envs/mmdetection-current.yaml).
* :func:`epochs` - our iteration schedule as the epochs MMDetection's runner counts; a schedule
  that is no whole number of epochs (the twins') runs MMDetection's iteration-based runner.
* :func:`mmdet2_results` - MMDetection 2.x's per-class output -> our COCO results.
* :func:`prepare`, :func:`save_weights`, :func:`weights_meta`, :func:`images_bgr` - the job's
  config and classes, the weights file and its metadata, the images as mmcv reads them.
* :func:`finite_loss` (:func:`iteration_seconds`, :func:`seconds_per_iteration`), :func:`backbone_misfits`, :func:`resnet10_class`, :func:`load_checkpoint` - the
  divergence check of the stop hook, the initial weights' fit, MMDetection's ResNet with
  depth 10 (the twins' ResNet-50 stand-in), torch.load of a framework checkpoint.
* :class:`DeadlineWatch` - what the deadline hook does under a scheduler's time limit.

The backend itself (``train`` / ``predict`` and the choice of 2.x or 3.x) is this package's
``__init__``; it imports ``v2`` or ``v3``, which import this module, never the other way.
"""

from __future__ import annotations

import copy
import inspect
import io
import math
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ...errors import WorkflowInputError
from ...io import decode_image, read_json, write_bytes_atomic
from ...walltime import Deadline, TimeLimitReached
from ..common import TrainingDiverged, kept_categories
from ..job import TrainingJob
from ..predictions import coco_results

# The paper ran MMDetection at commit b95583270c (its version could not be read here: the
# repository snapshot is over this project's size limit). BDD100K's configs are MMDetection 2.x
# configs, so the paper's env pins 2.x's mmcv-full and this backend speaks 2.x to it.
MMDETECTION_COMMIT = "b95583270c"
BDD100K_MODELS_COMMIT = "0935a8a3eb4c7442efdce2a8ce4b93fbe585be15"  # github.com/SysCV/bdd100k-models

# ---- ins_seg/configs/_base_/models/mask_rcnn_r50_fpn.py
_BDD100K_MASK_RCNN_R50_FPN = {
    "type": "MaskRCNN",
    "pretrained": "torchvision://resnet50",
    "backbone": {
        "type": "ResNet",
        "depth": 50,
        "num_stages": 4,
        "out_indices": (0, 1, 2, 3),
        "frozen_stages": 1,
        "norm_cfg": {"type": "BN", "requires_grad": True},
        "norm_eval": True,
        "style": "pytorch",
    },
    "neck": {"type": "FPN", "in_channels": [256, 512, 1024, 2048], "out_channels": 256, "num_outs": 5},
    "rpn_head": {
        "type": "RPNHead",
        "in_channels": 256,
        "feat_channels": 256,
        "anchor_generator": {"type": "AnchorGenerator", "scales": [8], "ratios": [0.5, 1.0, 2.0], "strides": [4, 8, 16, 32, 64]},
        "bbox_coder": {"type": "DeltaXYWHBBoxCoder", "target_means": [0.0, 0.0, 0.0, 0.0], "target_stds": [1.0, 1.0, 1.0, 1.0]},
        "loss_cls": {"type": "CrossEntropyLoss", "use_sigmoid": True, "loss_weight": 1.0},
        "loss_bbox": {"type": "L1Loss", "loss_weight": 1.0},
    },
    "roi_head": {
        "type": "StandardRoIHead",
        "bbox_roi_extractor": {
            "type": "SingleRoIExtractor",
            "roi_layer": {"type": "RoIAlign", "output_size": 7, "sampling_ratio": 0},
            "out_channels": 256,
            "featmap_strides": [4, 8, 16, 32],
        },
        "bbox_head": {
            "type": "Shared2FCBBoxHead",
            "in_channels": 256,
            "fc_out_channels": 1024,
            "roi_feat_size": 7,
            "num_classes": 8,
            "bbox_coder": {"type": "DeltaXYWHBBoxCoder", "target_means": [0.0, 0.0, 0.0, 0.0], "target_stds": [0.1, 0.1, 0.2, 0.2]},
            "reg_class_agnostic": False,
            "loss_cls": {"type": "CrossEntropyLoss", "use_sigmoid": False, "loss_weight": 1.0},
            "loss_bbox": {"type": "L1Loss", "loss_weight": 1.0},
        },
        "mask_roi_extractor": {
            "type": "SingleRoIExtractor",
            "roi_layer": {"type": "RoIAlign", "output_size": 14, "sampling_ratio": 0},
            "out_channels": 256,
            "featmap_strides": [4, 8, 16, 32],
        },
        "mask_head": {
            "type": "FCNMaskHead",
            "num_convs": 4,
            "in_channels": 256,
            "conv_out_channels": 256,
            "num_classes": 8,
            "loss_mask": {"type": "CrossEntropyLoss", "use_mask": True, "loss_weight": 1.0},
        },
    },
    "train_cfg": {
        "rpn": {
            "assigner": {"type": "MaxIoUAssigner", "pos_iou_thr": 0.7, "neg_iou_thr": 0.3, "min_pos_iou": 0.3, "match_low_quality": True, "ignore_iof_thr": -1},
            "sampler": {"type": "RandomSampler", "num": 256, "pos_fraction": 0.5, "neg_pos_ub": -1, "add_gt_as_proposals": False},
            "allowed_border": -1,
            "pos_weight": -1,
            "debug": False,
        },
        "rpn_proposal": {"nms_pre": 2000, "max_per_img": 1000, "nms": {"type": "nms", "iou_threshold": 0.7}, "min_bbox_size": 0},
        "rcnn": {
            "assigner": {"type": "MaxIoUAssigner", "pos_iou_thr": 0.5, "neg_iou_thr": 0.5, "min_pos_iou": 0.5, "match_low_quality": True, "ignore_iof_thr": -1},
            "sampler": {"type": "RandomSampler", "num": 512, "pos_fraction": 0.25, "neg_pos_ub": -1, "add_gt_as_proposals": True},
            "mask_size": 28,
            "pos_weight": -1,
            "debug": False,
        },
    },
    "test_cfg": {
        "rpn": {"nms_pre": 1000, "max_per_img": 1000, "nms": {"type": "nms", "iou_threshold": 0.7}, "min_bbox_size": 0},
        "rcnn": {"score_thr": 0.05, "nms": {"type": "nms", "iou_threshold": 0.5}, "max_per_img": 100, "mask_thr_binary": 0.5},
    },
}
# ---- ins_seg/configs/_base_/datasets/bdd100k.py (1x) and bdd100k_mstrain.py (3x)
_IMG_NORM = {"mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375], "to_rgb": True}


def _train_pipeline(resize: dict) -> list[dict]:
    return [
        {"type": "LoadImageFromFile"},
        {"type": "LoadAnnotations", "with_bbox": True, "with_mask": True},
        resize,
        {"type": "RandomFlip", "flip_ratio": 0.5},
        {"type": "Normalize", **_IMG_NORM},
        {"type": "Pad", "size_divisor": 32},
        {"type": "DefaultFormatBundle"},
        {"type": "Collect", "keys": ["img", "gt_bboxes", "gt_labels", "gt_masks"]},
    ]


_TEST_PIPELINE = [
    {"type": "LoadImageFromFile"},
    {
        "type": "MultiScaleFlipAug",
        "img_scale": (1280, 720),
        "flip": False,
        "transforms": [
            {"type": "Resize", "keep_ratio": True},
            {"type": "RandomFlip"},
            {"type": "Normalize", **_IMG_NORM},
            {"type": "Pad", "size_divisor": 32},
            {"type": "ImageToTensor", "keys": ["img"]},
            {"type": "Collect", "keys": ["img"]},
        ],
    },
]
_DATA_ROOT = "../data/bdd100k/"


def _zoo_config(resize: dict, steps: list[int], max_epochs: int, load_from: str) -> dict:
    split = lambda name, pipeline: {  # noqa: E731
        "type": "BDD100KInsSegDataset",
        "ann_file": _DATA_ROOT + f"jsons/ins_seg_{name}_cocofmt.json",
        "img_prefix": _DATA_ROOT + "images/10k/val",  # sic: the zoo file names val for all three
        "pipeline": pipeline,
    }
    return {
        "model": copy.deepcopy(_BDD100K_MASK_RCNN_R50_FPN),
        "dataset_type": "BDD100KInsSegDataset",
        "data_root": _DATA_ROOT,
        "img_norm_cfg": dict(_IMG_NORM),
        "train_pipeline": _train_pipeline(resize),
        "test_pipeline": copy.deepcopy(_TEST_PIPELINE),
        "data": {
            "samples_per_gpu": 2,
            "workers_per_gpu": 2,
            "train": split("train", _train_pipeline(resize)),
            "val": split("val", copy.deepcopy(_TEST_PIPELINE)),
            "test": split("val", copy.deepcopy(_TEST_PIPELINE)),
        },
        "evaluation": {"interval": 1, "metric": ["bbox", "segm"]},
        # ---- _base_/schedules/schedule_{1x,3x}.py
        "optimizer": {"type": "SGD", "lr": 0.02, "momentum": 0.9, "weight_decay": 0.0001},
        "optimizer_config": {"grad_clip": None},
        "lr_config": {"policy": "step", "warmup": "linear", "warmup_iters": 500, "warmup_ratio": 0.001, "step": steps},
        "runner": {"type": "EpochBasedRunner", "max_epochs": max_epochs},
        # ---- _base_/default_runtime.py
        "checkpoint_config": {"interval": 1},
        "log_config": {"interval": 50, "hooks": [{"type": "TextLoggerHook"}]},
        "custom_hooks": [{"type": "NumClassCheckHook"}],
        "dist_params": {"backend": "nccl"},
        "log_level": "INFO",
        "load_from": load_from,  # the file itself: BDD100K's trained model, for its test.py
        "resume_from": None,
        "workflow": [("train", 1)],
    }


_ZOO_MODELS = "https://dl.cv.ethz.ch/bdd100k/ins_seg/models/"
BDD100K_ZOO = {
    "mask_rcnn_r50_fpn_1x_ins_seg_bdd100k.py": _zoo_config(
        {"type": "Resize", "img_scale": (1280, 720), "keep_ratio": True}, [8, 11], 12, _ZOO_MODELS + "mask_rcnn_r50_fpn_1x_ins_seg_bdd100k.pth"
    ),
    "mask_rcnn_r50_fpn_3x_ins_seg_bdd100k.py": _zoo_config(
        {"type": "Resize", "img_scale": [(1280, 600), (1280, 624), (1280, 648), (1280, 672), (1280, 696), (1280, 720)], "multiscale_mode": "value", "keep_ratio": True},
        [24, 33],
        36,
        _ZOO_MODELS + "mask_rcnn_r50_fpn_3x_ins_seg_bdd100k.pth",
    ),
}
# The paper's Table 2 baseline (AP 20.2) matches the zoo's 3x multi-scale model (mask AP 19.88
# on val; the 1x has 16.24): config.yaml's bdd100k schedule is the 3x one.
PAPER_CONFIG = "mask_rcnn_r50_fpn_3x_ins_seg_bdd100k.py"
# Where our config differs from the zoo file without the schedule saying so (dotted prefixes).
PLUMBING_KEYS = (
    "model.pretrained",  # -> model.backbone.init_cfg: the same torchvision ResNet, a local copy
    "model.backbone.init_cfg",
    "model.roi_head.bbox_head.num_classes",  # the annotation's classes (8, as the zoo's)
    "model.roi_head.mask_head.num_classes",
    "dataset_type",  # CocoDataset with the class names = BDD100KInsSegDataset without its output writer
    "data_root",
    "data.samples_per_gpu",  # the whole batch on one GPU (the paper's A100) = the zoo's 2 x ZOO_GPUS
    "data.workers_per_gpu",
    "data.train.type",
    "data.train.ann_file",  # our normalized annotation JSON (COCO format, RLE masks)
    "data.train.img_prefix",  # the (anonymized) image tree
    "data.train.classes",
    "data.val",  # the test split, never evaluated: the evaluate rule scores the predictions
    "data.test.type",
    "data.test.ann_file",
    "data.test.img_prefix",
    "data.test.classes",
    "evaluation",
    "checkpoint_config.max_keep_ckpts",  # a resume point, not 36 checkpoints
    "custom_hooks[1]",  # STOP_HOOK: a non-finite loss stops the run (TrainingDiverged), its last good checkpoint kept
    "custom_hooks[2]",  # DEADLINE_HOOK: a job under a scheduler's time limit stops before it (DeadlineWatch)
    "load_from",  # None: train from ImageNet, never from BDD100K's model trained on original images
    "work_dir",
    "seed",
    "gpu_ids",
    "device",
    "auto_resume",
)
ZOO_GPUS = 8  # BDD100K's models: 8 GPUs x 2 images (ins_seg/README.md)
# mmdet's ResNet has depths 18-152; depth 10 (the twins' ResNet-50 stand-in, one BasicBlock per
# stage as torchvision_backend's resnet10) is that ResNet with one more arch_settings entry,
# registered by the backend as RESNET10_TYPE (resnet10_class).
DEPTHS = {"resnet10": 10, "resnet18": 18, "resnet34": 34, "resnet50": 50, "resnet101": 101, "resnet152": 152}
RESNET10_TYPE = "ResNet10"
STOP_HOOK = "StopOnNonFiniteLoss"  # registered by v2 / v3; runs before the optimizer (2.x) and checkpoint hooks
DEADLINE_HOOK = "StopBeforeTheLimit"  # registered by v2 / v3 (DeadlineWatch); runs last: after the update and a periodic checkpoint
MMCV_STEP_GAMMA = 0.1  # mmcv's StepLrUpdaterHook default (the zoo file sets none)


def _exact_epochs(schedule: dict, n_images: int) -> tuple[float, int]:
    exact = schedule["iterations"] * schedule["batch_size"] / n_images
    return exact, max(1, round(exact))


def whole_epochs(schedule: dict, n_images: int) -> bool:
    """Whether our iteration schedule is a whole number of epochs (within 2 %) of ``n_images``:
    then MMDetection's epoch-based runner trains it (the model zoo's), else its iteration-based one."""
    exact, count = _exact_epochs(schedule, n_images)
    return abs(exact - count) <= 0.02 * count


def epochs(schedule: dict, n_images: int) -> tuple[int, list[int]]:
    """Epochs and lr-step epochs of our iteration schedule on ``n_images`` training images (at
    ``batch_size`` images per iteration), as MMDetection's epoch-based runner counts them."""
    exact, count = _exact_epochs(schedule, n_images)
    if not whole_epochs(schedule, n_images):
        raise WorkflowInputError(
            f"the schedule's {schedule['iterations']} iterations of {schedule['batch_size']} images are {exact:.2f} epochs of the "
            f"{n_images} training images; MMDetection trains whole epochs - set iterations to a multiple of {n_images / schedule['batch_size']:g}"
        )
    return count, [round(step * count) for step in schedule["lr_steps"]]


def trained_images(document: dict, categories: list[dict]) -> int:
    """Images MMDetection's CocoDataset trains on (filter_empty_gt): those with an annotation
    of a trained class (a crowd region counts, as in its ``_filter_imgs``)."""
    ids = {category["id"] for category in categories}
    return len({a["image_id"] for a in document["annotations"] if a["category_id"] in ids})


def _check_translatable(schedule: dict, backbone: str) -> None:
    """Refuse what MMDetection's Mask R-CNN cannot express, naming each value."""
    problems = []
    if backbone not in DEPTHS:
        problems.append(f"backbone {backbone} (its ResNets: {', '.join(DEPTHS)})")
    if schedule["anchor_sizes"] != [32, 64, 128, 256, 512]:
        problems.append(f"anchor_sizes {schedule['anchor_sizes']} (8 x the FPN strides 4-64 only)")
    if schedule["init"] != "imagenet":
        problems.append(f"init {schedule['init']} (imagenet only)")
    if problems:
        raise WorkflowInputError("the MMDetection backend cannot translate this schedule: " + "; ".join(problems) + ". Use the torchvision backend for it.")


def _resize(schedule: dict) -> dict:
    sizes = schedule["image_min_size"]
    if isinstance(sizes, list) and len(sizes) > 1:
        scales = [(schedule["image_max_size"], size) for size in sizes]
        return {"type": "Resize", "img_scale": scales, "multiscale_mode": "value", "keep_ratio": True}
    size = sizes[0] if isinstance(sizes, list) else sizes
    return {"type": "Resize", "img_scale": (schedule["image_max_size"], size), "keep_ratio": True}


def prediction_scale(schedule: dict) -> tuple[int, int]:
    """(longer side limit, shorter side) of prediction: the largest training size, as detectron2's
    MIN_SIZE_TEST and the torchvision backend (the paper's BDD100K: the zoo's (1280, 720))."""
    sizes = schedule["image_min_size"]
    return schedule["image_max_size"], max(sizes) if isinstance(sizes, list) else sizes


def mmdet2_config(
    job: TrainingJob,
    *,
    class_names: list[str],
    n_images: int,
    ann_file: str,
    img_prefix: str,
    init_weights: str,
    work_dir: str,
    workers: int = 2,
    device: str = "cuda",
) -> dict:
    """The full MMDetection 2.x config of ``job`` (see the module docstring)."""
    schedule = job.schedule
    _check_translatable(schedule, job.backbone)
    cfg = copy.deepcopy(BDD100K_ZOO[PAPER_CONFIG])
    model = cfg["model"]
    # ---- what the schedule and the model determine
    depth = DEPTHS[job.backbone]
    model["backbone"]["depth"] = depth
    if depth == 10:
        model["backbone"]["type"] = RESNET10_TYPE
    width = schedule["backbone_width"]
    if width != 64:  # the twins' narrow ResNets: same layout, width channels in the first stage
        model["backbone"]["base_channels"] = width
    model["backbone"]["frozen_stages"] = 4 - schedule["trainable_backbone_layers"]  # -1: none
    expansion = 1 if depth < 50 else 4  # BasicBlock / Bottleneck
    channels = schedule["fpn_channels"]
    model["neck"]["in_channels"] = [width * expansion * 2**stage for stage in range(4)]
    model["neck"]["out_channels"] = channels
    model["rpn_head"]["in_channels"] = model["rpn_head"]["feat_channels"] = channels
    for head in ("bbox_roi_extractor", "mask_roi_extractor"):
        model["roi_head"][head]["out_channels"] = channels
    model["roi_head"]["bbox_head"]["in_channels"] = model["roi_head"]["mask_head"]["in_channels"] = channels
    if schedule["head_channels"] is not None:  # as the torchvision backend: box head 4x, mask head convs 1x
        model["roi_head"]["bbox_head"]["fc_out_channels"] = 4 * schedule["head_channels"]
        model["roi_head"]["mask_head"]["conv_out_channels"] = schedule["head_channels"]
    model["train_cfg"]["rpn_proposal"]["nms_pre"] = schedule["rpn_pre_nms_top_n"]
    if schedule["rpn_post_nms_top_n"] is not None:
        model["train_cfg"]["rpn_proposal"]["max_per_img"] = schedule["rpn_post_nms_top_n"]
    model["test_cfg"]["rpn"].update(nms_pre=schedule["rpn_pre_nms_top_n_test"], max_per_img=schedule["rpn_post_nms_top_n_test"])
    model["train_cfg"]["rcnn"]["sampler"]["num"] = schedule["box_batch_size_per_image"]
    train_pipeline = _train_pipeline(_resize(schedule))
    train_pipeline[3]["flip_ratio"] = schedule["horizontal_flip"]
    cfg["train_pipeline"] = train_pipeline
    cfg["test_pipeline"][1]["img_scale"] = prediction_scale(schedule)
    cfg["data"]["samples_per_gpu"] = schedule["batch_size"]  # one GPU, the whole batch
    cfg["data"]["train"]["pipeline"] = copy.deepcopy(train_pipeline)
    cfg["optimizer"].update(lr=float(schedule["base_lr"]), momentum=float(schedule["momentum"]), weight_decay=float(schedule["weight_decay"]))
    if schedule["clip_gradient_norm"] is not None:  # mmcv's OptimizerHook: the total L2 norm of all gradients
        cfg["optimizer_config"]["grad_clip"] = {"max_norm": float(schedule["clip_gradient_norm"]), "norm_type": 2}
    cfg["lr_config"].update(warmup_iters=schedule["warmup_iterations"], warmup_ratio=float(schedule["warmup_factor"]))
    if whole_epochs(schedule, n_images):  # the zoo's epoch-based runner
        max_epochs, steps = epochs(schedule, n_images)
        cfg["runner"]["max_epochs"] = max_epochs
        cfg["lr_config"]["step"] = steps
    else:  # e.g. the twins' 300 iterations: MMDetection's iteration-based runner, a checkpoint every checkpoint_every
        cfg["runner"] = {"type": "IterBasedRunner", "max_iters": schedule["iterations"]}
        cfg["lr_config"].update(step=[round(step * schedule["iterations"]) for step in schedule["lr_steps"]], by_epoch=False)
        cfg["checkpoint_config"] = {"interval": job.checkpoint_every, "by_epoch": False}
    if schedule["lr_gamma"] != MMCV_STEP_GAMMA:
        cfg["lr_config"]["gamma"] = float(schedule["lr_gamma"])
    if job.amp:
        cfg["fp16"] = {"loss_scale": "dynamic"}
    # ---- plumbing
    del model["pretrained"]
    model["backbone"]["init_cfg"] = {"type": "Pretrained", "checkpoint": str(init_weights)}
    model["roi_head"]["bbox_head"]["num_classes"] = model["roi_head"]["mask_head"]["num_classes"] = len(class_names)
    cfg["dataset_type"] = "CocoDataset"
    cfg["data_root"] = ""
    cfg["data"]["workers_per_gpu"] = workers
    # val = test: never evaluated (validate=False), but mmdet 2.x's compat_cfg reads data.val
    for split, pipeline in (("train", train_pipeline), ("val", cfg["test_pipeline"]), ("test", cfg["test_pipeline"])):
        cfg["data"][split] = {"type": "CocoDataset", "ann_file": str(ann_file), "img_prefix": str(img_prefix) + "/", "classes": tuple(class_names), "pipeline": copy.deepcopy(pipeline)}
    del cfg["evaluation"]
    cfg["checkpoint_config"]["max_keep_ckpts"] = 2
    cfg["custom_hooks"].append({"type": STOP_HOOK, "priority": "VERY_HIGH"})
    cfg["custom_hooks"].append({"type": DEADLINE_HOOK, "priority": "LOWEST"})
    cfg["load_from"] = None
    cfg.update(work_dir=str(work_dir), seed=job.seed, gpu_ids=[0], device=device, auto_resume=True)
    return cfg


def mmdet3_config(cfg2: dict) -> dict:
    """The run of an :func:`mmdet2_config` in MMDetection 3.x's config format (mmengine)."""
    model = copy.deepcopy(cfg2["model"])
    norm = cfg2["img_norm_cfg"]
    model["data_preprocessor"] = {"type": "DetDataPreprocessor", "mean": norm["mean"], "std": norm["std"], "bgr_to_rgb": norm["to_rgb"], "pad_mask": True, "pad_size_divisor": 32}
    resize2 = cfg2["train_pipeline"][2]
    if resize2.get("multiscale_mode") == "value":
        resize = {"type": "RandomChoiceResize", "scales": list(resize2["img_scale"]), "keep_ratio": True}
    else:
        resize = {"type": "Resize", "scale": resize2["img_scale"], "keep_ratio": True}
    train_pipeline = [
        {"type": "LoadImageFromFile"},
        {"type": "LoadAnnotations", "with_bbox": True, "with_mask": True},
        resize,
        {"type": "RandomFlip", "prob": cfg2["train_pipeline"][3]["flip_ratio"]},
        {"type": "PackDetInputs"},
    ]
    scale = cfg2["test_pipeline"][1]["img_scale"]
    test_pipeline = [
        {"type": "LoadImageFromFile"},
        {"type": "Resize", "scale": scale, "keep_ratio": True},
        {"type": "PackDetInputs", "meta_keys": ("img_id", "img_path", "ori_shape", "img_shape", "scale_factor")},
    ]
    train, test = cfg2["data"]["train"], cfg2["data"]["test"]

    def dataset(split: dict, pipeline: list, test_mode: bool) -> dict:
        return {
            "type": "CocoDataset",
            "data_root": "",
            "ann_file": split["ann_file"],
            "data_prefix": {"img": split["img_prefix"]},
            "metainfo": {"classes": tuple(split["classes"])},
            "filter_cfg": None if test_mode else {"filter_empty_gt": True, "min_size": 32},
            "test_mode": test_mode,
            "pipeline": pipeline,
        }

    lr = cfg2["lr_config"]
    by_epoch = cfg2["runner"]["type"] == "EpochBasedRunner"
    if by_epoch:
        length = cfg2["runner"]["max_epochs"]
        train_cfg = {"type": "EpochBasedTrainLoop", "max_epochs": length, "val_interval": length + 1}
    else:
        length = cfg2["runner"]["max_iters"]
        train_cfg = {"type": "IterBasedTrainLoop", "max_iters": length, "val_interval": length + 1}
    optim_wrapper = {"type": "AmpOptimWrapper" if "fp16" in cfg2 else "OptimWrapper", "optimizer": dict(cfg2["optimizer"])}
    if cfg2["optimizer_config"]["grad_clip"] is not None:
        optim_wrapper["clip_grad"] = dict(cfg2["optimizer_config"]["grad_clip"])
    checkpoint = cfg2["checkpoint_config"]
    return {
        "default_scope": "mmdet",
        "model": model,
        "train_pipeline": train_pipeline,
        "test_pipeline": test_pipeline,
        "train_dataloader": {
            "batch_size": cfg2["data"]["samples_per_gpu"],
            "num_workers": cfg2["data"]["workers_per_gpu"],
            "persistent_workers": cfg2["data"]["workers_per_gpu"] > 0,
            "sampler": {"type": "DefaultSampler" if by_epoch else "InfiniteSampler", "shuffle": True},  # as MMDetection's own configs
            "batch_sampler": {"type": "AspectRatioBatchSampler"},
            "dataset": dataset(train, train_pipeline, False),
        },
        # The three test_* go together (mmengine's Runner refuses one without the others); only
        # predict uses the dataloader's pipeline, the evaluate rule scores the predictions.
        "test_dataloader": {
            "batch_size": 1,
            "num_workers": cfg2["data"]["workers_per_gpu"],
            "sampler": {"type": "DefaultSampler", "shuffle": False},
            "dataset": dataset(test, test_pipeline, True),
        },
        "test_cfg": {"type": "TestLoop"},
        "test_evaluator": {"type": "CocoMetric", "ann_file": test["ann_file"], "metric": ["bbox", "segm"]},
        "train_cfg": train_cfg,
        "param_scheduler": [
            {"type": "LinearLR", "start_factor": lr["warmup_ratio"], "by_epoch": False, "begin": 0, "end": lr["warmup_iters"]},
            {"type": "MultiStepLR", "begin": 0, "end": length, "by_epoch": by_epoch, "milestones": list(lr["step"]), "gamma": lr.get("gamma", MMCV_STEP_GAMMA)},
        ],
        "optim_wrapper": optim_wrapper,
        "default_hooks": {
            "timer": {"type": "IterTimerHook"},
            "logger": {"type": "LoggerHook", "interval": cfg2["log_config"]["interval"]},
            "param_scheduler": {"type": "ParamSchedulerHook"},
            "checkpoint": {"type": "CheckpointHook", "interval": checkpoint["interval"], "by_epoch": by_epoch, "max_keep_ckpts": checkpoint["max_keep_ckpts"]},
            "sampler_seed": {"type": "DistSamplerSeedHook"},
        },
        "custom_hooks": [hook for hook in cfg2["custom_hooks"] if hook["type"] in (STOP_HOOK, DEADLINE_HOOK)],
        "log_processor": {"by_epoch": by_epoch},
        "env_cfg": {"cudnn_benchmark": False, "dist_cfg": {"backend": "nccl"}},
        "log_level": cfg2["log_level"],
        "randomness": {"seed": cfg2["seed"], "deterministic": False},
        "work_dir": cfg2["work_dir"],
        "load_from": None,
        "resume": True,  # from work_dir's last_checkpoint when there is one
    }


def final_checkpoint(config: dict) -> str:
    """File name of the last checkpoint the run of a 2.x (``runner``) or 3.x (``train_cfg``) config writes."""
    loop = config["runner"] if "runner" in config else config["train_cfg"]
    return f"epoch_{loop['max_epochs']}.pth" if "max_epochs" in loop else f"iter_{loop['max_iters']}.pth"


def mmdet2_results(image_id: int, bbox_results, segm_results, category_ids: list[int]) -> list[dict]:
    """MMDetection 2.x's output of one image - per class an (n, 5) array of x0, y0, x1, y1,
    score and a list of n binary masks - as our COCO results (class index -> category id)."""
    boxes, labels, masks = [], [], []
    for label, detections in enumerate(bbox_results):
        detections = np.asarray(detections, dtype=np.float64).reshape(-1, 5)
        boxes.append(detections)
        labels.extend([label] * len(detections))
        if segm_results is not None:
            if len(segm_results[label]) != len(detections):
                raise ValueError(f"class {label}: {len(detections)} boxes but {len(segm_results[label])} masks")
            masks.extend(segm_results[label])
    stacked = np.concatenate(boxes) if boxes else np.zeros((0, 5))
    return coco_results(image_id, stacked[:, :4], stacked[:, 4], labels, category_ids, masks=masks if segm_results is not None else None)


# --------------------------------------------------------------------------- shared by the 2.x and 3.x train / predict


def prepare(job: TrainingJob, device: str) -> tuple[dict, list[dict]]:
    """The 2.x config of ``job`` and the categories it trains (reads the annotation)."""
    document = read_json(job.annotation)
    categories = kept_categories(document["categories"], job.task, job.exclude_classes)
    if job.task != "instance_segmentation":
        raise WorkflowInputError("the MMDetection backend trains Mask R-CNN (instance segmentation) only; use detectron2 for keypoints")
    work_dir = Path(job.checkpoint_dir) / f"mmdetection-{job.fingerprint()[:16]}"
    cfg = mmdet2_config(
        job,
        class_names=[category["name"] for category in categories],
        n_images=trained_images(document, categories),
        ann_file=str(Path(job.annotation).resolve()),
        img_prefix=str(Path(job.image_root).resolve()),
        init_weights=str(Path(job.init_weights).resolve()),
        work_dir=str(work_dir),
        workers=job.threads if device == "cuda" else 0,  # as the torchvision backend: on the CPU the job's threads compute
        device=device,
    )
    return cfg, categories


def save_weights(output: Path, state_dict: dict, meta: dict) -> None:
    """The trained weights with what predict needs (config, category ids), written atomically."""
    import torch

    buffer = io.BytesIO()
    torch.save({"state_dict": state_dict, "meta": meta}, buffer)
    write_bytes_atomic(Path(output), buffer.getvalue())


def finish(job: TrainingJob, record: dict, *, api: int, config: dict, categories: list[dict], framework_meta: dict, runner: dict, started: float, device: str, images: int, frameworks) -> dict:
    """After MMDetection ``api`` trained ``config`` (its last checkpoint in its work dir): ``job.output``
    with the weights, ``framework_meta`` and what predict needs, and train's summary (``record``:
    what the stop hook recorded; ``frameworks``: the distributions to record)."""
    from ..common import framework_record

    final = load_checkpoint(Path(config["work_dir"]) / final_checkpoint(config))
    ours = {"backend": "mmdetection", "api": api, "config": config, "category_ids": [category["id"] for category in categories]}
    save_weights(job.output, final["state_dict"], {**framework_meta, "anonymization_impact": ours})
    return {
        "iterations": job.schedule["iterations"],
        "runner": runner,
        "resumed_at": record.get("resumed_at", 0),
        "last_loss": record.get("last_loss"),
        "seconds": time.perf_counter() - started,
        "seconds_per_iteration": seconds_per_iteration(record),
        "device": device,
        "images": images,
        "frameworks": framework_record(*frameworks),
    }


def load_checkpoint(path: Path) -> dict:
    """torch.load of a checkpoint that holds more than tensors (mmengine's message hub, our config):
    ``weights_only=False`` said explicitly, as torch >= 2.6 defaults to True and refuses them; the
    paper stack's torch 1.12 has no such argument (and loads everything)."""
    import torch

    explicit = {"weights_only": False} if "weights_only" in inspect.signature(torch.load).parameters else {}
    return torch.load(path, map_location="cpu", **explicit)


def weights_meta(weights: Path, api: int) -> dict:
    """This workflow's metadata in weights written by the MMDetection ``api`` (2 or 3) backend."""
    meta = load_checkpoint(weights).get("meta", {}).get("anonymization_impact")
    if meta is None or meta.get("api") != api:
        raise WorkflowInputError(f"{weights} was not written by this workflow's MMDetection {api}.x backend")
    return meta


def finite_loss(iteration: int, losses: dict, work_dir) -> float:
    """The total loss of one iteration (``losses["loss"]``, MMDetection's log variables); a NaN or
    infinite one raises TrainingDiverged, before that iteration updates (2.x) or saves (3.x) anything."""
    total = float(losses["loss"])
    if not math.isfinite(total):
        values = {name: round(float(value), 4) for name, value in losses.items()}
        raise TrainingDiverged(
            f"non-finite loss at iteration {iteration} ({values}); the last good checkpoint is kept in {work_dir}. "
            "Lower training.*.base_lr or check the data."
        )
    return total


def iteration_seconds(record: dict, iteration: int, losses: dict, work_dir) -> None:
    """What the stop hook does after each iteration: :func:`finite_loss`, and the iteration's end
    time in ``record`` (for :func:`seconds_per_iteration`)."""
    record["last_loss"] = finite_loss(iteration, losses, work_dir)
    record.setdefault("ends", []).append(time.perf_counter())


class DeadlineWatch:
    """What the deadline hook decides for a job under a scheduler's time limit (docs/training.md).
    The iteration-based runners stop after the iteration that reached the deadline, with the
    checkpoint their CheckpointHook would write after it, which the next attempt resumes from.
    The epoch-based ones resume only at an epoch's start: they stop before an epoch that would not
    end by the deadline, at the pace of the last epoch this job trained (its first epoch always
    runs: the stop margin is its last chance)."""

    def __init__(self, deadline: Deadline | None, work_dir):
        self.deadline, self.work_dir = deadline, work_dir
        self.epoch_started: float | None = None
        self.epoch_seconds: float | None = None

    def epoch_starts(self, epoch: int, epochs: int) -> None:
        if self.deadline is not None and self.epoch_seconds is not None and time.time() + self.epoch_seconds > self.deadline.at:
            raise TimeLimitReached(
                f"stopped after epoch {epoch} of {epochs} by {self.deadline.describe()}: the next (~{self.epoch_seconds / 60:.1f} min at "
                f"this job's pace) would not end before its time limit; checkpoint in {self.work_dir}: the next attempt resumes there")
        self.epoch_started = time.time()

    def epoch_ended(self) -> None:
        self.epoch_seconds = time.time() - self.epoch_started

    def iteration_ended(self, iteration: int, iterations: int, by_epoch: bool, save: Callable[[], None]) -> None:
        """After iteration ``iteration`` (0-based) of ``iterations``: its update done, a periodic
        checkpoint saved; ``save`` writes the checkpoint the runner would write after it."""
        if self.deadline is None or not self.deadline.stops_after(iteration + 1, iterations):
            return
        if by_epoch:
            if self.epoch_seconds is None:
                return
            raise TimeLimitReached(
                f"stopped in iteration {iteration + 1} of {iterations}, within an epoch, by {self.deadline.describe()}, before its time limit; "
                f"MMDetection's epoch-based runner resumes at an epoch's start: the next attempt resumes from the last epoch's checkpoint in {self.work_dir}")
        save()
        raise TimeLimitReached(
            f"stopped after iteration {iteration + 1} of {iterations} by {self.deadline.describe()}, before its time limit; "
            f"checkpoint in {self.work_dir}: the next attempt resumes there")


def seconds_per_iteration(record: dict) -> float | None:
    """Mean time of the iterations this process trained after its first two (warm-up, as
    perf/benchmark_training.py); None for fewer than three."""
    ends = record.get("ends", [])
    return (ends[-1] - ends[1]) / (len(ends) - 2) if len(ends) > 2 else None


def backbone_misfits(initial: dict, backbone_state: dict) -> list[str]:
    """How the initial weights ``initial`` (a torchvision-format ResNet state dict) differ from the
    backbone's parameters and buffers ``backbone_state``: mmcv / mmengine load them with
    strict=False and only log a misfit, which would leave the backbone random."""
    initial = {key: value for key, value in initial.items() if not key.startswith("fc.")}  # the unused classifier
    problems = [f"{key} missing" for key in sorted(set(backbone_state) - set(initial)) if not key.endswith("num_batches_tracked")]
    problems += [f"{key} unexpected" for key in sorted(set(initial) - set(backbone_state))]
    problems += [
        f"{key} {tuple(initial[key].shape)} for {tuple(backbone_state[key].shape)}"
        for key in sorted(set(initial) & set(backbone_state))
        if tuple(initial[key].shape) != tuple(backbone_state[key].shape)
    ]
    return problems


def check_backbone_weights(path: Path, backbone, backbone_name: str, width: int) -> None:
    """Refuse initial weights that do not fit the model's backbone (see :func:`backbone_misfits`)."""
    problems = backbone_misfits(load_checkpoint(path), backbone.state_dict())
    if problems:
        raise WorkflowInputError(f"initial weights {path} do not fit a {backbone_name} of width {width}: {', '.join(problems[:4])}")


def resnet10_class(resnet, basic_block):
    """MMDetection's ResNet class ``resnet`` with depth 10 too (one ``basic_block`` per stage: the
    layout of torchvision_backend's resnet10, so the twins' backbones load), for RESNET10_TYPE."""
    return type(RESNET10_TYPE, (resnet,), {"arch_settings": {**resnet.arch_settings, 10: (basic_block, (1, 1, 1, 1))}})


def images_bgr(annotation: dict, image_root: Path, progress=None):
    """(image record, BGR pixels as mmcv reads them) of every image of ``annotation``."""
    images = annotation["images"]
    for image in progress(images) if progress else images:
        pixels, _, _ = decode_image(Path(image_root) / image["file_name"])
        yield image, np.ascontiguousarray(pixels[:, :, ::-1])
