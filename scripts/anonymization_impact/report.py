"""Reproduction report: our numbers next to the paper's (reference/published_results.yaml).

:func:`build_report` compares every published number that the config maps to one of our
experiments (mean ± SE, the difference in units of the paper's SE, both Δ vs. original with
a Welch t-test of ours), the numbers of the paper's text (``report.text_results``), and
checks the paper's qualitative claims on our numbers. :func:`markdown` and :func:`html`
render the same content; :func:`html` escapes every text it inserts.
"""

from __future__ import annotations

import html as html_lib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from .errors import WorkflowInputError
from .metrics import PERSON_CLASS
from .provenance import md5_file
from .results import RAN, relative_drop_percent, welch_t_test
from .tables import NEEDS_WEIGHTS_NOTE as TABLE_NEEDS_WEIGHTS_NOTE, check_unique_runs, experiment_rows, is_synthetic, metric_name, row_names
from . import TASKS

SCHEMA = "anonymization-impact/report/v1"
SIGNIFICANCE = 0.05
PAPER_SE_FLOOR = 0.05  # the paper prints SE with one decimal: 0.0 means < 0.05
NOISE_LEVEL_AP = 1.0  # below it a relative change says little
SYNTHETIC_WARNING = (
    "These numbers come from the synthetic twins; they test the pipeline and reproduce qualitative findings only; "
    "they are not comparable with the paper's numbers."
)
STATUS_TEXT = {"needs_weights": "needs weights", "missing": "missing runs"}
NEEDS_WEIGHTS_NOTE = "needs weights: " + TABLE_NEEDS_WEIGHTS_NOTE


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


# --------------------------------------------------------------------------- published numbers


def load_published(path) -> dict:
    try:
        with open(path) as handle:
            published = yaml.safe_load(handle)
    except OSError as error:
        raise WorkflowInputError(f"cannot read the published results {path} ({error.strerror or error})") from None
    except yaml.YAMLError as error:
        raise WorkflowInputError(f"published results {path} are not valid YAML: {error}") from None
    if not isinstance(published, dict):
        raise WorkflowInputError(f"published results {path} must be a mapping of tables")
    return published


def published_number(value, where: str) -> tuple[float, float]:
    """(mean, SE) of a printed ``[mean, se]``."""
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        raise WorkflowInputError(f"published result {where} must be [mean, standard error], not {value!r}")
    return float(value[0]), float(value[1])


def published_value(published: dict, dotted: str):
    node = published
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise WorkflowInputError(f"config key report.text_results: {dotted!r} is not a key of the published results")
        node = node[part]
    if not isinstance(node, (int, float)) or isinstance(node, bool):
        raise WorkflowInputError(f"published result {dotted!r} must be a number, not {node!r}")
    return float(node)


def published_row_name(experiment: dict, variant: str) -> str:
    return experiment["published"]["rows"].get(variant, variant.replace("-", "_"))


def _published_table(published: dict, name: str, experiment: dict, source) -> dict:
    table = published.get(experiment["published"]["table"])
    if not isinstance(table, dict):
        raise WorkflowInputError(
            f"config key 'experiments.{name}.published.table': {experiment['published']['table']!r} is not a table of {source}"
        )
    return table


# --------------------------------------------------------------------------- statistics


def delta_test(row, original, metric: str) -> tuple[dict | None, str]:
    """Welch t-test of our Δ (row vs. original over seeds) and a short note."""
    if original is None or original.status != RAN:
        return None, "not tested: the original row has not run"
    mine, base = row.summaries.get(metric), original.summaries.get(metric)
    if mine is None or base is None:
        return None, "not tested: metric undefined"
    test = welch_t_test(mine, base)
    if test is None:
        if mine.n < 2 or base.n < 2:
            return None, "undefined: fewer than 2 seeds"
        if len(set(mine.values) | set(base.values)) == 1:
            return None, "undefined: identical values"
        return None, "undefined: no spread over seeds in either row"
    t, p = test
    shown = "p < 0.001" if p < 0.001 else f"p = {p:.3f}"
    verdict = "significant at 5 %" if p < SIGNIFICANCE else "not significant at 5 %"
    return {"t": t, "p": p}, f"{shown}, {verdict}"


def _summary_dict(summary) -> dict | None:
    return None if summary is None else {"mean": summary.mean, "se": summary.se, "n": summary.n}


