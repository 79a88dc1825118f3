"""The paper's detectron2 backend: Cityscapes Mask R-CNN and COCO Keypoint R-CNN R50-FPN.

Everything that decides *what* is trained is a pure function of our job and annotation, tested
without detectron2 (tests/test_backends.py):

* :func:`config_overrides` - detectron2 config keys and values on top of a model-zoo file
  (:data:`BASE_CONFIGS`); our paper schedules translate to the zoo file's own values, so that
  only the plumbing keys (:data:`PLUMBING_KEYS`: datasets, classes, weights file, output
  directory, seed, mask format, ...) differ from the file. :data:`MODEL_ZOO` transcribes the
  values of the keys we write, as the files at :data:`DETECTRON2_COMMIT` define them.
* :func:`dataset_dicts` - our normalized COCO-format annotation -> detectron2's dataset dicts.
* :func:`instances_to_results` - a prediction's fields as numpy arrays -> our COCO results.
* :func:`detectron2_key` - torchvision ResNet parameter names -> detectron2's (ResNet-152
  has no MSRA weights in detectron2's model zoo).

:func:`train` and :func:`predict` import detectron2 (envs/detectron2.yaml or
envs/detectron2-current.yaml) and raise WorkflowInputError naming those envs without it.
They have never been executed in this project (docs/training.md, "Never executed").
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
from .common import kept_categories, missing_framework, model_zoo_mismatches, resolve_device
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
    "DATALOADER.NUM_WORKERS",
    "SEED",
    "OUTPUT_DIR",
)
# ImageNet normalization of torchvision's ResNets, in RGB (tools/convert-torchvision-to-d2.py).
TORCHVISION_PIXEL_MEAN = [123.675, 116.280, 103.530]
TORCHVISION_PIXEL_STD = [58.395, 57.120, 57.375]
BOX_MODE_XYWH_ABS = 1  # detectron2.structures.BoxMode.XYWH_ABS
DEPTHS = {"resnet50": 50, "resnet101": 101, "resnet152": 152}


def base_config(dataset: str, architecture: str) -> str:
    try:
        return BASE_CONFIGS[(dataset, architecture)]
    except KeyError:
        raise WorkflowInputError(f"the detectron2 backend has no model-zoo config for {architecture} on {dataset}") from None


def _check_translatable(schedule: dict, backbone: str) -> None:
    """Refuse what a detectron2 model-zoo R-CNN cannot express (the twins' slim models)."""
    problems = model_zoo_mismatches(schedule, backbone, DEPTHS)
    if schedule["horizontal_flip"] not in (0, 0.5):
        problems.append(f"horizontal_flip {schedule['horizontal_flip']} (0 or 0.5: INPUT.RANDOM_FLIP)")
    if schedule["init"] == "scratch":
        problems.append("init scratch (the model-zoo configs need initial weights)")
    if len(schedule["anchor_sizes"]) != 5:
        problems.append("anchor_sizes (one size per FPN level P2-P6)")
    if problems:
        raise WorkflowInputError("the detectron2 backend cannot translate this schedule: " + "; ".join(problems) + ". Use the torchvision backend for it.")


def _min_sizes(schedule: dict) -> tuple[int, ...]:
    sizes = schedule["image_min_size"]
    return tuple(sizes) if isinstance(sizes, list) else (sizes,)


def schedule_overrides(schedule: dict, backbone: str, *, amp: bool = False) -> dict:
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
        "SOLVER.STEPS": tuple(round(step * iterations) for step in schedule["lr_steps"]),
        "SOLVER.GAMMA": float(schedule["lr_gamma"]),
        "SOLVER.MOMENTUM": float(schedule["momentum"]),
        "SOLVER.WEIGHT_DECAY": float(schedule["weight_decay"]),
        "SOLVER.WARMUP_ITERS": schedule["warmup_iterations"],
        "SOLVER.WARMUP_FACTOR": float(schedule["warmup_factor"]),
        "SOLVER.AMP.ENABLED": bool(amp),
    }
    if post_nms is not None:  # null: the file's (1000; 1500 for keypoints)
        overrides["MODEL.RPN.POST_NMS_TOPK_TRAIN"] = post_nms
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
    base_config(dataset, job.architecture)
    overrides = schedule_overrides(job.schedule, job.backbone, amp=job.amp)
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


