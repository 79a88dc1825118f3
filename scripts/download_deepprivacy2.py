"""Rule download_deepprivacy2: the deep_privacy2 checkout its generators' configs are read from."""

from pathlib import Path

from anonymization_impact.logs import logged
from anonymization_impact.downloads import download, extract_source_archive

with logged(snakemake.log[0]) as log:  # noqa: F821 (snakemake is injected)
    target = Path(snakemake.output[0])  # noqa: F821
    archive = target.with_name(target.name + ".tar.gz")
    url = snakemake.params.url  # noqa: F821
    log.info("downloading %s", url)
    download(url, archive, "the deep_privacy2 source", f"put a checkout of deep_privacy2 at commit {target.name} at {target}")
    extract_source_archive(archive, target)
    archive.unlink()
