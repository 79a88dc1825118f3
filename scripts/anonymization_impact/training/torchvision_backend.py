"""The portable backend: torchvision Mask R-CNN / Keypoint R-CNN with ResNet-FPN backbones.

Resumable (atomic checkpoints of model, optimizer, random state and iteration), deterministic
on the CPU for a fixed seed and thread count, and stopping on a non-finite loss with the last
good checkpoint kept.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
import torchvision
from torch import nn
from torchvision.models.detection import KeypointRCNN, MaskRCNN
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.keypoint_rcnn import KeypointRCNNHeads, KeypointRCNNPredictor
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops import FrozenBatchNorm2d

from ..errors import WorkflowInputError
from ..io import decode_image, write_bytes_atomic
from ..masks import encode
from ..walltime import TimeLimitReached
from .common import TrainingDiverged, framework_record, resolve_device
from .data import DetectionSamples, batch_indices, flip_decision
from .job import TrainingJob
from .schedule import learning_rate

log = logging.getLogger("anonymization_impact.training")
STAGES = ["layer4", "layer3", "layer2", "layer1", "conv1"]


def select_device(requested: str) -> torch.device:
    return torch.device(resolve_device(requested))


# Block type and blocks per stage; resnet10 is the smallest layout, for the twins' Fig. 8.
RESNET_LAYOUTS = {
    "resnet10": (BasicBlock, [1, 1, 1, 1]),
    "resnet18": (BasicBlock, [2, 2, 2, 2]),
    "resnet34": (BasicBlock, [3, 4, 6, 3]),
    "resnet50": (Bottleneck, [3, 4, 6, 3]),
    "resnet101": (Bottleneck, [3, 4, 23, 3]),
    "resnet152": (Bottleneck, [3, 8, 36, 3]),
}


class NarrowResNet(ResNet):
    """torchvision's ResNet with ``width`` instead of 64 channels in its first stage.

    Same module names and initialization as torchvision's, so the FPN and the stage freezing
    treat it alike; a width of 16 makes a detector the twins can train in seconds.
    """

    def __init__(self, block, layers: list[int], width: int, norm_layer):
        nn.Module.__init__(self)
        self._norm_layer, self.inplanes, self.dilation, self.groups, self.base_width = norm_layer, width, 1, 1, 64
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = norm_layer(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, width, layers[0])
        self.layer2 = self._make_layer(block, width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(block, width * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(block, width * 8, layers[3], stride=2)
        self.fc = nn.Linear(width * 8 * block.expansion, 1)  # unused; its width names the stages'
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.constant_(module.weight, 1)
                nn.init.constant_(module.bias, 0)


def resnet(backbone: str, width: int, norm_layer) -> ResNet:
    block, layers = RESNET_LAYOUTS[backbone]
    if width == 64:
        return ResNet(block, layers, norm_layer=norm_layer)
    return NarrowResNet(block, layers, width, norm_layer)


def load_backbone(body: ResNet, path: Path, backbone: str, width: int) -> None:
    """Load initial backbone weights; a file without the classifier (``fc``, unused by the
    detector: the twins' pre-trained backbones) is accepted, any other difference is not."""
    try:
        missing, unexpected = body.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=False)
    except RuntimeError as error:  # shapes differ
        raise WorkflowInputError(f"initial weights {path} do not fit a {backbone} of width {width}: {str(error).splitlines()[-1].strip()}") from None
    if unexpected or set(missing) - {"fc.weight", "fc.bias"}:
        raise WorkflowInputError(f"initial weights {path} do not fit a {backbone} of width {width}: missing {sorted(missing)[:4]}, unexpected {sorted(unexpected)[:4]}")


def backbone_state(detector_weights: Path) -> dict:
    """The ResNet weights inside a trained detector's file (what a backbone is initialized from)."""
    state = torch.load(detector_weights, map_location="cpu", weights_only=False)["model"]
    prefix = "backbone.body."
    return {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}


