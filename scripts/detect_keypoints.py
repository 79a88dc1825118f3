"""Rule detect_keypoints: ViTPose-H keypoints of every person to anonymize (Cityscapes, BDD100K).

Writes the ``person-keypoints/v1`` document (docs/detectors.md): top-down ViTPose-H (mmpose 0.x,
the ViTPose fork) on the tight box of each person's mask, a keypoint visible when its score is
>= params.score_threshold (0.3). Runs in envs/detectors.yaml on a GPU.

input:  persons (results/annotations/<dataset>/train/persons.json), weights (the ViTPose-H
        checkpoint, COCO head), optionally pose_config (else the config the ViTPose package ships)
params: root (dataset root), and optionally score_threshold (0.3), device ("auto", through the GPU guard),
        batch_size (32 persons per forward pass), dp2_crop (True), flip_test (False)
output: the keypoints JSON; log: one file
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
    detectors.require_rule_fields("detect_keypoints", inputs, params, inputs=("persons", "weights"), params=("root",))
    persons = read_json(inputs.persons)
    weights = Path(inputs.weights)
    if hasattr(params, "weights_entry"):  # a file placed by hand: its checksum, where one is published
        verify_weights(params.weights_entry["name"], params.weights_entry)
    dp2_crop = bool(getattr(params, "dp2_crop", True))
    flip_test = bool(getattr(params, "flip_test", False))
    config = Path(inputs.pose_config) if "pose_config" in inputs.keys() else None
    source, digest = detectors.vitpose_source(weights, dp2_crop=dp2_crop, flip_test=flip_test)
    log.info("%s", source)
    model = detectors.load_pose_model(weights, config=config, device=resolve(str(getattr(params, "device", "auto")), "keypoint_detection.device", log)[0], flip_test=flip_test)
    document = detectors.keypoints_for_persons(
        persons,
        Path(params.root),
        model,
        dataset=persons.get("info", {}).get("dataset", snakemake.wildcards.dataset),
        score_threshold=float(getattr(params, "score_threshold", detectors.KEYPOINT_SCORE_THRESHOLD)),
        batch_size=int(getattr(params, "batch_size", 32)),
        dp2_crop=dp2_crop,
        source=source,
        progress=lambda items: tqdm(items, desc="ViTPose-H", file=sys.stderr, mininterval=30),
    )
    write_json_atomic(snakemake.output[0], document)
    log.info("keypoints: %s", document["counts"])