def compare_metric(row, original, paper_rows: dict, paper_row: str, metric: str) -> dict:
    paper_mean, paper_se = published_number(paper_rows[paper_row][metric], f"{paper_row}.{metric}")
    se_used = paper_se if paper_se > 0 else PAPER_SE_FLOOR
    entry = {
        "metric": metric,
        "paper": {"mean": paper_mean, "se": paper_se},
        "paper_se_used": se_used,
        "paper_se_floored": paper_se <= 0,
        "ours": None,
        "difference": None,
        "difference_in_paper_se": None,
        "paper_delta": None,
        "our_delta": None,
        "welch": None,
        "delta_note": "",
    }
    paper_original = paper_rows.get("original", {}).get(metric)
    if row.variant != "original" and paper_original is not None:
        entry["paper_delta"] = round(paper_mean - published_number(paper_original, f"original.{metric}")[0], 6)
    if row.status != RAN:
        entry["delta_note"] = STATUS_TEXT[row.status]
        return entry
    summary = row.summaries.get(metric)
    entry["ours"] = _summary_dict(summary)
    if summary is not None:
        entry["difference"] = summary.mean - paper_mean
        entry["difference_in_paper_se"] = entry["difference"] / se_used
    if row.variant == "original":
        entry["delta_note"] = "reference row"
        return entry
    entry["our_delta"] = row.deltas.get(metric)
    entry["welch"], entry["delta_note"] = delta_test(row, original, metric)
    return entry


# --------------------------------------------------------------------------- report sections


def _original_row(table_rows):
    return next((row for row in table_rows if row.variant == "original"), None)


def compare_experiment(config: dict, name: str, experiment: dict, runs, runnable, paper_rows: dict) -> tuple[dict, set]:
    """The comparison of one experiment and the (row, metric) pairs of the paper it used."""
    paper_metrics = sorted({metric for row in paper_rows.values() if isinstance(row, dict) for metric in row})
    table_rows = experiment_rows(config, experiment, runs, runnable, extra_columns=paper_metrics)
    original = _original_row(table_rows)
    labels = row_names(config, experiment["variants"], experiment["dataset"])
    used, compared_rows = set(), []
    for row in table_rows:
        paper_row = published_row_name(experiment, row.variant)
        metrics = paper_rows.get(paper_row)
        if not isinstance(metrics, dict):
            continue
        compared_rows.append(
            {
                "variant": row.variant,
                "label": labels[row.variant],
                "published_row": paper_row,
                "status": row.status,
                "n": len(row.runs),
                "n_expected": len(config["seeds"]),
                "metrics": [compare_metric(row, original, paper_rows, paper_row, metric) for metric in metrics],
            }
        )
        used.update((paper_row, metric) for metric in metrics)
    comparison = {
        "experiment": name,
        "title": experiment["title"] or name,
        "dataset": experiment["dataset"],
        "model": experiment["model"],
        "published_table": experiment["published"]["table"],
        "synthetic": is_synthetic(config, experiment, table_rows),
        "rows": compared_rows,
        "variants_not_published": [v for v in experiment["variants"] if not isinstance(paper_rows.get(published_row_name(experiment, v)), dict)],
    }
    return comparison, used


def text_result(config: dict, entry: dict, runs, runnable, published: dict) -> dict:
    experiment = config["experiments"][entry["experiment"]]
    table_rows = experiment_rows(config, experiment, runs, runnable, extra_columns=[entry["metric"]])
    row = next(row for row in table_rows if row.variant == entry["variant"])
    original = _original_row(table_rows)
    result = {
        "label": entry["label"],
        "experiment": entry["experiment"],
        "variant": entry["variant"],
        "metric": entry["metric"],
        "kind": entry["kind"],
        "published_key": entry["published"],
        "paper": published_value(published, entry["published"]),
        "status": row.status,
        "ours": None,
        "difference": None,
        "note": "",
    }
    if row.status != RAN:
        return result
    if entry["kind"] == "relative_drop_percent" and (original is None or original.status != RAN):
        result["status"] = original.status if original else "missing"
        result["note"] = f"the original row: {STATUS_TEXT[result['status']]}"
        return result
    summary = row.summaries[entry["metric"]]
    if entry["kind"] == "value":
        result["ours"] = _summary_dict(summary)
        value = None if summary is None else summary.mean
    else:
        base = original.summaries[entry["metric"]]
        value = None if summary is None or base is None else relative_drop_percent(summary, base)
        result["ours"] = None if value is None else {"value": value}
    if value is None:
        result["note"] = "undefined (metric undefined or original is 0)"
    else:
        result["difference"] = value - result["paper"]
    return result


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


