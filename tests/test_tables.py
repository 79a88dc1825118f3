"""LaTeX tables: cells against numpy on the metric JSONs, rows without runs, labels, escaping,
and a pdflatex compile of every target (skipped without pdflatex, except in CI)."""

from __future__ import annotations

import json
import os
import re
import runpy
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from anonymization_impact.config import validate_config
from anonymization_impact.errors import WorkflowInputError
from anonymization_impact.evaluation import PROVENANCE_KEYS, REQUIRED_METRICS, metrics_document
from anonymization_impact.io import write_json_atomic
from anonymization_impact.results import load_runs
from anonymization_impact.tables import build_tables, latex, latex_document, latex_escape, tables_document
from anonymization_impact.variants import row_names, runnable_variants, table_labels

from conftest import REPO

SEEDS = [0, 1, 2]
MODELS = {"mask_rcnn_r50_fpn": "instance_segmentation", "keypoint_rcnn_r50_fpn": "keypoints"}
NOT_RUNNABLE = {"face-realistic", "body-realistic", "body-realistic-minsize32"}
# per (dataset, variant, model): one value per seed for each metric; None: undefined
VALUES = {
    ("cityscapes", "original", "mask_rcnn_r50_fpn"): {"AP": [36.61, 36.83, 36.70], "AP50": [62.5, 63.0, 62.9], "AP_person": [34.8, 35.3, 35.0]},
    ("cityscapes", "face-blur", "mask_rcnn_r50_fpn"): {"AP": [36.2, 36.7, 36.3], "AP50": [62.1, 62.7, 62.6], "AP_person": [34.9, 34.8, 35.1]},
    ("cityscapes", "face-maskout", "mask_rcnn_r50_fpn"): {"AP": [36.9, 36.5, 36.8], "AP50": [63.3, 62.9, 63.0], "AP_person": [None, 34.9, 35.0]},
    ("cityscapes", "body-blur", "mask_rcnn_r50_fpn"): {"AP": [31.2, 31.6, 31.4], "AP50": [54.1, 54.9, 54.4], "AP_person": [2.0, 2.3, 2.1]},
    # seed 2 missing: "missing runs (2/3)"
    ("cityscapes", "body-maskout", "mask_rcnn_r50_fpn"): {"AP": [31.1, 31.3], "AP50": [53.2, 53.1], "AP_person": [0.7, 0.6]},
    ("coco", "original", "keypoint_rcnn_r50_fpn"): {"box_AP": [55.7, 55.6, 55.8], "kp_AP": [65.1, 65.2, 65.3]},
    ("coco", "face-blur", "keypoint_rcnn_r50_fpn"): {"box_AP": [50.1, 50.5, 50.3], "kp_AP": [53.3, 53.7, 53.5]},
    ("coco", "body-maskout", "keypoint_rcnn_r50_fpn"): {"box_AP": [17.4, 17.5, 17.3], "kp_AP": [2.0, 1.9, 2.1]},
}


def small_config(**overrides) -> dict:
    config = {
        "datasets": {"cityscapes": {"synthetic": False, "root": "/data/cityscapes"}, "coco": {"synthetic": False, "root": "/data/coco"}},
        "variants": {
            "face-blur": {"region": "face", "method": "blur"},
            "face-maskout": {"region": "face", "method": "maskout"},
            "face-realistic": {"region": "face", "method": "realistic"},
            "body-blur": {"region": "body", "method": "blur"},
            "body-maskout": {"region": "body", "method": "maskout"},
            "body-realistic": {"region": "body", "method": "realistic", "truncation": "multimodal"},
            "body-realistic-minsize32": {"region": "body", "method": "realistic", "min_size": 32},
        },
        "models": {"mask_rcnn_r50_fpn": {"architecture": "mask_rcnn"}, "keypoint_rcnn_r50_fpn": {"architecture": "keypoint_rcnn"}},
        "seeds": SEEDS,
        "experiments": {
            "table1": {
                "title": "Cityscapes & friends: 100% _instance_ #1",
                "dataset": "cityscapes",
                "model": "mask_rcnn_r50_fpn",
                "variants": ["original", "face-blur", "face-maskout", "face-realistic", "body-blur", "body-maskout", "body-realistic"],
                "published": {"table": "t1"},
            },
            "table3": {
                "title": "COCO keypoints",
                "dataset": "coco",
                "model": "keypoint_rcnn_r50_fpn",
                "variants": ["original", "face-blur", "body-maskout"],
                "published": {"table": "t3"},
            },
            "minsize": {
                "title": "Persons below 32x32 kept",
                "dataset": "cityscapes",
                "model": "mask_rcnn_r50_fpn",
                "variants": ["original", "body-realistic", "body-realistic-minsize32"],
                "target": "appendix",
            },
        },
    }
    config.update(overrides)
    return validate_config(config)


