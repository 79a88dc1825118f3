"""Rule download_weights: fetch a weight file named in the config and check its checksum."""

import sys
from pathlib import Path

from anonymization_impact.errors import WorkflowInputError
from anonymization_impact.logs import logged
from anonymization_impact.downloads import download
from anonymization_impact.rule_job import job_of
from anonymization_impact.weights import fetch_instructions, verify_weights

# the job: injected by Snakemake's script: or a test, else the command line's (rule_job), as the rule calls it
snakemake = job_of(globals(), sys.argv[1:])

with logged(snakemake.log[0]) as log:
    entry = snakemake.params.entry
    name, target = entry["name"], Path(snakemake.output[0])
    if not entry.get("url"):
        raise WorkflowInputError(f"weights '{name}' cannot be downloaded: {fetch_instructions(name, entry)}")
    log.info("downloading %s to %s", entry["url"], target)
    download(entry["url"], target, f"weights '{name}'", fetch_instructions(name, entry))
    try:
        verify_weights(name, entry)
    except WorkflowInputError:
        target.unlink()
        raise
