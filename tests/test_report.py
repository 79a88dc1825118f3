"""Reproduction report: our numbers against published ones (difference, paper-SE units), Welch's
test against scipy, text results, findings that pass and fail, escaped HTML, the synthetic warning."""

from __future__ import annotations

import hashlib
import json
import runpy
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from scipy import stats

from anonymization_impact.config import validate_config
from anonymization_impact.report import build_report, html, markdown
from anonymization_impact.results import load_runs

from conftest import REPO
from test_tables import VALUES, independent, runnable, seed_values, small_config, write_runs

PUBLISHED = {
    "t1": {
        "original": {"AP": [36.7, 0.1], "AP50": [62.8, 0.2], "AP_person": [35.0, 0.0]},
        "face_blur": {"AP": [36.4, 0.2], "AP50": [62.5, 0.2], "AP_person": [34.9, 0.1]},
        "face_maskout": {"AP": [36.7, 0.2], "AP50": [63.1, 0.2], "AP_person": [34.9, 0.1]},
        "face_realistic": {"AP": [36.6, 0.1], "AP50": [62.8, 0.3], "AP_person": [35.0, 0.1]},
        "body_blur": {"AP": [31.4, 0.2], "AP50": [54.5, 0.4], "AP_person": [2.1, 0.1]},
        "body_maskout": {"AP": [31.2, 0.1], "AP50": [53.2, 0.1], "AP_person": [0.7, 0.1]},
        "body_realistic": {"AP": [34.6, 0.1], "AP50": [59.0, 0.3], "AP_person": [20.3, 0.2]},
        "body_unconfigured": {"AP": [1.0, 0.1]},
    },
    "t3": {
        "original": {"box_AP": [55.7, 0.0], "kp_AP": [65.2, 0.0]},
        "face_blur": {"box_AP": [50.3, 0.2], "kp_AP": [53.5, 0.2]},
        "body_maskout": {"box_AP": [17.4, 0.1], "kp_AP": [2.0, 0.1]},
    },
    "t_unused": {"original": {"AP": [9.9, 0.1]}},
    "text_results": {"minsize": {"before": 20.3, "after": 23.4}, "blur_drop": 9.7, "face_blur_AP": 36.4},
}
TEXT_RESULTS = [
    {"label": "face blur AP", "experiment": "table1", "variant": "face-blur", "metric": "AP", "published": "text_results.face_blur_AP"},
    {"label": "COCO face blur, box AP drop (%)", "experiment": "table3", "variant": "face-blur", "metric": "box_AP", "published": "text_results.blur_drop", "kind": "relative_drop_percent"},
    {"label": "min size 32 <after> & co", "experiment": "minsize", "variant": "body-realistic-minsize32", "metric": "AP_person", "published": "text_results.minsize.after"},
]


def report_config(**overrides) -> dict:
    return small_config(report={"text_results": TEXT_RESULTS}, **overrides)


@pytest.fixture
def published(tmp_path) -> Path:
    path = tmp_path / "published.yaml"
    path.write_text(yaml.safe_dump(PUBLISHED))
    return path


def make_report(tmp_path, published, values=VALUES, synthetic=False, config=None, provenance=None):
    paths = write_runs(tmp_path / ("twin" if synthetic else "real"), values, synthetic=synthetic)
    report = build_report(config or report_config(), load_runs(paths), runnable, published, provenance or {})
    return report, paths


def entries(report: dict):
    """(experiment, row, metric entry) of every compared number."""
    for experiment in report["experiments"]:
        for row in experiment["rows"]:
            for entry in row["metrics"]:
                yield experiment, row, entry


DATASET_MODEL = {"table1": ("cityscapes", "mask_rcnn_r50_fpn"), "table3": ("coco", "keypoint_rcnn_r50_fpn")}


# --------------------------------------------------------------------------- numbers


