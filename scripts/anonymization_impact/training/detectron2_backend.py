"""The paper's detectron2 backend: Cityscapes Mask R-CNN and COCO Keypoint R-CNN R50-FPN, and the
twins' slim ResNet-FPNs.

Everything that decides *what* is trained is a pure function of our job and annotation, tested
without detectron2 (tests/test_backends.py):

* :func:`config_overrides` - detectron2 config keys and values on top of a model-zoo file
  (:data:`BASE_CONFIGS`); our paper schedules translate to the zoo file's own values, so that
  only the plumbing keys (:data:`PLUMBING_KEYS`: datasets, classes, weights file, output
  directory, seed, mask format, ...) differ from the file. :data:`MODEL_ZOO` transcribes the
  values of the keys we write, as the files at :data:`DETECTRON2_COMMIT` define them. The twins'
  schedule (narrow ResNet-10 / 18 / 34, slim heads, clipped gradients) adds the keys of
  :func:`model_size_overrides`; ResNet-10 and narrow basic-block ResNets are built by
  :data:`BASIC_RESNET_FPN_BUILDER`, registered in detectron2's backbone registry.
* :func:`dataset_dicts` - our normalized COCO-format annotation -> detectron2's dataset dicts.
* :func:`instances_to_results` - a prediction's fields as numpy arrays -> our COCO results.
* :func:`detectron2_key` - torchvision ResNet parameter names -> detectron2's (ResNet-152
  has no MSRA weights in detectron2's model zoo; the twins' backbones are torchvision files).

:func:`train` and :func:`predict` import detectron2 (envs/detectron2.yaml or
envs/detectron2-current.yaml) and raise WorkflowInputError naming those envs without it; they
ran in both envs' twins on the Cityscapes and COCO twins (tests/test_detectron2_stacks.py).
"""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path

import numpy as np

from ..errors import WorkflowInputError
from ..io import decode_image, read_json, write_bytes_atomic
from ..walltime import TimeLimitReached
from .common import TrainingDiverged, framework_record, kept_categories, missing_framework, resolve_device
from .job import TrainingJob
from .predictions import coco_results

log = logging.getLogger("anonymization_impact.training")

# The paper's commit (envs/detectron2.yaml) and the one of envs/detectron2-current.yaml; the
# configs and default values transcribed below are the same at both (`git diff` of configs/
# and detectron2/config/defaults.py between them adds keys only).
DETECTRON2_COMMIT = "58e472e076a5d861fdcf773d9254a3664e045bf8"
DETECTRON2_CURRENT_COMMIT = "02b5c4e295e990042a714712c21dc79b731e8833"
ZOO_URL = "https://dl.fbaipublicfiles.com/detectron2/"  # what detectron2:// expands to

# Model-zoo file per (dataset, architecture). The paper's Table 3 baseline (box AP 55.7,
# keypoint AP 65.2) matches the keypoint R50-FPN 3x of MODEL_ZOO.md (55.4 / 65.5), not the 1x
# (53.6 / 64.0); its Table 1 baseline (AP 36.7) the Cityscapes config (36.5, from COCO).
# BDD100K has no detectron2 config (the paper trained it with MMDetection): a detectron2 run
# on it starts from the COCO Mask R-CNN 3x file and takes everything from our schedule.
BASE_CONFIGS = {
    ("cityscapes", "mask_rcnn"): "Cityscapes/mask_rcnn_R_50_FPN.yaml",
    ("coco", "keypoint_rcnn"): "COCO-Keypoints/keypoint_rcnn_R_50_FPN_3x.yaml",
    ("coco", "mask_rcnn"): "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml",
    ("bdd100k", "mask_rcnn"): "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml",
}

