"""Rule faces_detect: DSFD face detection on a real dataset's training split.

Not part of the workflow yet: it needs the `face_detection` package (0.2.2) with the DSFD
weights, which cannot be fetched here. Until then the rule stops with what to provide.
"""

from anonymization_impact.errors import WorkflowInputError
from anonymization_impact.logs import logged

with logged(snakemake.log[0]):  # noqa: F821 (snakemake is injected)
    raise WorkflowInputError(
        f"face detections for {snakemake.wildcards.dataset} are missing: DSFD detection "  # noqa: F821
        "(face_detection==0.2.2 and its weights) is not implemented in this workflow yet. "
        f"Write the detections of the training split to {snakemake.output[0]} in the "  # noqa: F821
        "'face-detections/v1' format (README, 'Face regions') or use the synthetic twin."
    )
