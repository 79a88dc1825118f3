"""Rule write_archive: the workflow and its results in one tar.gz a reviewer can rerun from."""

from pathlib import Path

from anonymization_impact.archive import write_archive
from anonymization_impact.logs import logged

with logged(snakemake.log[0]) as log:  # noqa: F821 (snakemake is injected)
    summary = write_archive(
        Path(snakemake.output[0]),  # noqa: F821
        source_root=Path(snakemake.params.source_root),  # noqa: F821
        workdir=Path.cwd(),
        prefix="anonymization-impact",
        config=snakemake.params.config,  # noqa: F821
    )
    log.info("archived %s", summary)