# Values after merging detectron2/config/defaults.py, configs/Base-RCNN-FPN.yaml (and
# COCO-Keypoints/Base-Keypoint-RCNN-FPN.yaml) and the file, at DETECTRON2_COMMIT, of every key
# config_overrides writes.
_RCNN_FPN = {
    "MODEL.WEIGHTS": "detectron2://ImageNetPretrained/MSRA/R-50.pkl",
    "MODEL.MASK_ON": True,
    "MODEL.KEYPOINT_ON": False,
    "MODEL.PIXEL_MEAN": [103.530, 116.280, 123.675],
    "MODEL.PIXEL_STD": [1.0, 1.0, 1.0],
    "MODEL.RESNETS.DEPTH": 50,
    "MODEL.RESNETS.STRIDE_IN_1X1": True,
    "MODEL.BACKBONE.FREEZE_AT": 2,
    "MODEL.FPN.OUT_CHANNELS": 256,
    "MODEL.ANCHOR_GENERATOR.SIZES": [[32], [64], [128], [256], [512]],
    "MODEL.RPN.PRE_NMS_TOPK_TRAIN": 2000,
    "MODEL.RPN.POST_NMS_TOPK_TRAIN": 1000,
    "MODEL.RPN.PRE_NMS_TOPK_TEST": 1000,
    "MODEL.RPN.POST_NMS_TOPK_TEST": 1000,
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE": 512,
    "MODEL.ROI_HEADS.NUM_CLASSES": 80,
    "MODEL.DEVICE": "cuda",
    "INPUT.FORMAT": "BGR",
    "INPUT.MASK_FORMAT": "polygon",
    "INPUT.MIN_SIZE_TRAIN": (640, 672, 704, 736, 768, 800),
    "INPUT.MIN_SIZE_TRAIN_SAMPLING": "choice",
    "INPUT.MIN_SIZE_TEST": 800,
    "INPUT.MAX_SIZE_TRAIN": 1333,
    "INPUT.MAX_SIZE_TEST": 1333,
    "INPUT.RANDOM_FLIP": "horizontal",
    "DATASETS.TRAIN": ("coco_2017_train",),
    "DATASETS.TEST": ("coco_2017_val",),
    "DATALOADER.NUM_WORKERS": 4,
    "SOLVER.IMS_PER_BATCH": 16,
    "SOLVER.BASE_LR": 0.02,
    "SOLVER.MAX_ITER": 270000,
    "SOLVER.STEPS": (210000, 250000),
    "SOLVER.GAMMA": 0.1,
    "SOLVER.MOMENTUM": 0.9,
    "SOLVER.WEIGHT_DECAY": 0.0001,
    "SOLVER.WARMUP_ITERS": 1000,
    "SOLVER.WARMUP_FACTOR": 1.0 / 1000,
    "SOLVER.AMP.ENABLED": False,
    "SOLVER.CHECKPOINT_PERIOD": 5000,
    "TEST.EVAL_PERIOD": 0,
    "SEED": -1,
    "OUTPUT_DIR": "./output",
}
MODEL_ZOO = {
    "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml": _RCNN_FPN,
    "COCO-Keypoints/keypoint_rcnn_R_50_FPN_3x.yaml": {
        **_RCNN_FPN,
        "MODEL.MASK_ON": False,
        "MODEL.KEYPOINT_ON": True,
        "MODEL.RPN.POST_NMS_TOPK_TRAIN": 1500,
        "MODEL.ROI_HEADS.NUM_CLASSES": 1,
        "DATASETS.TRAIN": ("keypoints_coco_2017_train",),
        "DATASETS.TEST": ("keypoints_coco_2017_val",),
    },
    "Cityscapes/mask_rcnn_R_50_FPN.yaml": {
        **_RCNN_FPN,
        "MODEL.WEIGHTS": "detectron2://COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x/137849600/model_final_f10217.pkl",
        "MODEL.ROI_HEADS.NUM_CLASSES": 8,
        "INPUT.MIN_SIZE_TRAIN": (800, 832, 864, 896, 928, 960, 992, 1024),
        "INPUT.MIN_SIZE_TEST": 1024,
        "INPUT.MAX_SIZE_TRAIN": 2048,
        "INPUT.MAX_SIZE_TEST": 2048,
        "DATASETS.TRAIN": ("cityscapes_fine_instance_seg_train",),
        "DATASETS.TEST": ("cityscapes_fine_instance_seg_val",),
        "SOLVER.IMS_PER_BATCH": 8,
        "SOLVER.BASE_LR": 0.01,
        "SOLVER.MAX_ITER": 24000,
        "SOLVER.STEPS": (18000,),
        "TEST.EVAL_PERIOD": 8000,
    },
}
# The model zoo's weights of the paper's runs, by the `weights` entry that holds a copy.
ZOO_WEIGHTS = {
    "resnet50_imagenet_msra": "detectron2://ImageNetPretrained/MSRA/R-50.pkl",
    "resnet101_imagenet_msra": "detectron2://ImageNetPretrained/MSRA/R-101.pkl",
    "mask_rcnn_r50_fpn_coco_detectron2": "detectron2://COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x/137849600/model_final_f10217.pkl",
    "mask_rcnn_r101_fpn_coco_detectron2": "detectron2://COCO-InstanceSegmentation/mask_rcnn_R_101_FPN_3x/138205316/model_final_a3ec72.pkl",
}
# Keys set for the workflow rather than by the schedule: where data, weights and outputs are,
# and how this machine runs (none changes the optimization).
PLUMBING_KEYS = (
    "MODEL.WEIGHTS",  # a local copy of the zoo's file (same URL) or a converted torchvision file
    "MODEL.ROI_HEADS.NUM_CLASSES",  # the annotation's classes (8 on Cityscapes, as the zoo's)
    "MODEL.DEVICE",
    "INPUT.MASK_FORMAT",  # our masks are RLE (detectron2 rasterizes the zoo's polygons itself)
    "DATASETS.TRAIN",  # registered from our annotation JSON and (anonymized) image tree
    "DATASETS.TEST",  # none: the evaluate rule scores the predictions
    "TEST.EVAL_PERIOD",
    "DATALOADER.NUM_WORKERS",  # the job's threads on a GPU; 0 on the CPU (batches loaded in the training process)
    "SOLVER.CHECKPOINT_PERIOD",  # set only for a run shorter than the file's period (the twins'): training.checkpoint_every
    "SEED",
    "OUTPUT_DIR",
)
# ImageNet normalization of torchvision's ResNets, in RGB (tools/convert-torchvision-to-d2.py).
TORCHVISION_PIXEL_MEAN = [123.675, 116.280, 103.530]
TORCHVISION_PIXEL_STD = [58.395, 57.120, 57.375]
BOX_MODE_XYWH_ABS = 1  # detectron2.structures.BoxMode.XYWH_ABS
DEPTHS = {"resnet10": 10, "resnet18": 18, "resnet34": 34, "resnet50": 50, "resnet101": 101, "resnet152": 152}
# Basic-block ResNets and their blocks per stage (torchvision_backend.RESNET_LAYOUTS). detectron2's
# build_resnet_backbone knows 18 and 34 at 64 channels only (it asserts RES2_OUT_CHANNELS == 64)
# and no ResNet-10: this builder is that function for basic blocks without the two limits, from
# detectron2's own BasicStem, BasicBlock, ResNet.make_stage and FPN (so the modules, names and
# initialization are detectron2's), registered in its BACKBONE_REGISTRY when training or predicting.
BASIC_BLOCK_STAGES = {10: (1, 1, 1, 1), 18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}
BASIC_RESNET_FPN_BUILDER = "build_basic_resnet_fpn_backbone"
# The twins' clip_gradient_norm clips the norm of all gradients together, as the torchvision
# backend does; detectron2's SOLVER.CLIP_GRADIENTS clips each parameter on its own ("value",
# "norm"), so this type is ours, handled by the trainer's build_optimizer as DETR's detectron2
# trainer does (facebookresearch/detr, d2/train_net.py).
FULL_MODEL_CLIPPING = "full_model"


