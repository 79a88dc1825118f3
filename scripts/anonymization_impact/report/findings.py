"""The paper's qualitative claims (Sec. 4.2, 4.3), checked on our numbers and on the paper's own."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .. import TASKS
from ..metrics import PERSON_CLASS
from ..results import RAN, relative_drop_percent
from ..tables import experiment_rows
from ..variants import row_names
from .published import published_number, published_row_name

NOISE_LEVEL_AP = 1.0  # below it a relative change says little


@dataclass(frozen=True)
class Claim:
    key: str
    statement: str
    region: str
    methods: tuple[str, ...]
    datasets: tuple[str, ...]
    tasks: tuple[str, ...]
    threshold: str  # the test of the relative drop (percent), as printed
    holds: Callable[[float, float | None], bool]  # (drop, smallest drop of the `than` rows)
    than: tuple[str, ...] = ()  # methods of the same region and table the row is compared with


# the paper's qualitative claims (Sec. 4.2, 4.3), tested on the headline person metric
CLAIMS = (
    Claim("a", "Full-body blur and mask-out lower AP_person (keypoint AP on COCO keypoints) by at least 50 % relative to original (Sec. 4.3).",
          "body", ("blur", "maskout"), ("coco", "cityscapes", "bdd100k"), ("instance_segmentation", "keypoints"), "drop ≥ 50 %", lambda drop, _: drop >= 50.0),
    Claim("b", "Face anonymization changes AP_person by at most 10 % relative to original on Cityscapes and BDD100K (Sec. 4.2).",
          "face", ("blur", "maskout", "realistic"), ("cityscapes", "bdd100k"), ("instance_segmentation",), "|change| ≤ 10 %", lambda drop, _: abs(drop) <= 10.0),
    Claim("c", "On COCO, face blur and mask-out lower keypoint AP by more than 10 % relative to original (Sec. 4.2).",
          "face", ("blur", "maskout"), ("coco",), ("keypoints",), "drop > 10 %", lambda drop, _: drop > 10.0),
    Claim("d", "Realistic full-body anonymization lowers AP_person (keypoint AP on COCO keypoints) less than full-body blur and mask-out of the same table (Sec. 4.3, 5).",
          "body", ("realistic",), ("coco", "cityscapes", "bdd100k"), ("instance_segmentation", "keypoints"),
          "drop < the smallest drop of blur / mask-out", lambda drop, bound: bound is not None and drop < bound, than=("blur", "maskout")),
)


def headline_metric(config: dict, experiment: dict) -> str:
    task = TASKS[config["models"][experiment["model"]]["architecture"]]
    return "kp_AP" if task == "keypoints" else "AP_person"


def _paper_drop(experiment: dict, published: dict, variant: str, metric: str) -> float | None:
    if not experiment["published"]:
        return None
    table = published.get(experiment["published"]["table"]) or {}
    row, base = (table.get(published_row_name(experiment, name), {}).get(metric) for name in (variant, "original"))
    if row is None or base is None:
        return None
    paper_mean, base_mean = published_number(row, f"{variant}.{metric}")[0], published_number(base, f"original.{metric}")[0]
    return None if base_mean == 0 else 100.0 * (base_mean - paper_mean) / base_mean


def findings(config: dict, runs, runnable, published: dict) -> list[dict]:
    """Each claim on every row of every experiment it applies to."""
    found = []
    for claim in CLAIMS:
        for name, experiment in config["experiments"].items():
            task = TASKS[config["models"][experiment["model"]]["architecture"]]
            if experiment["dataset"] not in claim.datasets or task not in claim.tasks:
                continue
            if PERSON_CLASS[experiment["dataset"]] in config["models"][experiment["model"]].get("exclude_classes", []):
                continue  # trained without persons (Appendix A.3): the claims are about persons
            variants = [
                v for v in experiment["variants"]
                if v != "original" and config["variants"][v]["region"] == claim.region and config["variants"][v]["method"] in claim.methods
            ]
            if not variants:
                continue
            metric = headline_metric(config, experiment)
            table_rows = {row.variant: row for row in experiment_rows(config, experiment, runs, runnable, extra_columns=[metric])}
            original, labels = table_rows.get("original"), row_names(config, experiment["variants"], experiment["dataset"])
            compared = [
                v for v in experiment["variants"]
                if v != "original" and config["variants"][v]["region"] == claim.region and config["variants"][v]["method"] in claim.than
            ]
            if claim.than and not compared:
                continue
            bounds = _smallest_drops(experiment, metric, [table_rows[v] for v in compared], original, published)
            for variant in variants:
                found.append(_finding(claim, name, experiment, metric, table_rows[variant], original, labels[variant], published, bounds))
    return found


def _row_drop(row, original, metric: str) -> float | None:
    """Our relative drop of a row, or None when it or the original did not run completely."""
    if row.status != RAN or original is None or original.status != RAN:
        return None
    mine, base = row.summaries[metric], original.summaries[metric]
    return None if mine is None or base is None else relative_drop_percent(mine, base)


def _smallest_drops(experiment: dict, metric: str, rows, original, published: dict) -> tuple[float | None, float | None]:
    """(ours, the paper's) smallest relative drop over the rows a claim compares with; None
    when there are none or one is missing."""
    if not rows:
        return None, None
    ours = [_row_drop(row, original, metric) for row in rows]
    papers = [_paper_drop(experiment, published, row.variant, metric) for row in rows]
    return (None if None in ours else min(ours)), (None if None in papers else min(papers))


def _finding(claim: Claim, name: str, experiment: dict, metric: str, row, original, label: str, published: dict,
             bounds: tuple[float | None, float | None] = (None, None)) -> dict:
    paper_drop = _paper_drop(experiment, published, row.variant, metric)
    finding = {
        "claim": claim.key,
        "statement": claim.statement,
        "experiment": name,
        "variant": row.variant,
        "label": label,
        "metric": metric,
        "threshold": claim.threshold,
        "original_mean": None,
        "variant_mean": None,
        "relative_drop_percent": None,
        "paper_relative_drop_percent": paper_drop,
        "paper_result": None,
        "result": "not run",
        "caveat": "",
    }
    if claim.than:
        finding["compared_drop_percent"], finding["paper_compared_drop_percent"] = bounds
    if paper_drop is not None and not (claim.than and bounds[1] is None):
        finding["paper_result"] = "pass" if claim.holds(paper_drop, bounds[1]) else "fail"
    if row.status != RAN or original is None or original.status != RAN:
        return finding
    mine, base = row.summaries[metric], original.summaries[metric]
    drop = None if mine is None or base is None else relative_drop_percent(mine, base)
    if mine is not None and base is not None:
        finding["original_mean"], finding["variant_mean"] = base.mean, mine.mean
        if base.mean < NOISE_LEVEL_AP:
            finding["caveat"] = f"the original is below {NOISE_LEVEL_AP:g} AP: a relative change of so small a number is mostly noise"
    if drop is None:
        finding["result"] = "undefined"
        return finding
    finding["relative_drop_percent"] = drop
    if claim.than and bounds[0] is None:
        finding["result"] = "not run"  # a row it is compared with has no complete runs
        return finding
    finding["result"] = "pass" if claim.holds(drop, bounds[0]) else "fail"
    return finding
