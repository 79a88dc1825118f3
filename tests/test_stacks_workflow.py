"""The workflow as a site without conda runs it: `snakemake --sdm env-modules`, each rule in the
environment module of its env's twin (tools/env_twins.py modulefiles), on tiny twins.

Marked `stacks` (run by `make test-stacks`): they need the env twins (a pyenv Python 3.9 / 3.11
and the wheelhouse) and Environment Modules (.ci/install-modules); without them they skip,
naming what is missing.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import REPO, SMALL_TWINS, SNAKEMAKE
from tools import env_twins

MODULES_INIT = Path("/usr/share/modules/init/bash")
TINY_TRAINING = {
    "checkpoint_every": 2,
    "synthetic": {"iterations": 4, "image_min_size": 64, "image_max_size": 128, "fpn_channels": 16, "head_channels": 16,
                  "rpn_pre_nms_top_n": 50, "rpn_post_nms_top_n": 25, "box_batch_size_per_image": 16},
}

pytestmark = pytest.mark.stacks


@pytest.fixture(scope="session")
def modulepath(tmp_path_factory) -> Path:
    """An environment module per env twin (built unless cached)."""
    missing = env_twins.missing()
    if not MODULES_INIT.is_file():
        missing.append(f"Environment Modules missing ({MODULES_INIT}): bash .ci/install-modules")
    if missing:
        pytest.skip("; ".join(missing))
    directory = tmp_path_factory.mktemp("modulefiles")
    for env_file in sorted((REPO / "envs").glob("*.yaml")):
        try:
            env_twins.write_modulefile(directory, env_file, env_twins.build(env_file, quiet=True))
        except env_twins.TwinError as error:
            pytest.fail(str(error))
    return directory


def run_with_modules(workdir: Path, modulepath: Path, overlay: dict, *targets: str, timeout: int = 900) -> subprocess.CompletedProcess:
    (workdir / "overlay.yaml").write_text(yaml.safe_dump(overlay))
    environment = {**os.environ, "BASH_ENV": str(MODULES_INIT), "MODULEPATH": str(modulepath)}
    command = [*SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir), "--cores", "2", "--sdm", "env-modules",
               "--configfile", str(REPO / "config.yaml"), str(workdir / "overlay.yaml"), "--", *targets]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=environment)


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
    ran_in = {  # a job's log names the Python that ran it (anonymization_impact.logs)
        "data": logs / "annotations" / "cityscapes" / "train.log",  # a script: rule
        "anonymize": logs / "anonymized" / "cityscapes" / "body-maskout" / "shard-0.log",
        "deepprivacy2": logs / "anonymized" / "cityscapes" / "body-realistic" / "shard-0.log",
        "training": logs / "models" / "cityscapes" / "body-maskout" / "mask_rcnn_r50_fpn" / "seed0.log",  # loads its module itself
    }
    for env, log in ran_in.items():
        twin = env_twins.build(REPO / "envs" / f"{env}.yaml", quiet=True)
        assert f"({twin}/bin/python" in log.read_text(), f"{log.name} did not run in the {env} twin"
    assert "Python 3.9." in ran_in["deepprivacy2"].read_text()
    document = json.loads((tmp_path / metric).read_text())
    assert document["metrics"]["AP"] is not None
    audit = json.loads((tmp_path / tree).read_text())
    assert audit["generator"]["instances"] > 0 and audit["leak_check"]["passed"] is True