def base_config(dataset: str, architecture: str) -> str:
    try:
        return BASE_CONFIGS[(dataset, architecture)]
    except KeyError:
        raise WorkflowInputError(f"the detectron2 backend has no model-zoo config for {architecture} on {dataset}") from None


def _check_translatable(schedule: dict, backbone: str) -> None:
    """Refuse what detectron2's R-CNNs (with our basic-block builder) cannot express."""
    problems = []
    if backbone not in DEPTHS:
        problems.append(f"backbone {backbone} (ResNets: {', '.join(DEPTHS)})")
    if schedule["horizontal_flip"] not in (0, 0.5):
        problems.append(f"horizontal_flip {schedule['horizontal_flip']} (0 or 0.5: INPUT.RANDOM_FLIP)")
    if schedule["init"] == "scratch":
        problems.append("init scratch (the model-zoo configs need initial weights)")
    if schedule["init"] == "coco" and (schedule["backbone_width"] != 64 or schedule["head_channels"] is not None):
        # detectron2 would skip every weight of another shape with a warning: a model trained from scratch
        problems.append("init coco with backbone_width or head_channels other than the zoo's (the COCO Mask R-CNN's weights fit the zoo's model only)")
    if len(schedule["anchor_sizes"]) != 5:
        problems.append("anchor_sizes (one size per FPN level P2-P6)")
    if problems:
        raise WorkflowInputError("the detectron2 backend cannot translate this schedule: " + "; ".join(problems) + ". Use the torchvision backend for it.")


def _min_sizes(schedule: dict) -> tuple[int, ...]:
    sizes = schedule["image_min_size"]
    return tuple(sizes) if isinstance(sizes, list) else (sizes,)


def schedule_overrides(schedule: dict, backbone: str, *, architecture: str = "mask_rcnn", amp: bool = False) -> dict:
    """detectron2 keys of everything our schedule (and the model's depth) determines."""
    _check_translatable(schedule, backbone)
    iterations = schedule["iterations"]
    post_nms = schedule["rpn_post_nms_top_n"]
    overrides = {
        "MODEL.RESNETS.DEPTH": DEPTHS[backbone],
        # detectron2 freezes the stem (1) and the first FREEZE_AT - 1 stages; we count trained stages
        "MODEL.BACKBONE.FREEZE_AT": 5 - schedule["trainable_backbone_layers"],
        "MODEL.FPN.OUT_CHANNELS": schedule["fpn_channels"],
        "MODEL.ANCHOR_GENERATOR.SIZES": [[size] for size in schedule["anchor_sizes"]],
        "MODEL.RPN.PRE_NMS_TOPK_TRAIN": schedule["rpn_pre_nms_top_n"],
        "MODEL.RPN.PRE_NMS_TOPK_TEST": schedule["rpn_pre_nms_top_n_test"],
        "MODEL.RPN.POST_NMS_TOPK_TEST": schedule["rpn_post_nms_top_n_test"],
        "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE": schedule["box_batch_size_per_image"],
        "INPUT.MIN_SIZE_TRAIN": _min_sizes(schedule),
        "INPUT.MIN_SIZE_TRAIN_SAMPLING": "choice",
        "INPUT.MIN_SIZE_TEST": max(_min_sizes(schedule)),
        "INPUT.MAX_SIZE_TRAIN": schedule["image_max_size"],
        "INPUT.MAX_SIZE_TEST": schedule["image_max_size"],
        "INPUT.RANDOM_FLIP": "horizontal" if schedule["horizontal_flip"] else "none",
        # SOLVER.IMS_PER_BATCH is the total batch: on one GPU, all of it (as the paper ran)
        "SOLVER.IMS_PER_BATCH": schedule["batch_size"],
        "SOLVER.BASE_LR": float(schedule["base_lr"]),
        "SOLVER.MAX_ITER": iterations,
        # a step at or after the last iteration changes no learning rate, and detectron2 refuses it (fvcore's
        # MultiStepParamScheduler: "Milestone must be smaller than total number of updates"): a run of a few iterations
        "SOLVER.STEPS": tuple(step for step in (round(fraction * iterations) for fraction in schedule["lr_steps"]) if step < iterations),
        "SOLVER.GAMMA": float(schedule["lr_gamma"]),
        "SOLVER.MOMENTUM": float(schedule["momentum"]),
        "SOLVER.WEIGHT_DECAY": float(schedule["weight_decay"]),
        "SOLVER.WARMUP_ITERS": schedule["warmup_iterations"],
        "SOLVER.WARMUP_FACTOR": float(schedule["warmup_factor"]),
        "SOLVER.AMP.ENABLED": bool(amp),
    }
    if post_nms is not None:  # null: the file's (1000; 1500 for keypoints)
        overrides["MODEL.RPN.POST_NMS_TOPK_TRAIN"] = post_nms
    overrides.update(model_size_overrides(schedule, backbone, architecture))
    return overrides


