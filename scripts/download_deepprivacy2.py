"""Rule download_deepprivacy2: the deep_privacy2 checkout its generators' configs are read from."""

import sys
from pathlib import Path

from anonymization_impact.logs import logged
from anonymization_impact.downloads import download, extract_source_archive
from anonymization_impact.rule_job import job_of

# the job: injected by Snakemake's script: or a test, else the command line's (rule_job), as the rule calls it
snakemake = job_of(globals(), sys.argv[1:])

with logged(snakemake.log[0]) as log:
    target = Path(snakemake.output[0])
    archive = target.with_name(target.name + ".tar.gz")
    url = snakemake.params.url
    log.info("downloading %s", url)
    download(url, archive, "the deep_privacy2 source", f"put a checkout of deep_privacy2 at commit {target.name} at {target}")
    extract_source_archive(archive, target)
    archive.unlink()
