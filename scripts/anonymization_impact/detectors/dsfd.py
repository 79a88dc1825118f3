"""DSFD face boxes: the ``face-detections/v1`` document (:func:`detect_faces`).

DSFD boxes of every training image with at least one person to anonymize, through the
``face_detection`` package (0.2.2) as the paper's code (dp2
``tools/anonymization/*/annotate_faces.py``) called it: ``build_detector(clip_boxes=True,
confidence_threshold=...)`` with its defaults otherwise (DSFD, NMS IoU 0.3, full resolution, fp32)
and ``detector.detect(rgb_uint8_image)`` per image. The file keeps every box scoring at least the
detector's threshold; ``regions.build_face_regions`` applies the dataset's confidence afterwards.
Thresholding after the fact is exact: the package thresholds the raw prior scores, then runs
greedy NMS, so boxes >= 0.3 come out the same whether the detector ran at 0.2 or 0.3 (a
lower-scoring box never suppresses a higher one).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence
from urllib.parse import urlparse

import numpy as np

from ..errors import WorkflowInputError
from ..io import decode_image
from ..regions import DETECTIONS_FORMAT
from ..weights import sha256_of
from .common import ImageJob, persons_by_image, read_rgb, require

# face_detection 0.2.2, github.com/hukkelas/DSFD-Pytorch-Inference
FACE_DETECTION_VERSION = "0.2.2"
DSFD_NAME = "DSFDDetector"
# the module holding ``model_url``; torch.hub caches the weights under that URL's file name
DSFD_WEIGHTS_MODULE = "face_detection.dsfd.detect"
# DSFD clips its boxes (clip_boxes=True): beyond float round-off outside the image it is another detector
BOX_TOLERANCE = 1.0


def is_out_of_memory(error: BaseException) -> bool:
    """CUDA / CPU allocator failures (torch.cuda.OutOfMemoryError is a RuntimeError subclass)."""
    return isinstance(error, MemoryError) or (isinstance(error, RuntimeError) and "out of memory" in str(error).lower())


def _free_cuda_cache() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def inference_size(height: int, width: int, max_resolution: int | None) -> tuple[int, int]:
    """(height, width) face_detection 0.2.2 feeds DSFD (``Detector.resize`` with shrink 1):
    unchanged without ``max_resolution``, else scaled so the longer side is at most it."""
    if max_resolution is None:
        return height, width
    factor = max_resolution / max(height, width)
    if factor > 1:
        return height, width
    return int(height * factor), int(width * factor)


def batches_by_size(items: Iterable, size_of: Callable, batch_size: int) -> Iterable[list]:
    """Consecutive items grouped into lists of at most ``batch_size`` with equal ``size_of``
    (DSFD's ``batched_detect`` stacks its images, so one batch has one image size)."""
    if batch_size < 1:
        raise WorkflowInputError(f"batch_size must be at least 1, got {batch_size}")
    batch: list = []
    for item in items:
        if batch and (len(batch) == batch_size or size_of(item) != size_of(batch[0])):
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch


def checked_face_detections(raw, width: int, height: int, *, key: str) -> tuple[list[list[float]], list[float], int]:
    """One image's DSFD output (N, 5: x0, y0, x1, y1, score) -> (boxes, scores, dropped).

    Boxes are clipped to the image (the detector already clips with ``clip_boxes=True``; this
    removes float round-off); boxes empty after clipping are dropped and counted (their IoU with
    any mask is 0, so dp2's matching could never have used them). Anything else that is not a
    finite (N, 5) array with scores in [0, 1] or a box far outside the image is an error.
    """
    def fail(problem: str):
        raise WorkflowInputError(f"the face detector returned {problem} for image '{key}'; "
                                 "it is not DSFD from face_detection==0.2.2 as this workflow expects")

    array = np.asarray(raw.detach().cpu().numpy() if hasattr(raw, "detach") else raw, dtype=np.float64)
    if array.size == 0:
        return [], [], 0
    if array.ndim != 2 or array.shape[1] != 5:
        fail(f"an array of shape {array.shape} (expected N x 5: x0, y0, x1, y1, score)")
    if not np.isfinite(array).all():
        fail("non-finite values")
    scores = array[:, 4]
    if (scores < 0).any() or (scores > 1).any():
        fail(f"scores outside [0, 1] ({scores.min():.3g} .. {scores.max():.3g})")
    boxes = array[:, :4]
    if ((boxes[:, [0, 2]] < -BOX_TOLERANCE).any() or (boxes[:, [1, 3]] < -BOX_TOLERANCE).any()
            or (boxes[:, [0, 2]] > width + BOX_TOLERANCE).any() or (boxes[:, [1, 3]] > height + BOX_TOLERANCE).any()):
        fail(f"boxes outside the {width}x{height} image")
    boxes = np.stack([boxes[:, 0].clip(0, width), boxes[:, 1].clip(0, height),
                      boxes[:, 2].clip(0, width), boxes[:, 3].clip(0, height)], axis=1)
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return ([[float(v) for v in box] for box in boxes[keep]], [float(s) for s in scores[keep]], int((~keep).sum()))


def face_detection_images(persons: dict, root: Path) -> list[ImageJob]:
    """The images DSFD runs on: those with at least one person to anonymize (dp2 skipped the
    others; a face can only be kept when it matches a person)."""
    return [ImageJob(image["file_name"], Path(root) / image["file_name"], int(image["width"]), int(image["height"]))
            for image, annotations in persons_by_image(persons) if annotations]


@dataclass(frozen=True)
class DsfdSettings:
    """``face_detection.build_detector`` arguments. Defaults: dp2's (``build_detector(
    clip_boxes=True, confidence_threshold=...)``, the package's defaults otherwise)."""

    confidence: float
    nms_iou: float = 0.3
    max_resolution: int | None = None  # None: full resolution, as dp2
    clip_boxes: bool = True
    fp16: bool = False
    device: str = "cuda"

    def build_kwargs(self) -> dict:
        return {"confidence_threshold": self.confidence, "nms_iou_threshold": self.nms_iou,
                "max_resolution": self.max_resolution, "fp16_inference": self.fp16, "clip_boxes": self.clip_boxes}


@contextlib.contextmanager
def _torch_hub_cache(weights: Path, file_name: str):
    """A temporary torch.hub dir whose ``checkpoints/<file_name>`` is ``weights``, so the
    package's ``load_state_dict_from_url`` loads the local file instead of downloading."""
    torch = require("torch", "DSFD face detection")
    previous = torch.hub.get_dir()
    with tempfile.TemporaryDirectory(prefix="dsfd-hub-") as hub:
        checkpoints = Path(hub) / "checkpoints"
        checkpoints.mkdir()
        os.symlink(Path(weights).resolve(), checkpoints / file_name)
        torch.hub.set_dir(hub)
        try:
            yield
        finally:
            torch.hub.set_dir(previous)


def dsfd_weights_file_name() -> str:
    """The file name face_detection's DSFD caches its weights under (its URL's last part)."""
    module = require(DSFD_WEIGHTS_MODULE, "DSFD face detection")
    return os.path.basename(urlparse(module.model_url).path)


def build_face_detector(weights: Path, settings: DsfdSettings):
    """``face_detection.build_detector("DSFDDetector", ...)`` loading ``weights`` (the
    WIDERFace ResNet-152 state dict the package downloads, placed locally) instead of its URL."""
    weights = Path(weights)
    if not weights.is_file():
        raise WorkflowInputError(f"DSFD weights are missing at {weights}; place WIDERFace_DSFD_RES152.pth there (docs/detectors.md)")
    face_detection = require("face_detection", "DSFD face detection")
    try:
        with _torch_hub_cache(weights, dsfd_weights_file_name()):
            return face_detection.build_detector(DSFD_NAME, device=_torch_device(settings.device), **settings.build_kwargs())
    except (RuntimeError, EOFError, pickle.UnpicklingError) as error:
        if not _is_weights_error(error):
            raise
        raise WorkflowInputError(f"{weights} does not load into DSFD ({str(error)[:300]}); "
                                 "it is not the WIDERFace ResNet-152 DSFD state dict (docs/detectors.md)") from None


def _is_weights_error(error: BaseException) -> bool:
    """A weight file that is not DSFD's: unreadable, or keys / shapes that do not fit (torch's
    load_state_dict and zip reader messages); other RuntimeErrors (CUDA) pass through."""
    return isinstance(error, (EOFError, pickle.UnpicklingError)) or any(
        text in str(error) for text in ("Error(s) in loading state_dict", "PytorchStreamReader", "invalid load key"))


def _torch_device(device: str):
    torch = require("torch", "the detectors")
    return torch.device(device)


def detect_faces(images: Sequence[ImageJob], detector, *, dataset: str, split: str, detector_info: dict,
                 batch_size: int = 1, progress: Callable[[Iterable], Iterable] = iter,
                 read_image: Callable = decode_image) -> dict:
    """The ``face-detections/v1`` document of ``images`` with ``detector`` (face_detection's
    ``Detector``: ``detect(image)`` / ``batched_detect(images)`` on RGB uint8 arrays -> N x 5).

    batch_size 1 calls ``detect`` per image as dp2 did; larger batches stack consecutive
    images of one size into ``batched_detect``. A batch that runs out of memory is retried
    image by image; one image that does is an error naming it and ``max_resolution``."""
    entries: dict[str, dict] = {}
    counts = {"images": 0, "detections": 0, "dropped_empty": 0}
    groups = list(batches_by_size(images, lambda job: (job.height, job.width), batch_size))
    for group in progress(groups):
        outputs = _detect_group(detector, group, read_image)
        for job, raw in zip(group, outputs):
            boxes, scores, dropped = checked_face_detections(raw, job.width, job.height, key=job.key)
            entries[job.key] = {"boxes": boxes, "scores": scores}
            counts["images"] += 1
            counts["detections"] += len(scores)
            counts["dropped_empty"] += dropped
    return {
        "format": DETECTIONS_FORMAT,
        "dataset": dataset,
        "split": split,
        "detector": detector_info,
        "images": entries,
        "counts": counts,
    }


def _detect_group(detector, group: list[ImageJob], read_image) -> list:
    pixels = [read_rgb(job, read_image) for job in group]
    try:
        if len(group) == 1:
            return [detector.detect(pixels[0])]
        outputs = list(detector.batched_detect(np.stack(pixels)))
        if len(outputs) != len(group):
            raise WorkflowInputError(f"the face detector returned {len(outputs)} results for a batch of {len(group)} images")
        return outputs
    except (RuntimeError, MemoryError) as error:
        if not is_out_of_memory(error):
            raise
    _free_cuda_cache()
    if len(group) > 1:
        return [output for job in group for output in _detect_group(detector, [job], read_image)]
    job = group[0]
    raise WorkflowInputError(
        f"DSFD ran out of memory on image '{job.key}' ({job.width}x{job.height}) at full resolution. "
        "Run it on a GPU with more memory, or set the rule's max_resolution (e.g. 2048): that "
        "downsamples larger images before detection, which the paper's run did not do (docs/detectors.md)"
    )


def dsfd_info(settings: DsfdSettings, weights: Path, version: str | None = None) -> dict:
    """The ``detector`` block of the document: what made the boxes."""
    info = {"name": "DSFD", "package": f"face_detection=={version or FACE_DETECTION_VERSION}",
            "weights": {"file": Path(weights).name, "sha256": sha256_of(Path(weights))}}
    info.update({key: value for key, value in asdict(settings).items() if key != "device"})
    info["confidence_threshold"] = info.pop("confidence")
    info["nms_iou_threshold"] = info.pop("nms_iou")
    return info
