"""The paper's tables as LaTeX: one booktabs ``table`` per experiment of a target.

:func:`build_tables` turns the metric JSONs into structured tables (the JSON twin of each
``results/tables/<target>.tex``); :func:`latex` typesets them the way the paper lays out
Tables 1-4: a row label column grouped into original / face / body, each cell
``mean ± SE`` with the difference to "original" below. A row whose runs need external
weights or are missing never shows a number.
"""

from __future__ import annotations

from collections import Counter

from .config import experiment_target
from .errors import WorkflowInputError
from .results import MISSING, NEEDS_WEIGHTS, RAN, experiment_columns, rows
from .variants import GROUP_NAMES, Variant, table_labels
# column headers: plain text (report, JSON) and LaTeX
METRIC_NAMES = {
    "AP": ("AP", "AP"),
    "AP50": ("AP50", "AP$_{50}$"),
    "AP_person": ("AP_person", r"AP$_{\text{person}}$"),
    "box_AP": ("box AP", "Box AP"),
    "mask_AP": ("mask AP", "Mask AP"),
    "kp_AP": ("keypoint AP", "Keypoint AP"),
}
NEEDS_WEIGHTS_NOTE = (
    "Realistic anonymization needs DeepPrivacy2's generators, which run on the real datasets only "
    "(the workflow fetches their weights with the rule download_weights, e.g. snakemake --cores 1 "
    "resources/weights/deepprivacy2/triagan_L_im288.ckpt)."
)
SYNTHETIC_NOTE = "Synthetic twins: numbers are not comparable with the paper."
# LaTeX replacements of the characters that are special to it, and of the few non-ASCII
# characters our own texts use
LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "|": r"\textbar{}",
    "²": r"\textsuperscript{2}",
    "±": r"$\pm$",
    "Δ": r"$\Delta$",
    "σ": r"$\sigma$",
    "×": r"$\times$",
    "−": r"$-$",
    "–": "--",
    "—": "---",
    "…": r"\ldots{}",
}


def latex_escape(text: str) -> str:
    """``text`` typeset literally; a character pdflatex cannot typeset without extra
    packages (beyond Latin-1 and the table above) becomes '?'."""
    return "".join(LATEX_SPECIAL.get(char, char if ord(char) < 256 else "?") for char in str(text))


# --------------------------------------------------------------------------- column names


def metric_name(metric: str, latex_form: bool = False) -> str:
    plain, typeset = METRIC_NAMES.get(metric, (metric, None))
    return (typeset or latex_escape(plain)) if latex_form else plain


# --------------------------------------------------------------------------- structured tables


def check_unique_runs(runs) -> None:
    seen = Counter((run.dataset, run.variant, run.model, run.seed) for run in runs)
    twice = sorted(key for key, count in seen.items() if count > 1)
    if twice:
        dataset, variant, model, seed = twice[0]
        paths = [run.path for run in runs if (run.dataset, run.variant, run.model, run.seed) == twice[0]]
        raise WorkflowInputError(f"two metric files for {dataset} / {variant} / {model} / seed {seed}: {', '.join(paths)}; pass each run once")


def experiment_rows(config: dict, experiment: dict, runs, runnable, extra_columns=()):
    """results.rows of one experiment over its columns (and ``extra_columns``)."""
    columns = list(dict.fromkeys([*experiment_columns(config, experiment), *extra_columns]))
    return rows(
        runs,
        dataset=experiment["dataset"],
        model=experiment["model"],
        variants=experiment["variants"],
        columns=columns,
        seeds=config["seeds"],
        runnable=runnable,
    )


def is_synthetic(config: dict, experiment: dict, table_rows=()) -> bool:
    """Whether a run of the table, or the (enabled) dataset in the config, is a synthetic twin."""
    settings = config["datasets"][experiment["dataset"]]
    return bool(settings["enabled"] and settings["synthetic"]) or any(run.synthetic for row in table_rows for run in row.runs)


def _metric_cell(row, metric: str) -> dict:
    summary = row.summaries[metric]
    if summary is None:
        return {"mean": None, "se": None, "delta": None, "values": None}
    return {"mean": summary.mean, "se": summary.se, "delta": row.deltas[metric], "values": list(summary.values)}


def build_table(config: dict, name: str, experiment: dict, runs, runnable) -> dict:
    columns = experiment_columns(config, experiment)
    table_rows = experiment_rows(config, experiment, runs, runnable)
    labels = table_labels(config, experiment["variants"])
    return {
        "name": name,
        "target": experiment_target(name, experiment),
        "title": experiment["title"] or name,
        "dataset": experiment["dataset"],
        "model": experiment["model"],
        "columns": columns,
        "seeds": list(config["seeds"]),
        "synthetic": is_synthetic(config, experiment, table_rows),
        "rows": [
            {
                "variant": row.variant,
                "label": labels[row.variant],
                "group": Variant.of(config, row.variant).group,
                "status": row.status,
                "generator": Variant.of(config, row.variant).synthetic_generator(config, experiment["dataset"]),
                "n": len(row.runs),
                "n_expected": len(config["seeds"]),
                "seeds_found": [run.seed for run in row.runs],
                # no numbers unless every seed ran
                "metrics": {metric: _metric_cell(row, metric) for metric in columns} if row.status == RAN else {},
            }
            for row in table_rows
        ],
    }


