"""Metric JSONs -> per-row summaries (mean, standard error over seeds, difference to "original").

One place computes the numbers that the tables, Fig. 8 and the reproduction report print, so
they cannot disagree. A row is in one of three states: its runs exist (numbers), it needs
external weights that this machine does not have (``needs_weights``), or some of its runs are
missing (``missing``: never shown as a number).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from statistics import fmean, stdev

from .errors import WorkflowInputError
from .metrics import REQUIRED_METRICS, validate_metrics_document
from .io import read_json
from . import TASKS

RAN, NEEDS_WEIGHTS, MISSING = "ran", "needs_weights", "missing"


@dataclass(frozen=True)
class Run:
    dataset: str
    variant: str
    model: str
    seed: int
    metrics: dict
    per_class_AP: dict
    synthetic: bool
    path: str


@dataclass(frozen=True)
class Summary:
    """Mean and standard error (sample standard deviation / sqrt(n)) of one metric over seeds."""

    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return fmean(self.values)

    @property
    def se(self) -> float | None:
        return stdev(self.values) / math.sqrt(self.n) if self.n > 1 else None


@dataclass
class Row:
    variant: str
    status: str  # RAN, NEEDS_WEIGHTS or MISSING
    runs: list[Run] = field(default_factory=list)
    summaries: dict[str, Summary | None] = field(default_factory=dict)  # None: metric undefined
    deltas: dict[str, float | None] = field(default_factory=dict)  # mean - original mean


def load_runs(paths) -> list[Run]:
    runs = []
    for path in paths:
        document = read_json(path)
        try:
            validate_metrics_document(document)
        except (WorkflowInputError, ValueError, KeyError) as error:
            raise WorkflowInputError(f"metric file {path} is not a valid metrics document: {error}") from error
        runs.append(
            Run(
                dataset=document["dataset"],
                variant=document["variant"],
                model=document["model"],
                seed=int(document["seed"]),
                metrics=document["metrics"],
                per_class_AP=document["per_class_AP"],
                synthetic=bool(document["synthetic"]),
                path=str(path),
            )
        )
    return runs


def default_columns(dataset: str, architecture: str) -> tuple[str, ...]:
    return REQUIRED_METRICS[(dataset, TASKS[architecture])]


def experiment_columns(config: dict, experiment: dict) -> list[str]:
    if experiment["columns"]:
        return list(experiment["columns"])
    architecture = config["models"][experiment["model"]]["architecture"]
    return list(default_columns(experiment["dataset"], architecture))


def summarize(runs: list[Run], metric: str) -> Summary | None:
    """None when a run has no value for the metric (e.g. a class absent from the ground truth)."""
    values = [run.metrics.get(metric, run.per_class_AP.get(metric)) for run in runs]
    if not values or any(value is None for value in values):
        return None
    return Summary(tuple(float(value) for value in values))


def select_runs(runs: list[Run], dataset: str, variant: str, model: str, seeds) -> list[Run]:
    wanted = set(seeds)
    return sorted(
        (r for r in runs if (r.dataset, r.variant, r.model) == (dataset, variant, model) and r.seed in wanted),
        key=lambda run: run.seed,
    )


def rows(runs: list[Run], *, dataset: str, model: str, variants, columns, seeds, runnable) -> list[Row]:
    """One Row per variant, in order; ``runnable(variant)`` says whether it can be made here."""
    seeds = list(seeds)
    table = []
    for variant in variants:
        chosen = select_runs(runs, dataset, variant, model, seeds)
        if len(chosen) == len(seeds):
            row = Row(variant, RAN, chosen, {metric: summarize(chosen, metric) for metric in columns})
        else:
            row = Row(variant, MISSING if runnable(variant) else NEEDS_WEIGHTS, chosen)
        table.append(row)
    original = next((row for row in table if row.variant == "original" and row.status == RAN), None)
    for row in table:
        if row.status != RAN:
            continue
        for metric in columns:
            mine, base = row.summaries[metric], original.summaries[metric] if original else None
            row.deltas[metric] = None if mine is None or base is None else mine.mean - base.mean
    return table


def relative_drop_percent(variant: Summary, original: Summary) -> float | None:
    """100 (original - variant) / original; None when the original is 0."""
    if original.mean == 0:
        return None
    return 100.0 * (original.mean - variant.mean) / original.mean


def welch_t_test(a: Summary, b: Summary) -> tuple[float, float] | None:
    """Welch's t statistic and two-sided p-value of mean(a) != mean(b); None when undefined."""
    from scipy import stats

    if a.n < 2 or b.n < 2:
        return None
    if stdev(a.values) == 0 and stdev(b.values) == 0:
        return None
    result = stats.ttest_ind(a.values, b.values, equal_var=False)
    return float(result.statistic), float(result.pvalue)


def metric_paths_exist(paths) -> list[str]:
    return [str(path) for path in paths if Path(path).exists()]
