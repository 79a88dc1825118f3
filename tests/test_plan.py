"""The plan: what the configured study needs, as pure functions of the config."""

from __future__ import annotations

import copy

import pytest
import yaml

from anonymization_impact import plan
from anonymization_impact.config import validate_config
from anonymization_impact.errors import WorkflowInputError
from conftest import REPO, real

PRETRAINED = "resources/twins/pretraining/{backbone}.pth"


@pytest.fixture(scope="module")
def config():
    with open(REPO / "config.yaml") as handle:
        return validate_config(yaml.safe_load(handle))


def test_run_sets_of_the_paper_study(config):
    table1 = plan.target_runs(config, "table1")
    assert len(table1) == 9 * 3 and {run.dataset for run in table1} == {"cityscapes"}
    assert plan.table_targets(config) == ["appendix", "table1", "table2", "table3", "table4"]
    fig8 = plan.fig8_runs(config)
    assert len(fig8) == 2 * 2 * 3 * 3  # panels x (original, variant) x depths x seeds
    assert len(plan.metric_runs(config)) == 132  # the demo's 132 training runs
    assert set(plan.all_experiment_runs(config)) | set(fig8) == set(plan.metric_runs(config))
    disabled = copy.deepcopy(config)
    disabled["datasets"]["coco"]["enabled"] = False
    assert not any(run.dataset == "coco" for run in plan.metric_runs(disabled))


def test_realistic_rows_leave_the_plan_without_a_generator(config):
    without = copy.deepcopy(config)
    without["realistic"]["synthetic_generator"] = None
    rows = {run.variant for run in plan.target_runs(without, "table1")}
    assert rows == {"original", "face-blur", "face-maskout", "body-blur", "body-maskout"}
    assert all(not variant.startswith(("face-realistic", "body-realistic")) for _, variant in plan.anonymized_trees(without))
    assert len(plan.anonymized_trees(config)) == 25


def test_training_job_settings(config):
    job = plan.training_job_settings(config, "cityscapes", "mask_rcnn_r101_fpn", "2", PRETRAINED)
    assert job["backend"] == "torchvision" and job["backbone"] == "resnet18" and job["seed"] == 2  # the twins' narrow ResNet
    assert job["init_weights"]["path"] == "resources/twins/pretraining/resnet18.pth" and "exclude_classes" not in job
    assert plan.training_job_settings(config, "cityscapes", "mask_rcnn_r50_fpn_no_person", 0, PRETRAINED)["exclude_classes"] == ["person"]
    paper = real(config, "cityscapes", "bdd100k")
    job = plan.training_job_settings(paper, "cityscapes", "mask_rcnn_r50_fpn", 0, PRETRAINED)
    assert job["backend"] == "detectron2" and job["schedule"]["iterations"] == 24000
    assert job["init_weights"]["name"] == "mask_rcnn_r50_fpn_coco_detectron2"  # detectron2's Cityscapes config starts from COCO
    assert plan.training_env(paper, "bdd100k", "mask_rcnn_r50_fpn") == "envs/mmdetection.yaml"
    del paper["weights"]["mask_rcnn_r50_fpn_coco_detectron2"]
    with pytest.raises(WorkflowInputError, match="'weights.mask_rcnn_r50_fpn_coco_detectron2' is missing"):
        plan.init_weights(paper, "cityscapes", "mask_rcnn_r50_fpn", PRETRAINED)


def test_region_sources(config):
    assert [plan.face_detections_source(config, d) for d in ("coco", "cityscapes")] == ["twin", "twin"]
    paper = real(config, "coco", "cityscapes", "bdd100k")
    assert plan.face_detections_source(paper, "coco") == "dsfd" and plan.keypoints_source(paper, "bdd100k") == "vitpose"
    paper["face_detection"]["precomputed"]["bdd100k"] = "/data/faces.json"
    assert plan.face_detections_source(paper, "bdd100k") == "precomputed"
    paper["regions"]["source"].update(coco="authors", cityscapes="authors")
    assert plan.face_regions_source(paper, "coco") == "authors" and plan.face_regions_source(paper, "cityscapes") == "matched"
    assert plan.face_detections_source(paper, "cityscapes") == "authors" and plan.keypoints_source(paper, "cityscapes") == "authors"
    assert plan.generator_weights(paper, "coco", "face-realistic-hrfaces") == {"face": "deepprivacy2_fdf128", "face_hr": "deepprivacy2_fdf256"}
    assert plan.generator_weights(config, "coco", "face-realistic-hrfaces") == {}  # a twin builds its own generator


def test_generator_settings_carry_the_md5_of_each_roles_weights_entry(config):
    from anonymization_impact.realistic.deepprivacy2 import GENERATORS

    paper = real(config, "coco")
    assert plan.generator_settings(paper, "coco", "face-realistic-hrfaces")["md5"] == {"face": GENERATORS["fdf128"].md5, "face_hr": GENERATORS["fdf256"].md5}
    own = copy.deepcopy(paper)  # other weights only through an entry of their own, with their md5
    own["weights"]["test_fdf128"] = {"path": "resources/weights/test.ckpt", "md5": "0" * 32, "url": None}
    own["realistic"]["weights"]["face"] = "test_fdf128"
    assert plan.generator_settings(own, "coco", "face-realistic")["md5"] == {"face": "0" * 32}
    assert plan.generator_settings(config, "coco", "face-realistic")["md5"] == {}  # a twin's generator is built here


def test_config_slices_hold_only_what_their_rule_reads(config):
    edited = copy.deepcopy(config)
    edited["fig8"]["panels"]["coco"]["title"] = "Another title"
    edited["experiments"]["table4"]["title"] = "Another title"
    edited["weights"]["resnet18_imagenet"]["url"] = "https://example.org/resnet18.pth"
    assert plan.table_config(edited, "table1") == plan.table_config(config, "table1")
    assert plan.table_config(edited, "table4") != plan.table_config(config, "table4")
    assert plan.fig8_config(edited) != plan.fig8_config(config)
    assert plan.report_config(edited)["experiments"] != plan.report_config(config)["experiments"]
    table1 = plan.table_config(config, "table1")
    assert set(table1["experiments"]) == {"table1"} and set(table1["variants"]) == set(config["experiments"]["table1"]["variants"]) - {"original"}
    assert set(table1["datasets"]) == {"cityscapes"} and set(table1["models"]) == {"mask_rcnn_r50_fpn"}
    assert "fig8" not in plan.report_config(config) and "report" in plan.report_config(config)
