"""Rule train_model: train one (dataset, variant, model, seed) with the configured backend."""

import sys

from tqdm import tqdm

from anonymization_impact.io import write_json_atomic
from anonymization_impact.logs import logged
from anonymization_impact.training import backend
from anonymization_impact.training.job import TrainingJob

with logged(snakemake.log[0]) as log:  # noqa: F821 (snakemake is injected)
    settings = snakemake.params.job  # noqa: F821
    job = TrainingJob.from_settings(
        settings,
        image_root=snakemake.params.image_root,  # noqa: F821
        annotation=snakemake.input.annotation,  # noqa: F821
        output=snakemake.output.weights,  # noqa: F821
        checkpoint_dir=snakemake.params.checkpoint_dir,  # noqa: F821
        threads=snakemake.threads,  # noqa: F821
    )
    log.info("training %s", job.description())
    summary = backend(settings["backend"]).train(job, progress=lambda items: tqdm(items, file=sys.stderr, mininterval=30, desc="iterations"))
    # What was really trained (the twins' schedule substitutes the model's backbone).
    summary.update(backend=settings["backend"], architecture=job.architecture, backbone=job.backbone, schedule=job.schedule, init_weights=str(job.init_weights) if job.init_weights else None)
    write_json_atomic(snakemake.output.summary, summary, indent=1)  # noqa: F821
    log.info("done: %s", summary)
