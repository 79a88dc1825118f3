# Synthetic twins of the three datasets, written in their real on-disk formats, and what
# stands in for the real world's pre-trained weights and pose estimator on them.


rule generate_twin:
    output:
        root=directory("resources/twins/{dataset}"),
        truth="resources/twins/{dataset}.truth.json",
        faces="resources/twins/{dataset}.faces.json",
    log:
        "logs/twins/{dataset}.log",
    benchmark:
        "benchmarks/twins/{dataset}.tsv"
    conda:
        "../envs/data.yaml"
    envmodules:
        env_module("data"),
    params:
        synthetic=config["synthetic"],
    script:
        "../scripts/generate_twin.py"


rule generate_pretraining_set:
    output:
        root=directory("resources/twins/pretraining/coco"),
        annotation="resources/twins/pretraining/instances.json",
    log:
        "logs/twins/pretraining_set.log",
    benchmark:
        "benchmarks/twins/pretraining_set.tsv"
    conda:
        "../envs/data.yaml"
    envmodules:
        env_module("data"),
    params:
        pretraining=config["synthetic"]["pretraining"],
    script:
        "../scripts/generate_pretraining_set.py"


rule pretrain_backbone:
    input:
        annotation=rules.generate_pretraining_set.output.annotation,
        root=rules.generate_pretraining_set.output.root,
    output:
        "resources/twins/pretraining/{backbone}.pth",
    log:
        "logs/twins/pretrain_{backbone}.log",
    benchmark:
        "benchmarks/twins/pretrain_{backbone}.tsv"
    conda:
        "../envs/training.yaml"
    envmodules:
        env_module("training"),
    threads: config["training"]["threads"]
    params:
        job=get_pretraining_job_settings,
        checkpoint_dir="resources/twins/pretraining/{backbone}_checkpoints",
    script:
        "../scripts/pretrain_backbone.py"


rule simulate_keypoints:
    input:
        truth=rules.generate_twin.output.truth,
        persons="results/annotations/{dataset}/train/persons.json",
    output:
        "results/regions/{dataset}/keypoints-twin.json",
    log:
        "logs/regions/{dataset}/keypoints-twin.log",
    localrule: True
    conda:
        "../envs/data.yaml"
    envmodules:
        env_module("data"),
    params:
        threshold=config["regions"]["keypoint_score_threshold"],
        seed=config["synthetic"]["seed"],
    script:
        "../scripts/simulate_keypoints.py"
