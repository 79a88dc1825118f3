"""Welch's t-test of our Δ (a row vs. original over the seeds) and the summary a report entry shows."""

from __future__ import annotations

from ..results import RAN, welch_t_test

SIGNIFICANCE = 0.05


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


def summary_dict(summary) -> dict | None:
    return None if summary is None else {"mean": summary.mean, "se": summary.se, "n": summary.n}
