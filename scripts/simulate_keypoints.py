"""Rule simulate_keypoints: the simulated pose estimator's keypoints of a twin's training persons."""

from anonymization_impact.io import read_json, write_json_atomic
from anonymization_impact.logs import logged
from anonymization_impact.twins.keypoints import simulate_keypoints

with logged(snakemake.log[0]) as log:  # noqa: F821 (snakemake is injected)
    document = simulate_keypoints(
        snakemake.wildcards.dataset,  # noqa: F821
        read_json(snakemake.input.truth),  # noqa: F821
        read_json(snakemake.input.persons),  # noqa: F821
        score_threshold=snakemake.params.threshold,  # noqa: F821
        seed=snakemake.params.seed,  # noqa: F821
    )
    write_json_atomic(snakemake.output[0], document)  # noqa: F821
    persons = sum(len(entries) for entries in document["images"].values())
    log.info("simulated keypoints of %d persons in %d images", persons, len(document["images"]))
