# Synthetic twins of the three datasets, written in their real on-disk formats.


rule twins_generate:
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
    params:
        synthetic=config["synthetic"],
    script:
        "../scripts/generate_twin.py"