def _text_leaves(node, prefix: str):
    """(dotted key, number) of every number under ``node``."""
    if isinstance(node, dict):
        for key, child in node.items():
            yield from _text_leaves(child, f"{prefix}.{key}")
    elif isinstance(node, (int, float)) and not isinstance(node, bool):
        yield prefix, float(node)


def not_configured(published: dict, used: dict, used_text: set) -> list[dict]:
    """Published numbers that neither an experiment nor report.text_results compares."""
    missing = [
        {"table": "text_results", "row": key.removeprefix("text_results."), "metric": None, "paper": {"mean": value, "se": None}}
        for key, value in _text_leaves(published.get("text_results", {}), "text_results")
        if key not in used_text
    ]
    for table, table_rows in published.items():
        if table == "text_results" or not isinstance(table_rows, dict):
            continue
        for row, metrics in table_rows.items():
            if not isinstance(metrics, dict):
                continue
            for metric, value in metrics.items():
                if (row, metric) not in used.get(table, set()):
                    mean, se = published_number(value, f"{table}.{row}.{metric}")
                    missing.append({"table": table, "row": row, "metric": metric, "paper": {"mean": mean, "se": se}})
    return missing


def build_report(config: dict, runs, runnable, published, provenance: dict | None = None) -> dict:
    """``published``: path of the published-results YAML; ``provenance``: what the caller
    knows of the code and config (git_commit, dirty, config_sha256, ...), may be empty."""
    check_unique_runs(runs)
    source = Path(published)
    numbers = load_published(source)
    experiments, used = [], {}
    for name, experiment in config["experiments"].items():
        if not experiment["published"]:
            continue
        comparison, pairs = compare_experiment(config, name, experiment, runs, runnable, _published_table(numbers, name, experiment, source))
        experiments.append(comparison)
        used.setdefault(experiment["published"]["table"], set()).update(pairs)
    texts = [text_result(config, entry, runs, runnable, numbers) for entry in config["report"]["text_results"]]
    synthetic = any(run.synthetic for run in runs) or any(is_synthetic(config, e) for e in config["experiments"].values())
    floored = any(m["paper_se_floored"] for e in experiments for r in e["rows"] for m in r["metrics"])
    notes = [
        f"Ours: mean ± standard error (sample standard deviation / √n) over seeds {', '.join(map(str, config['seeds']))}; "
        "the paper's: mean ± standard error over seeds 0, 1, 2, as printed.",
        "Δ: mean of the row − mean of 'original'. The paper's Δ is computed from its printed means. "
        f"Our Δ is tested with Welch's t-test over the seeds (two-sided, significant when p < {SIGNIFICANCE:g}).",
    ]
    if floored:
        notes.append(f"A paper SE printed as 0.0 means < 0.05; the difference in units of the paper's SE uses {PAPER_SE_FLOOR} there (marked *).")
    if any(r["status"] == "needs_weights" for e in experiments for r in e["rows"]):
        notes.append(NEEDS_WEIGHTS_NOTE)
    return {
        "schema": SCHEMA,
        "header": {
            "compared": (
                f"Every number of the paper's tables and text in {source.name} that the config maps to one of our "
                "experiments, against our runs (each model trained on the anonymized training set and evaluated on the "
                "original validation set)."
            ),
            "published_results": {"path": config["report"]["published_results"], "md5": md5_file(source)},  # as configured: no machine path
            "provenance": dict(provenance or {}),
            "seeds": list(config["seeds"]),
            "runs": len(runs),
            "synthetic": synthetic,
            "warning": SYNTHETIC_WARNING if synthetic else None,
        },
        "notes": notes,
        "experiments": experiments,
        "text_results": texts,
        "not_configured": not_configured(numbers, used, {entry["published"] for entry in config["report"]["text_results"]}),
        "findings": findings(config, runs, runnable, numbers),
    }


# --------------------------------------------------------------------------- rendering


