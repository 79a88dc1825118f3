"""ViTPose-H keypoints: the ``person-keypoints/v1`` document (:func:`keypoints_for_persons`).

17 COCO keypoints per person of ``persons.json``, top-down ViTPose-H on the tight box of the
person's mask, a keypoint visible when its heatmap score is >= 0.3 (dp2 ``MaskRCNNVitPose``:
``masks_to_boxes`` + ``VitPoseModel("vit_huge")`` + ``>= 0.3``).

ViTPose: dp2 did not use mmpose. It ran its own copy of the ViTPose-H network with the ViTPose
authors' COCO+AIC+MPII checkpoint (COCO head, ``vit-h-multi-coco``) on the mask box widened to
the 192:256 input aspect (no context padding), without flip test, and read keypoints off the
heatmap argmax. That checkpoint's keys (``backbone.*``, ``keypoint_head.*``) are those of the
mmpose 0.x ``TopDown`` model it was trained with: the ViTPose repository is a fork of mmpose
0.24.0. So this module speaks the mmpose 0.x API of that fork (``init_pose_model``,
``inference_top_down_pose_model``) with the authors' ``ViTPose_huge_coco_256x192.py`` config,
and by default reproduces dp2's crop (box shrunk by mmpose's fixed 1.25 padding before mmpose
pads it again, see :func:`mmpose_person_box`) and dp2's single pass (``flip_test=False``).
What stays different: mmpose's affine warp (bilinear, UDP) instead of dp2's antialiased
resize of the zero-padded crop, and mmpose's sub-pixel (DARK-UDP) keypoint positions instead of
the heatmap cell index; the scores are the heatmap maxima in both, so visibility differs only
through the crop's resampling.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from ..errors import WorkflowInputError
from ..io import decode_image
from ..masks import bbox as rle_bbox
from ..weights import sha256_of
from .common import ENV_FILE, ImageJob, persons_by_image, read_rgb, require

KEYPOINTS_FORMAT = "person-keypoints/v1"
NUM_KEYPOINTS = 17

# github.com/ViTAE-Transformer/ViTPose, an mmpose 0.24.0 fork
VITPOSE_COMMIT = "c050ed29112da7704797cc1a65af0234b525010d"
VITPOSE_H_CONFIG = "configs/body/2d_kpt_sview_rgb_img/topdown_heatmap/coco/ViTPose_huge_coco_256x192.py"
# dp2's copy of the checkpoint is named vit-h-multi-coco-dbc06d4337.pth: torch.hub's
# convention, the leading digits of the file's sha256
VITPOSE_H_SHA256_PREFIX = "dbc06d4337"
VITPOSE_INPUT_SIZE = (192, 256)  # width, height of the network input (data_cfg.image_size)
MMPOSE_BOX_PADDING = 1.25  # mmpose 0.x ``_box2cs`` widens every box by this factor
# (key, shape) that make a state dict ViTPose-H with a 17-keypoint COCO head
VITPOSE_H_SIGNATURE = {
    "backbone.patch_embed.proj.weight": (1280, 3, 16, 16),
    "backbone.blocks.31.attn.qkv.weight": (3840, 1280),
    "keypoint_head.final_layer.weight": (NUM_KEYPOINTS, 256, 1, 1),
}
KEYPOINT_SCORE_THRESHOLD = 0.3


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Tight box (x0, y0, x1, y1) of a binary HxW mask, x1 / y1 exclusive (dp2's
    ``masks_to_boxes``); None for an empty mask."""
    mask = np.asarray(mask).astype(bool)
    columns = np.flatnonzero(mask.any(axis=0))
    rows = np.flatnonzero(mask.any(axis=1))
    if len(columns) == 0:
        return None
    return int(columns[0]), int(rows[0]), int(columns[-1]) + 1, int(rows[-1]) + 1


def rle_box(rle: dict) -> tuple[int, int, int, int] | None:
    """:func:`mask_box` of an RLE mask without decoding it (pycocotools ``toBbox``)."""
    x, y, w, h = rle_bbox(rle)
    if w <= 0 or h <= 0:
        return None
    return int(round(x)), int(round(y)), int(round(x + w)), int(round(y + h))


