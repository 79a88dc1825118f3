"""Rule write_manifest: checksums of everything the results were made from."""

import sys
from pathlib import Path

from tqdm import tqdm

from anonymization_impact.io import read_json, write_json_atomic
from anonymization_impact.logs import logged
from anonymization_impact.provenance import manifest, raw_files_used

with logged(snakemake.log[0]) as log:  # noqa: F821 (snakemake is injected)
    params = snakemake.params  # noqa: F821
    raw = {}
    for dataset, root in params.roots.items():
        documents = [read_json(path) for path in params.annotations[dataset]]
        raw[dataset] = (Path(root), raw_files_used(Path(root), documents, params.raw_inputs[dataset]))
    document = manifest(
        config=params.config,
        raw=raw,
        results=[Path(path) for path in snakemake.input.results],  # noqa: F821
        env_files=[Path(path) for path in params.env_files],
        progress=lambda items: tqdm(items, file=sys.stderr, mininterval=30, desc="md5"),
    )
    write_json_atomic(snakemake.output[0], document, indent=1)  # noqa: F821
    log.info("manifest: %s", {d: v["files"] for d, v in document["raw_datasets"].items()})
