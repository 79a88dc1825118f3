"""Fig. 8: relative performance drop of an anonymization against ResNet depth.

One panel per entry of ``fig8.panels``; one point per model of the panel. For the panel's
metric, with o and v the means over the configured seeds of the runs trained on the original
and on the anonymized training set (both scored on the original validation set):

    drop = 100 (o - v) / o   [percent; positive = the anonymized training set is worse]

Its error bar propagates the two standard errors (sample standard deviation / sqrt(n)) to
first order, treating the original and the anonymized runs as independent:

    d drop / d v = -100 / o,   d drop / d o = 100 v / o^2
    se(drop) = (100 / |o|) * sqrt(se(v)^2 + (v / o)^2 * se(o)^2)

A point whose runs are not all there is never drawn as a number: it reads "needs weights"
(the variant cannot be made on this machine), "runs missing", "metric undefined" (no value,
or o = 0) or "dataset disabled". On a synthetic twin a panel may plot a stand-in variant
(``synthetic_variant``); it is labelled as such. The x axis names the configured backbone
and, when the runs' ``training`` section says another one was trained (the twins' schedule
overrides it), the backbone that was really trained.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..config import fig8_variant  # noqa: E402
from ..io import read_json  # noqa: E402
from ..results import MISSING, NEEDS_WEIGHTS, RAN, Run, Summary, relative_drop_percent, rows  # noqa: E402
from .fig7 import LABELS  # noqa: E402
from ..variants import Variant  # noqa: E402
from .style import backbone_label, save_figure  # noqa: E402

UNDEFINED, DISABLED = "undefined", "disabled"
STATUS_TEXT = {NEEDS_WEIGHTS: "needs weights", MISSING: "runs missing", UNDEFINED: "metric undefined", DISABLED: "dataset disabled"}


def drop_standard_error(variant: Summary, original: Summary) -> float | None:
    """First-order standard error of 100 (o - v) / o; None without two standard errors."""
    if original.mean == 0 or variant.se is None or original.se is None:
        return None
    ratio = variant.mean / original.mean
    return 100.0 / abs(original.mean) * math.sqrt(variant.se**2 + ratio**2 * original.se**2)


def _summary_json(summary: Summary | None, runs: list[Run]) -> dict | None:
    if summary is None:
        return None
    return {"mean": summary.mean, "se": summary.se, "n": summary.n, "values": list(summary.values), "seeds": [run.seed for run in runs]}


def trained_backbones(runs: list[Run]) -> list[str]:
    """Backbones the runs' metric JSONs say were trained (their ``training`` section)."""
    found = set()
    for run in runs:
        training = read_json(run.path).get("training") or {}
        if training.get("backbone"):
            found.add(training["backbone"])
    return sorted(found)


def _point(config: dict, panel: dict, variant: str, model: str, runs: list[Run], runnable) -> dict:
    dataset, metric = panel["dataset"], panel["metric"]
    backbone = config["models"][model].get("backbone")
    point = {"model": model, "backbone": backbone, "trained_backbones": [], "x_label": backbone_label(backbone),
             "status": None, "seeds": list(config["seeds"]), "original": None, "variant": None, "drop": None, "drop_se": None,
             "synthetic": None}
    if not config["datasets"][dataset]["enabled"]:
        point["status"] = DISABLED
        return point
    original_row, variant_row = rows(
        runs, dataset=dataset, model=model, variants=["original", variant], columns=[metric],
        seeds=config["seeds"], runnable=lambda name: runnable.get(name, True),
    )
    used = original_row.runs + variant_row.runs
    point["trained_backbones"] = trained_backbones(used)
    if point["trained_backbones"] and point["trained_backbones"] != [backbone]:
        point["x_label"] += "\ntrained: " + ", ".join(backbone_label(b) for b in point["trained_backbones"])
    if used:
        point["synthetic"] = all(run.synthetic for run in used)
    bad = [row.status for row in (original_row, variant_row) if row.status != RAN]
    if bad:
        point["status"] = NEEDS_WEIGHTS if NEEDS_WEIGHTS in bad else MISSING
        return point
    original, anonymized = original_row.summaries[metric], variant_row.summaries[metric]
    point["original"] = _summary_json(original, original_row.runs)
    point["variant"] = _summary_json(anonymized, variant_row.runs)
    drop = None if original is None or anonymized is None else relative_drop_percent(anonymized, original)
    if drop is None:
        point["status"] = UNDEFINED
        return point
    point.update(status=RAN, drop=drop, drop_se=drop_standard_error(anonymized, original))
    return point