def visibility(scores: Sequence[float], threshold: float = KEYPOINT_SCORE_THRESHOLD) -> list[int]:
    """1 where the score is >= threshold (dp2: ``keypoints[:, :, -1] >= 0.3``), else 0."""
    return [int(float(score) >= threshold) for score in scores]


def aspect_box(box: Sequence[float], input_size: tuple[int, int] = VITPOSE_INPUT_SIZE) -> tuple[float, float, float, float]:
    """The box widened along one axis to the network input's width:height around its centre
    (x0, y0, x1, y1): the region dp2's ViTPose crop covers (its zero padding included)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    aspect = input_size[0] / input_size[1]
    w, h = x1 - x0, y1 - y0
    cx, cy = x0 + w / 2, y0 + h / 2
    if w > aspect * h:
        h = w / aspect
    else:
        w = h * aspect
    return cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2


def mmpose_person_box(box: Sequence[float], dp2_crop: bool = True, padding: float = MMPOSE_BOX_PADDING) -> list[float]:
    """The ``bbox`` (x, y, w, h; ``format='xywh'``) to hand mmpose 0.x for a mask box (x0, y0, x1, y1).

    mmpose's ``_box2cs`` centres the crop on the box, widens it to the input aspect and
    multiplies it by ``padding`` (1.25). With ``dp2_crop`` the box is first shrunk by that
    factor around its centre, so the crop mmpose cuts is exactly :func:`aspect_box` of the mask
    box, as dp2's ViTPose saw it; without, mmpose adds its usual 25 % context.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    w, h = x1 - x0, y1 - y0
    if dp2_crop:
        cx, cy = x0 + w / 2, y0 + h / 2
        w, h = w / padding, h / padding
        x0, y0 = cx - w / 2, cy - h / 2
    return [x0, y0, w, h]


def mmpose_crop(bbox_xywh: Sequence[float], input_size: tuple[int, int] = VITPOSE_INPUT_SIZE,
                padding: float = MMPOSE_BOX_PADDING) -> tuple[float, float, float, float]:
    """The image region (x0, y0, x1, y1) mmpose 0.x's ``_box2cs`` + ``TopDownAffine`` crop for an
    xywh box (centre and scale as ``_box2cs`` computes them; the pixel std of 200 cancels)."""
    x, y, w, h = (float(v) for v in bbox_xywh[:4])
    aspect = input_size[0] / input_size[1]
    cx, cy = x + w * 0.5, y + h * 0.5
    if w > aspect * h:
        h = w / aspect
    elif w < aspect * h:
        w = h * aspect
    w, h = w * padding, h * padding
    return cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2


def checked_pose_results(pose_results, person_ids: Sequence[int], *, key: str) -> list[np.ndarray]:
    """mmpose 0.x ``inference_top_down_pose_model`` output for ``person_ids`` (in that order)
    -> one (17, 3) array (x, y, score) per person, or WorkflowInputError."""
    def fail(problem: str):
        raise WorkflowInputError(f"the pose model returned {problem} for image '{key}'; "
                                 f"expected mmpose 0.x top-down results of a 17-keypoint COCO model ({ENV_FILE})")

    if not isinstance(pose_results, (list, tuple)) or len(pose_results) != len(person_ids):
        fail(f"{len(pose_results) if isinstance(pose_results, (list, tuple)) else type(pose_results).__name__} "
             f"results for {len(person_ids)} persons")
    keypoints = []
    for person_id, result in zip(person_ids, pose_results):
        if not isinstance(result, dict) or "keypoints" not in result:
            fail("a result without 'keypoints'")
        if result.get("person_id", person_id) != person_id:
            fail(f"the results in another order (person {result.get('person_id')} where {person_id} was asked)")
        array = np.asarray(result["keypoints"], dtype=np.float64)
        if array.shape != (NUM_KEYPOINTS, 3):
            fail(f"keypoints of shape {array.shape} (expected {NUM_KEYPOINTS} x 3: x, y, score)")
        if not np.isfinite(array).all():
            fail("non-finite keypoints")
        keypoints.append(array)
    return keypoints


