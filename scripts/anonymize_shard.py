"""Rules anonymize_shard and anonymize_shard_realistic: anonymize one shard of one (dataset, variant) tree."""

import sys
from pathlib import Path

from tqdm import tqdm

from anonymization_impact.io import read_json, write_json_atomic
from anonymization_impact.keypoints import apply_keypoints
from anonymization_impact.logs import logged
from anonymization_impact.methods import build_method
from anonymization_impact.rule_job import job_of
from anonymization_impact.shard_journal import ShardJournal, input_digest
from anonymization_impact.trees import anonymize_shard, persons_in_shard
from anonymization_impact.variants import Variant
from anonymization_impact.walltime import job_deadline

# the job: injected by Snakemake's script: or a test, else the command line's (rule_job), as the rule calls it
snakemake = job_of(globals(), sys.argv[1:])

with logged(snakemake.log[0]) as log:
    wildcards, params, inputs = snakemake.wildcards, snakemake.params, snakemake.input
    output_dir = Path(snakemake.output.images)
    output_dir.mkdir(parents=True, exist_ok=True)
    persons = read_json(inputs.persons)
    faces = read_json(inputs.faces) if "faces" in inputs.keys() else None
    if "keypoints" in inputs.keys():  # Cityscapes / BDD100K bodies: detected or published keypoints
        apply_keypoints(persons, read_json(inputs.keypoints))
    variant = Variant(wildcards.variant, dict(params.variant))
    if not variant.is_realistic:
        method = build_method(variant.settings)
    else:
        from anonymization_impact.realistic.loading import prepare_generators
        from anonymization_impact.realistic.method import build_realistic

        weights = {role: inputs[f"weights_{role}"] for role in params.generators["roles"] if f"weights_{role}" in inputs.keys()}
        in_shard = persons_in_shard(persons, int(wildcards.shard), params.shards)
        dp2_root = inputs.deepprivacy2 if "deepprivacy2" in inputs.keys() else None
        generators, device = prepare_generators(params.generators, weights, dp2_root, in_shard, log)
        method = build_realistic(variant.settings, generators, device)
    # the images go to a work directory an attempt stopped by its time limit leaves to the next
    settings = {name: params[name] for name in ("root", "variant", "shards", "leak_check_images", "hide_pending", "generators")}
    # the raw dataset is read-only, and persons.json changes with it: its files are not hashed
    inputs_read = {name: input_digest(path) for name, path in inputs.items() if name != "raw"}
    journal = ShardJournal(params.work_dir, {"shard": wildcards.shard, "settings": settings, "inputs": inputs_read})
    audit = anonymize_shard(
        root=Path(params.root),
        persons=persons,
        faces=faces,
        variant=variant.settings,
        method=method,
        shard=int(wildcards.shard),
        shards=params.shards,
        output_dir=output_dir,
        leak_check_images=params.leak_check_images,
        hide_pending=params.hide_pending,
        journal=journal,
        deadline=job_deadline(log=log),
        progress=lambda items: tqdm(items, desc=f"{wildcards.variant} shard {wildcards.shard}", file=sys.stderr, mininterval=10),
    )
    write_json_atomic(snakemake.output.audit, audit)
    log.info("shard %s: %d images, leak check %s", wildcards.shard, len(audit["images"]), audit["leak_check"])
