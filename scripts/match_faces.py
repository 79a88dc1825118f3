"""Rule match_faces: raw face detections + person masks -> face regions (docs/anonymization.md, "Regions")."""

from anonymization_impact.io import read_json, write_json_atomic
from anonymization_impact.logs import logged
from anonymization_impact.regions import build_face_regions

with logged(snakemake.log[0]) as log:  # noqa: F821 (snakemake is injected)
    regions = build_face_regions(
        read_json(snakemake.input.detections),  # noqa: F821
        read_json(snakemake.input.persons),  # noqa: F821
        dataset=snakemake.wildcards.dataset,  # noqa: F821
        confidence=snakemake.params.confidence,  # noqa: F821
        min_iou=snakemake.params.min_iou,  # noqa: F821
    )
    write_json_atomic(snakemake.output[0], regions)  # noqa: F821
    log.info("face regions: %s", regions["counts"])
