"""Training longer than a scheduler's time limit: the deadline a job reads from SLURM, the
torchvision backend stopping by it with a checkpoint, and the retries rule train_model gets.
The chain on a real SLURM partition with a one-minute limit: tests/test_slurm.py."""

from __future__ import annotations

import copy
import subprocess
from datetime import datetime

import pytest
import torch

from anonymization_impact import cost
from anonymization_impact.errors import WorkflowInputError
from anonymization_impact.logs import EXIT_TIME_LIMIT, logged
from anonymization_impact.training import torchvision_backend as backend
from anonymization_impact.schema import load_schema
from anonymization_impact.walltime import DEFAULT_MARGIN_MINUTES, Deadline, TimeLimitReached, job_deadline, slurm_end_time

from conftest import REPO, real, run_snakemake
from test_cost import config  # noqa: F401 (a fixture)
from test_training import annotations, make_job  # noqa: F401 (a fixture)

END = datetime(2026, 12, 7, 1, 2, 3)


def squeue(printed: str, calls: list | None = None):
    def run(command, **_):
        if calls is not None:
            calls.append(command)
        return subprocess.CompletedProcess(command, 0, stdout=printed, stderr="")
    return run


def test_outside_a_scheduler_there_is_no_deadline():
    assert job_deadline(environ={}, run=squeue("never asked")) is None


def test_the_end_time_slurm_sets_less_the_margin():
    environ = {"SLURM_JOB_ID": "7", "SLURM_JOB_END_TIME": str(int(END.timestamp())), "ANONYMIZATION_IMPACT_STOP_MARGIN_MINUTES": "10"}
    deadline = job_deadline(environ=environ, run=squeue("never asked"))
    assert deadline.at == END.timestamp() - 600 and "SLURM job 7" in deadline.source and "stop_margin_minutes 10" in deadline.source


def test_else_squeue_says_when_the_job_ends():
    calls = []
    environ = {"SLURM_JOB_ID": "42", "ANONYMIZATION_IMPACT_STOP_MARGIN_MINUTES": "0.5"}
    deadline = job_deadline(environ=environ, run=squeue(f"{END.isoformat()}\n", calls))
    assert calls == [["squeue", "--noheader", "--jobs", "42", "--format=%e"]]
    assert deadline.at == END.timestamp() - 30
    assert deadline.reached(END.timestamp() - 30) and not deadline.reached(END.timestamp() - 31)


def test_training_stops_at_the_deadline_but_never_after_its_last_iteration():
    passed, later = Deadline(0.0, "passed"), Deadline(END.timestamp() + 10**9, "later")
    assert passed.stops_after(1, 10) and passed.stops_after(9, 10) and not passed.stops_after(10, 10)
    assert not later.stops_after(1, 10)


@pytest.mark.parametrize("printed", ["N/A\n", "Unknown", ""])
def test_a_job_without_a_known_end_has_no_deadline(printed):
    assert slurm_end_time({"SLURM_JOB_ID": "42"}, squeue(printed)) is None


def test_without_squeue_no_deadline():
    def missing(command, **_):
        raise FileNotFoundError(command[0])
    assert slurm_end_time({"SLURM_JOB_ID": "42"}, missing) is None


def test_a_job_started_without_the_workflow_takes_the_schema_default_margin():
    schema_default = load_schema()["properties"]["cluster"]["properties"]["stop_margin_minutes"]["default"]
    assert DEFAULT_MARGIN_MINUTES == schema_default
    deadline = job_deadline(environ={"SLURM_JOB_ID": "7", "SLURM_JOB_END_TIME": str(int(END.timestamp()))})
    assert deadline.at == END.timestamp() - 60 * schema_default


def test_a_margin_that_is_not_minutes_is_refused():
    environ = {"SLURM_JOB_ID": "1", "SLURM_JOB_END_TIME": "2000000000", "ANONYMIZATION_IMPACT_STOP_MARGIN_MINUTES": "ten"}
    with pytest.raises(WorkflowInputError, match="cluster.stop_margin_minutes"):
        job_deadline(environ=environ)