def person_keypoints(person_id: int, keypoints: np.ndarray | None, threshold: float) -> dict:
    """One person's entry: COCO [x, y, v] * 17 with v from the score threshold, and the scores.
    ``keypoints`` None (empty mask: nothing to run the model on): all zero, nothing visible."""
    if keypoints is None:
        return {"person_id": person_id, "keypoints": [0.0, 0.0, 0] * NUM_KEYPOINTS, "scores": [0.0] * NUM_KEYPOINTS}
    scores = [float(s) for s in keypoints[:, 2]]
    flat = []
    for (x, y, _), visible in zip(keypoints, visibility(scores, threshold)):
        flat += [round(float(x), 2), round(float(y), 2), visible]
    return {"person_id": person_id, "keypoints": flat, "scores": scores}


def check_vitpose_state_dict(shapes: dict, source: str) -> None:
    """WorkflowInputError unless ``shapes`` ({key: shape}) is ViTPose-H with one COCO head in
    mmpose 0.x naming (:data:`VITPOSE_H_SIGNATURE`): mmcv's ``load_checkpoint`` is not strict and
    would otherwise run a half-initialised model."""
    problems = []
    for key, shape in VITPOSE_H_SIGNATURE.items():
        if key not in shapes:
            problems.append(f"no '{key}'")
        elif tuple(shapes[key]) != shape:
            problems.append(f"'{key}' has shape {tuple(shapes[key])}, not {shape}")
    if "backbone.blocks.32.attn.qkv.weight" in shapes:
        problems.append("more than 32 transformer blocks")
    if problems:
        raise WorkflowInputError(
            f"{source} is not a ViTPose-H checkpoint with a COCO head in mmpose 0.x naming: "
            + "; ".join(problems)
            + ". Use the ViTPose authors' ViTPose-H COCO+AIC+MPII model split to its COCO head "
            f"(dp2's vit-h-multi-coco-{VITPOSE_H_SHA256_PREFIX}.pth; docs/detectors.md), not an mmpose 1.x checkpoint"
        )


def packaged_vitpose_config() -> Path:
    """ViTPose-H's config inside the installed ViTPose package (its wheel ships ``configs/``
    under ``mmpose/.mim``; an editable install links it there)."""
    mmpose = require("mmpose", "ViTPose keypoint detection")
    path = Path(mmpose.__file__).parent / ".mim" / VITPOSE_H_CONFIG
    if not path.is_file():
        raise WorkflowInputError(
            f"the installed mmpose ({getattr(mmpose, '__version__', '?')}) has no {VITPOSE_H_CONFIG} under {path.parent}; "
            f"install ViTPose at {VITPOSE_COMMIT} as {ENV_FILE} does, or pass the config file as the rule's pose_config"
        )
    return path


def checkpoint_shapes(checkpoint: Path) -> dict:
    """{key: shape} of a checkpoint's state dict (``state_dict`` entry or the dict itself)."""
    torch = require("torch", "ViTPose keypoint detection")
    data = torch.load(str(checkpoint), map_location="cpu")
    state = data.get("state_dict", data) if isinstance(data, dict) else {}
    return {key: tuple(value.shape) for key, value in state.items() if hasattr(value, "shape")}


