"""Rule predict: the trained model on the ORIGINAL validation split, COCO result format,
by the backend that trained it."""

import sys
from pathlib import Path

from tqdm import tqdm

from anonymization_impact.io import read_json, write_json_atomic
from anonymization_impact.logs import logged
from anonymization_impact.training import backend

with logged(snakemake.log[0]) as log:  # noqa: F821 (snakemake is injected)
    predictions = backend(snakemake.params.backend).predict(  # noqa: F821
        Path(snakemake.input.weights),  # noqa: F821
        read_json(snakemake.input.annotation),  # noqa: F821
        Path(snakemake.params.root),  # noqa: F821
        device=snakemake.params.device,  # noqa: F821
        threads=snakemake.threads,  # noqa: F821
        progress=lambda items: tqdm(items, file=sys.stderr, mininterval=30, desc="images"),
    )
    write_json_atomic(snakemake.output[0], predictions)  # noqa: F821
    log.info("%d predictions", len(predictions))
