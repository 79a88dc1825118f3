# Figures: Fig. 7 (person box sizes), Fig. 8 (drop against backbone depth), and one training
# image under every variant of each dataset (like the paper's Fig. 2).


rule plot_fig7:
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
    localrule: True
    conda:
        "../envs/figures.yaml"
    envmodules:
        env_module("figures"),
    params:
        datasets=ENABLED_DATASETS,
        synthetic={
            dataset: config["datasets"][dataset]["synthetic"]
            for dataset in ENABLED_DATASETS
        },
    script:
        "../scripts/plot_fig7.py"


rule plot_fig8:
    input:
        metrics=metric_files(plan.fig8_runs(config)),
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
    localrule: True
    conda:
        "../envs/figures.yaml"
    envmodules:
        env_module("figures"),
    params:
        config=plan.fig8_config(config),
    script:
        "../scripts/plot_fig8.py"


rule plot_qualitative:
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
    localrule: True
    conda:
        "../envs/figures.yaml"
    envmodules:
        env_module("figures"),
    params:
        raw_root=get_dataset_root,
        variants=get_qualitative_variants,
        image=config_at("qualitative/images/{dataset}"),
        blur_faces=config_at("qualitative/blur_original_faces/{dataset}"),
    script:
        "../scripts/plot_qualitative.py"