def build_model(architecture: str, backbone: str, num_classes: int, schedule: dict, init_weights: Path | None) -> nn.Module:
    """Mask / Keypoint R-CNN with a ResNet-FPN backbone and the schedule's sizes."""
    pretrained = schedule["init"] == "imagenet"
    resnet_body = resnet(backbone, schedule["backbone_width"], FrozenBatchNorm2d if pretrained else nn.BatchNorm2d)
    if pretrained:
        load_backbone(resnet_body, init_weights, backbone, schedule["backbone_width"])
    trainable = STAGES[: schedule["trainable_backbone_layers"]]
    if schedule["trainable_backbone_layers"] == 5:
        trainable.append("bn1")
    for name, parameter in resnet_body.named_parameters():
        parameter.requires_grad_(any(name.startswith(stage) for stage in trainable))
    width = resnet_body.fc.in_features // 8  # channels of layer1 (64 basic block, 256 bottleneck)
    channels = schedule["fpn_channels"]
    body = BackboneWithFPN(resnet_body, {f"layer{i}": str(i - 1) for i in range(1, 5)}, [width, width * 2, width * 4, width * 8], channels)
    head = schedule["head_channels"]
    representation = 1024 if head is None else head * 4
    anchors = AnchorGenerator(tuple((size,) for size in schedule["anchor_sizes"]), ((0.5, 1.0, 2.0),) * len(schedule["anchor_sizes"]))
    common = dict(
        rpn_anchor_generator=anchors,
        min_size=schedule["image_min_size"],  # a list: one drawn per image in training, the last for prediction
        max_size=schedule["image_max_size"],
        rpn_pre_nms_top_n_train=schedule["rpn_pre_nms_top_n"],
        rpn_post_nms_top_n_train=schedule["rpn_post_nms_top_n"] or 2000,  # null: torchvision's own
        rpn_pre_nms_top_n_test=schedule["rpn_pre_nms_top_n_test"],
        rpn_post_nms_top_n_test=schedule["rpn_post_nms_top_n_test"],
        box_batch_size_per_image=schedule["box_batch_size_per_image"],
        box_head=TwoMLPHead(channels * 7 * 7, representation),
        box_predictor=FastRCNNPredictor(representation, num_classes + 1),
    )
    if architecture == "mask_rcnn":
        mask_width = head or 256
        return MaskRCNN(
            body, num_classes=None, mask_head=MaskRCNNHeads(channels, [mask_width] * 4, 1), mask_predictor=MaskRCNNPredictor(mask_width, mask_width, num_classes + 1), **common
        )
    keypoint_width = head or 512
    return KeypointRCNN(
        body, num_classes=None, keypoint_head=KeypointRCNNHeads(channels, [keypoint_width] * 8), keypoint_predictor=KeypointRCNNPredictor(keypoint_width, 17), **common
    )


def _fingerprint(job: TrainingJob) -> str:
    return hashlib.sha256(json.dumps(job.description(), sort_keys=True, default=str).encode()).hexdigest()


def save_atomic(payload: dict, path: Path) -> None:
    """torch.save through a buffer: the archive then gets a fixed internal name (saving to a
    temporary file would embed its random name), so equal weights give equal bytes."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    write_bytes_atomic(Path(path), buffer.getvalue())


def _checkpoint_path(job: TrainingJob) -> Path:
    """One directory per configuration: a rerun after a config change starts over instead of
    stumbling over the old run's checkpoint, and a killed run finds its own."""
    return Path(job.checkpoint_dir) / _fingerprint(job)[:16] / "last.pth"


def _resume(job: TrainingJob, model, optimizer) -> int:
    path = _checkpoint_path(job)
    others = [p for p in Path(job.checkpoint_dir).glob("*/last.pth") if p != path]
    for other in others:
        log.info("ignoring %s: written by a run with another configuration", other)
    if not path.exists():
        return 0
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state["fingerprint"] != _fingerprint(job):
        raise WorkflowInputError(
            f"checkpoint {path} was written by a run with another configuration "
            f"({json.dumps(state['description'], sort_keys=True, default=str)[:300]}...); refusing to resume from it. "
            "Delete the checkpoint directory to start this run over."
        )
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])
    if state.get("cuda_rng") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    log.info("resumed from %s at iteration %d", path, state["iteration"])
    return state["iteration"]


def _checkpoint(job: TrainingJob, model, optimizer, iteration: int) -> None:
    save_atomic(
        {
            "fingerprint": _fingerprint(job),
            "description": job.description(),
            "iteration": iteration,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        },
        _checkpoint_path(job),
    )


class _Batches(torch.utils.data.Dataset):
    """The batch of each iteration in ``iterations`` (a map-style dataset for DataLoader)."""

    def __init__(self, samples: DetectionSamples, seed: int, batch: int, flip: float, iterations: range):
        self.samples, self.seed, self.batch, self.flip, self.iterations = samples, seed, batch, flip, iterations

    def __len__(self) -> int:
        return len(self.iterations)

    def __getitem__(self, position: int) -> list:
        iteration = self.iterations[position]
        indices = batch_indices(iteration, self.batch, len(self.samples), self.seed)
        return [self.samples.load(index, flip_decision(iteration, slot, self.batch, self.seed, self.flip)) for slot, index in enumerate(indices)]


