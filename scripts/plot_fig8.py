"""Rule plot_fig8: relative drop of an anonymization against ResNet depth (Fig. 8).

params.config is the slice of the validated config the figure reads (plan.fig8_config)."""

from anonymization_impact.figures import fig8
from anonymization_impact.io import write_json_atomic
from anonymization_impact.logs import logged
from anonymization_impact.variants import runnable_variants
from anonymization_impact.results import load_runs, metric_paths_exist

with logged(snakemake.log[0]) as log:  # noqa: F821 (snakemake is injected)
    paths = metric_paths_exist(snakemake.input.metrics)  # noqa: F821
    runs = load_runs(paths)
    config = dict(snakemake.params.config)  # noqa: F821
    runnable = runnable_variants(config)
    data = fig8.fig8_data(config, runs, {variant: runnable(variant) for variant in ["original", *config["variants"]]})
    fig8.plot(data, snakemake.output.pdf, snakemake.output.png)  # noqa: F821
    write_json_atomic(snakemake.output.data, data, indent=2)  # noqa: F821
    for name, panel in data["panels"].items():
        for point in panel["points"]:
            log.info("fig8 %s %s (%s): %s drop=%s se=%s", name, point["model"], panel["variant"], point["status"], point["drop"], point["drop_se"])