def model_size_overrides(schedule: dict, backbone: str, architecture: str) -> dict:
    """The keys of a model other than the zoo's (the twins' narrow ResNets, slim heads, clipped
    gradients); none for the paper's schedules, whose translation they leave as it was."""
    depth, width, head = DEPTHS[backbone], schedule["backbone_width"], schedule["head_channels"]
    overrides = {}
    if depth in BASIC_BLOCK_STAGES:
        overrides["MODEL.BACKBONE.NAME"] = BASIC_RESNET_FPN_BUILDER
    if width != 64 or depth in BASIC_BLOCK_STAGES:
        # torchvision's (narrow) ResNet: stem and first stage `width` wide; a bottleneck stage puts
        # out 4 x its inner width (detectron2's WIDTH_PER_GROUP with one group)
        overrides["MODEL.RESNETS.STEM_OUT_CHANNELS"] = width
        overrides["MODEL.RESNETS.RES2_OUT_CHANNELS"] = width if depth in BASIC_BLOCK_STAGES else 4 * width
        if depth not in BASIC_BLOCK_STAGES:
            overrides["MODEL.RESNETS.WIDTH_PER_GROUP"] = width
    if head is not None:  # the torchvision backend's slim heads: box MLP 4 x head wide, head-wide convolutions
        overrides["MODEL.ROI_BOX_HEAD.FC_DIM"] = 4 * head
        if architecture == "keypoint_rcnn":
            overrides["MODEL.ROI_KEYPOINT_HEAD.CONV_DIMS"] = (head,) * 8
        else:
            overrides["MODEL.ROI_MASK_HEAD.CONV_DIM"] = head
    if schedule["clip_gradient_norm"] is not None:
        overrides.update(
            {
                "SOLVER.CLIP_GRADIENTS.ENABLED": True,
                "SOLVER.CLIP_GRADIENTS.CLIP_TYPE": FULL_MODEL_CLIPPING,
                "SOLVER.CLIP_GRADIENTS.CLIP_VALUE": float(schedule["clip_gradient_norm"]),
                "SOLVER.CLIP_GRADIENTS.NORM_TYPE": 2.0,
            }
        )
    return overrides


def weights_overrides(weights_path: str, weights_format: str) -> dict:
    """MODEL.WEIGHTS and, for a converted torchvision ResNet, its input convention."""
    overrides = {"MODEL.WEIGHTS": str(weights_path)}
    if weights_format == "torchvision":  # RGB, mean / std normalization, stride in the 3x3 conv
        overrides.update(
            {
                "MODEL.PIXEL_MEAN": list(TORCHVISION_PIXEL_MEAN),
                "MODEL.PIXEL_STD": list(TORCHVISION_PIXEL_STD),
                "MODEL.RESNETS.STRIDE_IN_1X1": False,
                "INPUT.FORMAT": "RGB",
            }
        )
    elif weights_format != "detectron2":
        raise ValueError(f"unknown weights format {weights_format!r}")
    return overrides


def weights_format(path) -> str:
    """detectron2 model-zoo files are pickles (.pkl); torchvision's are torch files (.pth)."""
    return "detectron2" if str(path).endswith(".pkl") else "torchvision"


