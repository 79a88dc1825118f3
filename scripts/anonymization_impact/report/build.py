"""The report document: the comparisons, the text's numbers, what is not configured and the findings, with notes."""

from __future__ import annotations

from pathlib import Path

from ..provenance import md5_file
from ..tables import NEEDS_WEIGHTS_NOTE as TABLE_NEEDS_WEIGHTS_NOTE, check_unique_runs, is_synthetic
from .comparisons import PAPER_SE_FLOOR, compare_experiment, not_configured, text_result
from .findings import findings
from .published import load_published, published_table
from .statistics import SIGNIFICANCE

SCHEMA = "anonymization-impact/report/v1"
SYNTHETIC_WARNING = (
    "These numbers come from the synthetic twins; they test the pipeline and reproduce qualitative findings only; "
    "they are not comparable with the paper's numbers."
)
NEEDS_WEIGHTS_NOTE = "needs weights: " + TABLE_NEEDS_WEIGHTS_NOTE


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
        comparison, pairs = compare_experiment(config, name, experiment, runs, runnable, published_table(numbers, name, experiment, source))
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
