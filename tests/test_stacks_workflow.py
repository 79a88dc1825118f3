"""The workflow as a site without conda runs it: `snakemake --sdm env-modules`, each rule in the
environment module of its env's twin (tools/env_twins.py modulefiles), on tiny twins.

Marked `stacks` (run by `make test-stacks`): they need the env twins (a pyenv Python 3.9 / 3.11
and the wheelhouse) and Environment Modules (.ci/install-modules); without them they skip,
naming what is missing.
"""

from __future__ import annotations

import json

import pytest

from conftest import SMALL_TWINS
from stacks import modulepath, ran_in, run_with_modules  # noqa: F401 (a fixture)

TINY_TRAINING = {
    "checkpoint_every": 2,
    "synthetic": {"iterations": 4, "image_min_size": 64, "image_max_size": 128, "fpn_channels": 16, "head_channels": 16,
                  "rpn_pre_nms_top_n": 50, "rpn_post_nms_top_n": 25, "box_batch_size_per_image": 16},
}

pytestmark = pytest.mark.stacks


def test_the_twins_demo_path_runs_each_rule_in_its_envs_twin(tmp_path, modulepath):
    """Data stage, mask-out and realistic (twin renderer) shards, training, prediction and
    evaluation, each job in the module of its rule's env: the realistic shards under the
    DeepPrivacy2 env's Python 3.9 and Pillow 8.4 (which once crashed our crop resize)."""
    metric = "results/metrics/cityscapes/body-maskout/mask_rcnn_r50_fpn/seed0.json"
    tree = "results/anonymized/cityscapes/body-realistic/audit.json"
    overlay = {"synthetic": SMALL_TWINS, "training": TINY_TRAINING, "datasets": {"coco": {"enabled": False}, "bdd100k": {"enabled": False}}}
    result = run_with_modules(tmp_path, modulepath, overlay, metric, tree)
    assert result.returncode == 0, result.stderr[-4000:]
    logs = tmp_path / "logs"
    jobs = {  # a job's log names the Python that ran it (anonymization_impact.logs)
        "data": logs / "annotations" / "cityscapes" / "train.log",  # a script: rule
        "anonymize": logs / "anonymized" / "cityscapes" / "body-maskout" / "shard-0.log",
        "deepprivacy2": logs / "anonymized" / "cityscapes" / "body-realistic" / "shard-0.log",
        "training": logs / "models" / "cityscapes" / "body-maskout" / "mask_rcnn_r50_fpn" / "seed0.log",  # loads its module itself
    }
    for env, log in jobs.items():
        assert ran_in(log, env), f"{log.name} did not run in the {env} twin"
    assert "Python 3.9." in jobs["deepprivacy2"].read_text()
    document = json.loads((tmp_path / metric).read_text())
    assert document["metrics"]["AP"] is not None
    audit = json.loads((tmp_path / tree).read_text())
    assert audit["generator"]["syntheses"] > 0 and audit["leak_check"]["passed"] is True