def test_numbers_against_the_published_ones(tmp_path, published):
    report, paths = make_report(tmp_path, published)
    compared = 0
    for experiment, row, entry in entries(report):
        table = PUBLISHED["t1" if experiment["experiment"] == "table1" else "t3"]
        paper_mean, paper_se = table[row["published_row"]][entry["metric"]]
        assert entry["paper"] == {"mean": paper_mean, "se": paper_se}
        assert entry["paper_se_floored"] is (paper_se == 0.0)
        if row["variant"] != "original":
            assert entry["paper_delta"] == pytest.approx(paper_mean - table["original"][entry["metric"]][0])
        values = seed_values(paths, *DATASET_MODEL[experiment["experiment"]][:1], row["variant"], DATASET_MODEL[experiment["experiment"]][1], entry["metric"])
        if row["status"] != "ran" or any(value is None for value in values):
            assert entry["difference"] is None and entry["difference_in_paper_se"] is None
            continue
        mean, se = independent(values)
        assert entry["ours"]["mean"] == pytest.approx(mean) and entry["ours"]["se"] == pytest.approx(se)
        assert entry["difference"] == pytest.approx(mean - paper_mean)
        assert entry["difference_in_paper_se"] == pytest.approx((mean - paper_mean) / (paper_se or 0.05))
        compared += 1
    assert compared == 3 * 3 + 2 + 3 * 2
    assert any("0.0 means < 0.05" in note for note in report["notes"])
    text = markdown(report)
    # original AP_person of table 1: 35.03 vs a printed 35.0 ± 0.0, so +0.03 / 0.05 = +0.7 SE, marked *
    assert "| Original | AP\\_person | 35.0 ± 0.0 | 35.03 ± 0.15 | +0.03 | +0.7 \\* |" in text


def test_our_delta_is_welch_tested_like_scipy(tmp_path, published):
    report, paths = make_report(tmp_path, published)
    verdicts = set()
    for experiment, row, entry in entries(report):
        if row["status"] != "ran" or row["variant"] == "original" or entry["ours"] is None:
            continue
        dataset, model = DATASET_MODEL[experiment["experiment"]]
        mine = seed_values(paths, dataset, row["variant"], model, entry["metric"])
        base = seed_values(paths, dataset, "original", model, entry["metric"])
        expected = stats.ttest_ind(mine, base, equal_var=False)
        assert entry["welch"]["t"] == pytest.approx(expected.statistic)
        assert entry["welch"]["p"] == pytest.approx(expected.pvalue)
        assert entry["our_delta"] == pytest.approx(np.mean(mine) - np.mean(base))
        significant = expected.pvalue < 0.05
        assert entry["delta_note"].endswith("significant at 5 %") and ("not significant" in entry["delta_note"]) is not significant
        verdicts.add(significant)
    assert verdicts == {True, False}


def test_delta_test_is_undefined_without_spread(tmp_path, published):
    values = {key: value for key, value in VALUES.items() if key[:2] == ("coco", "face-blur")}
    values["coco", "original", "keypoint_rcnn_r50_fpn"] = {"box_AP": [50.0] * 3, "kp_AP": [60.0] * 3}
    values["coco", "face-blur", "keypoint_rcnn_r50_fpn"] = {"box_AP": [50.0] * 3, "kp_AP": [55.0] * 3}
    report, _ = make_report(tmp_path, published, values)
    blur = next(row for e in report["experiments"] if e["experiment"] == "table3" for row in e["rows"] if row["variant"] == "face-blur")
    notes = {entry["metric"]: entry["delta_note"] for entry in blur["metrics"]}
    assert notes == {"box_AP": "undefined: identical values", "kp_AP": "undefined: no spread over seeds in either row"}


def test_rows_without_runs_show_no_numbers(tmp_path, published):
    report, _ = make_report(tmp_path, published)
    rows = {row["variant"]: row for e in report["experiments"] if e["experiment"] == "table1" for row in e["rows"]}
    for variant, status in (("face-realistic", "needs_weights"), ("body-realistic", "needs_weights"), ("body-maskout", "missing")):
        assert rows[variant]["status"] == status
        for entry in rows[variant]["metrics"]:
            assert entry["ours"] is None and entry["difference"] is None and entry["our_delta"] is None and entry["welch"] is None
    text = markdown(report)
    table1 = text.split("## COCO keypoints")[0]
    maskout = [line for line in table1.splitlines() if line.startswith("| Body: Mask-out |")]
    assert len(maskout) == 3 and all("| missing runs (2/3) | n/a | n/a |" in line for line in maskout)
    assert "needs DeepPrivacy2's generators, which run on the real datasets only" in text


