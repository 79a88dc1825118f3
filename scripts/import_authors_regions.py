"""Rules import_authors_face_detections, import_authors_face_regions, import_authors_keypoints: the paper authors'
published face boxes / keypoints as this workflow's documents, checked against persons.json."""

from pathlib import Path

from anonymization_impact.authors_regions import import_authors_regions
from anonymization_impact.io import read_json, write_json_atomic
from anonymization_impact.logs import logged

with logged(snakemake.log[0]) as log:  # noqa: F821 (snakemake is injected)
    params, inputs = snakemake.params, snakemake.input  # noqa: F821
    kind = "keypoints" if "keypoints" in inputs.keys() else "faces"  # the authors' file is the input of that name
    document = import_authors_regions(
        kind,
        snakemake.wildcards.dataset,  # noqa: F821
        Path(params.root),
        read_json(inputs.persons),
        params.files,
        max_misfit_fraction=params.max_misfit_fraction,
        # the config's thresholds where the import decides for this workflow (face matching, keypoint visibility)
        min_match_iou=params.min_match_iou,
        score_threshold=params.score_threshold,
    )
    write_json_atomic(snakemake.output[0], document)  # noqa: F821
    log.info("imported %s: %d images", kind, len(document["images"]))
