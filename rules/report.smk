# The reproduction report: every number the paper publishes next to ours, with the
# difference in the paper's standard errors and a Welch t-test per delta.


rule report_reproduction:
    input:
        metrics=get_experiment_metrics(),
        published=get_published_results(),
        manifest=rules.provenance_manifest.output[0],
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
    conda:
        "../envs/data.yaml"
    params:
        config=config,
        runnable=get_runnable_variants(),
    script:
        "../scripts/write_report.py"


rule report:
    input:
        rules.report_reproduction.output,


rule archive_results:
    input:
        manifest=rules.provenance_manifest.output[0],
        tables=rules.tables.input,
        figures=rules.figures.input,
        report=rules.report.input,
    output:
        "results/archive/anonymization-impact.tar.gz",
    log:
        "logs/archive/results.log",
    conda:
        "../envs/data.yaml"
    params:
        source_root=workflow.basedir,
        config=config,
    script:
        "../scripts/write_archive.py"
