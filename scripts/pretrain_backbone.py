"""Rule pretrain_backbone: the twins' stand-in for an ImageNet backbone.

Trains a Mask R-CNN from scratch on the separate pretraining images and keeps its backbone.
"""

import sys
from pathlib import Path

from tqdm import tqdm

from anonymization_impact.logs import logged
from anonymization_impact.training import torchvision_backend
from anonymization_impact.training.job import TrainingJob

with logged(snakemake.log[0]) as log:  # noqa: F821 (snakemake is injected)
    checkpoint_dir = Path(snakemake.params.checkpoint_dir)  # noqa: F821
    job = TrainingJob.from_settings(
        snakemake.params.job,  # noqa: F821
        image_root=snakemake.input.root,  # noqa: F821
        annotation=snakemake.input.annotation,  # noqa: F821
        output=checkpoint_dir / "detector.pth",
        checkpoint_dir=checkpoint_dir,
        threads=snakemake.threads,  # noqa: F821
    )
    log.info("pre-training %s", job.description())
    summary = torchvision_backend.train(job, progress=lambda items: tqdm(items, file=sys.stderr, mininterval=30, desc="iterations"))
    state = torchvision_backend.backbone_state(job.output)
    torchvision_backend.save_atomic(state, Path(snakemake.output[0]))  # noqa: F821
    log.info("kept %d backbone tensors of %s: %s", len(state), job.output, summary)
