"""DeepPrivacy2's loader on the random-weight checkpoints of the stacks tests, in the deepprivacy2 env
twin (Python 3.9, torch 1.13.1, dp2's checkout at DP2_COMMIT).

dp2's three generators (FDF128, FDF256, TriA-GAN L_im288) are built with dp2's own ``load_config`` +
``instantiate`` and saved with random weights in the checkpoint format dp2's loader reads
(tests/twin_jobs/realistic_job.py; the fixture is shared with tests/test_stacks_real_root.py, which
runs every realistic variant with them through rule anonymize_shard_realistic). What only a look
inside the loading process shows is checked here: the md5-checked ``load_generators`` of the rule
gives generators whose every tensor is the checkpoint's (TriA-GAN's renamed by its ``ckpt_mapper``,
the w centres from both places dp2 reads them), without a missing key or shape warned by dp2.
"""

from __future__ import annotations

import pytest

from anonymization_impact import plan
from anonymization_impact.config import load_config
from anonymization_impact.io import read_json, write_json_atomic

from conftest import REPO
from stacks import DP2_GENERATORS, dp2_checkpoints, extra_paths, run_twin_job, stacks_machine  # noqa: F401 (fixtures)

pytestmark = pytest.mark.stacks

DATASET = "cityscapes"
# dp2's parameter counts of the three architectures (load_config + instantiate at DP2_COMMIT)
PARAMETERS = {"face": 42.6e6, "face_hr": 43.1e6, "body": 124.2e6}


def test_dp2s_loader_takes_every_tensor_of_the_random_checkpoints(dp2_checkpoints, tmp_path):
    config = load_config(REPO / "config.yaml")
    config["datasets"][DATASET]["synthetic"] = False
    config["weights"].update(dp2_checkpoints["config"]["weights"])
    config["realistic"]["weights"].update(dp2_checkpoints["config"]["realistic"]["weights"])
    faces, body = (plan.generator_settings(config, DATASET, variant) for variant in ("face-realistic-hrfaces", "body-realistic"))
    settings = {**faces, "roles": faces["roles"] + body["roles"], "md5": {**faces["md5"], **body["md5"]}}  # the rule's, both kinds in one load
    assert settings["kind"] == "deepprivacy2" and settings["roles"] == list(DP2_GENERATORS)
    job = {"settings": settings, "dp2_root": str(dp2_checkpoints["dp2_root"]),
           "weights": {role: dp2_checkpoints["made"][generator]["path"] for role, generator in DP2_GENERATORS.items()}}
    write_json_atomic(tmp_path / "job.json", job)
    run_twin_job(dp2_checkpoints["python"], "realistic_job.py", "loaded", tmp_path / "job.json", tmp_path / "result.json")
    result = read_json(tmp_path / "result.json")
    assert result["differing"] == {role: [] for role in DP2_GENERATORS}  # every tensor came from the checkpoint
    said = "\n".join(result["warnings"]) + result["output"]
    assert "Did not find key" not in said and "Incorrect shape" not in said, said[-3000:]
    for role, parameters in result["parameters"].items():
        assert abs(parameters - PARAMETERS[role]) < 0.1e6 and parameters == dp2_checkpoints["made"][DP2_GENERATORS[role]]["parameters"]