def build_tables(config: dict, target: str, runs, runnable) -> list[dict]:
    """The structured tables of every experiment of ``target``, in config order."""
    check_unique_runs(runs)
    return [
        build_table(config, name, experiment, runs, runnable)
        for name, experiment in config["experiments"].items()
        if experiment_target(name, experiment) == target
    ]


def tables_document(target: str, tables: list[dict]) -> dict:
    """The JSON twin of results/tables/<target>.tex."""
    return {
        "target": target,
        "definition": "mean and standard error (sample standard deviation / sqrt(n)) over seeds; delta = mean - mean of 'original'",
        "synthetic": any(table["synthetic"] for table in tables),
        "tables": tables,
    }


# --------------------------------------------------------------------------- LaTeX


def format_number(value: float) -> str:
    text = f"{value:.1f}"
    return "0.0" if text == "-0.0" else text


def format_delta(value: float) -> str:
    text = f"{value:+.1f}"
    return "0.0" if text in ("+0.0", "-0.0") else text


def latex_cell(row: dict, metric: str) -> str:
    if row["status"] == NEEDS_WEIGHTS:
        return r"\emph{needs weights}"
    if row["status"] == MISSING:
        return rf"\emph{{missing runs}} ({row['n']}/{row['n_expected']})"
    cell = row["metrics"][metric]
    if cell["mean"] is None:
        return "n/a"
    text = f"${format_number(cell['mean'])}" + (rf" \pm {format_number(cell['se'])}$" if cell["se"] is not None else "$")
    if row["variant"] == "original":
        return text
    delta = "n/a" if cell["delta"] is None else f"${format_delta(cell['delta'])}$"
    return rf"{text} {{\scriptsize ({delta})}}"


def caption(table: dict) -> str:
    seeds = table["seeds"]
    spread = f"Mean $\\pm$ standard error over {len(seeds)} seeds" if len(seeds) > 1 else "Value of 1 seed (no standard error)"
    parts = [
        latex_escape(table["title"]) + ".",
        f"{spread} ({latex_escape(', '.join(map(str, seeds)))}); $\\Delta$ vs.\\ original in parentheses.",
    ]
    statuses = {row["status"] for row in table["rows"]}
    if NEEDS_WEIGHTS in statuses:
        parts.append(r"\emph{needs weights}: " + latex_escape(NEEDS_WEIGHTS_NOTE))
    if MISSING in statuses:
        parts.append(r"\emph{missing runs} (found/expected): not every seed of the row has a metric file, so no number is shown.")
    generators = sorted({row["generator"] for row in table["rows"] if row["generator"] and row["status"] != NEEDS_WEIGHTS})
    if generators:
        parts.append(r"$^\dagger$\,Made with the " + latex_escape("; ".join(generators)) + ", not with DeepPrivacy2.")
    if table["synthetic"]:
        parts.append(r"\textbf{" + latex_escape(SYNTHETIC_NOTE) + "}")
    return " ".join(parts)


def latex_table(table: dict) -> str:
    columns = table["columns"]
    lines = [
        f"% {table['name']}: {table['dataset']}, {table['model']} (written by anonymization_impact.tables)",
        r"\begin{table}[htbp]",
        r"\centering",
        r"\small",
        r"\setlength{\tabcolsep}{4pt}",
        rf"\caption{{{caption(table)}}}",
        rf"\label{{tab:{table['name']}}}",
        r"\begin{tabular}{ll" + "c" * len(columns) + "}",
        r"\toprule",
        r"\multicolumn{2}{l}{Anonymization} & " + " & ".join(metric_name(metric, latex_form=True) for metric in columns) + r" \\",
    ]
    previous_group = None
    for row in table["rows"]:
        new_group = row["group"] != previous_group
        if new_group:
            lines.append(r"\midrule")
        group = latex_escape(GROUP_NAMES[row["group"]]) if new_group else ""
        dagger = r"$^\dagger$" if row["generator"] and row["status"] != NEEDS_WEIGHTS else ""
        cells = [group, latex_escape(row["label"]) + dagger, *(latex_cell(row, metric) for metric in columns)]
        lines.append(" & ".join(cells) + r" \\")
        previous_group = row["group"]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines)


def latex(tables: list[dict]) -> str:
    """The content of results/tables/<target>.tex: needs only booktabs and amsmath."""
    if not tables:
        return "% no experiment of this target in the config\n"
    return "\n\n".join(latex_table(table) for table in tables) + "\n"


def latex_document(fragment: str) -> str:
    """A minimal standalone document around a fragment of :func:`latex`."""
    return "\n".join([r"\documentclass{article}", r"\usepackage{booktabs}", r"\usepackage{amsmath}", r"\begin{document}", fragment, r"\end{document}", ""])
