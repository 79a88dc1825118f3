# Anonymized image trees: face regions, sharded anonymization, tree assembly and audit.


rule faces_match:
    input:
        detections=get_face_detections,
        persons="results/annotations/{dataset}/train/persons.json",
    output:
        "results/regions/{dataset}/faces.json",
    log:
        "logs/regions/{dataset}/faces.log",
    benchmark:
        "benchmarks/regions/{dataset}/faces.tsv"
    conda:
        "../envs/anonymize.yaml"
    params:
        confidence=lambda wildcards: config["face_detection"]["confidence"][
            wildcards.dataset
        ],
        min_iou=config["face_detection"]["min_match_iou"],
    script:
        "../scripts/match_faces.py"


rule faces_detect:
    output:
        "results/faces/{dataset}/detections.json",
    log:
        "logs/faces/{dataset}/detections.log",
    conda:
        "../envs/anonymize.yaml"
    script:
        "../scripts/detect_faces.py"


rule anonymize_shard:
    input:
        unpack(get_anonymize_shard_inputs),
    output:
        images=directory("results/anonymized/{dataset}/{variant}/shards/{shard}"),
        audit="results/anonymized/{dataset}/{variant}/shards/{shard}.audit.json",
    log:
        "logs/anonymized/{dataset}/{variant}/shard-{shard}.log",
    benchmark:
        "benchmarks/anonymized/{dataset}/{variant}/shard-{shard}.tsv"
    conda:
        "../envs/anonymize.yaml"
    params:
        root=get_dataset_root,
        variant=lambda wildcards: config["variants"][wildcards.variant],
        shards=config["anonymization"]["shards"],
        leak_check_images=config["anonymization"]["leak_check_images"],
    script:
        "../scripts/anonymize_shard.py"


rule anonymize_tree:
    input:
        unpack(get_anonymize_tree_inputs),
    output:
        root=directory("results/anonymized/{dataset}/{variant}/root"),
        audit="results/anonymized/{dataset}/{variant}/audit.json",
        summary=report(
            "results/anonymized/{dataset}/{variant}/audit.md",
            caption="../report/audit.rst",
            category="Privacy audits",
            subcategory="{dataset}",
        ),
    log:
        "logs/anonymized/{dataset}/{variant}/tree.log",
    conda:
        "../envs/anonymize.yaml"
    params:
        root=get_dataset_root,
        variant=lambda wildcards: config["variants"][wildcards.variant],
        untouched=config["anonymization"]["untouched_images"],
    script:
        "../scripts/assemble_tree.py"


rule anonymized_trees:
    input:
        get_anonymized_tree_targets(),
