"""The cost model: the paper's GPU-hours against the model zoos, the SLURM runtimes the rules
request, measured benchmarks of earlier runs, and the twins' plan against a measured twin run."""

from __future__ import annotations

import copy
import csv
import re
import shutil

import pytest
import yaml

from anonymization_impact import DATASETS, cost, plan
from anonymization_impact.config import validate_config
from anonymization_impact.io import write_json_atomic
from conftest import REPO, SMALL_TWINS, real, run_snakemake
from tools import cost_plan

# detectron2's MODEL_ZOO.md (8 V100s, total batch 16 for COCO, 8 for Cityscapes): seconds per iteration
ZOO_KEYPOINT_RCNN_R50_FPN_3X = 0.316  # COCO-Keypoints/keypoint_rcnn_R_50_FPN_3x, model 137849621
ZOO_CITYSCAPES_MASK_RCNN_R50_FPN = 0.240  # Cityscapes/mask_rcnn_R_50_FPN, model 142423278
A100_OVER_V100 = 2.0  # the stated assumption (cluster.gpu_model: a100)


@pytest.fixture(scope="module")
def config():
    with open(REPO / "config.yaml") as handle:
        return validate_config(yaml.safe_load(handle))


def zoo_gpu_hours(seconds_per_iteration: float, iterations: int, gpus: int = 8) -> float:
    """GPU-hours of one zoo run on one A100: the 8 V100s' time, at twice a V100's speed."""
    return seconds_per_iteration * iterations * gpus / 3600 / A100_OVER_V100


def test_paper_table3_gpu_hours_are_the_model_zoos(config):
    """Table 3: 24 COCO Keypoint R-CNN R50-FPN 3x runs of 270k iterations, ~4 A100-days each."""
    paper = real(config)
    context = cost.Context.of(paper)
    summary = cost.summarize(paper, context, "table3", parallel=8)
    per_run = zoo_gpu_hours(ZOO_KEYPOINT_RCNN_R50_FPN_3X, 270_000)
    assert summary.runs == 24 and per_run == pytest.approx(94.8, abs=0.1)
    # training is all but the trees, the face detector and the predictions (under 1 %)
    assert summary.gpu_hours == pytest.approx(24 * per_run, rel=0.01)
    training = [job for job in cost.target_jobs(paper, context, "table3") if job.rule == "train_model"]
    assert len(training) == 24 and all(job.seconds / 3600 == pytest.approx(per_run, rel=0.002) for job in training)  # + the job's start
    # 24 runs on 8 GPUs: three rounds of ~4 days
    assert summary.wall_seconds / 86400 == pytest.approx(3 * per_run / 24, rel=0.02)
    # the request: the expected time x the margin
    assert cost.slurm_minutes(paper, training[0].seconds) == pytest.approx(per_run * 60 * 1.5, rel=0.002)


def test_paper_table1_gpu_hours_are_the_model_zoos(config):
    paper = real(config)
    summary = cost.summarize(paper, cost.Context.of(paper), "table1", parallel=8)
    training = 27 * zoo_gpu_hours(ZOO_CITYSCAPES_MASK_RCNN_R50_FPN, 24_000)  # ~6.4 h each
    # the rest: HM-LO's 100 Adam steps per person (an assumption) and the other trees, DSFD, ViTPose
    assert training <= summary.gpu_hours <= training + 70


