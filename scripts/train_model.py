"""Rule train_model: train one (dataset, variant, model, seed) with the configured backend."""

import sys
from pathlib import Path

from tqdm import tqdm

from anonymization_impact.io import write_json_atomic
from anonymization_impact.logs import logged
from anonymization_impact.training import TrainingJob, backend
from anonymization_impact.training.weights import verify_weights

with logged(snakemake.log[0]) as log:  # noqa: F821 (snakemake is injected)
    settings = snakemake.params.job  # noqa: F821
    init = settings["init_weights"]
    job = TrainingJob(
        image_root=Path(snakemake.params.image_root),  # noqa: F821
        annotation=Path(snakemake.input.annotation),  # noqa: F821
        architecture=settings["architecture"],
        backbone=settings["backbone"],
        schedule=settings["schedule"],
        seed=settings["seed"],
        output=Path(snakemake.output.weights),  # noqa: F821
        checkpoint_dir=Path(snakemake.params.checkpoint_dir),  # noqa: F821
        checkpoint_every=settings["checkpoint_every"],
        init_weights=verify_weights(init["name"], init) if init else None,
        device=settings["device"],
        amp=settings["amp"],
        threads=snakemake.threads,  # noqa: F821
    )
    log.info("training %s", job.description())
    summary = backend(settings["backend"]).train(job, progress=lambda items: tqdm(items, file=sys.stderr, mininterval=30, desc="iterations"))
    # What was really trained (the twins' schedule overrides the model's backbone).
    summary.update(backend=settings["backend"], architecture=job.architecture, backbone=job.backbone, schedule=job.schedule)
    write_json_atomic(snakemake.output.summary, summary, indent=1)  # noqa: F821
    log.info("done: %s", summary)
