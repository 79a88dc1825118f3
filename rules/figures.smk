# Figures: Fig. 7 (person box sizes).


rule fig7:
    input:
        persons=get_fig7_persons(),
    output:
        pdf="results/figures/fig7.pdf",
        png=report(
            "results/figures/fig7.png",
            caption="../report/fig7.rst",
            category="Figures",
        ),
        data="results/figures/fig7.json",
    log:
        "logs/figures/fig7.log",
    conda:
        "../envs/figures.yaml"
    params:
        datasets=ENABLED_DATASETS,
        synthetic={
            dataset: config["datasets"][dataset]["synthetic"]
            for dataset in ENABLED_DATASETS
        },
    script:
        "../scripts/plot_fig7.py"
