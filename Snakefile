# Reproduces "Does Image Anonymization Impact Computer Vision Training?" (Hukkelås & Lindseth).
#
# Path convention: every output is results/<stage>/<dataset>/...; logs/ and benchmarks/
# mirror results/. Raw datasets are read-only inputs; synthetic twins are generated
# under resources/twins/.


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


rule all:
    default_target: True
    input:
        get_annotation_targets(),
        rules.anonymized_trees.input,
        rules.metrics.input,
        rules.tables.input,
        rules.figures.input,
        rules.report.input,
        rules.provenance_manifest.output,
        rules.archive_results.output,
