# The paper's tables as LaTeX (booktabs): one file per named target, mean +- standard error
# over the seeds, delta against "original"; rows that cannot run here say why.


rule make_table:
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
    localrule: True
    conda:
        "../envs/data.yaml"
    envmodules:
        env_module("data"),
    params:
        config=get_table_config,
        target="{target}",
    script:
        "../scripts/make_table.py"
