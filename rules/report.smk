# The reproduction report: every number the paper publishes next to ours, with the
# difference in the paper's standard errors and a Welch t-test per delta; and the results
# archive a reviewer rebuilds a table from.


rule write_report:
    input:
        metrics=metric_files(plan.all_experiment_runs(config)),
        published=get_published_results(),
        manifest=rules.write_manifest.output[0],
    output:
        markdown=report(
            "results/report/reproduction.md",
            caption="../report/reproduction.rst",
            category="Reproduction report",
        ),
        html="results/report/reproduction.html",
        data="results/report/reproduction.json",
    log:
        "logs/report/reproduction.log",
    localrule: True
    conda:
        "../envs/data.yaml"
    envmodules:
        env_module("data"),
    params:
        config=plan.report_config(config),
    script:
        "../scripts/write_report.py"


rule write_archive:
    input:
        manifest=rules.write_manifest.output[0],
        tables=get_table_targets(),
        figures=get_figure_targets(),
        report=rules.write_report.output,
    output:
        "results/archive/anonymization-impact.tar.gz",
    log:
        "logs/archive/results.log",
    localrule: True
    conda:
        "../envs/data.yaml"
    envmodules:
        env_module("data"),
    params:
        source_root=workflow.basedir,
        config=config,
    script:
        "../scripts/write_archive.py"
