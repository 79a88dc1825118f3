"""Fig. 8 (relative drop against ResNet depth) and the Fig. 2-like qualitative figure."""

from __future__ import annotations

import json
import logging
import math
import runpy
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pytest

from anonymization_impact.annotations import normalize_split
from anonymization_impact.audit import tree_audit
from anonymization_impact.config import validate_config
from anonymization_impact.errors import WorkflowInputError
from anonymization_impact.evaluation import metrics_document
from anonymization_impact.figures import fig8, qualitative
from anonymization_impact.figures.style import variant_label
from anonymization_impact.io import decode_image, write_json_atomic
from anonymization_impact.methods import build_method
from anonymization_impact.provenance import provenance
from anonymization_impact.regions import build_face_regions
from anonymization_impact.results import load_runs
from anonymization_impact.trees import anonymize_shard, assemble_tree

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"

# --------------------------------------------------------------------------- Fig. 8

KP = ["keypoint_rcnn_r50_fpn", "keypoint_rcnn_r101_fpn", "keypoint_rcnn_r152_fpn"]
MASK = ["mask_rcnn_r50_fpn", "mask_rcnn_r101_fpn"]
# kp_AP per (variant, model): values of seeds 0, 1, 2
KP_AP = {
    ("original", KP[0]): [10.0, 12.0, 11.0],
    ("face-maskout", KP[0]): [9.0, 9.5, 10.4],
    ("original", KP[1]): [14.0, 13.0, 15.5],
    ("face-maskout", KP[1]): [11.0, 12.5, 12.0],
    ("original", KP[2]): [16.0, 15.0, 15.2],  # face-maskout of R-152 missing
}


def fig8_config(**panels_override) -> dict:
    backbones = {"r50": "resnet50", "r101": "resnet101", "r152": "resnet152"}
    models = {f"keypoint_rcnn_{k}_fpn": {"architecture": "keypoint_rcnn", "backbone": b} for k, b in backbones.items()}
    models |= {f"mask_rcnn_{k}_fpn": {"architecture": "mask_rcnn", "backbone": b} for k, b in backbones.items()}
    return validate_config({
        "datasets": {"cityscapes": {"synthetic": False, "root": "/nonexistent/cityscapes"}},
        "variants": {
            "face-maskout": {"region": "face", "method": "maskout"},
            "face-realistic": {"region": "face", "method": "realistic"},
            "body-realistic": {"region": "body", "method": "realistic", "truncation": "multimodal"},
        },
        "models": models,
        "seeds": [0, 1, 2],
        "fig8": {"panels": {
            "coco": {"title": "COCO, face realistic", "dataset": "coco", "variant": "face-realistic",
                     "synthetic_variant": "face-maskout", "metric": "kp_AP", "models": KP},
            "cityscapes": {"title": "Cityscapes, body realistic", "dataset": "cityscapes", "variant": "body-realistic",
                           "synthetic_variant": "face-maskout", "metric": "AP", "models": MASK},
            **panels_override,
        }},
    })


@pytest.fixture(scope="module")
def metric_files(tmp_path_factory) -> list[Path]:
    out = tmp_path_factory.mktemp("metrics")
    block = provenance(seed=0, annotation_files=[])
    paths = []

    def write(dataset, variant, model, seed, task, metrics, synthetic, backbone):
        document = metrics_document(
            dataset=dataset, variant=variant, model=model, seed=seed, task=task, metrics=metrics,
            per_class_ap={"person": metrics.get("AP_person")}, evaluator={"name": "pycocotools", "version": "2.0.11"},
            provenance={**block, "seed": seed}, synthetic=synthetic,
        )
        document["training"] = {"backbone": backbone, "iterations": 100}
        path = out / dataset / variant / model / f"seed{seed}.json"
        write_json_atomic(path, document)
        paths.append(path)

    for (variant, model), values in KP_AP.items():
        for seed, value in enumerate(values):
            write("coco", variant, model, seed, "keypoints", {"box_AP": 30.0 + seed, "kp_AP": value}, True, "resnet18")
    for seed in range(3):  # Cityscapes (real data): only the original runs of R-50
        write("cityscapes", "original", MASK[0], seed, "instance_segmentation", {"AP": 30.0, "AP50": 55.0, "AP_person": 28.0}, False, "resnet50")
    return paths


def _independent_drop(original, variant):
    """Drop and its standard error by numerical differentiation of f(o, v) = 100 (o - v) / o."""
    o, v = np.mean(original), np.mean(variant)
    se_o, se_v = np.std(original, ddof=1) / np.sqrt(len(original)), np.std(variant, ddof=1) / np.sqrt(len(variant))

    def f(a, b):
        return 100 * (a - b) / a

    h = 1e-6
    d_do = (f(o + h, v) - f(o - h, v)) / (2 * h)
    d_dv = (f(o, v + h) - f(o, v - h)) / (2 * h)
    return f(o, v), math.hypot(d_do * se_o, d_dv * se_v)


