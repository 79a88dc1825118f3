"""Region inputs from detectors (anonymization_impact.detectors, scripts/detect_*.py).

The pure parts run as they are. The two document builders run against small stand-ins that
honour the real call signatures: face_detection 0.2.2's ``build_detector`` / ``Detector.detect``
/ ``batched_detect`` (including how its DSFDDetector loads weights through torch.hub) and the
mmpose 0.x (ViTPose fork) ``init_pose_model`` / ``inference_top_down_pose_model``, whose crop
(``_box2cs``) the stand-in reproduces. One test runs the real face_detection package with random
DSFD weights when it is importable (it is not in .venv; docs/detectors.md).
"""

from __future__ import annotations

import importlib
import runpy
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anonymization_impact import detectors
from anonymization_impact.errors import DatasetError, WorkflowInputError
from anonymization_impact.masks import encode
from anonymization_impact.regions import build_face_regions

from conftest import REPO

MODEL_URL = "https://example.invalid/haakohu/WIDERFace_DSFD_RES152.pth"


# ---------------------------------------------------------------------------- small dataset


def _mask(height, width, x0, y0, x1, y1):
    mask = np.zeros((height, width), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


@pytest.fixture
def dataset(tmp_path):
    """A root with four PNGs and the persons.json of three of them.

    A face is a square whose red channel is 255; its green channel / 255 is the score the
    stand-in detector gives it."""
    root = tmp_path / "root"
    (root / "train").mkdir(parents=True)
    specs = [  # file, (w, h), face squares (x0, y0, x1, y1, green), person boxes
        ("train/a.png", (64, 48), [(20, 6, 28, 14, 230)], [(16, 4, 34, 44)]),
        ("train/b.png", (64, 48), [(40, 10, 46, 16, 60), (2, 2, 8, 8, 200)], [(36, 8, 52, 46), (50, 30, 60, 40)]),
        ("train/c.png", (40, 36), [], [(5, 5, 15, 30)]),
        ("train/d.png", (64, 48), [(10, 10, 16, 16, 250)], []),
    ]
    images, annotations = [], []
    for index, (name, (width, height), faces, persons) in enumerate(specs, start=1):
        pixels = np.full((height, width, 3), 40, dtype=np.uint8)
        for x0, y0, x1, y1, green in faces:
            pixels[y0:y1, x0:x1] = (255, green, 0)
        Image.fromarray(pixels).save(root / name)
        images.append({"id": index, "file_name": name, "width": width, "height": height})
        for box in persons:
            mask = _mask(height, width, *box)
            annotations.append({"id": len(annotations) + 1, "image_id": index, "category_id": 1,
                                "segmentation": encode(mask), "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]],
                                "area": int(mask.sum()), "iscrowd": 0})
    persons = {"info": {"dataset": "cityscapes", "split": "train"}, "images": images,
               "annotations": annotations, "categories": [{"id": 1, "name": "person"}]}
    return root, persons


# ---------------------------------------------------------------------------- stand-ins


class StandInDSFD:
    """face_detection 0.2.2's Detector interface: ``detect(image, shrink=1.0)`` on one HxWx3
    uint8 RGB image, ``batched_detect(image, shrink=1.0)`` on NxHxWx3; N x 5 float arrays
    (x0, y0, x1, y1, score), thresholded at ``confidence_threshold``, boxes clipped to the image."""

    def __init__(self, confidence_threshold, nms_iou_threshold, device, max_resolution, fp16_inference, clip_boxes):
        import torch

        self.confidence_threshold = confidence_threshold
        self.nms_iou_threshold = nms_iou_threshold
        self.device = device
        self.max_resolution = max_resolution
        self.fp16_inference = fp16_inference
        self.clip_boxes = clip_boxes
        # as face_detection.dsfd.detect.DSFDDetector.__init__ does
        self.state_dict = torch.hub.load_state_dict_from_url(MODEL_URL, map_location="cpu", progress=True)
        self.batches = []

    def detect(self, image, shrink=1.0):
        return self.batched_detect(image[None], shrink)[0]

    def batched_detect(self, image, shrink=1.0):
        assert image.dtype == np.uint8 and image.ndim == 4 and image.shape[-1] == 3
        self.batches.append(len(image))
        out = []
        for pixels in image:
            boxes = []
            red = pixels[:, :, 0] == 255
            seen = np.zeros_like(red)
            for y, x in zip(*np.nonzero(red & ~seen)):
                if seen[y, x]:
                    continue
                x1 = x
                while x1 < red.shape[1] and red[y, x1]:
                    x1 += 1
                y1 = y
                while y1 < red.shape[0] and red[y1, x]:
                    y1 += 1
                seen[y:y1, x:x1] = True
                boxes.append([x, y, x1, y1, pixels[y, x, 1] / 255])
            boxes.append([0, 0, 3, 3, 0.05])  # a low-score box the threshold removes
            boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 5)
            out.append(boxes[boxes[:, 4] >= self.confidence_threshold])
        return out


