"""The report as Markdown and as self-contained HTML, both from one list of blocks."""

from __future__ import annotations

import html as html_lib

from ..results import RAN
from ..tables import metric_name
from .comparisons import STATUS_TEXT
from .findings import CLAIMS


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