def _number(value, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    text = f"{value:.{digits}f}"
    return f"{0:.{digits}f}" if float(text) == 0 else text


def _signed(value, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    text = f"{value:+.{digits}f}"
    return f"{0:.{digits}f}" if float(text) == 0 else text


def _mean_se(value: dict | None, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    return _number(value["mean"], digits) + ("" if value["se"] is None else f" ± {_number(value['se'], digits)}")


def _paper_number(value: dict) -> str:
    """A table number as printed (one decimal, ± SE), a number of the text as given."""
    return f"{value['mean']:g}" if value["se"] is None else _mean_se(value, 1)


def _ours(status: str, n: int, n_expected: int, value: dict | None) -> str:
    if status == "needs_weights":
        return "needs weights"
    if status == "missing":
        return f"missing runs ({n}/{n_expected})"
    return _mean_se(value)


def _comparison_rows(experiment: dict) -> list[list[str]]:
    lines = []
    for row in experiment["rows"]:
        for m in row["metrics"]:
            in_se = _signed(m["difference_in_paper_se"], 1) + (" *" if m["paper_se_floored"] and m["difference_in_paper_se"] is not None else "")
            welch = m["welch"]
            lines.append([
                row["label"],
                metric_name(m["metric"]),
                _mean_se(m["paper"], 1),
                _ours(row["status"], row["n"], row["n_expected"], m["ours"]),
                _signed(m["difference"]),
                in_se,
                _signed(m["paper_delta"], 1) if row["variant"] != "original" else "",
                _signed(m["our_delta"]) if row["variant"] != "original" and row["status"] == RAN else "",
                "" if welch is None else f"{welch['t']:.2f}",
                m["delta_note"],
            ])
    return lines


def _text_rows(report: dict) -> list[list[str]]:
    lines = []
    for t in report["text_results"]:
        ours = t["ours"]
        if t["status"] != RAN:
            shown = STATUS_TEXT.get(t["status"], t["status"])
        elif ours is None:
            shown = "n/a"
        else:
            shown = _number(ours["value"]) + " %" if "value" in ours else _mean_se(ours)
        paper = f"{t['paper']:g}" + (" %" if t["kind"] == "relative_drop_percent" else "")
        lines.append([t["label"], paper, shown, _signed(t["difference"]), t["note"]])
    return lines


def _finding_rows(report: dict) -> list[list[str]]:
    lines = []
    for f in report["findings"]:
        if f["result"] in ("pass", "fail"):
            threshold = f["threshold"]
            if "compared_drop_percent" in f:
                threshold += f": {_number(f['compared_drop_percent'], 1)} %"
            detail = (
                f"{metric_name(f['metric'])} {_number(f['original_mean'])} → {_number(f['variant_mean'])}: "
                f"relative drop {_number(f['relative_drop_percent'], 1)} % ({threshold})"
            ) + (f"; {f['caveat']}" if f["caveat"] else "")
        elif f["result"] == "undefined":
            detail = "relative drop undefined (metric undefined or original is 0)"
        else:
            detail = "not run (the row or the original has no complete runs)"
        paper = "" if f["paper_result"] is None else f"{f['paper_result']} ({_number(f['paper_relative_drop_percent'], 1)} %)"
        lines.append([f["claim"], f["experiment"], f["label"], f["result"], detail, paper])
    return lines


def blocks(report: dict) -> list[tuple]:
    """The report as a list of (kind, ...) blocks that markdown and HTML both render."""
    header = report["header"]
    provenance = header["provenance"]
    out = [("h1", "Reproduction report: Does Image Anonymization Impact Computer Vision Training?")]
    if header["warning"]:
        out.append(("warning", header["warning"]))
    out.append(("p", header["compared"]))
    facts = [
        f"Published results: {header['published_results']['path']} (md5 {header['published_results']['md5']})",
        f"Git commit: {provenance.get('git_commit') or 'not recorded'}"
        + (" (uncommitted changes)" if provenance.get("dirty") else ""),
        f"Config sha256: {provenance.get('config_sha256') or 'not recorded'}",
        f"Seeds: {', '.join(map(str, header['seeds']))}; metric files read: {header['runs']}",
    ]
    facts += [f"{key}: {value}" for key, value in sorted(provenance.items()) if key not in ("git_commit", "dirty", "config_sha256")]
    out.append(("list", facts))
    out.append(("list", report["notes"]))
    headers = ["Row", "Metric", "Paper", "Ours", "Ours − paper", "in paper SE", "Paper Δ", "Our Δ", "Welch t", "Our Δ: test"]
    for experiment in report["experiments"]:
        out.append(("h2", f"{experiment['title']} ({experiment['experiment']})"))
        caption = f"{experiment['dataset']}, {experiment['model']}; published table {experiment['published_table']}"
        if experiment["synthetic"]:
            caption += "; synthetic twins: not comparable with the paper"
        out.append(("p", caption))
        out.append(("table", headers, _comparison_rows(experiment)))
        if experiment["variants_not_published"]:
            out.append(("p", "Rows without a published number: " + ", ".join(experiment["variants_not_published"])))
    out.append(("h2", "Numbers from the paper's text"))
    if report["text_results"]:
        out.append(("table", ["What", "Paper", "Ours", "Ours − paper", "Note"], _text_rows(report)))
    else:
        out.append(("p", "None configured (report.text_results)."))
    out.append(("h2", "Published numbers not configured"))
    if report["not_configured"]:
        rows = [[n["table"], n["row"], metric_name(n["metric"]) if n["metric"] else "", _paper_number(n["paper"])] for n in report["not_configured"]]
        out.append(("p", "Published numbers that no experiment or report.text_results entry of the config compares: not configured."))
        out.append(("table", ["Table", "Row", "Metric", "Paper"], rows))
    else:
        out.append(("p", "None: every published number is compared."))
    out.append(("h2", "Findings"))
    out.append(("list", [f"({claim.key}) {claim.statement}" for claim in CLAIMS]))
    if report["findings"]:
        out.append(("table", ["Claim", "Experiment", "Row", "Ours", "Our numbers", "Paper's numbers"], _finding_rows(report)))
    else:
        out.append(("p", "No experiment of the config has a row these claims apply to."))
    return out


def _markdown_text(text: str) -> str:
    for char in "\\`*_[]<>|#":
        text = text.replace(char, "\\" + char)
    return text.replace("\n", " ")


def markdown(report: dict) -> str:
    lines = []
    for block in blocks(report):
        kind = block[0]
        if kind == "h1":
            lines += [f"# {_markdown_text(block[1])}", ""]
        elif kind == "h2":
            lines += [f"## {_markdown_text(block[1])}", ""]
        elif kind == "warning":
            lines += [f"> **Warning: {_markdown_text(block[1])}**", ""]
        elif kind == "p":
            lines += [_markdown_text(block[1]), ""]
        elif kind == "list":
            lines += [f"- {_markdown_text(item)}" for item in block[1]] + [""]
        elif kind == "table":
            _, headers, rows = block
            lines.append("| " + " | ".join(map(_markdown_text, headers)) + " |")
            lines.append("|" + "---|" * len(headers))
            lines += ["| " + " | ".join(_markdown_text(cell) for cell in row) + " |" for row in rows]
            lines.append("")
    return "\n".join(lines)


STYLE = """
body { font-family: sans-serif; max-width: 72rem; margin: 2rem auto; padding: 0 1rem; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; font-size: 0.9rem; }
th, td { border: 1px solid #bbb; padding: 0.2rem 0.5rem; text-align: left; }
th { background: #eee; }
.warning { border: 2px solid #b00; background: #fee; padding: 0.6rem 1rem; font-weight: bold; }
"""


def html(report: dict) -> str:
    """A self-contained HTML page; every inserted text is escaped."""
    esc = html_lib.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        "<title>Reproduction report</title>",
        f"<style>{STYLE}</style>",
        "</head>",
        "<body>",
    ]
    for block in blocks(report):
        kind = block[0]
        if kind in ("h1", "h2"):
            parts.append(f"<{kind}>{esc(block[1])}</{kind}>")
        elif kind == "warning":
            parts.append(f'<div class="warning">Warning: {esc(block[1])}</div>')
        elif kind == "p":
            parts.append(f"<p>{esc(block[1])}</p>")
        elif kind == "list":
            parts.append("<ul>" + "".join(f"<li>{esc(item)}</li>" for item in block[1]) + "</ul>")
        elif kind == "table":
            _, headers, rows = block
            parts.append("<table>")
            parts.append("<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in headers) + "</tr></thead>")
            parts.append("<tbody>")
            parts += ["<tr>" + "".join(f"<td>{esc(cell)}</td>" for cell in row) + "</tr>" for row in rows]
            parts.append("</tbody>")
            parts.append("</table>")
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)