def test_gpu_model_depth_and_margin(config):
    paper = real(config, "coco")
    context = cost.Context.of(paper)
    a100 = cost.estimate(paper, context, "train_model", dataset="coco", model="keypoint_rcnn_r50_fpn").seconds
    v100 = copy.deepcopy(paper)
    v100["cluster"]["gpu_model"] = "v100"
    assert cost.estimate(v100, context, "train_model", dataset="coco", model="keypoint_rcnn_r50_fpn").seconds == pytest.approx(2 * a100, rel=0.01)
    r101 = cost.estimate(paper, context, "train_model", dataset="coco", model="keypoint_rcnn_r101_fpn").seconds
    r152 = cost.estimate(paper, context, "train_model", dataset="coco", model="keypoint_rcnn_r152_fpn").seconds
    assert r101 / a100 == pytest.approx(0.390 / 0.316, rel=0.01) and r152 > r101  # MODEL_ZOO.md's R101 3x; R152 by FLOPs
    assert cost.depth_factor("mask_rcnn", "resnet101") == pytest.approx(0.340 / 0.261)
    assert cost.slurm_minutes(paper, 60) == 30 and cost.slurm_minutes(paper, 60, attempt=2) == 60  # the minimum, more on a retry
    capped = copy.deepcopy(paper)
    capped["cluster"]["max_runtime_minutes"] = 2880
    assert cost.slurm_minutes(capped, a100) == 2880 and cost.attempts_needed(capped, a100) == 3
    assert cost.device(paper, "coco", "train_model") == "a100" and cost.device(paper, "coco", "evaluate") == "cpu"
    assert cost.device(config, "coco", "train_model") == "cpu"  # a twin runs on this CPU


def test_jobs_a_target_implies(config):
    paper = real(config)
    context = cost.Context.of(paper)
    jobs = cost.target_jobs(paper, context, "table1")
    rules = {rule: sum(job.rule == rule for job in jobs) for rule in {job.rule for job in jobs}}
    assert rules == {"detect_faces": 1, "detect_keypoints": 1, "anonymize_shard": 16, "anonymize_shard_realistic": 16, "train_model": 27,
                     "predict": 27, "evaluate": 27}
    assert cost.summarize(paper, context, "anonymized_trees", 8).trees == len(plan.anonymized_trees(paper))
    assert {job.rule for job in cost.target_jobs(config, cost.Context.of(config), "fig8")} >= {"pretrain_backbone", "train_model"}
    with pytest.raises(Exception, match="no cost plan for target 'table9'"):
        cost.target_runs(config, "table9")