def test_unconfigured_published_numbers_are_listed(tmp_path, published):
    report, _ = make_report(tmp_path, published)
    listed = {(n["table"], n["row"], n["metric"]) for n in report["not_configured"]}
    assert listed == {("t1", "body_unconfigured", "AP"), ("t_unused", "original", "AP"), ("text_results", "minsize.before", None)}
    text = markdown(report)
    assert "| t\\_unused | original | AP | 9.9 ± 0.1 |" in text and "| text\\_results | minsize.before |  | 20.3 |" in text


def test_text_results(tmp_path, published):
    report, paths = make_report(tmp_path, published)
    value, drop, needs = report["text_results"]
    mean, se = independent(seed_values(paths, "cityscapes", "face-blur", "mask_rcnn_r50_fpn", "AP"))
    assert value["ours"]["mean"] == pytest.approx(mean) and value["ours"]["se"] == pytest.approx(se)
    assert value["difference"] == pytest.approx(mean - 36.4)
    original = np.mean(seed_values(paths, "coco", "original", "keypoint_rcnn_r50_fpn", "box_AP"))
    blurred = np.mean(seed_values(paths, "coco", "face-blur", "keypoint_rcnn_r50_fpn", "box_AP"))
    assert drop["ours"]["value"] == pytest.approx(100 * (original - blurred) / original)
    assert drop["difference"] == pytest.approx(drop["ours"]["value"] - 9.7)
    assert needs["status"] == "needs_weights" and needs["ours"] is None and needs["paper"] == 23.4


# --------------------------------------------------------------------------- findings


def finding_results(report: dict) -> dict:
    return {(f["claim"], f["experiment"], f["variant"]): f for f in report["findings"]}


def test_findings_pass_on_paper_like_numbers(tmp_path, published):
    report, paths = make_report(tmp_path, published)
    found = finding_results(report)
    assert {key: f["result"] for key, f in found.items()} == {
        ("a", "table1", "body-blur"): "pass",
        ("a", "table1", "body-maskout"): "not run",  # seed 2 missing
        ("a", "table3", "body-maskout"): "pass",
        ("b", "table1", "face-blur"): "pass",
        ("b", "table1", "face-maskout"): "undefined",  # AP_person undefined for one seed
        ("b", "table1", "face-realistic"): "not run",
        ("c", "table3", "face-blur"): "pass",
        ("d", "table1", "body-realistic"): "not run",  # not runnable here
    }
    assert found["d", "table1", "body-realistic"]["paper_result"] == "pass"  # 42 % < 94 % (blur), 98 % (mask-out)
    original = np.mean(seed_values(paths, "cityscapes", "original", "mask_rcnn_r50_fpn", "AP_person"))
    blurred = np.mean(seed_values(paths, "cityscapes", "body-blur", "mask_rcnn_r50_fpn", "AP_person"))
    assert found["a", "table1", "body-blur"]["relative_drop_percent"] == pytest.approx(100 * (original - blurred) / original)
    assert found["a", "table1", "body-blur"]["paper_relative_drop_percent"] == pytest.approx(100 * (35.0 - 2.1) / 35.0)
    assert found["a", "table3", "body-maskout"]["metric"] == "kp_AP"


