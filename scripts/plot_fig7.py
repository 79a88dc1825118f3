"""Rule plot_fig7: cumulative histogram of normalized person box sizes (Fig. 7)."""

from anonymization_impact.figures import fig7
from anonymization_impact.io import read_json, write_json_atomic
from anonymization_impact.logs import logged

with logged(snakemake.log[0]) as log:  # noqa: F821 (snakemake is injected)
    datasets = snakemake.params.datasets  # noqa: F821
    persons = {dataset: read_json(path) for dataset, path in zip(datasets, snakemake.input.persons)}  # noqa: F821
    fig7.plot(persons, snakemake.output.pdf, snakemake.output.png, snakemake.params.synthetic)  # noqa: F821
    summary = fig7.summarize(persons)
    summary_doc = {"definition": fig7.__doc__.strip(), "synthetic": snakemake.params.synthetic, "datasets": summary}  # noqa: F821
    write_json_atomic(snakemake.output.data, summary_doc, indent=2)  # noqa: F821
    log.info("fig7 summary: %s", summary)