def fake_provenance(seed: int) -> dict:
    provenance = {key: None for key in PROVENANCE_KEYS}
    provenance.update(git_commit="0" * 40, dirty=False, config_sha256="f" * 64, seed=seed, packages={}, python="3.11.7", device="cpu")
    provenance.update(annotation_md5={}, files_md5={}, created_by="tests")
    return provenance


def write_runs(root: Path, values: dict = VALUES, synthetic: bool = False) -> list[Path]:
    """Metric JSONs at results/metrics/{dataset}/{variant}/{model}/seed{seed}.json."""
    paths = []
    for (dataset, variant, model), metrics in values.items():
        task = MODELS[model]
        for seed_index in range(len(next(iter(metrics.values())))):
            seed = SEEDS[seed_index]
            chosen = {metric: series[seed_index] for metric, series in metrics.items()}
            for required in REQUIRED_METRICS[(dataset, task)]:
                chosen.setdefault(required, 1.0)
            document = metrics_document(
                dataset=dataset,
                variant=variant,
                model=model,
                seed=seed,
                task=task,
                metrics=chosen,
                per_class_ap={},
                evaluator={"name": "cityscapesscripts" if dataset == "cityscapes" else "pycocotools", "version": "test"},
                provenance=fake_provenance(seed),
                synthetic=synthetic,
            )
            path = root / "results" / "metrics" / dataset / variant / model / f"seed{seed}.json"
            write_json_atomic(path, document, indent=1)
            paths.append(path)
    return paths


def runnable(variant: str) -> bool:
    return variant not in NOT_RUNNABLE


def seed_values(paths: list[Path], dataset: str, variant: str, model: str, metric: str) -> list:
    """The metric of every seed file of one row, read straight from the JSON files."""
    found = []
    for path in paths:
        document = json.loads(Path(path).read_text())
        if (document["dataset"], document["variant"], document["model"]) == (dataset, variant, model):
            found.append((document["seed"], document["metrics"][metric]))
    return [value for _, value in sorted(found)]


def independent(values: list[float]) -> tuple[float, float]:
    array = np.asarray(values, dtype=float)
    return float(array.mean()), float(array.std(ddof=1) / np.sqrt(array.size))


@pytest.fixture
def metric_files(tmp_path) -> list[Path]:
    return write_runs(tmp_path)


def row_line(tex: str, label: str) -> str:
    """The tabular line of the row labelled ``label``."""
    lines = [line for line in tex.splitlines() if re.match(rf"^(Face|Body)? ?& {re.escape(label)} &", line)]
    assert len(lines) >= 1, f"no row {label!r} in\n{tex}"
    return lines


# --------------------------------------------------------------------------- numbers


def test_cells_match_numpy_on_the_metric_files(metric_files):
    config = small_config()
    tables = build_tables(config, "table1", load_runs(metric_files), runnable) + build_tables(config, "table3", load_runs(metric_files), runnable)
    checked = 0
    for table in tables:
        for row in table["rows"]:
            if row["status"] != "ran":
                continue
            for metric in table["columns"]:
                values = seed_values(metric_files, table["dataset"], row["variant"], table["model"], metric)
                cell = row["metrics"][metric]
                if any(value is None for value in values):
                    assert cell == {"mean": None, "se": None, "delta": None, "values": None}
                    continue
                mean, se = independent(values)
                original_mean, _ = independent(seed_values(metric_files, table["dataset"], "original", table["model"], metric))
                assert cell["mean"] == pytest.approx(mean, abs=1e-12)
                assert cell["se"] == pytest.approx(se, abs=1e-12)
                assert cell["delta"] == pytest.approx(mean - original_mean, abs=1e-12)
                checked += 1
    assert checked == 3 * 3 + 2 + 3 * 2  # table 1: 3 full rows and face mask-out's AP, AP50; table 3: 3 rows
    tex = latex(tables)
    blur = row_line(tex, "Blur")[0]  # face blur of table 1
    mean, se = independent(VALUES["cityscapes", "face-blur", "mask_rcnn_r50_fpn"]["AP"])
    delta = mean - independent(VALUES["cityscapes", "original", "mask_rcnn_r50_fpn"]["AP"])[0]
    assert rf"${mean:.1f} \pm {se:.1f}$ {{\scriptsize (${delta:+.1f}$)}}" in blur
    original = row_line(tex, "Original")[0]
    assert r"\scriptsize" not in original  # no delta on the original row
    assert "$36.7 \\pm 0.1$" in original