def config_overrides(
    job: TrainingJob,
    *,
    dataset: str,
    num_classes: int,
    train_name: str,
    weights_path: str,
    weights_kind: str,
    output_dir: str,
    device: str = "cuda",
    workers: int = 4,
) -> dict:
    """Every key our run sets on top of ``base_config(dataset, job.architecture)``;
    ``weights_kind`` is the format of the initial weights as published (weights_format)."""
    base = base_config(dataset, job.architecture)
    overrides = schedule_overrides(job.schedule, job.backbone, architecture=job.architecture, amp=job.amp)
    if job.schedule["iterations"] < MODEL_ZOO[base]["SOLVER.CHECKPOINT_PERIOD"]:  # else no resume point at all
        overrides["SOLVER.CHECKPOINT_PERIOD"] = job.checkpoint_every
    overrides.update(weights_overrides(weights_path, weights_kind))
    overrides.update(
        {
            "MODEL.ROI_HEADS.NUM_CLASSES": num_classes,
            "MODEL.DEVICE": device,
            "INPUT.MASK_FORMAT": "bitmask",
            "DATASETS.TRAIN": (train_name,),
            "DATASETS.TEST": (),
            "TEST.EVAL_PERIOD": 0,
            "DATALOADER.NUM_WORKERS": workers,
            "SEED": job.seed,
            "OUTPUT_DIR": str(output_dir),
        }
    )
    return overrides


def as_opts(overrides: dict) -> list:
    """``cfg.merge_from_list`` form: [key, value, key, value, ...] (values as Python objects)."""
    return [item for key in sorted(overrides) for item in (key, overrides[key])]


def apply_overrides(values: dict, overrides: dict) -> dict:
    """What merge_from_list makes of the transcribed values (for the tests and the log)."""
    unknown = sorted(set(overrides) - set(values))
    if unknown:
        raise KeyError(f"keys not transcribed from the model zoo: {unknown}")
    return {**values, **overrides}


def zoo_weights_url(name: str) -> str:
    """The https URL of a model-zoo weights entry (detectron2:// expanded)."""
    return ZOO_WEIGHTS[name].replace("detectron2://", ZOO_URL)


# --------------------------------------------------------------------------- data


def dataset_dicts(document: dict, image_root, task: str, exclude_classes=()) -> tuple[list[dict], list[dict]]:
    """detectron2's dataset dicts of our normalized annotation, and the categories trained.

    As detectron2's own ``load_coco_json``: boxes XYWH_ABS, category ids made contiguous (in id
    order), crowd regions kept with ``iscrowd`` (its DatasetMapper drops them), keypoint x / y
    shifted by +0.5 (COCO keypoints are pixel indices), images without instances kept (its
    loader filters them, FILTER_EMPTY_ANNOTATIONS). Masks stay RLE (INPUT.MASK_FORMAT bitmask);
    keypoint models get person instances without masks.
    """
    categories = kept_categories(document["categories"], task, exclude_classes)
    contiguous = {category["id"]: index for index, category in enumerate(categories)}
    by_image: dict[int, list[dict]] = {}
    for annotation in document["annotations"]:
        if annotation["category_id"] not in contiguous:
            continue
        record = {
            "bbox": [float(v) for v in annotation["bbox"]],
            "bbox_mode": BOX_MODE_XYWH_ABS,
            "category_id": contiguous[annotation["category_id"]],
            "iscrowd": int(annotation["iscrowd"]),
        }
        if task == "keypoints":
            if "keypoints" in annotation:
                record["keypoints"] = [float(v) + 0.5 if index % 3 != 2 else v for index, v in enumerate(annotation["keypoints"])]
            elif not annotation["iscrowd"]:  # crowd regions are dropped by the mapper
                raise WorkflowInputError(f"person annotation {annotation['id']} has no keypoints; a keypoint model needs COCO keypoints")
        else:
            record["segmentation"] = annotation["segmentation"]
        by_image.setdefault(annotation["image_id"], []).append(record)
    records = [
        {
            "file_name": str(Path(image_root) / image["file_name"]),
            "height": image["height"],
            "width": image["width"],
            "image_id": image["id"],
            "annotations": by_image.get(image["id"], []),
        }
        for image in sorted(document["images"], key=lambda image: image["id"])
    ]
    return records, categories


def instances_to_results(image_id: int, fields: dict, category_ids: list[int]) -> list[dict]:
    """Our COCO results of one image from its ``Instances`` fields as numpy arrays:
    ``pred_boxes`` (N, 4) XYXY, ``scores``, ``pred_classes`` (contiguous), optional
    ``pred_masks`` (N, H, W) and ``pred_keypoints`` (N, 17, 3), whose x / y go back by 0.5
    (detectron2's COCOEvaluator does the same)."""
    keypoints = fields.get("pred_keypoints")
    if keypoints is not None:
        keypoints = np.array(keypoints, dtype=np.float64)
        keypoints[:, :, :2] -= 0.5
    return coco_results(image_id, fields["pred_boxes"], fields["scores"], fields["pred_classes"], category_ids, masks=fields.get("pred_masks"), keypoints=keypoints)


_TORCHVISION_LAYER = re.compile(r"^layer(\d)\.(\d+)\.(.+)$")