def test_fig8_drops_and_error_bars_match_an_independent_computation(metric_files):
    data = fig8.fig8_data(fig8_config(), load_runs(metric_files), {"face-maskout": True, "face-realistic": False, "body-realistic": False})
    coco = data["panels"]["coco"]
    assert [p["model"] for p in coco["points"]] == KP
    for point in coco["points"][:2]:
        original, variant = KP_AP[("original", point["model"])], KP_AP[("face-maskout", point["model"])]
        drop, se = _independent_drop(original, variant)
        assert point["status"] == "ran"
        assert point["drop"] == pytest.approx(drop, rel=1e-9)
        assert point["drop_se"] == pytest.approx(se, rel=1e-5)
        assert point["original"]["mean"] == pytest.approx(np.mean(original))
        assert point["variant"]["se"] == pytest.approx(np.std(variant, ddof=1) / np.sqrt(3))
        assert point["original"]["seeds"] == point["variant"]["seeds"] == [0, 1, 2]
        assert point["synthetic"] is True
    assert coco["points"][2]["status"] == "missing" and coco["points"][2]["drop"] is None


def test_fig8_labels_the_stand_in_and_the_backbone_really_trained(metric_files):
    data = fig8.fig8_data(fig8_config(), load_runs(metric_files), {"face-realistic": False, "body-realistic": False})
    coco = data["panels"]["coco"]
    assert coco["variant"] == "face-maskout" and coco["configured_variant"] == "face-realistic" and coco["stand_in"]
    assert "stand-in for face-realistic" in coco["variant_label"] and coco["variant_label"].startswith("face-maskout")
    first = coco["points"][0]
    assert first["backbone"] == "resnet50" and first["trained_backbones"] == ["resnet18"]
    assert first["x_label"].startswith("ResNet-50") and "trained: ResNet-18" in first["x_label"]
    # a real dataset plots the configured variant, not the stand-in
    cityscapes = data["panels"]["cityscapes"]
    assert cityscapes["variant"] == "body-realistic" and not cityscapes["stand_in"]


def test_fig8_needs_weights_panel_shows_no_number(metric_files, tmp_path):
    data = fig8.fig8_data(fig8_config(), load_runs(metric_files), {"face-maskout": True, "body-realistic": False})
    cityscapes = data["panels"]["cityscapes"]
    assert [p["status"] for p in cityscapes["points"]] == ["needs_weights", "needs_weights"]
    assert all(p["drop"] is None and p["drop_se"] is None and p["variant"] is None for p in cityscapes["points"])
    figure, axes = plt.subplots()
    fig8._draw_panel(axes, cityscapes)
    texts = [t.get_text() for t in axes.texts]
    assert any("needs weights" in t for t in texts)
    assert not any(any(c.isdigit() for c in t.replace("R-", "")) for t in texts if "needs" in t)
    assert len(axes.lines) == 1 and not axes.collections  # only the zero line: no point, no error bar
    assert list(axes.get_yticks()) == []
    plt.close(figure)
    fig8.plot(data, tmp_path / "fig8.pdf", tmp_path / "fig8.png")
    assert (tmp_path / "fig8.pdf").stat().st_size > 1000 and (tmp_path / "fig8.png").stat().st_size > 1000


def test_fig8_zero_original_is_undefined_not_infinite(tmp_path):
    block = provenance(seed=0, annotation_files=[])
    paths = []
    for variant, value in (("original", 0.0), ("face-maskout", 1.0)):
        for seed in range(3):
            document = metrics_document(dataset="coco", variant=variant, model=KP[0], seed=seed, task="keypoints",
                                        metrics={"box_AP": 1.0, "kp_AP": value}, per_class_ap={}, evaluator={"name": "pycocotools", "version": "x"},
                                        provenance={**block, "seed": seed}, synthetic=True)
            paths.append(tmp_path / f"{variant}{seed}.json")
            write_json_atomic(paths[-1], document)
    data = fig8.fig8_data(fig8_config(), load_runs(paths), {})
    point = data["panels"]["coco"]["points"][0]
    assert point["status"] == "undefined" and point["drop"] is None
    assert point["trained_backbones"] == [] and point["x_label"] == "ResNet-50"  # no training section: configured