def test_a_run_stopped_by_its_deadline_resumes_to_the_same_weights(twins, annotations, tmp_path):  # noqa: F811
    whole = backend.train(make_job(twins, annotations, tmp_path, name="whole"))
    chained = make_job(twins, annotations, tmp_path, name="chained", deadline=Deadline(0.0, "long past"))
    with pytest.raises(TimeLimitReached, match=r"stopped after iteration 1 of 6 .* by 1970-01-01.* \(long past\)"):
        backend.train(chained)
    assert torch.load(backend._checkpoint_path(chained), weights_only=False)["iteration"] == 1  # not a multiple of checkpoint_every
    assert not chained.output.exists()
    chained.deadline = None
    assert backend.train(chained)["resumed_at"] == 1 and whole["resumed_at"] == 0
    assert chained.output.read_bytes() == (tmp_path / "whole" / "model.pth").read_bytes()


def test_the_rule_exits_75_with_the_reason_in_its_log(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped, logged(tmp_path / "job.log"):
        raise TimeLimitReached("stopped after iteration 3 of 9")
    assert stopped.value.code == EXIT_TIME_LIMIT == 75
    assert "TimeLimitReached: stopped after iteration 3 of 9" in (tmp_path / "job.log").read_text()
    assert "TimeLimitReached: stopped after iteration 3 of 9" in capsys.readouterr().err


def test_any_other_error_leaves_its_traceback_in_the_log_and_goes_on(tmp_path):
    with pytest.raises(ZeroDivisionError), logged(tmp_path / "job.log"):
        1 / 0
    said = (tmp_path / "job.log").read_text()
    assert "ERROR the job failed" in said and "Traceback (most recent call last)" in said and "ZeroDivisionError" in said


def test_train_model_gets_the_retries_its_longest_run_needs(config):  # noqa: F811
    paper = real(config)
    assert cost.training_retries(paper, cost.Context.of(paper)) is None  # no limit: the profile's retries
    limited = copy.deepcopy(paper)
    limited["cluster"].update(max_runtime_minutes=2880, stop_margin_minutes=10)
    context = cost.Context.of(limited)
    longest = max(cost.estimate(limited, context, "train_model", run.dataset, run.model).seconds for run in cost.plan.metric_runs(limited))
    assert cost.training_retries(limited, context) == cost.attempts_needed(limited, longest) > 1
    assert cost.attempts_needed(limited, 2870 * 60 / limited["cluster"]["runtime_margin"]) == 1  # the limit less the margin fits one job


def test_realistic_shards_get_the_retries_their_longest_shard_needs(config):  # noqa: F811
    paper = real(config)
    assert cost.shard_retries(paper, cost.Context.of(paper)) is None
    limited = copy.deepcopy(paper)
    limited["cluster"].update(max_runtime_minutes=120, stop_margin_minutes=10)
    context = cost.Context.of(limited)
    shards = {variant: cost.estimate(limited, context, "anonymize_shard_realistic", dataset, variant=variant).seconds
              for dataset, variant in cost.plan.anonymized_trees(limited) if "realistic" in variant}
    hmlo = max(shards, key=shards.get)
    assert hmlo.endswith("-hmlo") and shards[hmlo] * limited["cluster"]["runtime_margin"] > 110 * 60  # longer than one job
    assert cost.shard_retries(limited, context) == cost.attempts_needed(limited, shards[hmlo]) > 1
    limited["cluster"]["max_runtime_minutes"] = 100_000
    assert cost.shard_retries(limited, context) == 1  # one job, and one retry for a failure


@pytest.mark.parametrize(("limit", "margin", "says"), [(10, 10, "leaves no time for work"), (30, 29.99, "shorter than one checkpoint interval")])
def test_a_limit_without_room_for_a_checkpoint_interval_is_refused(config, limit, margin, says):  # noqa: F811
    paper = real(config)
    paper["cluster"].update(max_runtime_minutes=limit, stop_margin_minutes=margin)
    with pytest.raises(WorkflowInputError, match=says):
        cost.training_retries(paper, cost.Context.of(paper))


def test_the_dag_build_refuses_such_a_limit_before_any_job(tmp_path):
    result = run_snakemake(tmp_path, "-n", "all", "--configfile", str(REPO / "config.yaml"),
                           "--config", "cluster={max_runtime_minutes: 5, stop_margin_minutes: 5}")
    assert result.returncode != 0
    assert "WorkflowInputError: cluster.max_runtime_minutes 5 less cluster.stop_margin_minutes 5 leaves no time for work" in result.stderr
