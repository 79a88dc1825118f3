# Provenance: one manifest with checksums of the code, config, envs, raw files and results.
# It is the one place that records the whole config and its hash.


rule write_manifest:
    input:
        annotations=get_annotation_targets(),
        raw=get_all_raw_inputs(),
        results=get_result_files(),
    output:
        report(
            "results/provenance/manifest.json",
            caption="../report/manifest.rst",
            category="Provenance",
        ),
    log:
        "logs/provenance/manifest.log",
    benchmark:
        "benchmarks/provenance/manifest.tsv"
    conda:
        "../envs/data.yaml"
    envmodules:
        env_module("data"),
    params:
        config=config,
        roots={
            dataset: str(dataset_root(config, dataset)) for dataset in ENABLED_DATASETS
        },
        annotations=get_annotation_files_by_dataset(),
        raw_inputs=get_raw_inputs_by_dataset(),
        env_files=sorted(
            str(path) for path in Path(workflow.basedir, "envs").glob("*.yaml")
        ),
    script:
        "../scripts/write_manifest.py"