def _run_script(name: str, namespace: SimpleNamespace) -> None:
    """Run a rule script as Snakemake would, keeping pytest's logging handlers."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        runpy.run_path(str(SCRIPTS / name), init_globals={"snakemake": namespace}, run_name="__main__")
    finally:
        for handler in root.handlers[:]:
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)


def test_plot_fig8_script_writes_figure_and_data(metric_files, tmp_path):
    output = SimpleNamespace(pdf=tmp_path / "fig8.pdf", png=tmp_path / "fig8.png", data=tmp_path / "fig8.json")
    params = SimpleNamespace(config=fig8_config())
    _run_script("plot_fig8.py", SimpleNamespace(input=SimpleNamespace(metrics=[str(p) for p in metric_files]), params=params,
                                                 output=output, log=[str(tmp_path / "fig8.log")]))
    data = json.loads(output.data.read_text())
    assert set(data["panels"]) == {"coco", "cityscapes"}
    assert data["panels"]["coco"]["points"][0]["status"] == "ran"
    first = output.pdf.read_bytes()
    assert output.png.stat().st_size > 1000 and first.startswith(b"%PDF")
    _run_script("plot_fig8.py", SimpleNamespace(input=SimpleNamespace(metrics=[str(p) for p in metric_files]), params=params,
                                                 output=output, log=[str(tmp_path / "fig8.log")]))
    assert output.pdf.read_bytes() == first  # deterministic bytes


# --------------------------------------------------------------------------- qualitative


def test_variant_labels_use_the_tables_qualifiers_after_the_region():
    def label(**settings):
        return variant_label("v", validate_config({"variants": {"v": settings}})["variants"]["v"])

    assert variant_label("original", None) == "Original"
    assert variant_label("unknown", None) == "unknown"
    assert label(region="face", method="blur") == "Face blur"
    assert label(region="body", method="realistic", truncation="multimodal", postprocess="hmlo") == "Body realistic + HM-LO"
    assert label(region="body", method="realistic", truncation="none") == "Body realistic (no truncation)"
    assert label(region="body", method="maskout", min_size=32) == "Body mask-out (min size 32²)"
    assert label(region="body", method="blur", blur_sigma=3) == "Body blur (σ = 3)"
    assert label(region="face", method="realistic", hr_faces=True) == "Face realistic + HR faces"


VARIANTS = {
    "body-maskout": {"region": "body", "method": "maskout"},
    "body-realistic": {"region": "body", "method": "realistic", "truncation": "multimodal"},
    "face-blur": {"region": "face", "method": "blur"},
}


@pytest.fixture(scope="module")
def qualitative_inputs(twins, tmp_path_factory):
    """Cityscapes twin: persons, face regions and one body-maskout tree with its audit.json."""
    root = twins["cityscapes"]["root"]
    documents = normalize_split("cityscapes", root, "train", verify_images=False)
    persons = documents["persons"]
    faces = build_face_regions(json.loads(twins["cityscapes"]["faces"].read_text()), persons, dataset="cityscapes", confidence=0.2, min_iou=0.01)
    settings = validate_config({"variants": VARIANTS})["variants"]
    out = tmp_path_factory.mktemp("tree") / "body-maskout"
    shard_dir = out / "shards" / "0"
    shard_dir.mkdir(parents=True)
    shard = anonymize_shard(root=root, persons=persons, faces=None, variant=settings["body-maskout"], method=build_method(settings["body-maskout"]),
                            shard=0, shards=1, output_dir=shard_dir, leak_check_images=0)
    assemble_tree(root, out / "root", [i["file_name"] for i in persons["images"]], [shard_dir])
    audit = tree_audit("cityscapes", "body-maskout", settings["body-maskout"], [shard], documents["excluded"], None)
    write_json_atomic(out / "audit.json", audit)
    return {"root": root, "persons": persons, "faces": faces, "settings": settings, "audit": out / "audit.json"}


def _build(inputs, **kwargs):
    arguments = dict(persons=inputs["persons"], faces=inputs["faces"], trees=[inputs["audit"]], raw_root=inputs["root"],
                     variants=["original", "body-maskout", "body-realistic", "face-blur", "body-maskout"],
                     variant_settings=inputs["settings"], image=None, blur_original_faces=False, max_width=10_000)
    arguments.update(kwargs)
    return qualitative.build_panels(**arguments)


def test_qualitative_chooses_the_image_with_most_persons(qualitative_inputs):
    persons = qualitative_inputs["persons"]
    names = {image["id"]: image["file_name"] for image in persons["images"]}
    counts = Counter(names[a["image_id"]] for a in persons["annotations"])
    most = max(counts.values())
    expected = sorted(name for name, count in counts.items() if count == most)[0]
    file_name, panels, region = _build(qualitative_inputs)
    assert file_name == expected
    assert [p.variant for p in panels] == ["original", "body-maskout", "body-realistic", "face-blur"]  # deduplicated, in order
    assert [p.status for p in panels] == ["original", "anonymized", "needs_weights", "not_made"]
    assert region is None
    assert [p.status for p in _build(qualitative_inputs, trees=str(qualitative_inputs["audit"]))[1]] == [p.status for p in panels]
    other = sorted(names.values())[-1]
    assert _build(qualitative_inputs, image=other)[0] == other
    with pytest.raises(WorkflowInputError, match="not an image of the training split"):
        _build(qualitative_inputs, image="leftImg8bit/train/nowhere/none.png")


def test_qualitative_panels_show_the_tree_and_grey_for_missing_trees(qualitative_inputs):
    file_name, panels, _ = _build(qualitative_inputs)
    original, maskout, realistic, blur = panels
    raw = decode_image(qualitative_inputs["root"] / file_name)[0]
    assert np.array_equal(original.pixels, raw)
    tree = decode_image(qualitative_inputs["audit"].parent / "root" / file_name)[0]
    assert np.array_equal(maskout.pixels, tree) and maskout.changed is True
    assert not np.array_equal(maskout.pixels, raw) and np.any(np.all(maskout.pixels == 127, axis=-1))
    for panel in (realistic, blur):
        assert panel.pixels.shape == raw.shape and np.all(panel.pixels == qualitative.GREY) and panel.source is None
    assert realistic.label == "Body realistic" and blur.label == "Face blur"


def test_qualitative_blurs_the_original_inside_face_boxes_only_when_asked(qualitative_inputs):
    faces = qualitative_inputs["faces"]["images"]
    with_faces = sorted(name for name, boxes in faces.items() if boxes)[0]
    raw = decode_image(qualitative_inputs["root"] / with_faces)[0]
    _, panels, region = _build(qualitative_inputs, image=with_faces, blur_original_faces=True)
    original = panels[0]
    assert original.faces_blurred == len(faces[with_faces]) > 0 and "faces blurred" in original.label
    assert region.any() and np.array_equal(original.pixels[~region], raw[~region])
    assert not np.array_equal(original.pixels[region], raw[region])
    for box in faces[with_faces]:  # the blurred region lies within the face boxes
        x0, y0, x1, y1 = (int(round(v)) for v in box["box"])
        assert region[max(y0, 0):y1, max(x0, 0):x1].any()
    inside = np.zeros_like(region)
    for box in faces[with_faces]:
        x0, y0, x1, y1 = box["box"]
        inside[max(int(y0) - 1, 0):int(math.ceil(y1)) + 1, max(int(x0) - 1, 0):int(math.ceil(x1)) + 1] = True
    assert not (region & ~inside).any()
    unblurred = _build(qualitative_inputs, image=with_faces, blur_original_faces=False)[1][0]
    assert np.array_equal(unblurred.pixels, raw) and unblurred.faces_blurred is None


def test_qualitative_downscales_without_cropping(qualitative_inputs):
    _, panels, _ = _build(qualitative_inputs, max_width=64)
    for panel in panels:
        height, width = panel.pixels.shape[:2]
        assert width == 64 and height == round(qualitative_inputs["persons"]["images"][0]["height"] * 64 / qualitative_inputs["persons"]["images"][0]["width"])


def test_plot_qualitative_script_writes_figure_and_data(qualitative_inputs, tmp_path):
    faces_path = tmp_path / "faces.json"
    persons_path = tmp_path / "persons.json"
    write_json_atomic(faces_path, qualitative_inputs["faces"])
    write_json_atomic(persons_path, qualitative_inputs["persons"])
    output = SimpleNamespace(pdf=tmp_path / "q.pdf", png=tmp_path / "q.png", data=tmp_path / "q.json")
    namespace = SimpleNamespace(
        input=SimpleNamespace(persons=str(persons_path), faces=str(faces_path), trees=[str(qualitative_inputs["audit"])]),
        params=SimpleNamespace(raw_root=str(qualitative_inputs["root"]), image=None, blur_faces=True,
                               variants={name: qualitative_inputs["settings"].get(name, {}) for name in ["original", "body-maskout", "body-realistic"]}),
        output=output, log=[str(tmp_path / "q.log")],
    )
    _run_script("plot_qualitative.py", namespace)
    data = json.loads(output.data.read_text())
    assert data["image"] == _build(qualitative_inputs)[0] and data["dataset"] == "cityscapes"
    assert [(p["variant"], p["status"]) for p in data["panels"]] == [("original", "original"), ("body-maskout", "anonymized"), ("body-realistic", "needs_weights")]
    assert output.pdf.read_bytes().startswith(b"%PDF") and output.png.stat().st_size > 1000
    first = output.pdf.read_bytes()
    _run_script("plot_qualitative.py", namespace)
    assert output.pdf.read_bytes() == first
