"""Rule download_weights: fetch a weight file named in the config and check its checksum."""

from pathlib import Path

from anonymization_impact.errors import WorkflowInputError
from anonymization_impact.logs import logged
from anonymization_impact.downloads import download
from anonymization_impact.weights import fetch_instructions, verify_weights

with logged(snakemake.log[0]) as log:  # noqa: F821 (snakemake is injected)
    entry = snakemake.params.entry  # noqa: F821
    name, target = entry["name"], Path(snakemake.output[0])  # noqa: F821
    if not entry.get("url"):
        raise WorkflowInputError(f"weights '{name}' cannot be downloaded: {fetch_instructions(name, entry)}")
    log.info("downloading %s to %s", entry["url"], target)
    download(entry["url"], target, f"weights '{name}'", fetch_instructions(name, entry))
    try:
        verify_weights(name, entry)
    except WorkflowInputError:
        target.unlink()
        raise
