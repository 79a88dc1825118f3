"""Rule write_report: our numbers next to the paper's, as Markdown, HTML and JSON.

params.config is the slice of the validated config the report reads (plan.report_config)."""

from pathlib import Path

from anonymization_impact.io import read_json, write_bytes_atomic, write_json_atomic
from anonymization_impact.logs import logged
from anonymization_impact.variants import runnable_variants
from anonymization_impact.report import build_report, html, markdown
from anonymization_impact.results import load_runs

MANIFEST_KEYS = ("git_commit", "dirty", "config_sha256", "created_by")

with logged(snakemake.log[0]) as log:  # noqa: F821 (snakemake is injected)
    inputs, params = snakemake.input, snakemake.params  # noqa: F821
    config = dict(params.config)
    manifest = getattr(inputs, "manifest", None) or None  # optional: results/provenance/manifest.json
    provenance = {}
    if manifest:
        manifest = manifest if isinstance(manifest, str) else manifest[0]
        document = read_json(manifest)
        provenance = {key: document[key] for key in MANIFEST_KEYS if key in document}
        provenance["manifest"] = str(manifest)
    runs = load_runs(inputs.metrics)
    report = build_report(config, runs, runnable_variants(config), inputs.published, provenance)
    output = snakemake.output  # noqa: F821
    write_bytes_atomic(Path(output.markdown), markdown(report).encode())
    write_bytes_atomic(Path(output.html), html(report).encode())
    write_json_atomic(output.data, report, indent=1)
    log.info("findings: %s", [(f["claim"], f["experiment"], f["variant"], f["result"]) for f in report["findings"]])
