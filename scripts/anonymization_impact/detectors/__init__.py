"""Region inputs from detectors: DSFD face boxes and ViTPose-H keypoints (docs/anonymization.md, "Regions").

Two documents, one per rule (docs/detectors.md): ``face-detections/v1`` (:mod:`.dsfd`,
:func:`detect_faces`) and ``person-keypoints/v1`` (:mod:`.vitpose`, :func:`keypoints_for_persons`);
:mod:`.common` holds what both share (library access, rule fields, reading the images).

Pure helpers (mask boxes, visibility, crop geometry, output checks, batching, documents) run
without the libraries and are tested in tests/test_detectors.py; ``face_detection``, ``torch``,
``mmcv`` and ``mmpose`` are imported inside the functions that need them, and a missing one
raises :class:`WorkflowInputError` naming :data:`ENV_FILE`.
"""

from __future__ import annotations

# one namespace for the rule scripts and tests (``detectors.<name>``), whichever module holds the name
from .common import ENV_FILE, ImageJob, persons_by_image, read_rgb, require, require_rule_fields
from .dsfd import (DSFD_NAME, DSFD_WEIGHTS_MODULE, FACE_DETECTION_VERSION, DsfdSettings, batches_by_size, build_face_detector,
                   checked_face_detections, detect_faces, dsfd_info, dsfd_weights_file_name, face_detection_images, inference_size,
                   is_out_of_memory)
from .vitpose import (KEYPOINT_SCORE_THRESHOLD, KEYPOINTS_FORMAT, MMPOSE_BOX_PADDING, NUM_KEYPOINTS, VITPOSE_COMMIT, VITPOSE_H_CONFIG,
                      VITPOSE_H_SHA256_PREFIX, VITPOSE_H_SIGNATURE, VITPOSE_INPUT_SIZE, aspect_box, check_vitpose_state_dict,
                      checked_pose_results, checkpoint_shapes, keypoints_for_persons, load_pose_model, mask_box, mmpose_crop,
                      mmpose_person_box, packaged_vitpose_config, person_keypoints, rle_box, visibility, vitpose_source)
