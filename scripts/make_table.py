"""Rule make_table: one LaTeX file of the paper's tables (and its JSON twin) per target.

params.config is the slice of the validated config the target's tables read (plan.table_config)."""

from pathlib import Path

from anonymization_impact.io import write_bytes_atomic, write_json_atomic
from anonymization_impact.logs import logged
from anonymization_impact.variants import runnable_variants
from anonymization_impact.results import load_runs
from anonymization_impact.tables import build_tables, latex, tables_document

with logged(snakemake.log[0]) as log:  # noqa: F821 (snakemake is injected)
    params = snakemake.params  # noqa: F821
    config = dict(params.config)
    runs = load_runs(snakemake.input.metrics)  # noqa: F821
    tables = build_tables(config, params.target, runs, runnable_variants(config))
    write_bytes_atomic(Path(snakemake.output.tex), latex(tables).encode())  # noqa: F821
    write_json_atomic(snakemake.output.data, tables_document(params.target, tables), indent=1)  # noqa: F821
    for table in tables:
        log.info("%s: %s", table["name"], {row["variant"]: row["status"] for row in table["rows"]})