def test_rows_without_all_runs_never_show_a_number(metric_files):
    config = small_config()
    table = build_tables(config, "table1", load_runs(metric_files), runnable)[0]
    status = {row["variant"]: row for row in table["rows"]}
    assert status["face-realistic"]["status"] == "needs_weights" and status["face-realistic"]["metrics"] == {}
    assert status["body-maskout"]["status"] == "missing" and status["body-maskout"]["metrics"] == {}
    assert (status["body-maskout"]["n"], status["body-maskout"]["n_expected"]) == (2, 3)
    tex = latex([table])
    for line in row_line(tex, "Realistic"):
        cells = [cell.strip() for cell in line.removesuffix(r"\\").split("&")[2:]]
        assert cells == [r"\emph{needs weights}"] * 3
    (maskout_face, maskout_body) = row_line(tex, "Mask-out")
    cells = [cell.strip() for cell in maskout_body.removesuffix(r"\\").split("&")[2:]]
    assert cells == [r"\emph{missing runs} (2/3)"] * 3
    assert "needs DeepPrivacy2's generators, which run on the real datasets only" in tex
    # the undefined AP_person of face mask-out (one seed without persons) is n/a, not a number
    assert maskout_face.removesuffix(r"\\").split("&")[-1].strip() == "n/a"


def test_undefined_original_gives_no_delta(tmp_path):
    values = {key: value for key, value in VALUES.items() if key[0] == "coco"}
    values["coco", "original", "keypoint_rcnn_r50_fpn"] = {"box_AP": [55.7, 55.6, 55.8], "kp_AP": [None, 65.2, 65.3]}
    table = build_tables(small_config(), "table3", load_runs(write_runs(tmp_path, values)), runnable)[0]
    blur = next(row for row in table["rows"] if row["variant"] == "face-blur")
    assert blur["metrics"]["kp_AP"]["delta"] is None and blur["metrics"]["kp_AP"]["mean"] == pytest.approx(53.5)
    assert r"{\scriptsize (n/a)}" in row_line(latex([table]), "Blur")[0]


def test_one_seed_has_no_standard_error(tmp_path):
    values = {key: {metric: series[:1] for metric, series in value.items()} for key, value in VALUES.items() if key[0] == "coco"}
    table = build_tables(small_config(seeds=[0]), "table3", load_runs(write_runs(tmp_path, values)), runnable)[0]
    tex = latex([table])
    assert r"\pm" not in tex.split(r"\toprule")[1] and "Value of 1 seed (no standard error)" in tex
    assert "$55.7$" in row_line(tex, "Original")[0]


def test_duplicate_runs_are_an_error(metric_files):
    runs = load_runs(metric_files)
    with pytest.raises(WorkflowInputError, match="two metric files for cityscapes / original"):
        build_tables(small_config(), "table1", runs + runs[:1], runnable)


def test_targets_group_experiments_in_config_order(metric_files):
    config = small_config()
    runs = load_runs(metric_files)
    assert [t["name"] for t in build_tables(config, "appendix", runs, runnable)] == ["minsize"]
    assert build_tables(config, "table2", runs, runnable) == []
    assert latex([]).startswith("%")


# --------------------------------------------------------------------------- labels and text


def test_row_labels_come_from_the_variant_options():
    config = small_config(
        variants={
            "a": {"region": "body", "method": "realistic", "postprocess": "hmlo"},
            "b": {"region": "face", "method": "realistic", "hr_faces": True},
            "c": {"region": "body", "method": "realistic", "truncation": "none"},
            "d": {"region": "body", "method": "realistic", "truncation": "unimodal"},
            "e": {"region": "body", "method": "maskout"},
            "f": {"region": "body", "method": "realistic", "min_size": 32},
            "g": {"region": "face", "method": "blur", "blur_sigma": 3},
            "h": {"region": "face", "method": "blur", "blur_sigma": 3},
        },
        experiments={},
    )
    assert table_labels(config, ["original", "a", "b", "e", "f"]) == {
        "original": "Original",
        "a": "Realistic + HM-LO",
        "b": "Realistic + HR faces",
        "e": "Mask-out",
        "f": "Realistic, min size 32²",
    }
    # truncations that differ within a table are named (Table 4)
    assert table_labels(config, ["c", "d", "a"]) == {
        "c": "Realistic, no truncation",
        "d": "Realistic, unimodal truncation",
        "a": "Realistic + HM-LO, multi-modal truncation",
    }
    # rows that differ in nothing we name get their variant name
    assert table_labels(config, ["g", "h"]) == {"g": "Blur, σ = 3 (g)", "h": "Blur, σ = 3 (h)"}
    assert latex_escape("Realistic, min size 32²") == r"Realistic, min size 32\textsuperscript{2}"