def train(job: TrainingJob, progress=None) -> dict:
    """Train (or resume) ``job``; writes ``job.output`` and returns a summary."""
    if job.schedule["init"] == "coco":
        raise WorkflowInputError("schedule init 'coco' (detectron2's COCO Mask R-CNN) is not available with the torchvision backend; use init imagenet")
    torch.set_num_threads(job.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(job.seed)
    device = select_device(job.device)
    samples = DetectionSamples(job.image_root, job.annotation, job.task, job.exclude_classes)
    model = build_model(job.architecture, job.backbone, len(samples.category_ids), job.schedule, job.init_weights).to(device)
    parameters = [parameter for parameter in model.parameters() if parameter.requires_grad]
    optimizer = torch.optim.SGD(parameters, lr=job.schedule["base_lr"], momentum=job.schedule["momentum"], weight_decay=job.schedule["weight_decay"])
    start = _resume(job, model, optimizer)
    model.train()
    schedule, batch = job.schedule, job.schedule["batch_size"]
    started = time.perf_counter()
    iterations = range(start, schedule["iterations"])
    # On a GPU the rule's threads load batches in worker processes; each batch is a pure
    # function of its iteration, so the order of work cannot change the result.
    batches = torch.utils.data.DataLoader(
        _Batches(samples, job.seed, batch, schedule["horizontal_flip"], iterations),
        batch_size=None,
        num_workers=job.threads if device.type == "cuda" else 0,
        generator=torch.Generator().manual_seed(job.seed),  # leaves torch's global generator alone
    )
    for iteration, loaded in zip(progress(iterations) if progress else iterations, batches):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(iteration, schedule)
        images = [image.to(device) for image, _ in loaded]
        targets = [{key: value.to(device) for key, value in target.items()} for _, target in loaded]
        # bfloat16 needs no loss scaling (A100 and newer support it).
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=job.amp and device.type == "cuda"):
            losses = model(images, targets)
        loss = sum(losses.values())
        if not torch.isfinite(loss):
            raise TrainingDiverged(
                f"non-finite loss at iteration {iteration} ({ {k: v.item() for k, v in losses.items()} }); "
                f"the last good checkpoint is kept in {job.checkpoint_dir}. Lower training.*.base_lr or check the data."
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if schedule["clip_gradient_norm"] is not None:  # detectron2's SOLVER.CLIP_GRADIENTS, type "full_model"
            torch.nn.utils.clip_grad_norm_(parameters, schedule["clip_gradient_norm"])
        optimizer.step()
        if iteration % 10 == 0 or iteration + 1 == schedule["iterations"]:
            log.info("iteration %d lr %.5f loss %.4f %s", iteration, learning_rate(iteration, schedule), loss.item(), {k: round(v.item(), 4) for k, v in losses.items()})
        stop = job.deadline is not None and job.deadline.stops_after(iteration + 1, schedule["iterations"])
        if stop or ((iteration + 1) % job.checkpoint_every == 0 and iteration + 1 < schedule["iterations"]):
            _checkpoint(job, model, optimizer, iteration + 1)
        if stop:
            raise TimeLimitReached(
                f"stopped after iteration {iteration + 1} of {schedule['iterations']} (this job started at {start}) before its time limit, "
                f"by {job.deadline.describe()}; checkpoint {_checkpoint_path(job)}: the next attempt resumes there"
            )
    save_atomic(
        {
            "model": model.state_dict(),
            "architecture": job.architecture,
            "backbone": job.backbone,
            "schedule": job.schedule,
            "category_ids": samples.category_ids,
            "fingerprint": _fingerprint(job),
        },
        Path(job.output),
    )
    return {"iterations": schedule["iterations"], "resumed_at": start, "seconds": time.perf_counter() - started, "device": str(device), "images": len(samples),
            "frameworks": framework_record("torch", "torchvision")}


@torch.no_grad()
def predict(weights: Path, annotation: dict, image_root: Path, *, device: str = "auto", threads: int = 2, progress=None) -> list[dict]:
    """COCO-format results of the model in ``weights`` on every image of ``annotation``."""
    torch.set_num_threads(threads)
    state = torch.load(weights, map_location="cpu", weights_only=False)
    schedule = {**state["schedule"], "init": "scratch"}  # the weights come from the file
    model = build_model(state["architecture"], state["backbone"], len(state["category_ids"]), schedule, None)
    model.load_state_dict(state["model"])
    target = select_device(device)
    model.to(target).eval()
    results = []
    images = annotation["images"]
    for image in progress(images) if progress else images:
        pixels, _, _ = decode_image(Path(image_root) / image["file_name"])
        tensor = torch.from_numpy(pixels).permute(2, 0, 1).float().div_(255).to(target)
        output = {key: value.cpu() for key, value in model([tensor])[0].items()}
        for index in range(len(output["scores"])):
            x0, y0, x1, y1 = output["boxes"][index].tolist()
            result = {
                "image_id": image["id"],
                "category_id": state["category_ids"][int(output["labels"][index]) - 1],
                "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)],
                "score": round(float(output["scores"][index]), 5),
            }
            if "masks" in output:
                result["segmentation"] = encode(output["masks"][index, 0].numpy() >= 0.5)
            if "keypoints" in output:
                points = output["keypoints"][index].numpy()
                scores = output["keypoints_scores"][index].numpy()
                result["keypoints"] = [round(float(v), 2) for point, score in zip(points, scores) for v in (point[0], point[1], score)]
            results.append(result)
    return results