def _fake_face_detection(monkeypatch, built: list):
    package = types.ModuleType("face_detection")

    def build_detector(name="DSFDDetector", confidence_threshold=0.5, nms_iou_threshold=0.3, device=None,
                       max_resolution=None, fp16_inference=False, clip_boxes=False):
        assert name == "DSFDDetector"
        detector = StandInDSFD(confidence_threshold, nms_iou_threshold, device, max_resolution, fp16_inference, clip_boxes)
        built.append(detector)
        return detector

    package.build_detector = build_detector
    dsfd = types.ModuleType("face_detection.dsfd")
    detect = types.ModuleType("face_detection.dsfd.detect")
    detect.model_url = MODEL_URL
    monkeypatch.setitem(sys.modules, "face_detection", package)
    monkeypatch.setitem(sys.modules, "face_detection.dsfd", dsfd)
    monkeypatch.setitem(sys.modules, "face_detection.dsfd.detect", detect)


@pytest.fixture
def dsfd_weights(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "weights" / "WIDERFace_DSFD_RES152.pth"
    path.parent.mkdir()
    torch.save({"layer1.weight": torch.arange(6.0)}, path)
    return path


class StandInPoseAPI:
    """mmpose 0.x ``mmpose.apis``: ``inference_top_down_pose_model`` with the ViTPose fork's
    signature and crop (``_xyxy2xywh`` / ``_box2cs``); keypoint k lies at a fixed place of the
    crop, its score is ``model.scores[k]``. Records the crops and checks the image is BGR."""

    def __init__(self):
        self.crops = []
        self.calls = 0

    def init_pose_model(self, config, checkpoint=None, device="cuda:0"):
        model = types.SimpleNamespace(cfg=config, checkpoint=checkpoint, device=device)
        return model

    def inference_top_down_pose_model(self, model, img_or_path, person_results=None, bbox_thr=None, format="xywh",
                                      dataset="TopDownCocoDataset", dataset_info=None, return_heatmap=False, outputs=None):
        assert isinstance(img_or_path, np.ndarray) and img_or_path.dtype == np.uint8 and img_or_path.flags.c_contiguous
        assert format in ("xyxy", "xywh")
        # BGR: every stand-in image has blue 17, green 40, red 200 outside the faces
        assert tuple(img_or_path[0, 0]) == (17, 40, 200), "the image must be BGR"
        self.calls += 1
        results = []
        for person in person_results:
            x, y, w, h = (float(v) for v in person["bbox"][:4])
            if format == "xyxy":
                w, h = w - x + 1, h - y + 1
            center = np.array([x + w * 0.5, y + h * 0.5])
            aspect = 192 / 256
            if w > aspect * h:
                h = w / aspect
            elif w < aspect * h:
                w = h * aspect
            size = np.array([w, h]) * 1.25
            self.crops.append((*(center - size / 2), *(center + size / 2)))
            grid = np.linspace(0, 1, 17)
            keypoints = np.stack([center[0] - size[0] / 2 + grid * size[0], center[1] - size[1] / 2 + grid * size[1],
                                  np.asarray(model.scores, dtype=np.float32)], axis=1)
            result = dict(person)
            result["keypoints"] = keypoints[:getattr(model, "num_keypoints", 17)]
            results.append(result)
        return results, [{}]


@pytest.fixture
def pose_dataset(dataset):
    """The dataset with BGR-testable pixels (R 200, G 40, B 17)."""
    root, persons = dataset
    for image in persons["images"]:
        path = root / image["file_name"]
        pixels = np.array(Image.open(path))
        pixels[:, :, 0] = np.where(pixels[:, :, 0] == 255, 255, 200)
        pixels[:, :, 2] = 17
        Image.fromarray(pixels).save(path)
    return root, persons


SCORES = [0.9, 0.3, 0.2999, 0.5, 0.1, 0.31, 0.0, 1.0, 0.3, 0.8, 0.05, 0.6, 0.7, 0.25, 0.35, 0.4, 0.45]


# ---------------------------------------------------------------------------- pure helpers


def test_mask_box_is_dp2s_exclusive_tight_box_and_matches_the_rle_box():
    assert detectors.mask_box(_mask(10, 12, 3, 2, 7, 9)) == (3, 2, 7, 9)
    single = np.zeros((5, 5), bool)
    single[4, 0] = True
    assert detectors.mask_box(single) == (0, 4, 1, 5)
    assert detectors.mask_box(np.zeros((4, 4), bool)) is None
    assert detectors.rle_box(encode(np.zeros((4, 4), bool))) is None
    rng = np.random.default_rng(0)
    for _ in range(20):
        mask = np.zeros((30, 40), bool)
        for _ in range(3):
            y, x = rng.integers(0, 29), rng.integers(0, 39)
            mask[y:y + rng.integers(1, 8), x:x + rng.integers(1, 8)] = True
        assert detectors.rle_box(encode(mask)) == detectors.mask_box(mask)


def test_visibility_is_score_at_least_threshold():
    assert detectors.visibility([0.3, 0.2999, 0.31, 0.0, 1.0], 0.3) == [1, 0, 1, 0, 1]
    assert detectors.visibility([0.25], 0.2) == [1]


@pytest.mark.parametrize("box", [(10, 20, 30, 100), (0, 0, 200, 50), (5.0, 5.0, 9.0, 17.0), (3, 4, 4, 5)])
def test_dp2_crop_through_mmpose_equals_the_aspect_box(box):
    x0, y0, x1, y1 = box
    crop = detectors.mmpose_crop(detectors.mmpose_person_box(box, dp2_crop=True))
    assert np.allclose(crop, detectors.aspect_box(box))
    # dp2 VitPoseModel: the box widened along one axis to 192:256 around its centre
    w, h = x1 - x0, y1 - y0
    factor = 256 / 192 * w / h
    expected = (x0, y0 + h / 2 - h * factor / 2, x1, y0 + h / 2 + h * factor / 2) if factor > 1 else \
        (x0 + w / 2 - w / factor / 2, y0, x0 + w / 2 + w / factor / 2, y1)
    assert np.allclose(crop, expected)
    # without the dp2 crop mmpose adds its 25 % context around the same centre
    padded = detectors.mmpose_crop(detectors.mmpose_person_box(box, dp2_crop=False))
    aspect = detectors.aspect_box(box)
    assert np.isclose(padded[2] - padded[0], 1.25 * (aspect[2] - aspect[0]))
    assert np.isclose(padded[0] + padded[2], aspect[0] + aspect[2])


def test_inference_size_follows_face_detections_resize():
    assert detectors.inference_size(1024, 2048, None) == (1024, 2048)
    assert detectors.inference_size(1024, 2048, 1024) == (512, 1024)
    assert detectors.inference_size(720, 1280, 2048) == (720, 1280)
    assert detectors.inference_size(480, 640, 500) == (375, 500)


def test_batches_group_consecutive_images_of_one_size():
    sizes = [1, 1, 1, 2, 2, 1, 3]
    assert [list(b) for b in detectors.batches_by_size(range(7), lambda i: sizes[i], 2)] == [[0, 1], [2], [3, 4], [5], [6]]
    assert [b for b in detectors.batches_by_size([], lambda i: i, 4)] == []
    with pytest.raises(WorkflowInputError, match="batch_size"):
        list(detectors.batches_by_size([1], lambda i: i, 0))


def test_face_detector_output_is_checked_clipped_and_empty_boxes_dropped():
    boxes, scores, dropped = detectors.checked_face_detections(
        [[-0.4, 1, 10, 12.5, 0.9], [5, 5, 5, 9, 0.5], [60, 2, 64.6, 10, 0.25]], 64, 48, key="x.png")
    assert boxes == [[0.0, 1.0, 10.0, 12.5], [60.0, 2.0, 64.0, 10.0]]
    assert scores == [0.9, 0.25] and dropped == 1
    assert detectors.checked_face_detections(np.zeros((0, 5)), 64, 48, key="x") == ([], [], 0)
    for raw, message in [(np.zeros((2, 4)), "shape"), ([[0, 0, 1, 1, np.nan]], "non-finite"),
                         ([[0, 0, 1, 1, 1.5]], "scores outside"), ([[0, 0, 80, 10, 0.5]], "outside the 64x48")]:
        with pytest.raises(WorkflowInputError, match=message):
            detectors.checked_face_detections(raw, 64, 48, key="x.png")


def test_face_detector_output_may_be_a_tensor():
    torch = pytest.importorskip("torch")
    boxes, scores, _ = detectors.checked_face_detections(torch.tensor([[1.0, 2.0, 3.0, 4.0, 0.5]]), 10, 10, key="x")
    assert boxes == [[1.0, 2.0, 3.0, 4.0]] and scores == [0.5]


def test_pose_results_are_checked():
    good = {"keypoints": np.zeros((17, 3)), "person_id": 7}
    assert len(detectors.checked_pose_results([good], [7], key="x")) == 1
    with pytest.raises(WorkflowInputError, match="1 results for 2 persons"):
        detectors.checked_pose_results([good], [7, 8], key="x")
    with pytest.raises(WorkflowInputError, match="shape"):
        detectors.checked_pose_results([{"keypoints": np.zeros((16, 3))}], [7], key="x")
    with pytest.raises(WorkflowInputError, match="another order"):
        detectors.checked_pose_results([good], [8], key="x")
    with pytest.raises(WorkflowInputError, match="non-finite"):
        detectors.checked_pose_results([{"keypoints": np.full((17, 3), np.inf)}], [7], key="x")


def test_person_keypoints_entry_layout():
    keypoints = np.stack([np.arange(17) + 0.123, np.arange(17) * 2.0, SCORES], axis=1)
    entry = detectors.person_keypoints(4, keypoints, 0.3)
    assert entry["person_id"] == 4 and len(entry["keypoints"]) == 51 and entry["scores"] == pytest.approx(SCORES)
    assert entry["keypoints"][:3] == [0.12, 0.0, 1]
    assert entry["keypoints"][2::3] == detectors.visibility(SCORES, 0.3)
    empty = detectors.person_keypoints(5, None, 0.3)
    assert empty["keypoints"] == [0.0, 0.0, 0] * 17 and empty["scores"] == [0.0] * 17


def test_vitpose_checkpoint_signature():
    detectors.check_vitpose_state_dict(dict(detectors.VITPOSE_H_SIGNATURE), "ok.pth")
    wrong_head = {**detectors.VITPOSE_H_SIGNATURE, "keypoint_head.final_layer.weight": (133, 256, 1, 1)}
    with pytest.raises(WorkflowInputError, match=r"final_layer.weight' has shape \(133"):
        detectors.check_vitpose_state_dict(wrong_head, "wholebody.pth")
    mmpose1 = {"backbone.layers.31.attn.qkv.weight": (3840, 1280), "head.final_layer.weight": (17, 256, 1, 1)}
    with pytest.raises(WorkflowInputError, match="not an mmpose 1.x checkpoint"):
        detectors.check_vitpose_state_dict(mmpose1, "td-hm_ViTPose-huge.pth")
    deeper = {**detectors.VITPOSE_H_SIGNATURE, "backbone.blocks.32.attn.qkv.weight": (3840, 1280)}
    with pytest.raises(WorkflowInputError, match="more than 32"):
        detectors.check_vitpose_state_dict(deeper, "x.pth")


# ---------------------------------------------------------------------------- DSFD


def test_face_detection_images_are_those_with_persons(dataset):
    root, persons = dataset
    jobs = detectors.face_detection_images(persons, root)
    assert [job.key for job in jobs] == ["train/a.png", "train/b.png", "train/c.png"]
    assert jobs[2] == detectors.ImageJob("train/c.png", root / "train/c.png", 40, 36)


def test_build_face_detector_loads_the_local_weights_through_torch_hub(monkeypatch, dsfd_weights):
    torch = pytest.importorskip("torch")
    built = []
    _fake_face_detection(monkeypatch, built)
    hub_before = torch.hub.get_dir()
    settings = detectors.DsfdSettings(confidence=0.2, device="cpu")
    detector = detectors.build_face_detector(dsfd_weights, settings)
    assert torch.equal(detector.state_dict["layer1.weight"], torch.arange(6.0))
    assert (detector.confidence_threshold, detector.nms_iou_threshold, detector.clip_boxes) == (0.2, 0.3, True)
    assert (detector.max_resolution, detector.fp16_inference, str(detector.device)) == (None, False, "cpu")
    assert torch.hub.get_dir() == hub_before
    assert detectors.dsfd_weights_file_name() == "WIDERFace_DSFD_RES152.pth"
    with pytest.raises(WorkflowInputError, match="missing"):
        detectors.build_face_detector(dsfd_weights.parent / "nothing.pth", settings)


def test_detect_faces_document_feeds_the_face_matching(monkeypatch, dataset, dsfd_weights):
    root, persons = dataset
    built = []
    _fake_face_detection(monkeypatch, built)
    settings = detectors.DsfdSettings(confidence=0.2, device="cpu")
    detector = detectors.build_face_detector(dsfd_weights, settings)
    info = detectors.dsfd_info(settings, dsfd_weights)
    jobs = detectors.face_detection_images(persons, root)
    document = detectors.detect_faces(jobs, detector, dataset="cityscapes", split="train", detector_info=info)
    assert document["format"] == "face-detections/v1" and document["split"] == "train"
    assert document["images"] == {
        "train/a.png": {"boxes": [[20.0, 6.0, 28.0, 14.0]], "scores": [pytest.approx(230 / 255)]},
        "train/b.png": {"boxes": [[2.0, 2.0, 8.0, 8.0], [40.0, 10.0, 46.0, 16.0]],
                        "scores": [pytest.approx(200 / 255), pytest.approx(60 / 255)]},
        "train/c.png": {"boxes": [], "scores": []},
    }
    assert document["counts"] == {"images": 3, "detections": 3, "dropped_empty": 0}
    assert info["confidence_threshold"] == 0.2 and info["nms_iou_threshold"] == 0.3 and info["clip_boxes"] is True
    assert info["package"] == "face_detection==0.2.2" and len(info["weights"]["sha256"]) == 64
    assert built[0].batches == [1, 1, 1]
    # batches of one size give the same document
    batched = detectors.detect_faces(jobs, detector, dataset="cityscapes", split="train", detector_info=info, batch_size=8)
    assert batched["images"] == document["images"] and built[0].batches[3:] == [2, 1]
    # the matching rule takes the file as it is and applies the dataset's threshold
    regions = build_face_regions(document, persons, dataset="cityscapes", confidence=0.3, min_iou=0.01)
    assert [r["person_id"] for r in regions["images"]["train/a.png"]] == [1]
    assert regions["images"]["train/b.png"] == []  # 60/255 < 0.3; the (2, 2) face touches no person
    assert regions["counts"]["below_confidence"] == 1


def test_out_of_memory_retries_image_by_image_then_names_max_resolution(monkeypatch, dataset, dsfd_weights):
    root, persons = dataset
    _fake_face_detection(monkeypatch, [])
    detector = detectors.build_face_detector(dsfd_weights, detectors.DsfdSettings(confidence=0.2, device="cpu"))
    jobs = detectors.face_detection_images(persons, root)
    reference = detectors.detect_faces(jobs, detector, dataset="c", split="train", detector_info={})
    single = detector.batched_detect

    def batched_oom(image, shrink=1.0):
        if len(image) > 1:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return single(image, shrink)

    monkeypatch.setattr(detector, "batched_detect", batched_oom)
    retried = detectors.detect_faces(jobs, detector, dataset="c", split="train", detector_info={}, batch_size=4)
    assert retried["images"] == reference["images"]

    def always_oom(image, shrink=1.0):
        raise RuntimeError("CUDA out of memory.")

    monkeypatch.setattr(detector, "batched_detect", always_oom)
    with pytest.raises(WorkflowInputError, match=r"out of memory on image 'train/a.png' \(64x48\).*max_resolution"):
        detectors.detect_faces(jobs, detector, dataset="c", split="train", detector_info={}, batch_size=4)

    def broken(image, shrink=1.0):
        raise RuntimeError("expected scalar type Float")

    monkeypatch.setattr(detector, "batched_detect", broken)
    with pytest.raises(RuntimeError, match="scalar type"):
        detectors.detect_faces(jobs, detector, dataset="c", split="train", detector_info={})


def test_images_must_exist_and_have_the_annotated_size(dataset):
    root, persons = dataset
    jobs = detectors.face_detection_images(persons, root)
    wrong = [detectors.ImageJob("train/a.png", jobs[0].path, 65, 48)]
    with pytest.raises(DatasetError, match="is 64x48 but persons.json says 65x48"):
        detectors.detect_faces(wrong, object(), dataset="c", split="train", detector_info={})
    with pytest.raises(DatasetError, match="does not exist"):
        detectors.detect_faces([detectors.ImageJob("x.png", root / "x.png", 1, 1)], object(), dataset="c", split="train", detector_info={})


def test_real_face_detection_package_with_random_weights(tmp_path, dataset):
    """The real face_detection 0.2.2 (when importable) through build_face_detector and
    detect_faces. Random DSFD weights with zero box / score heads: the boxes are the priors,
    which says nothing about faces but runs every call this workflow makes."""
    pytest.importorskip("face_detection")
    torch = pytest.importorskip("torch")
    from face_detection.dsfd.config import resnet152_model_config
    from face_detection.dsfd.face_ssd import SSD

    torch.manual_seed(0)
    state = SSD(resnet152_model_config).state_dict()
    for key, value in state.items():
        if key.startswith(("loc", "conf")):
            value.zero_()
    weights = tmp_path / "dsfd.pth"
    torch.save(state, weights)
    root, persons = dataset
    detector = detectors.build_face_detector(weights, detectors.DsfdSettings(confidence=0.2, device="cpu"))
    jobs = detectors.face_detection_images(persons, root)
    one = detectors.detect_faces(jobs, detector, dataset="c", split="train", detector_info={})
    batched = detectors.detect_faces(jobs, detector, dataset="c", split="train", detector_info={}, batch_size=2)
    assert one["images"].keys() == batched["images"].keys() == {job.key for job in jobs}
    for key, entry in one["images"].items():
        assert np.allclose(entry["boxes"], batched["images"][key]["boxes"], atol=1e-3)
        assert entry["scores"] and all(s == pytest.approx(0.5) for s in entry["scores"])  # softmax of zeros


# ---------------------------------------------------------------------------- ViTPose


def test_keypoints_for_persons_document(pose_dataset):
    root, persons = pose_dataset
    api = StandInPoseAPI()
    model = types.SimpleNamespace(scores=SCORES)
    document = detectors.keypoints_for_persons(persons, root, model, score_threshold=0.3, api=api)
    assert document["format"] == "person-keypoints/v1"
    assert (document["dataset"], document["split"], document["score_threshold"]) == ("cityscapes", "train", 0.3)
    assert list(document["images"]) == ["train/a.png", "train/b.png", "train/c.png", "train/d.png"]
    assert [p["person_id"] for p in document["images"]["train/b.png"]] == [2, 3]
    assert document["images"]["train/d.png"] == []
    entry = document["images"]["train/a.png"][0]
    assert entry["keypoints"][2::3] == detectors.visibility(SCORES, 0.3) and entry["scores"] == pytest.approx(SCORES)
    # the crop mmpose cut is dp2's: the mask's tight box widened to 192:256
    assert np.allclose(api.crops[0], detectors.aspect_box((16, 4, 34, 44)), atol=1e-3)
    assert entry["keypoints"][0:2] == pytest.approx([api.crops[0][0], api.crops[0][1]], abs=0.01)
    assert api.calls == 3  # one call per image with persons (batch 32)
    assert document["counts"] == {"images": 4, "persons": 4, "empty_masks": 0,
                                  "visible_keypoints": 4 * sum(detectors.visibility(SCORES, 0.3)), "persons_without_visible": 0}
    # persons in chunks of one give the same keypoints
    api_one = StandInPoseAPI()
    chunked = detectors.keypoints_for_persons(persons, root, model, score_threshold=0.3, api=api_one, batch_size=1)
    assert chunked["images"] == document["images"] and api_one.calls == 4
    # mmpose's own crop (x1.25 context) when asked
    api_mm = StandInPoseAPI()
    detectors.keypoints_for_persons(persons, root, model, api=api_mm, dp2_crop=False)
    aspect = detectors.aspect_box((16, 4, 34, 44))
    assert np.isclose(api_mm.crops[0][2] - api_mm.crops[0][0], 1.25 * (aspect[2] - aspect[0]))


def test_keypoints_for_an_empty_mask_and_bad_model_output(pose_dataset):
    root, persons = pose_dataset
    persons["annotations"][0]["segmentation"] = encode(np.zeros((48, 64), bool))
    api = StandInPoseAPI()
    document = detectors.keypoints_for_persons(persons, root, types.SimpleNamespace(scores=SCORES), api=api)
    assert document["images"]["train/a.png"][0]["keypoints"] == [0.0, 0.0, 0] * 17
    assert document["counts"]["empty_masks"] == 1 and document["counts"]["persons_without_visible"] == 1
    assert api.calls == 2  # image a had nothing to run on
    with pytest.raises(WorkflowInputError, match="shape"):
        detectors.keypoints_for_persons(persons, root, types.SimpleNamespace(scores=SCORES, num_keypoints=16), api=StandInPoseAPI())


def test_load_pose_model_checks_the_checkpoint_and_turns_flip_test_off(monkeypatch, tmp_path):
    torch = pytest.importorskip("torch")
    api = StandInPoseAPI()
    apis = types.ModuleType("mmpose.apis")
    apis.init_pose_model = api.init_pose_model
    mmpose = types.ModuleType("mmpose")
    mmpose.__file__ = str(tmp_path / "mmpose" / "__init__.py")
    mmpose.apis = apis
    loaded = []

    class Config:
        @staticmethod
        def fromfile(path):
            loaded.append(path)
            return types.SimpleNamespace(model=types.SimpleNamespace(test_cfg=types.SimpleNamespace(flip_test=True)))

    mmcv = types.ModuleType("mmcv")
    mmcv.Config = Config
    monkeypatch.setitem(sys.modules, "mmpose", mmpose)
    monkeypatch.setitem(sys.modules, "mmpose.apis", apis)
    monkeypatch.setitem(sys.modules, "mmcv", mmcv)
    checkpoint = tmp_path / "vit-h.pth"
    torch.save({"state_dict": {k: torch.empty(s, dtype=torch.uint8) for k, s in detectors.VITPOSE_H_SIGNATURE.items()}}, checkpoint)
    config = tmp_path / "ViTPose_huge_coco_256x192.py"
    model = detectors.load_pose_model(checkpoint, config=config, device="cpu")
    assert loaded == [str(config)] and model.cfg.model.test_cfg.flip_test is False
    assert (model.checkpoint, model.device) == (str(checkpoint), "cpu")
    # without a config: the one the ViTPose package ships under mmpose/.mim
    with pytest.raises(WorkflowInputError, match="has no configs/body"):
        detectors.load_pose_model(checkpoint, device="cpu")
    packaged = tmp_path / "mmpose" / ".mim" / detectors.VITPOSE_H_CONFIG
    packaged.parent.mkdir(parents=True)
    packaged.write_text("# stand-in\n")
    detectors.load_pose_model(checkpoint, device="cpu")
    assert loaded[-1] == str(packaged)
    wrong = tmp_path / "wrong.pth"
    torch.save({"state_dict": {"head.final_layer.weight": torch.empty(17, 256, 1, 1, dtype=torch.uint8)}}, wrong)
    with pytest.raises(WorkflowInputError, match="not a ViTPose-H checkpoint"):
        detectors.load_pose_model(wrong, config=config, device="cpu")
    with pytest.raises(WorkflowInputError, match="missing"):
        detectors.load_pose_model(tmp_path / "none.pth", config=config)


# ---------------------------------------------------------------------------- missing libraries


def test_a_missing_library_names_the_conda_env(monkeypatch, dataset, dsfd_weights):
    root, persons = dataset
    for name in ("face_detection", "face_detection.dsfd", "face_detection.dsfd.detect", "mmpose", "mmpose.apis", "mmcv"):
        monkeypatch.setitem(sys.modules, name, None)  # import raises ImportError
    # the package imports without them
    importlib.reload(detectors)
    with pytest.raises(WorkflowInputError, match=r"DSFD face detection needs the Python package 'face_detection'.*envs/detectors.yaml"):
        detectors.build_face_detector(dsfd_weights, detectors.DsfdSettings(confidence=0.2, device="cpu"))
    with pytest.raises(WorkflowInputError, match=r"ViTPose keypoint detection needs .*'mmpose'.*envs/detectors.yaml"):
        detectors.keypoints_for_persons(persons, root, object())
    with pytest.raises(WorkflowInputError, match="envs/detectors.yaml"):
        detectors.load_pose_model(dsfd_weights)


def test_an_incompatible_mmcv_names_the_conda_env(monkeypatch):
    def refuse(name, *args, **kwargs):
        raise AssertionError("MMCV==2.1.0 is used but incompatible. Please install mmcv>=1.3.8, <=1.5.0.")

    monkeypatch.setattr(importlib, "import_module", refuse)
    with pytest.raises(WorkflowInputError, match=r"refuses the installed versions.*MMCV==2.1.0.*envs/detectors.yaml"):
        detectors.require("mmpose.apis", "ViTPose keypoint detection")


# ---------------------------------------------------------------------------- rule scripts


class _Params(types.SimpleNamespace):
    pass


class _Inputs(types.SimpleNamespace):
    def keys(self):
        return vars(self).keys()


def _run_script(name, **snakemake):
    runpy.run_path(str(REPO / "scripts" / name), init_globals={"snakemake": types.SimpleNamespace(**snakemake)})


def test_detect_faces_rule_script(monkeypatch, dataset, dsfd_weights, tmp_path):
    from anonymization_impact.io import read_json, write_json_atomic

    root, persons = dataset
    _fake_face_detection(monkeypatch, [])
    write_json_atomic(tmp_path / "persons.json", persons)
    output, log = tmp_path / "out" / "detections.json", tmp_path / "logs" / "faces.log"
    _run_script("detect_faces.py", input=_Inputs(persons=str(tmp_path / "persons.json"), weights=str(dsfd_weights)),
                params=_Params(root=str(root), confidence=0.2, device="cpu", batch_size=2, max_resolution=None),
                output=[str(output)], log=[str(log)], wildcards=types.SimpleNamespace(dataset="cityscapes"))
    document = read_json(output)
    assert document["format"] == "face-detections/v1" and document["dataset"] == "cityscapes"
    assert len(document["images"]) == 3 and document["detector"]["confidence_threshold"] == 0.2
    assert "face detections:" in log.read_text() and "DSFD" in log.read_text()


def test_detect_keypoints_rule_script(monkeypatch, pose_dataset, tmp_path):
    torch = pytest.importorskip("torch")
    from anonymization_impact.io import read_json, write_json_atomic

    root, persons = pose_dataset
    api = StandInPoseAPI()
    apis = types.ModuleType("mmpose.apis")
    apis.inference_top_down_pose_model = api.inference_top_down_pose_model
    apis.init_pose_model = lambda config, checkpoint=None, device="cuda:0": types.SimpleNamespace(scores=SCORES, cfg=config)

    class Config:
        @staticmethod
        def fromfile(path):
            return types.SimpleNamespace(model=types.SimpleNamespace(test_cfg=types.SimpleNamespace(flip_test=True)))

    mmcv = types.ModuleType("mmcv")
    mmcv.Config = Config
    monkeypatch.setitem(sys.modules, "mmpose.apis", apis)
    monkeypatch.setitem(sys.modules, "mmcv", mmcv)
    checkpoint = tmp_path / "vit-h-multi-coco.pth"
    torch.save({"state_dict": {k: torch.empty(s, dtype=torch.uint8) for k, s in detectors.VITPOSE_H_SIGNATURE.items()}}, checkpoint)
    config = tmp_path / "config.py"
    config.write_text("# stand-in\n")
    write_json_atomic(tmp_path / "persons.json", persons)
    output, log = tmp_path / "keypoints.json", tmp_path / "keypoints.log"
    _run_script("detect_keypoints.py",
                input=_Inputs(persons=str(tmp_path / "persons.json"), weights=str(checkpoint), pose_config=str(config)),
                params=_Params(root=str(root), score_threshold=0.3, device="cpu", batch_size=2),
                output=[str(output)], log=[str(log)], wildcards=types.SimpleNamespace(dataset="cityscapes"))
    document = read_json(output)
    assert document["format"] == "person-keypoints/v1" and document["score_threshold"] == 0.3
    assert "not dp2's file" in document["source"] and "flip test off" in document["source"]
    assert sum(len(v) for v in document["images"].values()) == 4
    assert "keypoints:" in log.read_text()


def test_rule_scripts_name_what_an_unwired_rule_lacks(tmp_path):
    log = tmp_path / "faces.log"
    with pytest.raises(SystemExit):
        _run_script("detect_faces.py", input=_Inputs(), params=_Params(root="x"), output=[str(tmp_path / "o.json")],
                    log=[str(log)], wildcards=types.SimpleNamespace(dataset="coco"))
    assert "rule detect_faces does not give its script input.persons, input.weights, params.confidence" in log.read_text()


def test_weights_that_do_not_fit_dsfd_are_named(monkeypatch, dsfd_weights):
    _fake_face_detection(monkeypatch, [])
    package = sys.modules["face_detection"]

    def strict(*args, **kwargs):
        raise RuntimeError('Error(s) in loading state_dict for SSD:\n\tMissing key(s) in state_dict: "layer1.0.conv1.weight"')

    monkeypatch.setattr(package, "build_detector", strict)
    with pytest.raises(WorkflowInputError, match="does not load into DSFD"):
        detectors.build_face_detector(dsfd_weights, detectors.DsfdSettings(confidence=0.2, device="cpu"))

    def no_gpu(*args, **kwargs):
        raise RuntimeError("No CUDA GPUs are available")

    monkeypatch.setattr(package, "build_detector", no_gpu)
    with pytest.raises(RuntimeError, match="No CUDA GPUs"):
        detectors.build_face_detector(dsfd_weights, detectors.DsfdSettings(confidence=0.2, device="cpu"))
