"""Rule generate_twin: write the synthetic twin of one dataset in its real on-disk format."""

from pathlib import Path

from anonymization_impact.logs import logged
from anonymization_impact.twins import write_twin

with logged(snakemake.log[0]) as log:  # noqa: F821 (snakemake is injected)
    output = snakemake.output  # noqa: F821
    settings = snakemake.params.synthetic  # noqa: F821
    log.info("writing the %s twin to %s with %s", snakemake.wildcards.dataset, output.root, settings)  # noqa: F821
    write_twin(
        snakemake.wildcards.dataset,  # noqa: F821
        Path(output.root),
        Path(output.truth),
        Path(output.faces),
        n_train=settings["n_train"],
        n_val=settings["n_val"],
        seed=settings["seed"],
    )