def test_findings_fail_when_the_claims_do_not_hold(tmp_path, published):
    values = dict(VALUES)
    values["cityscapes", "body-blur", "mask_rcnn_r50_fpn"] = {"AP": [30.0, 30.2, 30.1], "AP50": [50.0, 50.3, 50.1], "AP_person": [30.0, 31.0, 32.0]}
    values["cityscapes", "face-blur", "mask_rcnn_r50_fpn"] = {"AP": [30.0, 30.2, 30.1], "AP50": [50.0, 50.3, 50.1], "AP_person": [20.0, 21.0, 22.0]}
    values["coco", "face-blur", "keypoint_rcnn_r50_fpn"] = {"box_AP": [55.0, 55.2, 55.1], "kp_AP": [64.0, 64.5, 65.0]}
    report, _ = make_report(tmp_path, published, values)
    found = finding_results(report)
    for key in (("a", "table1", "body-blur"), ("b", "table1", "face-blur"), ("c", "table3", "face-blur")):
        assert found[key]["result"] == "fail", key
        assert found[key]["paper_result"] == "pass"
    assert found["b", "table1", "face-blur"]["relative_drop_percent"] == pytest.approx(100 * (35.0333333 - 21.0) / 35.0333333)
    assert "| b | table1 | Face: Blur | fail | AP\\_person 35.03 → 21.00: relative drop 40.1 % (\\|change\\| ≤ 10 %) | pass (0.3 %) |" in markdown(report)


def test_findings_skip_models_trained_without_persons(tmp_path, published):
    """Appendix A.3 trains without the person class: the claims about persons do not apply."""
    config = report_config()
    config["models"]["mask_rcnn_r50_fpn"]["exclude_classes"] = ["person"]
    report, _ = make_report(tmp_path, published, config=config)
    assert {key[1] for key in finding_results(report)} == {"table3"}


# --------------------------------------------------------------------------- rendering


class TagChecker(HTMLParser):
    VOID = {"meta", "br", "hr", "img", "link", "input"}

    def __init__(self):
        super().__init__()
        self.stack, self.errors, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(tag)

    def handle_data(self, data):
        self.text.append(data)


def test_html_is_well_formed_and_escaped(tmp_path, published):
    config = report_config()
    config["experiments"]["table1"]["title"] = 'Cityscapes <script>alert("x")</script> & co'
    report, _ = make_report(tmp_path, published, config=validate_config(config), provenance={"git_commit": "abc<def>"})
    page = html(report)
    checker = TagChecker()
    checker.feed(page)
    checker.close()
    assert checker.errors == [] and checker.stack == []
    assert "<script>" not in page and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; co" in page
    assert "abc&lt;def&gt;" in page and "min size 32 &lt;after&gt; &amp; co" in page
    text = "".join(checker.text)
    assert 'Cityscapes <script>alert("x")</script> & co' in text  # what a browser shows
    assert page.startswith("<!DOCTYPE html>") and "<table>" in page


def test_synthetic_warning(tmp_path, published):
    real, _ = make_report(tmp_path, published)
    assert real["header"]["warning"] is None and "synthetic twins" not in markdown(real)
    twin, _ = make_report(tmp_path, published, synthetic=True)
    warning = "these numbers come from the synthetic twins; they test the pipeline and reproduce qualitative findings only; they are not comparable with the paper's numbers"
    assert warning in twin["header"]["warning"].lower()
    assert "> **Warning: These numbers come from the synthetic twins" in markdown(twin)
    assert '<div class="warning">Warning: These numbers come from the synthetic twins' in html(twin)


def text_leaves(node, prefix=""):
    """Dotted keys of the numbers of a nested mapping, written out independently of report/comparisons.py."""
    keys = []
    for key, child in node.items():
        dotted = f"{prefix}{key}"
        keys += text_leaves(child, dotted + ".") if isinstance(child, dict) else [dotted]
    return keys


def test_workflow_reference_numbers_are_all_accounted_for():
    """With the workflow's config and no runs, every published number is compared (as needs
    weights / missing runs, never a number) or listed as not configured."""
    with open(REPO / "config.yaml") as handle:
        config = validate_config(yaml.safe_load(handle))
    reference = REPO / config["report"]["published_results"]
    report = build_report(config, [], lambda variant: "realistic" not in variant, reference, {})
    published = yaml.safe_load(reference.read_text())
    leaves = {
        (table, row, metric)
        for table, rows in published.items()
        if table != "text_results"
        for row, metrics in rows.items()
        for metric in metrics
    }
    leaves |= {("text_results", key, None) for key in text_leaves(published["text_results"])}
    compared = {(e["published_table"], row["published_row"], m["metric"]) for e, row, m in entries(report)}
    compared |= {("text_results", t["published_key"].removeprefix("text_results."), None) for t in report["text_results"]}
    unconfigured = {(n["table"], n["row"], n["metric"]) for n in report["not_configured"]}
    assert compared | unconfigured == leaves and not compared & unconfigured
    assert all(m["ours"] is None for _, _, m in entries(report))
    assert report["header"]["published_results"]["md5"] == hashlib.md5(reference.read_bytes()).hexdigest()


