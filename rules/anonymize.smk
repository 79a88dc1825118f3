# Anonymized image trees: sharded anonymization, tree assembly and audit.


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
    wildcard_constraints:
        variant=alternatives(variant_names(config, realistic=False)),
    conda:
        "../envs/anonymize.yaml"
    envmodules:
        env_module("anonymize"),
    params:
        job=command_job(
            root=get_dataset_root,
            variant=get_variant_settings,
            shards=config["anonymization"]["shards"],
            leak_check_images=config["anonymization"]["leak_check_images"],
            hide_pending=config["anonymization"]["pending_regions"] == "hidden",
            generators=get_generator_settings,
            work_dir=get_shard_work_dir,
        ),
    shell:
        command("anonymize_shard")


# Realistic variants: the same shards, made by generators (DeepPrivacy2 on a GPU for the
# real datasets; on a twin, the configured synthetic generator).
use rule anonymize_shard as anonymize_shard_realistic with:
    input:
        unpack(get_realistic_shard_inputs),
    wildcard_constraints:
        variant=alternatives(variant_names(config, realistic=True)),
    retries: get_retries("anonymize_shard_realistic")
    conda:
        "../envs/deepprivacy2.yaml"
    envmodules:
        env_module("deepprivacy2"),
    resources:
        runtime=get_runtime("anonymize_shard_realistic"),


# A command (see download_weights): a checkout placed by hand keeps its older dates.
rule download_deepprivacy2:
    output:
        directory(f"resources/deepprivacy2/{DP2_COMMIT}"),
    log:
        "logs/weights/deepprivacy2-source.log",
    localrule: True
    conda:
        "../envs/data.yaml"
    envmodules:
        env_module("data"),
    params:
        job=command_job(url=f"{DP2_REPOSITORY}/archive/{DP2_COMMIT}.tar.gz"),
    shell:
        command("download_deepprivacy2")


rule assemble_tree:
    input:
        unpack(get_assemble_tree_inputs),
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
    localrule: True
    conda:
        "../envs/anonymize.yaml"
    envmodules:
        env_module("anonymize"),
    params:
        root=get_dataset_root,
        variant=get_variant_settings,
        untouched=config["anonymization"]["untouched_images"],
    script:
        "../scripts/assemble_tree.py"