def detectron2_key(name: str) -> str | None:
    """A torchvision ResNet parameter name as detectron2's ResNet names it (None: not part of
    detectron2's backbone - the classifier and BatchNorm's step counters)."""
    if name.startswith("fc.") or name.endswith("num_batches_tracked"):
        return None
    if name.startswith("conv1."):
        return "stem." + name
    if name.startswith("bn1."):
        return "stem.conv1.norm." + name[len("bn1.") :]
    match = _TORCHVISION_LAYER.match(name)
    if not match:
        raise ValueError(f"{name!r} is not a torchvision ResNet parameter")
    stage, block, rest = int(match[1]) + 1, match[2], match[3]
    rest = re.sub(r"^bn(\d)\.", r"conv\1.norm.", rest)
    rest = re.sub(r"^downsample\.0\.", "shortcut.", rest)
    rest = re.sub(r"^downsample\.1\.", "shortcut.norm.", rest)
    return f"res{stage}.{block}.{rest}"


def unloaded_backbone_weights(initial: dict, model_state: dict, prefix: str = "backbone.bottom_up.") -> list[str]:
    """What of a converted backbone (detectron2 names -> arrays) the model did not take: a
    parameter of the model's ResNet the file lacks, one of the file the model lacks, or another
    shape or value. detectron2's checkpointer only warns about such weights and trains on."""
    backbone = {name[len(prefix):]: value for name, value in model_state.items() if name.startswith(prefix)}
    problems = [f"{name}: not in the file" for name in sorted(set(backbone) - set(initial))]
    problems += [f"{name}: not in the model" for name in sorted(set(initial) - set(backbone))]
    for name in sorted(set(initial) & set(backbone)):
        if np.shape(initial[name]) != np.shape(backbone[name]):
            problems.append(f"{name}: shape {tuple(np.shape(initial[name]))} in the file, {tuple(np.shape(backbone[name]))} in the model")
        elif not np.array_equal(np.asarray(initial[name]), np.asarray(backbone[name])):
            problems.append(f"{name}: not loaded")
    return problems


def diverged(error: FloatingPointError, iteration: int, output_dir: Path) -> TrainingDiverged:
    """detectron2's two ways of stopping a diverged run - its trainer's "Loss became infinite or
    NaN" and the RPN's "Predicted boxes or scores contain Inf/NaN" (both FloatingPointError) - as
    the project's TrainingDiverged, naming the checkpoint kept (detectron2 writes no
    model_final.pth after an exception)."""
    marker = Path(output_dir) / "last_checkpoint"
    kept = f"the last good checkpoint ({marker.read_text().strip()}) is kept in {output_dir}" if marker.is_file() else f"no checkpoint had been written yet ({output_dir})"
    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    return TrainingDiverged(f"detectron2 stopped at iteration {iteration}: {reason}; {kept}. Lower training.*.base_lr or check the data.")


# --------------------------------------------------------------------------- detectron2 itself


def _detectron2():
    try:
        import detectron2  # noqa: F401
        from detectron2 import model_zoo
        from detectron2.config import CfgNode, get_cfg
    except ImportError as error:
        raise missing_framework("detectron2", error) from None
    _register_basic_resnet_fpn_builder()
    return model_zoo, CfgNode, get_cfg


def _register_basic_resnet_fpn_builder() -> None:
    """BASIC_RESNET_FPN_BUILDER in detectron2's BACKBONE_REGISTRY (once per process): its
    build_resnet_backbone + build_resnet_fpn_backbone for basic blocks, with the blocks per stage
    of BASIC_BLOCK_STAGES and any RES2_OUT_CHANNELS."""
    from detectron2.modeling import BACKBONE_REGISTRY

    if BASIC_RESNET_FPN_BUILDER in BACKBONE_REGISTRY:
        return
    from detectron2.modeling.backbone import FPN, ResNet
    from detectron2.modeling.backbone.fpn import LastLevelMaxPool
    from detectron2.modeling.backbone.resnet import BasicBlock, BasicStem

    def build_basic_resnet_fpn_backbone(cfg, input_shape):
        resnets, fpn = cfg.MODEL.RESNETS, cfg.MODEL.FPN
        stem = BasicStem(in_channels=input_shape.channels, out_channels=resnets.STEM_OUT_CHANNELS, norm=resnets.NORM)
        stages, in_channels, out_channels = [], resnets.STEM_OUT_CHANNELS, resnets.RES2_OUT_CHANNELS
        for index, blocks in enumerate(BASIC_BLOCK_STAGES[resnets.DEPTH]):
            strides = [1 if index == 0 else 2] + [1] * (blocks - 1)
            stages.append(ResNet.make_stage(BasicBlock, blocks, stride_per_block=strides, in_channels=in_channels, out_channels=out_channels, norm=resnets.NORM))
            in_channels, out_channels = out_channels, out_channels * 2
        bottom_up = ResNet(stem, stages, out_features=resnets.OUT_FEATURES, freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT)
        return FPN(bottom_up=bottom_up, in_features=fpn.IN_FEATURES, out_channels=fpn.OUT_CHANNELS, norm=fpn.NORM, top_block=LastLevelMaxPool(), fuse_type=fpn.FUSE_TYPE)

    assert build_basic_resnet_fpn_backbone.__name__ == BASIC_RESNET_FPN_BUILDER  # the registry's name for it
    BACKBONE_REGISTRY.register(build_basic_resnet_fpn_backbone)


