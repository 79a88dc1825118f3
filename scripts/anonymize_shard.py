"""Rule anonymize_shard: anonymize one shard of one (dataset, variant) tree."""

import sys
from pathlib import Path

from tqdm import tqdm

from anonymization_impact.io import read_json, write_json_atomic
from anonymization_impact.logs import logged
from anonymization_impact.methods import build_method
from anonymization_impact.trees import anonymize_shard

with logged(snakemake.log[0]) as log:  # noqa: F821 (snakemake is injected)
    wildcards, params = snakemake.wildcards, snakemake.params  # noqa: F821
    output_dir = Path(snakemake.output.images)  # noqa: F821
    output_dir.mkdir(parents=True, exist_ok=True)
    faces = read_json(snakemake.input.faces) if "faces" in snakemake.input.keys() else None  # noqa: F821
    audit = anonymize_shard(
        root=Path(params.root),
        persons=read_json(snakemake.input.persons),  # noqa: F821
        faces=faces,
        variant=params.variant,
        method=build_method(params.variant),
        shard=int(wildcards.shard),
        shards=params.shards,
        output_dir=output_dir,
        leak_check_images=params.leak_check_images,
        progress=lambda items: tqdm(items, desc=f"{wildcards.variant} shard {wildcards.shard}", file=sys.stderr, mininterval=10),
    )
    write_json_atomic(snakemake.output.audit, audit)  # noqa: F821
    log.info("shard %s: %d images, leak check %s", wildcards.shard, len(audit["images"]), audit["leak_check"])
