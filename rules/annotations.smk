# Data stage: raw dataset split -> normalized COCO-format annotation JSONs.


rule normalize_annotations:
    input:
        get_raw_dataset_inputs,
    output:
        instances="results/annotations/{dataset}/{split}/instances.json",
        persons="results/annotations/{dataset}/{split}/persons.json",
        excluded="results/annotations/{dataset}/{split}/excluded.json",
    log:
        "logs/annotations/{dataset}/{split}.log",
    benchmark:
        "benchmarks/annotations/{dataset}/{split}.tsv"
    conda:
        "../envs/data.yaml"
    envmodules:
        env_module("data"),
    params:
        root=get_dataset_root,
        verify_images=config_at("datasets/{dataset}/verify_images"),
    script:
        "../scripts/normalize_annotations.py"
