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


rule fig8:
    input:
        metrics=get_fig8_metrics(),
    output:
        pdf="results/figures/fig8.pdf",
        png=report(
            "results/figures/fig8.png",
            caption="../report/fig8.rst",
            category="Figures",
        ),
        data="results/figures/fig8.json",
    log:
        "logs/figures/fig8.log",
    conda:
        "../envs/figures.yaml"
    params:
        config=config,
        runnable=get_runnable_variants(),
    script:
        "../scripts/plot_fig8.py"


rule figures_qualitative:
    input:
        unpack(get_qualitative_inputs),
    output:
        pdf="results/figures/qualitative_{dataset}.pdf",
        png=report(
            "results/figures/qualitative_{dataset}.png",
            caption="../report/qualitative.rst",
            category="Figures",
        ),
        data="results/figures/qualitative_{dataset}.json",
    log:
        "logs/figures/qualitative_{dataset}.log",
    conda:
        "../envs/figures.yaml"
    params:
        raw_root=get_dataset_root,
        variants=lambda wildcards: get_dataset_variants(wildcards.dataset),
        variant_settings=config["variants"],
        image=lambda wildcards: config["qualitative"]["images"][wildcards.dataset],
        blur_faces=lambda wildcards: config["qualitative"]["blur_original_faces"][
            wildcards.dataset
        ],
    script:
        "../scripts/plot_qualitative.py"


rule figures:
    input:
        rules.fig7.output,
        rules.fig8.output,
        get_qualitative_targets(),
