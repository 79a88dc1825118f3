# Training per (dataset, variant, model, seed), predictions on the original validation
# split, and framework-independent evaluation into metric JSONs.


# A command, not script: (as download_deepprivacy2): Snakemake reruns a script: rule whose output
# is older than its script, so it would delete a file placed by hand with an older date (wget
# keeps the server's, tar the archive's) and fetch it again.
rule download_weights:
    output:
        "resources/weights/{filename}",
    log:
        "logs/weights/{filename}.log",
    localrule: True
    conda:
        "../envs/training.yaml"
    envmodules:
        env_module("training"),
    params:
        job=command_job(entry=get_weights_entry),
    shell:
        command("download_weights")


rule train_model:
    input:
        unpack(get_train_model_inputs),
    output:
        weights="results/models/{dataset}/{variant}/{model}/seed{seed}/model_final.pth",
        summary="results/models/{dataset}/{variant}/{model}/seed{seed}/training.json",
    log:
        "logs/models/{dataset}/{variant}/{model}/seed{seed}.log",
    benchmark:
        "benchmarks/models/{dataset}/{variant}/{model}/seed{seed}.tsv"
    retries: get_retries("train_model")
    conda:
        get_training_env
    threads: config["training"]["threads"]
    resources:
        runtime=get_runtime("train_model"),
    params:
        backend=run_answer(plan.training_backend),
        env_module=get_training_env_module,
        job=command_job(
            training=get_training_job_settings,
            image_root=get_training_image_root,
            checkpoint_dir=get_checkpoint_dir,
        ),
    message:
        "train_model {wildcards.dataset}/{wildcards.variant}/{wildcards.model}/seed{wildcards.seed} with backend {params.backend} -> {output.weights}"
    shell:
        command("train_model", load_env=True)


rule predict:
    input:
        weights=rules.train_model.output.weights,
        annotation="results/annotations/{dataset}/val/instances.json",
        raw=get_raw_dataset_inputs,
    output:
        "results/predictions/{dataset}/{variant}/{model}/seed{seed}.json",
    log:
        "logs/predictions/{dataset}/{variant}/{model}/seed{seed}.log",
    benchmark:
        "benchmarks/predictions/{dataset}/{variant}/{model}/seed{seed}.tsv"
    conda:
        get_training_env
    threads: config["training"]["threads"]
    resources:
        runtime=get_runtime("predict"),
    params:
        env_module=get_training_env_module,
        job=command_job(
            root=get_dataset_root,
            device=config["training"]["device"],
            backend=run_answer(plan.training_backend),
        ),
    shell:
        command("predict", load_env=True)


rule evaluate:
    input:
        predictions=rules.predict.output[0],
        annotation="results/annotations/{dataset}/val/instances.json",
        train_annotation="results/annotations/{dataset}/train/instances.json",
        weights=rules.train_model.output.weights,
        training=rules.train_model.output.summary,
        raw=get_raw_dataset_inputs,
    output:
        "results/metrics/{dataset}/{variant}/{model}/seed{seed}.json",
    log:
        "logs/metrics/{dataset}/{variant}/{model}/seed{seed}.log",
    benchmark:
        "benchmarks/metrics/{dataset}/{variant}/{model}/seed{seed}.tsv"
    conda:
        "../envs/data.yaml"
    envmodules:
        env_module("data"),
    params:
        root=get_dataset_root,
        task=get_task,
        synthetic=config_at("datasets/{dataset}/synthetic"),
    script:
        "../scripts/evaluate.py"
