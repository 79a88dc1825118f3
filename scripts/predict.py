"""Rule predict: the trained model on the ORIGINAL validation split, COCO result format,
by the backend that trained it."""

import sys
from pathlib import Path

from tqdm import tqdm

from anonymization_impact.devices import resolve
from anonymization_impact.io import read_json, write_json_atomic
from anonymization_impact.logs import logged
from anonymization_impact.rule_job import job_of
from anonymization_impact.training import backend

# the job: injected by Snakemake's script: or a test, else the command line's (rule_job), as the rule calls it
snakemake = job_of(globals(), sys.argv[1:])

with logged(snakemake.log[0]) as log:
    device, _ = resolve(snakemake.params.device, "training.device", log)  # the GPU guard, before any work
    predictions = backend(snakemake.params.backend).predict(
        Path(snakemake.input.weights),
        read_json(snakemake.input.annotation),
        Path(snakemake.params.root),
        device=device,
        threads=snakemake.threads,
        progress=lambda items: tqdm(items, file=sys.stderr, mininterval=30, desc="images"),
    )
    write_json_atomic(snakemake.output[0], predictions)
    log.info("%d predictions", len(predictions))
