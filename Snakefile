# Reproduces "Does Image Anonymization Impact Computer Vision Training?" (Hukkelås & Lindseth).
#
# Paths: every output is results/<stage>/<dataset>/...; logs/ and benchmarks/ mirror results/.
# Raw datasets are read-only inputs; synthetic twins and fetched weights go under resources/.
# Rule names: verb_object (train_model, anonymize_shard, plot_fig8), each running the script
# of the same name in scripts/ (a `use rule` variant runs its parent's). Targets a user asks
# for by name are nouns (all, table1, fig8, report) and only gather other rules' outputs.
# docs/architecture.md maps the stages and the package.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/twins.smk"
include: "rules/annotations.smk"
include: "rules/regions.smk"
include: "rules/anonymize.smk"
include: "rules/training.smk"
include: "rules/figures.smk"
include: "rules/provenance.smk"
include: "rules/tables.smk"
include: "rules/report.smk"


TARGETS = {
    "anonymized_trees": get_anonymized_tree_targets(),
    "metrics": get_metric_targets(),
    **{
        target: rules.make_table.output.tex.format(target=target)
        for target in TABLE_TARGETS
    },
    "tables": get_table_targets(),
    "fig7": rules.plot_fig7.output,
    "fig8": rules.plot_fig8.output,
    "figures": get_figure_targets(),
    "report": rules.write_report.output,
}


for target, files in TARGETS.items():

    rule:
        name:
            target
        input:
            files,
        localrule: True


rule all:
    default_target: True
    input:
        get_annotation_targets(),
        *TARGETS.values(),
        rules.write_manifest.output,
        rules.write_archive.output,