def _torch_load(path):
    """torch.load of our own files, whole (PyTorch >= 2.6 loads weights only by default; 1.12 has no such switch)."""
    import inspect

    import torch

    whole = {"weights_only": False} if "weights_only" in inspect.signature(torch.load).parameters else {}
    return torch.load(path, map_location="cpu", **whole)


def _convert_torchvision_weights(source: Path, target: Path) -> None:
    """torchvision ImageNet ResNet -> a detectron2 weights pickle (matched by name suffix)."""
    import pickle

    model = {}
    for name, value in _torch_load(source).items():
        key = detectron2_key(name)
        if key is not None:
            model[key] = value.numpy()
    buffer = pickle.dumps({"model": model, "__author__": "torchvision", "matching_heuristics": True})
    write_bytes_atomic(target, buffer)  # a run killed while converting must not leave half a file to load


def _save_atomic(payload: dict, path: Path) -> None:
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(payload, buffer)
    write_bytes_atomic(path, buffer.getvalue())


def _trainer_class(deadline=None):
    """detectron2's DefaultTrainer without evaluation, two checkpoints kept, the full-model
    gradient clipping of FULL_MODEL_CLIPPING, and a stop with a checkpoint by ``deadline``
    (a scheduler's time limit, anonymization_impact.walltime)."""
    import torch
    from detectron2.engine import DefaultTrainer, hooks

    class StopBeforeTheLimit(hooks.HookBase):
        def after_step(self):
            trainer, done = self.trainer, self.trainer.iter + 1
            if deadline.stops_after(done, trainer.max_iter):
                # as PeriodicCheckpointer saves: resume_or_load continues at iteration + 1
                trainer.checkpointer.save(f"model_{trainer.iter:07d}", iteration=trainer.iter)
                raise TimeLimitReached(
                    f"stopped after iteration {done} of {trainer.max_iter} before its time limit, by {deadline.describe()}; "
                    f"checkpoint model_{trainer.iter:07d}.pth in {trainer.cfg.OUTPUT_DIR}: the next attempt resumes there"
                )

    class Trainer(DefaultTrainer):
        def build_hooks(self):
            kept = []
            for hook in super().build_hooks():
                if isinstance(hook, hooks.EvalHook):
                    continue  # the evaluate rule scores the predictions
                if isinstance(hook, hooks.PeriodicCheckpointer):
                    hook.max_to_keep = 2  # a resume point, not 54 checkpoints of a 3x run
                    # and the killed run's count as well: a run resumed n times would otherwise keep 2 + n
                    hook.recent_checkpoints = sorted(str(path) for path in Path(self.cfg.OUTPUT_DIR).glob("model_[0-9]*.pth"))
                kept.append(hook)
            return kept + [StopBeforeTheLimit()] if deadline else kept

        @classmethod
        def build_optimizer(cls, cfg, model):
            clipping = cfg.SOLVER.CLIP_GRADIENTS
            if not (clipping.ENABLED and clipping.CLIP_TYPE == FULL_MODEL_CLIPPING):
                return super().build_optimizer(cfg, model)
            unclipped = cfg.clone()
            unclipped.defrost()
            unclipped.SOLVER.CLIP_GRADIENTS.ENABLED = False
            optimizer = super().build_optimizer(unclipped, model)
            max_norm, norm_type = clipping.CLIP_VALUE, clipping.NORM_TYPE

            class FullModelGradientClipping(type(optimizer)):
                def step(self, closure=None):
                    torch.nn.utils.clip_grad_norm_([p for group in self.param_groups for p in group["params"]], max_norm, norm_type)
                    return super().step(closure)

            optimizer.__class__ = FullModelGradientClipping  # as detectron2's own maybe_add_gradient_clipping does
            return optimizer

    return Trainer