def load_pose_model(checkpoint: Path, *, config: Path | None = None, device: str = "cuda:0", flip_test: bool = False):
    """ViTPose-H as an mmpose 0.x TopDown model (``mmpose.apis.init_pose_model``), its
    checkpoint checked first (:func:`check_vitpose_state_dict`). ``flip_test`` False as dp2."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise WorkflowInputError(f"ViTPose-H weights are missing at {checkpoint} (docs/detectors.md)")
    apis = require("mmpose.apis", "ViTPose keypoint detection")
    mmcv = require("mmcv", "ViTPose keypoint detection")
    check_vitpose_state_dict(checkpoint_shapes(checkpoint), str(checkpoint))
    cfg = mmcv.Config.fromfile(str(config or packaged_vitpose_config()))
    cfg.model.test_cfg.flip_test = flip_test
    return apis.init_pose_model(cfg, str(checkpoint), device=device)


def keypoints_for_persons(persons: dict, image_root: Path, model, *, dataset: str | None = None,
                          score_threshold: float = KEYPOINT_SCORE_THRESHOLD, batch_size: int = 32,
                          dp2_crop: bool = True, source: str = "ViTPose-H (mmpose 0.x top-down)",
                          progress: Callable[[Iterable], Iterable] = iter, read_image: Callable = decode_image,
                          api=None) -> dict:
    """The ``person-keypoints/v1`` document: every person of ``persons`` through the top-down
    ``model`` on the tight box of its mask (:func:`mmpose_person_box`), at most ``batch_size``
    persons per call, a keypoint visible when its score is >= ``score_threshold``.

    ``api`` is ``mmpose.apis`` (imported when None): ``inference_top_down_pose_model(model,
    img, person_results, format='xywh')`` with the image as a BGR uint8 array (mmpose 0.x's
    ``LoadImageFromFile`` takes an array for BGR and converts it to the RGB it normalizes).
    Every image of ``persons`` is in the document (an empty list when it has no person)."""
    if batch_size < 1:
        raise WorkflowInputError(f"batch_size must be at least 1, got {batch_size}")
    if api is None:
        api = require("mmpose.apis", "ViTPose keypoint detection")
    info = persons.get("info", {})
    entries: dict[str, list[dict]] = {}
    counts = {"images": 0, "persons": 0, "empty_masks": 0, "visible_keypoints": 0, "persons_without_visible": 0}
    for image, annotations in progress(persons_by_image(persons)):
        key = image["file_name"]
        entries[key] = []
        counts["images"] += 1
        if not annotations:
            continue
        boxes = {a["id"]: rle_box(a["segmentation"]) for a in annotations}
        queries = [{"bbox": np.array(mmpose_person_box(box, dp2_crop), dtype=np.float32), "person_id": pid}
                   for pid, box in boxes.items() if box is not None]
        results: dict[int, np.ndarray] = {}
        if queries:
            job = ImageJob(key, Path(image_root) / key, int(image["width"]), int(image["height"]))
            bgr = np.ascontiguousarray(read_rgb(job, read_image)[:, :, ::-1])
            for start in range(0, len(queries), batch_size):
                chunk = queries[start:start + batch_size]
                output = api.inference_top_down_pose_model(model, bgr, person_results=chunk, format="xywh")
                pose_results = output[0] if isinstance(output, tuple) else output
                ids = [query["person_id"] for query in chunk]
                results.update(zip(ids, checked_pose_results(pose_results, ids, key=key)))
        for annotation in annotations:
            entry = person_keypoints(annotation["id"], results.get(annotation["id"]), score_threshold)
            entries[key].append(entry)
            visible = sum(entry["keypoints"][2::3])
            counts["persons"] += 1
            counts["empty_masks"] += int(boxes[annotation["id"]] is None)
            counts["visible_keypoints"] += visible
            counts["persons_without_visible"] += int(visible == 0)
    return {
        "format": KEYPOINTS_FORMAT,
        "dataset": dataset or info.get("dataset"),
        "split": info.get("split"),
        "source": source,
        "score_threshold": score_threshold,
        "crop": "dp2 (mask box widened to 192:256, no padding)" if dp2_crop else "mmpose (mask box widened to 192:256, x1.25)",
        "images": entries,
        "counts": counts,
    }


def vitpose_source(checkpoint: Path, *, dp2_crop: bool, flip_test: bool) -> tuple[str, str]:
    """(source text for the document, sha256 of the checkpoint)."""
    digest = sha256_of(Path(checkpoint))
    same = "dp2's file" if digest.startswith(VITPOSE_H_SHA256_PREFIX) else f"not dp2's file (sha256 {VITPOSE_H_SHA256_PREFIX}...)"
    text = (f"ViTPose-H COCO head ({Path(checkpoint).name}, sha256 {digest}, {same}) via mmpose 0.x "
            f"(ViTPose {VITPOSE_COMMIT[:10]}), top-down on each person's mask box, "
            f"{'dp2 crop' if dp2_crop else 'mmpose crop'}, flip test {'on' if flip_test else 'off'}")
    return text, digest
