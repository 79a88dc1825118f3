"""Rule detect_faces: DSFD face boxes on the training images that have a person to anonymize.

Writes the raw ``face-detections/v1`` document (docs/anonymization.md, "Face detections"):
every box with score >= params.confidence (use the lowest per-dataset threshold, 0.2, so the
file serves any of them; rule match_faces applies the dataset's own). Runs in envs/detectors.yaml
on a GPU; docs/detectors.md says what the settings mean and what has been run.

input:  persons (results/annotations/<dataset>/train/persons.json), weights (the DSFD
        WIDERFace ResNet-152 state dict, WIDERFace_DSFD_RES152.pth)
params: root (dataset root), confidence (detector threshold), and optionally nms_iou (0.3),
        max_resolution (None: full resolution, as the paper), device ("auto", through the GPU guard), batch_size (1)
output: the detections JSON; log: one file
"""

import sys
from pathlib import Path

from tqdm import tqdm

from anonymization_impact import detectors
from anonymization_impact.devices import resolve
from anonymization_impact.io import read_json, write_json_atomic
from anonymization_impact.logs import logged
from anonymization_impact.rule_job import job_of
from anonymization_impact.weights import verify_weights

# the job: injected by Snakemake's script: or a test, else the command line's (rule_job), as the rule calls it
snakemake = job_of(globals(), sys.argv[1:])

with logged(snakemake.log[0]) as log:
    params, inputs = snakemake.params, snakemake.input
    detectors.require_rule_fields("detect_faces", inputs, params, inputs=("persons", "weights"), params=("root", "confidence"))
    persons = read_json(inputs.persons)
    weights = Path(inputs.weights)
    if hasattr(params, "weights_entry"):  # a file placed by hand: its checksum, where one is published
        verify_weights(params.weights_entry["name"], params.weights_entry)
    max_resolution = getattr(params, "max_resolution", None)
    settings = detectors.DsfdSettings(
        confidence=float(params.confidence),
        nms_iou=float(getattr(params, "nms_iou", 0.3)),
        max_resolution=int(max_resolution) if max_resolution not in (None, "") else None,
        device=resolve(str(getattr(params, "device", "auto")), "face_detection.device", log)[0],
    )
    images = detectors.face_detection_images(persons, Path(params.root))
    log.info("DSFD on %d images with persons (%s), weights %s", len(images), settings, weights)
    detector = detectors.build_face_detector(weights, settings)
    document = detectors.detect_faces(
        images,
        detector,
        dataset=persons.get("info", {}).get("dataset", snakemake.wildcards.dataset),
        split=persons.get("info", {}).get("split", "train"),
        detector_info=detectors.dsfd_info(settings, weights),
        batch_size=int(getattr(params, "batch_size", 1)),
        progress=lambda items: tqdm(items, desc="DSFD", file=sys.stderr, mininterval=30),
    )
    write_json_atomic(snakemake.output[0], document)
    log.info("face detections: %s", document["counts"])
