"""Run inside the detectors env twin by tests/test_stacks_detectors.py (Python 3.9, torch 1.9.0,
mmcv-full 1.3.9, the ViTPose fork as mmpose 0.24.0, face_detection 0.2.2).

``faces ROOT PERSONS OUT RESULT``: a random DSFD state dict of face_detection's own ``SSD``
(ResNet-152), its convolutions scaled once so that each one's output has unit standard
deviation on the first image (default initialisation overflows through the 152 layers: the
box head then decodes to inf / NaN), then rule detect_faces's calls (scripts/detect_faces.py):
``build_face_detector`` on the weight file, ``detect_faces`` with ``dsfd_info``.

``keypoints ROOT PERSONS OUT RESULT``: a random ViTPose-H of the fork's own
``init_pose_model`` (the config it ships), saved as an mmcv checkpoint (``state_dict``), then
rule detect_keypoints's calls (scripts/detect_keypoints.py): ``vitpose_source``,
``load_pose_model``, ``keypoints_for_persons``.

RESULT gets {"document": the face-detections/v1 or person-keypoints/v1 document, "seconds": {...}}.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

from anonymization_impact import detectors
from anonymization_impact.io import read_json, write_json_atomic

CONFIDENCE = 0.2  # the rule's: the lowest per-dataset threshold
RGB_MEAN = (123.0, 117.0, 104.0)  # face_detection's Detector.mean


def unit_scaled_dsfd(image: np.ndarray) -> dict:
    """face_detection's DSFD with random weights whose outputs stay finite: every convolution
    divided once by the standard deviation of its output, in the order of one forward pass."""
    from face_detection.dsfd.config import resnet152_model_config
    from face_detection.dsfd.face_ssd import SSD

    torch.manual_seed(0)
    model = SSD(resnet152_model_config).eval()
    hooks = {}

    def unit_output(module, inputs, output):
        std = float(output.std())
        with torch.no_grad():
            module.weight.div_(std)
            if module.bias is not None:
                module.bias.div_(std)
        hooks.pop(module).remove()
        return output / std

    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            hooks[module] = module.register_forward_hook(unit_output)
    pixels = torch.from_numpy(image.astype(np.float32) - np.float32(RGB_MEAN)).permute(2, 0, 1)[None][:, [2, 1, 0]]
    with torch.no_grad():
        model(pixels, CONFIDENCE, 0.3)
    assert not hooks, f"{len(hooks)} convolutions did not run"
    return model.state_dict()


def faces(root: Path, persons: dict, out: Path) -> dict:
    seconds = {}
    images = detectors.face_detection_images(persons, root)
    started = time.perf_counter()
    weights = out / "dsfd_random.pth"
    torch.save(unit_scaled_dsfd(detectors.read_rgb(images[0])), str(weights))
    seconds["random_weights"] = time.perf_counter() - started
    settings = detectors.DsfdSettings(confidence=CONFIDENCE, device="cpu")
    started = time.perf_counter()
    detector = detectors.build_face_detector(weights, settings)
    seconds["build"] = time.perf_counter() - started
    started = time.perf_counter()
    document = detectors.detect_faces(images, detector, dataset=persons["info"]["dataset"], split=persons["info"]["split"],
                                      detector_info=detectors.dsfd_info(settings, weights))
    seconds["detect_per_image"] = (time.perf_counter() - started) / max(len(images), 1)
    return {"document": document, "seconds": seconds}


def keypoints(root: Path, persons: dict, out: Path) -> dict:
    import mmcv
    from mmpose.apis import init_pose_model

    seconds = {}
    started = time.perf_counter()
    torch.manual_seed(0)
    model = init_pose_model(mmcv.Config.fromfile(str(detectors.packaged_vitpose_config())), None, device="cpu")
    weights = out / "vitpose_h_random.pth"
    torch.save({"state_dict": model.state_dict(), "meta": {"note": "random weights (tests)"}}, str(weights))
    del model
    seconds["random_weights"] = time.perf_counter() - started
    source, _ = detectors.vitpose_source(weights, dp2_crop=True, flip_test=False)
    started = time.perf_counter()
    model = detectors.load_pose_model(weights, device="cpu", flip_test=False)
    seconds["load"] = time.perf_counter() - started
    started = time.perf_counter()
    document = detectors.keypoints_for_persons(persons, root, model, dataset=persons["info"]["dataset"], source=source)
    seconds["keypoints_per_person"] = (time.perf_counter() - started) / max(len(persons["annotations"]), 1)
    return {"document": document, "seconds": seconds}


if __name__ == "__main__":
    command, root, persons, out, result = sys.argv[1:6]
    job = {"faces": faces, "keypoints": keypoints}[command]
    write_json_atomic(Path(result), job(Path(root), read_json(Path(persons)), Path(out)))