def test_write_report_script(tmp_path, published):
    config = report_config()
    paths = write_runs(tmp_path, VALUES, synthetic=True)
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"git_commit": "1234abcd", "dirty": True, "config_sha256": "c0ffee", "raw_datasets": {}}))
    output = SimpleNamespace(markdown=str(tmp_path / "report.md"), html=str(tmp_path / "report.html"), data=str(tmp_path / "report.json"))
    snakemake = SimpleNamespace(
        input=SimpleNamespace(metrics=[str(path) for path in paths], published=str(published), manifest=str(manifest)),
        params=SimpleNamespace(config=config),
        output=output,
        log=[str(tmp_path / "report.log")],
    )
    runpy.run_path(str(REPO / "scripts" / "write_report.py"), init_globals={"snakemake": snakemake})
    data = json.loads(Path(output.data).read_text())
    assert data["header"]["provenance"] == {"git_commit": "1234abcd", "dirty": True, "config_sha256": "c0ffee", "manifest": str(manifest)}
    assert data["header"]["published_results"]["md5"] == hashlib.md5(published.read_bytes()).hexdigest()
    assert data["header"]["published_results"]["path"] == config["report"]["published_results"]  # not this machine's path
    text = Path(output.markdown).read_text()
    assert "Git commit: 1234abcd (uncommitted changes)" in text and "Config sha256: c0ffee" in text
    assert Path(output.html).read_text() == html(data)


def test_realistic_bodies_are_compared_with_blur_and_maskout_of_their_table(tmp_path, published):
    """Claim d: a realistic body row passes when its drop is below the smallest drop of the
    table's blur / mask-out body rows; it is not run while one of those rows misses seeds."""
    values = dict(VALUES)
    values["cityscapes", "body-realistic", "mask_rcnn_r50_fpn"] = {"AP": [34.0, 34.2, 34.1], "AP50": [58.0, 58.3, 58.1], "AP_person": [20.0, 21.0, 22.0]}
    everything = lambda variant: True  # noqa: E731

    def claim_d(values):
        paths = write_runs(tmp_path / str(len(list(tmp_path.iterdir()))), values)
        report = build_report(report_config(), load_runs(paths), everything, published, {})
        return finding_results(report)["d", "table1", "body-realistic"], report

    found, _ = claim_d(values)
    assert found["result"] == "not run"  # body-maskout has 2 of 3 seeds
    values["cityscapes", "body-maskout", "mask_rcnn_r50_fpn"] = {"AP": [31.1, 31.3, 31.2], "AP50": [53.2, 53.1, 53.0], "AP_person": [0.7, 0.6, 0.8]}
    found, report = claim_d(values)
    original = np.mean(VALUES["cityscapes", "original", "mask_rcnn_r50_fpn"]["AP_person"])
    blur = 100 * (original - np.mean([2.0, 2.3, 2.1])) / original
    assert found["result"] == "pass" and found["relative_drop_percent"] == pytest.approx(100 * (original - 21.0) / original)
    assert found["compared_drop_percent"] == pytest.approx(blur)  # blur drops less than mask-out
    assert "relative drop 40.1 % (drop \\< the smallest drop of blur / mask-out: 93.9 %) | pass (42.0 %)" in markdown(report)
    values["cityscapes", "body-realistic", "mask_rcnn_r50_fpn"] = {"AP": [30.0, 30.2, 30.1], "AP50": [50.0, 50.3, 50.1], "AP_person": [0.1, 0.2, 0.3]}
    found, _ = claim_d(values)
    assert found["result"] == "fail" and found["paper_result"] == "pass"
