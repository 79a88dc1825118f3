"""What one training run is: :class:`TrainingJob`, the input of every backend's ``train``."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import TASKS
from ..walltime import Deadline


@dataclass
class TrainingJob:
    image_root: Path  # dataset root the annotation's file names are relative to
    annotation: Path  # normalized COCO-format instances.json of the training split
    architecture: str  # mask_rcnn | keypoint_rcnn
    backbone: str  # resnet18 ... resnet152 (after the schedule's override)
    schedule: dict  # a validated `training.<name>` schedule
    seed: int
    output: Path  # final weights
    checkpoint_dir: Path
    checkpoint_every: int = 50
    init_weights: Path | None = None  # ImageNet backbone weights (schedule init "imagenet")
    device: str = "auto"
    amp: bool = False
    threads: int = 2
    fingerprint_extra: dict = field(default_factory=dict)  # anything else a checkpoint must match
    exclude_classes: tuple[str, ...] = ()  # class names left out of training
    deadline: Deadline | None = None  # stop with a checkpoint by then (a scheduler's time limit); not in the description

    @classmethod
    def from_settings(cls, settings: dict, *, image_root, annotation, output, checkpoint_dir, threads: int) -> "TrainingJob":
        """A job from the settings a rule passes (common.smk's get_training_job_settings)."""
        from ..weights import verify_weights

        init = settings["init_weights"]
        return cls(
            image_root=Path(image_root),
            annotation=Path(annotation),
            architecture=settings["architecture"],
            backbone=settings["backbone"],
            schedule=settings["schedule"],
            seed=settings["seed"],
            output=Path(output),
            checkpoint_dir=Path(checkpoint_dir),
            checkpoint_every=settings["checkpoint_every"],
            init_weights=verify_weights(init["name"], init) if init else None,
            device=settings["device"],
            amp=settings["amp"],
            threads=threads,
            exclude_classes=tuple(settings.get("exclude_classes", ())),
        )

    @property
    def task(self) -> str:
        return TASKS[self.architecture]

    def fingerprint(self) -> str:
        """sha256 of the description: a checkpoint directory belongs to one configuration."""
        return hashlib.sha256(json.dumps(self.description(), sort_keys=True, default=str).encode()).hexdigest()

    def description(self) -> dict:
        """What determines the weights; a checkpoint of another description is not resumed."""
        keys = ("architecture", "backbone", "schedule", "seed", "threads", "amp", "fingerprint_extra")
        described = {key: value for key, value in asdict(self).items() if key in keys}
        described["annotation"] = str(self.annotation)
        if self.exclude_classes:  # absent otherwise: older runs keep their fingerprint
            described["exclude_classes"] = sorted(self.exclude_classes)
        return described
