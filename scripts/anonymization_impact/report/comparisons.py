"""Our numbers against the paper's: per metric of every published row, and the numbers of its text."""

from __future__ import annotations

from ..results import RAN, relative_drop_percent
from ..tables import experiment_rows, is_synthetic
from ..variants import row_names
from .published import published_number, published_row_name, published_value
from .statistics import delta_test, summary_dict

PAPER_SE_FLOOR = 0.05  # the paper prints SE with one decimal: 0.0 means < 0.05
STATUS_TEXT = {"needs_weights": "needs weights", "missing": "missing runs"}


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
    entry["ours"] = summary_dict(summary)
    if summary is not None:
        entry["difference"] = summary.mean - paper_mean
        entry["difference_in_paper_se"] = entry["difference"] / se_used
    if row.variant == "original":
        entry["delta_note"] = "reference row"
        return entry
    entry["our_delta"] = row.deltas.get(metric)
    entry["welch"], entry["delta_note"] = delta_test(row, original, metric)
    return entry


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
        result["ours"] = summary_dict(summary)
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
