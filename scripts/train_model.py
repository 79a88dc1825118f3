"""Rule train_model: train one (dataset, variant, model, seed) with the configured backend."""

import sys

from tqdm import tqdm

from anonymization_impact.devices import resolve
from anonymization_impact.io import write_json_atomic
from anonymization_impact.logs import logged
from anonymization_impact.rule_job import job_of
from anonymization_impact.training import backend
from anonymization_impact.training.job import TrainingJob
from anonymization_impact.walltime import job_deadline

# the job: injected by Snakemake's script: or a test, else the command line's (rule_job), as the rule calls it
snakemake = job_of(globals(), sys.argv[1:])

with logged(snakemake.log[0]) as log:
    settings = snakemake.params.training
    job = TrainingJob.from_settings(
        settings,
        image_root=snakemake.params.image_root,
        annotation=snakemake.input.annotation,
        output=snakemake.output.weights,
        checkpoint_dir=snakemake.params.checkpoint_dir,
        threads=snakemake.threads,
    )
    _, device_record = resolve(job.device, "training.device", log)  # the GPU guard, before any work
    job.deadline = job_deadline(log=log)  # under a scheduler's time limit: stop with a checkpoint before it
    log.info("training %s", job.description())
    summary = backend(settings["backend"]).train(job, progress=lambda items: tqdm(items, file=sys.stderr, mininterval=30, desc="iterations"))
    # What was really trained (the twins' schedule substitutes the model's backbone).
    summary.update(backend=settings["backend"], architecture=job.architecture, backbone=job.backbone, schedule=job.schedule, init_weights=str(job.init_weights) if job.init_weights else None, device_record=device_record)
    write_json_atomic(snakemake.output.summary, summary, indent=1)
    log.info("done: %s", summary)