# --------------------------------------------------------------------------- detectron2 itself


def _detectron2():
    try:
        import detectron2  # noqa: F401
        from detectron2 import model_zoo
        from detectron2.config import CfgNode, get_cfg
    except ImportError as error:
        raise missing_framework("detectron2", error) from None
    return model_zoo, CfgNode, get_cfg


def _convert_torchvision_weights(source: Path, target: Path) -> None:
    """torchvision ImageNet ResNet -> a detectron2 weights pickle (matched by name suffix)."""
    import pickle

    import torch

    state = torch.load(source, map_location="cpu")
    model = {}
    for name, value in state.items():
        key = detectron2_key(name)
        if key is not None:
            model[key] = value.numpy()
    with open(target, "wb") as handle:
        pickle.dump({"model": model, "__author__": "torchvision", "matching_heuristics": True}, handle)


def _save_atomic(payload: dict, path: Path) -> None:
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(payload, buffer)
    write_bytes_atomic(path, buffer.getvalue())


def train(job: TrainingJob, progress=None) -> dict:
    """Train (or resume, through detectron2's checkpointer) ``job``; writes ``job.output``.
    detectron2 logs its own progress (``progress`` is not used)."""
    model_zoo, _, get_cfg = _detectron2()
    import torch
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.data.datasets.builtin_meta import COCO_PERSON_KEYPOINT_FLIP_MAP, COCO_PERSON_KEYPOINT_NAMES
    from detectron2.engine import DefaultTrainer, hooks
    from detectron2.utils.env import seed_all_rng
    from detectron2.utils.logger import setup_logger

    setup_logger(name="detectron2")
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
    overrides = config_overrides(
        job,
        dataset=dataset,
        num_classes=len(categories),
        train_name=train_name,
        weights_path=weights_path,
        weights_kind=weights_kind,
        output_dir=str(output_dir),
        device=resolve_device(job.device),
        workers=job.threads,
    )
    cfg = get_cfg()
    cfg.merge_from_file(model_zoo.get_config_file(base_config(dataset, job.architecture)))
    cfg.merge_from_list(as_opts(overrides))
    cfg.freeze()
    seed_all_rng(cfg.SEED)  # detectron2's default_setup does this (seed + rank; one process here)
    (output_dir / "config.yaml").write_text(cfg.dump())
    log.info("detectron2 config %s + %s", base_config(dataset, job.architecture), json.dumps(overrides, default=str))

    class Trainer(DefaultTrainer):
        def build_hooks(self):
            kept = []
            for hook in super().build_hooks():
                if isinstance(hook, hooks.EvalHook):
                    continue  # the evaluate rule scores the predictions
                if isinstance(hook, hooks.PeriodicCheckpointer):
                    hook.max_to_keep = 2  # a resume point, not 54 checkpoints of a 3x run
                kept.append(hook)
            return kept

    started = time.perf_counter()
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=True)  # continues from OUTPUT_DIR/last_checkpoint if any
    resumed_at = trainer.start_iter
    trainer.train()
    final = torch.load(output_dir / "model_final.pth", map_location="cpu")  # also holds the optimizer
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
        "detectron2_base_config": base_config(dataset, job.architecture),
        "detectron2_overrides": {key: value for key, value in overrides.items()},
    }


def predict(weights: Path, annotation: dict, image_root: Path, *, device: str = "auto", threads: int = 2, progress=None) -> list[dict]:
    """COCO results of the model in ``weights`` (written by :func:`train`) on every image."""
    _, CfgNode, get_cfg = _detectron2()
    import torch
    from detectron2.engine import DefaultPredictor

    torch.set_num_threads(threads)
    state = torch.load(weights, map_location="cpu")
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
