"""Run inside the detectors env twin by tests/test_stacks_real_root.py (Python 3.9, torch 1.9.0,
mmcv-full 1.3.9, the ViTPose fork as mmpose 0.24.0, face_detection 0.2.2): random weights of the
real architectures, for rules detect_faces and detect_keypoints to load.

``dsfd IMAGE OUT``: a random DSFD state dict of face_detection's own ``SSD`` (ResNet-152), its
convolutions scaled once so that each one's output has unit standard deviation on IMAGE (default
initialisation overflows through the 152 layers: the box head then decodes to inf / NaN, which the
rule rightly refuses).

``vitpose OUT``: a random ViTPose-H of the fork's own ``init_pose_model`` (the config it ships),
saved as an mmcv checkpoint (``state_dict``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

from anonymization_impact import detectors
from anonymization_impact.io import decode_image

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


def dsfd_weights(image: Path, out: Path) -> None:
    torch.save(unit_scaled_dsfd(decode_image(image)[0]), str(out))


def vitpose_weights(out: Path) -> None:
    import mmcv
    from mmpose.apis import init_pose_model

    torch.manual_seed(0)
    model = init_pose_model(mmcv.Config.fromfile(str(detectors.packaged_vitpose_config())), None, device="cpu")
    torch.save({"state_dict": model.state_dict(), "meta": {"note": "random weights (tests)"}}, str(out))


if __name__ == "__main__":
    started = time.perf_counter()
    if sys.argv[1] == "dsfd":
        dsfd_weights(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        vitpose_weights(Path(sys.argv[2]))
    print(f"{sys.argv[1]} random weights in {time.perf_counter() - started:.0f} s")