def fig8_data(config: dict, runs: list[Run], runnable: dict[str, bool]) -> dict:
    """Every plotted number, per panel and model (see the module docstring)."""
    panels = {}
    for name, panel in config["fig8"]["panels"].items():
        variant = fig8_variant(config, panel)
        stand_in = variant != panel["variant"]
        synthetic = config["datasets"][panel["dataset"]]["synthetic"]
        plotted = Variant(variant, config["variants"].get(variant) or {})
        label = plotted.figure_label() + plotted.generator_suffix(config, panel["dataset"])
        if stand_in:
            label = f"{variant}, stand-in for {panel['variant']} on the synthetic twin"
        panels[name] = {
            "title": panel["title"] or f"{LABELS[panel['dataset']]}, {panel['variant']}",
            "dataset": panel["dataset"],
            "metric": panel["metric"],
            "configured_variant": panel["variant"],
            "variant": variant,
            "stand_in": stand_in,
            "variant_label": label,
            "synthetic": synthetic,
            "seeds": list(config["seeds"]),
            "points": [_point(config, panel, variant, model, runs, runnable) for model in panel["models"]],
        }
    return {"definition": __doc__.strip(), "panels": panels}


def _draw_panel(axes, panel: dict) -> None:
    points = panel["points"]
    xs = np.arange(len(points))
    ys = np.array([p["drop"] if p["status"] == RAN else np.nan for p in points], dtype=float)
    errors = np.array([p["drop_se"] if p["status"] == RAN and p["drop_se"] is not None else 0.0 for p in points], dtype=float)
    axes.axhline(0, color="0.6", linewidth=0.8)
    if np.isfinite(ys).any():
        axes.errorbar(xs, ys, yerr=errors, fmt="o-", capsize=3, color="C0")
        for x, point in zip(xs, points):
            if point["status"] != RAN:
                axes.text(x, 0.5, STATUS_TEXT[point["status"]], transform=axes.get_xaxis_transform(), rotation=90,
                          ha="center", va="center", fontsize=8, color="0.35")
    else:
        statuses = sorted({STATUS_TEXT[p["status"]] for p in points})
        axes.text(0.5, 0.5, "\n".join(statuses) + f"\n({panel['variant']})", transform=axes.transAxes,
                  ha="center", va="center", fontsize=10, color="0.35")
        axes.set_yticks([])
    axes.set_xticks(xs, [p["x_label"] for p in points], fontsize=7)
    axes.set_xlim(-0.5, len(points) - 0.5)
    axes.set_ylabel(f"relative drop of {panel['metric']} (%)")
    title = panel["title"] + (" (synthetic twin)" if panel["synthetic"] else "")
    axes.set_title("\n".join([title, *textwrap.wrap(panel["variant_label"], 48)]), fontsize=8)
    axes.grid(alpha=0.3)


def plot(data: dict, pdf_path: Path, png_path: Path) -> None:
    panels = list(data["panels"].values())
    figure, axes = plt.subplots(1, max(len(panels), 1), figsize=(3.8 * max(len(panels), 1), 3.4), squeeze=False)
    for panel, ax in zip(panels, axes[0]):
        _draw_panel(ax, panel)
    if not panels:
        axes[0][0].text(0.5, 0.5, "no Fig. 8 panels configured", ha="center", va="center", transform=axes[0][0].transAxes)
        axes[0][0].set_axis_off()
    figure.tight_layout()
    save_figure(figure, pdf_path, png_path)