def test_workflow_config_labels_are_distinct_per_table():
    with open(REPO / "config.yaml") as handle:
        config = validate_config(yaml.safe_load(handle))
    for name, experiment in config["experiments"].items():
        labels = row_names(config, experiment["variants"])
        assert len(set(labels.values())) == len(labels), name


def test_latex_escaping():
    assert latex_escape(r"a&b%c$d#e_f{g}h~i^j\k") == (
        r"a\&b\%c\$d\#e\_f\{g\}h\textasciitilde{}i\textasciicircum{}j\textbackslash{}k"
    )
    assert latex_escape("x ± Δ ☃") == r"x $\pm$ $\Delta$ ?"


def test_caption_title_and_synthetic_note(tmp_path):
    config = small_config()
    real = latex(build_tables(config, "table1", load_runs(write_runs(tmp_path / "real")), runnable))
    assert r"\caption{Cityscapes \& friends: 100\% \_instance\_ \#1." in real
    assert "Mean $\\pm$ standard error over 3 seeds (0, 1, 2); $\\Delta$ vs.\\ original" in real
    assert "synthetic" not in real.lower()
    synthetic = latex(build_tables(config, "table1", load_runs(write_runs(tmp_path / "twin", synthetic=True)), runnable))
    assert "Synthetic twins: numbers are not comparable with the paper." in synthetic
    # a twin dataset in the config is synthetic even before any run exists
    twin_config = small_config(datasets={"cityscapes": {"synthetic": True}})
    assert build_tables(twin_config, "table1", [], runnable)[0]["synthetic"] is True


# --------------------------------------------------------------------------- pdflatex and the script


def pdflatex_or_skip() -> str:
    path = shutil.which("pdflatex")
    if path is None:
        reason = "pdflatex is not installed (bash .ci/install-latex installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must compile the tables, but {reason}")
        pytest.skip(reason)
    return path


@pytest.mark.parametrize("target", ["table1", "table3", "appendix"])
def test_tables_compile_with_pdflatex(tmp_path, target):
    pdflatex = pdflatex_or_skip()
    config = small_config()
    fragment = latex(build_tables(config, target, load_runs(write_runs(tmp_path / "twin", synthetic=True)), runnable))
    (tmp_path / f"{target}.tex").write_text(fragment)
    # the fragment as the paper would use it: \input into a document with booktabs and amsmath
    (tmp_path / "document.tex").write_text(latex_document(rf"\input{{{target}.tex}}"))
    completed = subprocess.run(
        [pdflatex, "-interaction=nonstopmode", "-halt-on-error", "document.tex"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0, completed.stdout[-3000:]
    assert (tmp_path / "document.pdf").stat().st_size > 1000
    log = (tmp_path / "document.log").read_text(errors="replace")
    assert "Missing character" not in log and "Undefined control sequence" not in log


def test_make_table_script(tmp_path, metric_files):
    config = small_config()
    output = SimpleNamespace(tex=str(tmp_path / "tables" / "table1.tex"), data=str(tmp_path / "tables" / "table1.json"))
    snakemake = SimpleNamespace(
        input=SimpleNamespace(metrics=[str(path) for path in metric_files]),
        params=SimpleNamespace(config=config, target="table1"),
        output=output,
        log=[str(tmp_path / "make_table.log")],
    )
    runpy.run_path(str(REPO / "scripts" / "make_table.py"), init_globals={"snakemake": snakemake})
    tables = build_tables(config, "table1", load_runs(metric_files), runnable_variants(config))
    assert Path(output.tex).read_text() == latex(tables)
    assert json.loads(Path(output.data).read_text()) == json.loads(json.dumps(tables_document("table1", tables)))