def _benchmark(path, seconds: float, cpu_seconds: float | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("s\th:m:s\tmax_rss\tcpu_time\n" f"{seconds}\t0:00:00\t1.0\t{cpu_seconds or seconds}\n")


def test_measured_benchmarks_of_the_same_runs_replace_the_reference(config, tmp_path):
    paper = real(config, "cityscapes")
    settings = {"schedule": plan.schedule(paper, "cityscapes"), "backbone": "resnet50", "backend": "detectron2"}
    for seed, seconds in enumerate((20_000, 22_000, 30_000)):
        run = f"cityscapes/original/mask_rcnn_r50_fpn/seed{seed}"
        _benchmark(tmp_path / "benchmarks" / "models" / f"{run}.tsv", seconds)
        write_json_atomic(tmp_path / "results" / "models" / run / "training.json", settings)
    # a twin's run under the same name, and a resumed run: not the runs planned now
    write_json_atomic(tmp_path / "results" / "models" / "cityscapes/original/mask_rcnn_r50_fpn/seed2/training.json",
                      {**settings, "schedule": plan.schedule(config, "cityscapes")})
    _benchmark(tmp_path / "benchmarks" / "models" / "cityscapes/face-blur/mask_rcnn_r50_fpn/seed0.tsv", 1000)
    write_json_atomic(tmp_path / "results" / "models" / "cityscapes/face-blur/mask_rcnn_r50_fpn/seed0/training.json", {**settings, "resumed_at": 50})
    # benchmarks whose results were deleted since: ignored (they once stopped the workflow from parsing)
    _benchmark(tmp_path / "benchmarks" / "models" / "cityscapes/face-maskout/mask_rcnn_r50_fpn/seed0.tsv", 1000)
    _benchmark(tmp_path / "benchmarks" / "anonymized" / "cityscapes/face-blur/shard-0.tsv", 1000)
    context = cost.Context.of(paper, tmp_path)
    estimate = cost.estimate(paper, context, "train_model", dataset="cityscapes", model="mask_rcnn_r50_fpn", seed="0")
    assert estimate == cost.Estimate(21_000, "measured: median of 2 benchmarks")
    assert cost.estimate(paper, context, "train_model", dataset="cityscapes", model="mask_rcnn_r101_fpn").basis == "reference"
    assert cost.estimate(paper, cost.Context.of(paper), "train_model", dataset="cityscapes", model="mask_rcnn_r50_fpn").basis == "reference"


def test_a_shard_made_over_several_jobs_gives_no_benchmark(config, tmp_path):
    paper = real(config, "cityscapes")
    shards = paper["anonymization"]["shards"]
    images = [{"image": f"{index}.png", "anonymized": [1], "skipped": []} for index in range(2975 // shards)]
    tree = "cityscapes/body-realistic-hmlo"
    for shard, seconds, extra in ((0, 5000, {}), (1, 100, {"images_from_earlier_attempts": 700})):  # the last of a chain: 100 s
        _benchmark(tmp_path / "benchmarks" / "anonymized" / tree / f"shard-{shard}.tsv", seconds)
        write_json_atomic(tmp_path / "results" / "anonymized" / tree / "shards" / f"{shard}.audit.json", {"shards": shards, "images": images, **extra})
    context = cost.Context.of(paper, tmp_path)
    estimate = cost.estimate(paper, context, "anonymize_shard_realistic", dataset="cityscapes", variant="body-realistic-hmlo")
    assert estimate == cost.Estimate(5000, "measured: median of 1 benchmark")


def test_every_gpu_rule_asks_the_cost_model_for_its_runtime():
    profile = cost_plan.read_profile(REPO / "profiles" / "slurm")
    gpu_rules = {rule for rule, values in profile["set-resources"].items() if values.get("gpu")}
    assert gpu_rules == set(cost.GPU_RULES)
    assert not any("runtime" in profile["set-resources"][rule] for rule in gpu_rules)  # no hand-set numbers left
    assert {values["gpu_model"] for rule, values in profile["set-resources"].items() if rule in gpu_rules} == {"a100"}
    assert validate_config({})["cluster"]["gpu_model"] == "a100"  # the profile's GPU is the model's default
    rules = "".join(path.read_text() for path in (REPO / "rules").glob("*.smk"))
    for rule in gpu_rules:
        assert re.search(rf"(rule {rule}:|as {rule} with:)(?:(?!\nrule |\nuse rule ).)*runtime=get_runtime\(\"{rule}\"\)", rules, re.S), rule


def test_the_sites_values_are_set_once_and_every_rule_derives_them():
    text = (REPO / "profiles" / "slurm" / "config.yaml").read_text()
    site = yaml.safe_load(text)["__variables__"]
    assert set(site) == {"cpu_partition", "gpu_partition", "account", "gpu_gres"}
    for value in site.values():  # written once, in __variables__; everything else refers to it
        assert text.count(f'"{value}"') == 1, value
    profile = cost_plan.read_profile(REPO / "profiles" / "slurm")
    assert profile["default-resources"]["slurm_partition"] == site["cpu_partition"] and profile["default-resources"]["slurm_account"] == site["account"]
    gpu_jobs = [values for values in profile["set-resources"].values() if values.get("gpu")]
    assert len(gpu_jobs) == len(cost.GPU_RULES)
    assert all(values["slurm_partition"] == site["gpu_partition"] and values["gpu_model"] == site["gpu_gres"] for values in gpu_jobs)
    assert all("slurm_partition" not in values for values in profile["set-resources"].values() if not values.get("gpu"))  # the CPU default


def test_a_misspelt_site_value_stops_snakemake_naming_it(tmp_path):
    profile = tmp_path / "profile"
    profile.mkdir()
    text = (REPO / "profiles" / "slurm" / "config.yaml").read_text()
    (profile / "config.yaml").write_text(text.replace("  gpu_partition:", "  gpu_partiton:", 1))
    result = run_snakemake(tmp_path, "--profile", str(profile), "-n", "table1", "--configfile", str(REPO / "config.yaml"))
    assert result.returncode != 0
    assert "Error processing template in section /set-resources/train_model/slurm_partition: NameError: name 'gpu_partition' is not defined" in result.stderr


def test_the_paper_plan_in_the_dag_requests_the_models_runtimes(config, twins, tmp_path):
    """A dry run of Table 3 on real roots: the GPU jobs ask for the model's minutes (a dry run
    does not show train_model's: its message replaces the job's details)."""
    overlay = {"datasets": {}}
    for dataset in DATASETS:
        shutil.copytree(twins[dataset]["root"], tmp_path / "raw" / dataset)
        overlay["datasets"][dataset] = {"synthetic": False, "root": str(tmp_path / "raw" / dataset)}
    (tmp_path / "overlay.yaml").write_text(yaml.safe_dump(overlay))
    result = run_snakemake(tmp_path, "table3", "-n", "--configfile", str(REPO / "config.yaml"), str(tmp_path / "overlay.yaml"))
    assert result.returncode == 0, result.stderr[-3000:]
    blocks = re.split(r"\n(?=\[\w{3} \w{3} )", result.stdout + result.stderr)  # one block per job, each after its time stamp
    paper = real(config)
    context = cost.Context.of(paper)

    def requested(rule: str, wildcards: str) -> set[str]:
        return {re.search(r"runtime=(\d+)", block)[1] for block in blocks if f"rule {rule}:" in block and wildcards in block}

    for rule, wildcards, values in (("detect_faces", "dataset=coco", {}), ("anonymize_shard_realistic", "variant=body-realistic,", {"variant": "body-realistic"}),
                                    ("predict", "dataset=coco", {"model": "keypoint_rcnn_r50_fpn"})):
        expected = cost.slurm_minutes(paper, cost.estimate(paper, context, rule, dataset="coco", **values).seconds)
        assert requested(rule, wildcards) == {str(expected)}, rule
    assert cost.slurm_minutes(paper, cost.estimate(paper, context, "detect_faces", dataset="coco").seconds) > paper["cluster"]["min_runtime_minutes"]


def test_cost_plan_command_prints_the_paper_tables(config, tmp_path, capsys):
    overlay = tmp_path / "paper.yaml"
    overlay.write_text(yaml.safe_dump({"datasets": {d: {"synthetic": False, "root": f"/data/{d}"} for d in DATASETS}}))
    assert cost_plan.main(["table3", "all", "--configfile", str(REPO / "config.yaml"), str(overlay), "--directory", str(tmp_path)]) == 0
    output = capsys.readouterr().out
    summary = cost.summarize(real(config), cost.Context.of(real(config)), "table3", 8)
    assert f"| table3 | 24 | 7 (28) | 1 | {summary.gpu_hours:,.1f} |" in output
    assert re.search(r"\| train_model \| coco/keypoint_rcnn_r50_fpn \| 24 \| a100 \| 3\.95 d \| reference \| 8,5\d\d min \(model\) \|", output)
    assert "| anonymize_shard | coco/face-blur | 4 | cpu |" in output and "240 min (profile)" in output
    assert cost_plan.main(["table9", "--configfile", str(REPO / "config.yaml")]) == 1
    assert "no cost plan for target 'table9'" in capsys.readouterr().err
    # under a 4-hour partition: training runs and HM-LO shards are chains of jobs, the rest one job each
    limited = tmp_path / "limited.yaml"
    limited.write_text(yaml.safe_dump({"cluster": {"max_runtime_minutes": 240}}))
    assert cost_plan.main(["all", "--configfile", str(REPO / "config.yaml"), str(overlay), str(limited), "--directory", str(tmp_path)]) == 0
    output = capsys.readouterr().out
    assert re.search(r"\| anonymize_shard_realistic \| cityscapes/body-realistic-hmlo \| 4 \| a100 \| .* \| 240 min \(model\), a chain of \d+ jobs \|", output)
    assert re.search(r"\| train_model \| coco/keypoint_rcnn_r50_fpn \| 24 \| .* \| 240 min \(model\), a chain of \d+ jobs \|", output)
    assert "| anonymize_shard_realistic | coco/face-realistic | 4 | a100 |" in output and "- train_model" not in output


def test_the_readme_shows_what_the_command_prints(config):
    """README, "Cost plan": the command, and its tables for the paper's configuration and the twins."""
    readme = (REPO / "README.md").read_text()
    assert ".venv/bin/python -m tools.cost_plan" in readme
    targets = cost_plan.default_targets(config)
    for shown, parallel in ((real(config), 8), (config, 2)):
        for row in cost_plan.target_table(shown, cost.Context.of(shown), targets, parallel):
            assert row in readme, row


def test_docs_list_every_reference_number():
    page = (REPO / "docs" / "cost.md").read_text()
    assert "\n".join(cost_plan.references_table()) in page, "docs/cost.md: paste `python -m tools.cost_plan --references`"


# One short twin run, timed by Snakemake's benchmark files.
MEASURED_RUN = {"synthetic": SMALL_TWINS, "training": {"synthetic": {"iterations": 60}}}
TOLERANCE = 2.5


def _cpu_seconds(path) -> float:
    with open(path, newline="") as handle:
        return float(next(csv.DictReader(handle, delimiter="\t"))["cpu_time"])


def test_the_twins_plan_against_a_measured_twin_run(config, tmp_path):
    """The model's seconds for the twins (numbers measured on this CPU) against a twin run made
    now, within a factor of 2.5. It compares CPU time: the test machine's cores are shared, and
    wall-clock time there varies with the load of other processes, not with the job."""
    (tmp_path / "overlay.yaml").write_text(yaml.safe_dump(MEASURED_RUN))
    target = "results/metrics/cityscapes/original/mask_rcnn_r50_fpn/seed0.json"
    result = run_snakemake(tmp_path, "--cores", "2", target, "--configfile", str(REPO / "config.yaml"), str(tmp_path / "overlay.yaml"))
    assert result.returncode == 0, result.stderr[-3000:]
    twins = copy.deepcopy(config)
    for key, value in MEASURED_RUN.items():
        twins[key] = {**twins[key], **value} if key != "training" else {**twins["training"], "synthetic": {**twins["training"]["synthetic"], **value["synthetic"]}}
    twins = validate_config(twins)
    context = cost.Context.of(twins, tmp_path)  # the run's persons.json and benchmarks
    assert context.counts["cityscapes"].train_images == SMALL_TWINS["n_train"]
    benchmarks = tmp_path / "benchmarks"
    checks = {
        "train_model": (benchmarks / "models/cityscapes/original/mask_rcnn_r50_fpn/seed0.tsv", {"dataset": "cityscapes", "model": "mask_rcnn_r50_fpn"}),
        "predict": (benchmarks / "predictions/cityscapes/original/mask_rcnn_r50_fpn/seed0.tsv", {"dataset": "cityscapes", "model": "mask_rcnn_r50_fpn"}),
        "pretrain_backbone": (benchmarks / "twins/pretrain_resnet10.tsv", {"backbone": "resnet10"}),
    }
    for rule, (path, wildcards) in checks.items():
        predicted, measured = cost.reference_seconds(twins, context.counts, rule, **wildcards), _cpu_seconds(path)
        assert 1 / TOLERANCE <= predicted / measured <= TOLERANCE, f"{rule}: the model says {predicted:.1f} s, the run took {measured:.1f} s of CPU"
    # the run's own benchmark is what the model uses from now on
    estimate = cost.estimate(twins, context, "train_model", dataset="cityscapes", model="mask_rcnn_r50_fpn")
    assert estimate.basis == "measured: median of 1 benchmark"
