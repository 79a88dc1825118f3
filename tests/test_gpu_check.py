"""tools/gpu_check (the one-shot GPU check) here, without a GPU: its pycocotools stand-in, the
jobs --prepare takes from the plan, its reporting and its command line. The check itself runs
on a lent GPU machine (its docstring says how)."""

from __future__ import annotations

import copy
import subprocess
import sys

import numpy as np
import pytest
from pycocotools import mask as pycocotools_mask

from anonymization_impact import plan
from anonymization_impact.config import load_config
from conftest import REPO
from tools.gpu_check import DATASET, MODEL, SEED, VARIANTS, coco_mask
from tools.gpu_check.prepare import generator_settings, job_settings
from tools.gpu_check.reporting import Report, Skip, run_section

PRETRAINED = "resources/twins/pretraining/{backbone}.pth"  # what rule train_model's settings start from


@pytest.fixture(scope="module")
def config():
    return load_config(REPO / "config.yaml")


def masks() -> list[np.ndarray]:
    """Empty, full, one pixel, a checkerboard, long runs (several RLE characters a count) and random masks."""
    rng = np.random.default_rng(1)
    pixel = np.zeros((9, 11), np.uint8)
    pixel[4, 6] = 1
    block = np.zeros((120, 90), np.uint8)
    block[30:100, 5:80] = 1
    checkerboard = (np.indices((13, 17)).sum(axis=0) % 2).astype(np.uint8)
    found = [np.zeros((5, 7), np.uint8), np.ones((6, 3), np.uint8), np.ones((1, 1), np.uint8), pixel, checkerboard, block]
    for density in (0.02, 0.5, 0.98):
        height, width = rng.integers(1, 70, size=2)
        found.append((rng.random((height, width)) < density).astype(np.uint8))
    return found


def test_rle_stand_in_equals_pycocotools():
    for mask in masks():
        real = pycocotools_mask.encode(np.asfortranarray(mask))
        ours = coco_mask.encode(mask)
        assert ours["counts"] == real["counts"] and ours["size"] == list(real["size"])
        as_json = {"size": ours["size"], "counts": ours["counts"].decode()}  # as the annotation files hold them
        for rle in (real, as_json):
            assert np.array_equal(coco_mask.decode(rle), pycocotools_mask.decode(real))
            assert int(coco_mask.area(rle)) == int(pycocotools_mask.area(real))
            assert np.array_equal(coco_mask.toBbox(rle), pycocotools_mask.toBbox(real))
        uncompressed = {"size": list(mask.shape), "counts": coco_mask._rle_counts(mask.ravel(order="F"))}
        assert coco_mask.frPyObjects(uncompressed, *mask.shape)["counts"] == pycocotools_mask.frPyObjects(uncompressed, *mask.shape)["counts"]
    stack = np.stack([masks()[3], 1 - masks()[3]], axis=2)
    real = pycocotools_mask.encode(np.asfortranarray(stack))
    assert [r["counts"] for r in coco_mask.encode(stack)] == [r["counts"] for r in real]
    assert np.array_equal(coco_mask.decode(real), pycocotools_mask.decode(real))
    assert np.array_equal(coco_mask.area(real), pycocotools_mask.area(real)) and np.array_equal(coco_mask.toBbox(real), pycocotools_mask.toBbox(real))
    annotations = [{"id": index, "segmentation": {"size": list(mask.shape), "counts": coco_mask._rle_counts(mask.ravel(order="F"))}}
                   for index, mask in enumerate(masks())]
    assert coco_mask.check_against_pycocotools([{"annotations": annotations}], rounds=8) == {"masks_checked": len(annotations) + 8}


def test_stand_in_installs_as_pycocotools_mask(monkeypatch):
    monkeypatch.setitem(sys.modules, "pycocotools", sys.modules["pycocotools"])  # restored after the test
    monkeypatch.setitem(sys.modules, "pycocotools.mask", sys.modules["pycocotools.mask"])
    assert coco_mask.install(force_fallback=False) == "pycocotools"
    assert coco_mask.install(force_fallback=True) == "gpu_check pure-Python RLE (forced)"
    from pycocotools import mask as installed

    assert sorted(name for name in vars(installed) if not name.startswith("__")) == sorted(coco_mask.PROVIDED)
    assert installed.encode is coco_mask.encode


def test_prepare_takes_the_jobs_from_the_plan(config):
    jobs = job_settings(config)
    train = plan.training_job_settings(config, DATASET, MODEL, SEED, PRETRAINED)
    assert (DATASET, MODEL, SEED) == ("cityscapes", "mask_rcnn_r50_fpn", 0)
    assert train["init_weights"]["path"] == "resources/twins/pretraining/resnet10.pth"
    assert jobs["train"] == {**train, "init_weights": {**train["init_weights"], "path": None}}  # the device puts its carried backbone in
    assert jobs["pretrain"] == plan.pretraining_job_settings(config, "resnet10")
    assert generator_settings(config) == {name: plan.generator_settings(config, DATASET, name) for name in VARIANTS}
    scratch = copy.deepcopy(config)
    scratch["training"]["synthetic"]["init"] = "scratch"
    assert job_settings(scratch)["train"] == plan.training_job_settings(scratch, DATASET, MODEL, SEED, PRETRAINED)


def test_sections_are_reported_one_by_one(capsys):
    report, results, failures = Report(), {}, []

    def skipped():
        raise Skip("not here")

    def failing():
        raise FloatingPointError("non-finite loss")

    for name, function in (("fine", lambda: {"value": np.float32(0.5), "missing": float("nan")}), ("skipped", skipped), ("failing", failing)):
        run_section(report, name, function, results, failures)
    assert [results[name]["status"] for name in ("fine", "skipped", "failing")] == ["ok", "skipped", "failed"] and failures == ["failing"]
    assert [record["section"] for record in report.records] == ["fine", "skipped", "failing"]
    assert report.records[0]["value"] == 0.5 and report.records[0]["missing"] is None
    assert capsys.readouterr().out.count("\n") == 3  # one JSON line a section


def test_command_line():
    def run(*arguments):
        return subprocess.run([sys.executable, "-m", "tools.gpu_check", *arguments], cwd=REPO, capture_output=True, text=True, timeout=120)

    helped = run("--help")
    assert helped.returncode == 0, helped.stderr
    assert "-m tools.gpu_check --prepare" in helped.stdout and "--evaluate DIR" in helped.stdout
    assert "OUTDIR is required" in run().stderr
    unknown = run("unused-outdir", "--sections", "train_fp32,nope")
    assert unknown.returncode == 2 and "unknown sections ['nope']" in unknown.stderr
