"""Rule normalize_annotations: raw dataset split -> instances / persons / excluded JSONs."""

import sys
from pathlib import Path

from tqdm import tqdm

from anonymization_impact.annotations import normalize_split
from anonymization_impact.io import write_json_atomic
from anonymization_impact.logs import logged

with logged(snakemake.log[0]) as log:  # noqa: F821 (snakemake is injected)
    dataset, split = snakemake.wildcards.dataset, snakemake.wildcards.split  # noqa: F821
    root = Path(snakemake.params.root)  # noqa: F821
    log.info("reading %s split %s from %s", dataset, split, root)
    documents = normalize_split(
        dataset,
        root,
        split,
        verify_images=snakemake.params.verify_images,  # noqa: F821
        progress=lambda items: tqdm(items, desc=f"{dataset}/{split}", file=sys.stderr, mininterval=10),
    )
    for name, document in documents.items():
        write_json_atomic(Path(getattr(snakemake.output, name)), document)  # noqa: F821
    log.info("counts: %s", documents["excluded"]["counts"])
