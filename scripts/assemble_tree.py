"""Rule assemble_tree: merge the shards into a drop-in dataset root and write the audit."""

from pathlib import Path

from anonymization_impact.audit import audit_markdown, tree_audit
from anonymization_impact.io import read_json, write_bytes_atomic, write_json_atomic
from anonymization_impact.logs import logged
from anonymization_impact.trees import assemble_tree

with logged(snakemake.log[0]) as log:  # noqa: F821 (snakemake is injected)
    inputs, params, output = snakemake.input, snakemake.params, snakemake.output  # noqa: F821
    persons = read_json(inputs.persons)
    counts = assemble_tree(
        Path(params.root),
        Path(output.root),
        [image["file_name"] for image in persons["images"]],
        [Path(path) for path in inputs.shards],
        params.untouched,
    )
    log.info("tree assembled: %s", counts)
    faces = read_json(inputs.faces) if "faces" in inputs.keys() else None
    audit = tree_audit(
        snakemake.wildcards.dataset,  # noqa: F821
        snakemake.wildcards.variant,  # noqa: F821
        params.variant,
        [read_json(path) for path in inputs.audits],
        read_json(inputs.excluded),
        faces,
        tree=counts,
    )
    write_json_atomic(output.audit, audit, indent=1)
    write_bytes_atomic(Path(output.summary), audit_markdown(audit).encode())
