# The paper's tables as LaTeX (booktabs): one file per named target, mean +- standard error
# over the seeds, delta against "original"; rows that cannot run here say why.


rule tables_latex:
    input:
        metrics=get_table_metrics,
    output:
        tex=report(
            "results/tables/{target}.tex",
            caption="../report/table.rst",
            category="Tables",
        ),
        data="results/tables/{target}.json",
    log:
        "logs/tables/{target}.log",
    conda:
        "../envs/data.yaml"
    params:
        config=config,
        target="{target}",
        runnable=get_runnable_variants(),
    script:
        "../scripts/make_table.py"


rule table1:
    input:
        get_table("table1"),


rule table2:
    input:
        get_table("table2"),


rule table3:
    input:
        get_table("table3"),


rule table4:
    input:
        get_table("table4"),


rule appendix:
    input:
        get_table("appendix"),


rule tables:
    input:
        get_table_targets(),
