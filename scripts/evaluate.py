"""Rule evaluate: score predictions on the original validation split into a metric JSON."""

import tempfile
from pathlib import Path

from anonymization_impact.evaluation import evaluate, metrics_document
from anonymization_impact.io import read_json, write_json_atomic
from anonymization_impact.logs import logged
from anonymization_impact.provenance import provenance

with logged(snakemake.log[0]) as log:  # noqa: F821 (snakemake is injected)
    inputs, params, wildcards = snakemake.input, snakemake.params, snakemake.wildcards  # noqa: F821
    training = read_json(inputs.training)
    with tempfile.TemporaryDirectory(prefix="evaluate-") as work_dir:
        result = evaluate(
            wildcards.dataset,
            params.task,
            read_json(inputs.annotation),
            read_json(inputs.predictions),
            raw_root=Path(params.root),
            work_dir=Path(work_dir),
        )
    document = metrics_document(
        dataset=wildcards.dataset,
        variant=wildcards.variant,
        model=wildcards.model,
        seed=int(wildcards.seed),
        task=params.task,
        metrics=result["metrics"],
        per_class_ap=result["per_class_AP"],
        evaluator=result["evaluator"],
        provenance=provenance(
            seed=int(wildcards.seed),
            annotation_files=[Path(inputs.train_annotation), Path(inputs.annotation)],
            extra_files={"weights": Path(inputs.weights), "predictions": Path(inputs.predictions)},
            training_time_s=training["seconds"],
            device=training["device"],
            frameworks=training.get("frameworks"),
        ),
        synthetic=params.synthetic,
    )
    document["training"] = training
    write_json_atomic(snakemake.output[0], document, indent=1)  # noqa: F821
    log.info("metrics: %s", result["metrics"])
