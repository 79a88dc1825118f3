"""Rule generate_pretraining_set: COCO-style synthetic images for the twins' backbone pretraining."""

from pathlib import Path

from anonymization_impact.logs import logged
from anonymization_impact.twins import write_pretraining_set

with logged(snakemake.log[0]) as log:  # noqa: F821 (snakemake is injected)
    settings = snakemake.params.pretraining  # noqa: F821
    output = snakemake.output  # noqa: F821
    count = write_pretraining_set(Path(output.root), Path(output.annotation), seed=settings["seed"], images=settings["images"])
    log.info("wrote %d pretraining images (seed %d) to %s", count, settings["seed"], output.root)