def train(job: TrainingJob, progress=None) -> dict:
    """Train (or resume, through detectron2's checkpointer) ``job``; writes ``job.output``.
    detectron2 logs its own progress (``progress`` is not used). A diverged run raises
    TrainingDiverged, its last checkpoint kept."""
    model_zoo, _, get_cfg = _detectron2()
    import pickle

    import torch
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.data.datasets.builtin_meta import COCO_PERSON_KEYPOINT_FLIP_MAP, COCO_PERSON_KEYPOINT_NAMES
    from detectron2.utils.env import seed_all_rng
    from detectron2.utils.logger import setup_logger

    setup_logger(name="detectron2")
    torch.set_num_threads(job.threads)  # the rule's threads, as the torchvision backend (detectron2 would take every core)
    document = read_json(job.annotation)
    dataset = document["info"]["dataset"]
    records, categories = dataset_dicts(document, job.image_root, job.task, job.exclude_classes)
    fingerprint = job.fingerprint()
    output_dir = Path(job.checkpoint_dir) / f"detectron2-{fingerprint[:16]}"
    output_dir.mkdir(parents=True, exist_ok=True)
    weights = Path(job.init_weights)
    weights_kind, weights_path = weights_format(weights), str(weights)
    if weights_kind == "torchvision":
        converted = output_dir / f"{weights.stem}-detectron2.pkl"
        if not converted.exists():
            _convert_torchvision_weights(weights, converted)
        weights_path = str(converted)
    train_name = f"anonymization_impact_{fingerprint[:12]}_train"
    if train_name not in DatasetCatalog.list():
        DatasetCatalog.register(train_name, lambda: records)
        metadata = {"thing_classes": [category["name"] for category in categories]}
        if job.task == "keypoints":
            metadata.update(keypoint_names=COCO_PERSON_KEYPOINT_NAMES, keypoint_flip_map=COCO_PERSON_KEYPOINT_FLIP_MAP)
        MetadataCatalog.get(train_name).set(**metadata)
    device = resolve_device(job.device)
    overrides = config_overrides(
        job,
        dataset=dataset,
        num_classes=len(categories),
        train_name=train_name,
        weights_path=weights_path,
        weights_kind=weights_kind,
        output_dir=str(output_dir),
        device=device,
        workers=job.threads if device == "cuda" else 0,  # on the CPU the loader would compete with training for the cores
    )
    cfg = get_cfg()
    cfg.merge_from_file(model_zoo.get_config_file(base_config(dataset, job.architecture)))
    cfg.merge_from_list(as_opts(overrides))
    cfg.freeze()
    seed_all_rng(cfg.SEED)  # detectron2's default_setup does this (seed + rank; one process here)
    (output_dir / "config.yaml").write_text(cfg.dump())
    log.info("detectron2 config %s + %s", base_config(dataset, job.architecture), json.dumps(overrides, default=str))

    started = time.perf_counter()
    trainer = _trainer_class(job.deadline)(cfg)
    trainer.resume_or_load(resume=True)  # continues from OUTPUT_DIR/last_checkpoint if any
    resumed_at = trainer.start_iter
    if weights_kind == "torchvision" and resumed_at == 0:
        with open(weights_path, "rb") as handle:
            initial = pickle.load(handle)["model"]
        problems = unloaded_backbone_weights(initial, {name: value.numpy() for name, value in trainer.model.state_dict().items()})
        if problems:
            raise WorkflowInputError(f"initial weights {weights} do not fit the {job.backbone} of this schedule: {'; '.join(problems[:4])}")
    try:
        trainer.train()
    except FloatingPointError as error:
        raise diverged(error, trainer.iter, output_dir) from error
    final = _torch_load(output_dir / "model_final.pth")  # also holds the optimizer
    meta = {
        "backend": "detectron2",
        "config": cfg.dump(),
        "category_ids": [category["id"] for category in categories],
        "task": job.task,
        "fingerprint": fingerprint,
    }
    _save_atomic({"model": final["model"], "anonymization_impact": meta}, Path(job.output))
    return {
        "iterations": cfg.SOLVER.MAX_ITER,
        "resumed_at": resumed_at,
        "seconds": time.perf_counter() - started,
        "device": cfg.MODEL.DEVICE,
        "images": sum(1 for record in records if any(not a["iscrowd"] for a in record["annotations"])),
        "frameworks": framework_record("detectron2", "torch", "torchvision"),
        "detectron2_base_config": base_config(dataset, job.architecture),
        "detectron2_overrides": {key: value for key, value in overrides.items()},
    }


def predict(weights: Path, annotation: dict, image_root: Path, *, device: str = "auto", threads: int = 2, progress=None) -> list[dict]:
    """COCO results of the model in ``weights`` (written by :func:`train`) on every image."""
    _, CfgNode, get_cfg = _detectron2()
    import torch
    from detectron2.engine import DefaultPredictor

    torch.set_num_threads(threads)
    state = _torch_load(weights)
    meta = state.get("anonymization_impact")
    if meta is None or meta.get("backend") != "detectron2":
        raise WorkflowInputError(f"{weights} was not written by the detectron2 backend of this workflow")
    cfg = get_cfg()
    cfg.merge_from_other_cfg(CfgNode.load_cfg(meta["config"]))
    cfg.MODEL.WEIGHTS = str(weights)
    cfg.MODEL.DEVICE = resolve_device(device)
    cfg.freeze()
    predictor = DefaultPredictor(cfg)
    results = []
    images = annotation["images"]
    for image in progress(images) if progress else images:
        pixels, _, _ = decode_image(Path(image_root) / image["file_name"])
        instances = predictor(np.ascontiguousarray(pixels[:, :, ::-1]))["instances"].to("cpu")  # it takes BGR
        fields = {
            "pred_boxes": instances.pred_boxes.tensor.numpy(),
            "scores": instances.scores.numpy(),
            "pred_classes": instances.pred_classes.numpy(),
        }
        if instances.has("pred_masks"):
            fields["pred_masks"] = instances.pred_masks.numpy()
        if instances.has("pred_keypoints"):
            fields["pred_keypoints"] = instances.pred_keypoints.numpy()
        results.extend(instances_to_results(image["id"], fields, meta["category_ids"]))
    return results
