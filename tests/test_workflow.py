"""The Snakemake workflow itself: lint, format, and real runs of the data stage and Fig. 7."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path

import pytest
import yaml

from anonymization_impact import DATASETS, SPLITS
from anonymization_impact.config import load_config
from anonymization_impact.evaluation import validate_metrics_document
from anonymization_impact.io import read_json
from anonymization_impact.realistic.twin_renderer import TWIN_RENDERER_LABEL
from anonymization_impact.trees import REASON_TOO_SMALL

from conftest import REPO, SMALL, SMALL_TWINS, SNAKEMAKE, run_snakemake


# A few training runs through the workflow, with a schedule that takes seconds.
TINY_TRAINING = {
    "training": {
        "checkpoint_every": 2,
        "synthetic": {"iterations": 4, "image_min_size": 64, "image_max_size": 128, "fpn_channels": 16, "head_channels": 16, "rpn_pre_nms_top_n": 50, "rpn_post_nms_top_n": 25, "box_batch_size_per_image": 16},
    }
}
METRIC_TARGETS = [
    "results/metrics/cityscapes/original/mask_rcnn_r50_fpn/seed0.json",
    "results/metrics/bdd100k/body-maskout/mask_rcnn_r50_fpn/seed0.json",
    "results/metrics/coco/face-blur/keypoint_rcnn_r50_fpn/seed0.json",
]
DEMO_TARGETS = ["fig7", "anonymized_trees", *METRIC_TARGETS]


def _overlay(workdir: Path, config: dict) -> list[str]:
    path = workdir / "overlay.yaml"
    path.write_text(yaml.safe_dump(config))
    return ["--configfile", str(REPO / "config.yaml"), str(path)]


def test_snakemake_lint_is_clean():
    result = subprocess.run([sys.executable, "-m", "snakemake", "--lint"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "good condition" in result.stdout + result.stderr


def test_snakefmt_check_is_clean():
    snakefmt = Path(sys.executable).parent / "snakefmt"
    result = subprocess.run([str(snakefmt), "--check", "Snakefile", "rules/"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_demo_data_stage_and_fig7_run_on_the_twins(tmp_path):
    result = run_snakemake(tmp_path, "--cores", "2", *DEMO_TARGETS, *_overlay(tmp_path, {"synthetic": SMALL_TWINS, **TINY_TRAINING}))
    assert result.returncode == 0, result.stderr[-4000:]
    for dataset in DATASETS:
        truth = read_json(tmp_path / "resources" / "twins" / f"{dataset}.truth.json")
        for split in SPLITS:
            persons = read_json(tmp_path / "results" / "annotations" / dataset / split / "persons.json")
            assert len(persons["annotations"]) == truth["splits"][split]["counts"]["persons_eligible"]
            assert (tmp_path / "logs" / "annotations" / dataset / f"{split}.log").stat().st_size > 0
            assert (tmp_path / "benchmarks" / "annotations" / dataset / f"{split}.tsv").exists()
    config = load_config(REPO / "config.yaml")
    for name in ("table1", "table2", "table3"):
        experiment = config["experiments"][name]
        for variant in experiment["variants"]:
            if variant != "original" and config["variants"][variant]["method"] != "realistic":
                tree = tmp_path / "results" / "anonymized" / experiment["dataset"] / variant
                assert read_json(tree / "audit.json")["instances"]["anonymized"] > 0
                assert (tree / "audit.md").read_text().startswith("# Privacy audit")
    for target in METRIC_TARGETS:
        document = read_json(tmp_path / target)
        validate_metrics_document(document)
        assert document["synthetic"] is True and document["training"]["backbone"] == "resnet10"  # the twins map resnet50 to resnet10
        assert document["provenance"]["annotation_md5"]
    report = run_snakemake(tmp_path, "fig7", "anonymized_trees", "--report", "report.html", *_overlay(tmp_path, {"synthetic": SMALL_TWINS, **TINY_TRAINING}))
    assert report.returncode == 0, report.stderr[-3000:]
    html = (tmp_path / "report.html").read_text()
    assert "Privacy audits" in html and "fig7.png" in html
    figures = tmp_path / "results" / "figures"
    assert (figures / "fig7.pdf").read_bytes().startswith(b"%PDF")
    assert (figures / "fig7.png").read_bytes().startswith(b"\x89PNG")
    summary = read_json(figures / "fig7.json")
    assert set(summary["datasets"]) == set(DATASETS)
    for dataset in DATASETS:
        truth = read_json(tmp_path / "resources" / "twins" / f"{dataset}.truth.json")
        assert summary["datasets"][dataset]["boxes"] == truth["splits"]["train"]["counts"]["persons_eligible"]


def test_fig7_target_runs_only_what_it_needs(tmp_path):
    result = run_snakemake(tmp_path, "fig7", "-n", *_overlay(tmp_path, {}))
    assert result.returncode == 0, result.stderr
    jobs = _job_counts(result)
    assert jobs == {"generate_twin": "3", "normalize_annotations": "3", "plot_fig7": "1", "fig7": "1", "total": "8"}


def _job_counts(result) -> dict[str, str]:
    table = (result.stdout + result.stderr).split("Job stats:")[1].split("Reasons:")[0]
    return dict(line.split() for line in table.splitlines() if len(line.split()) == 2 and line.split()[1].isdigit() and ":" not in line)


def test_command_line_overrides_set_nested_values_or_say_how(tmp_path):
    """README, "Overriding the configuration": its --config examples plan what they say."""
    config = ["--configfile", str(REPO / "config.yaml")]
    result = run_snakemake(tmp_path, "table3", "table1", "-n", *config, "--config", "datasets={coco: {enabled: false}}", "seeds=[0]")
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = _job_counts(result)
    assert jobs["train_model"] == "9"  # Table 1's 9 rows with seed 0; Table 3 trains nothing with COCO disabled
    wrong = run_snakemake(tmp_path, "all", "-n", *config, "--config", "training={device: gpu}")
    assert wrong.returncode != 0
    assert "config key 'training.device': 'gpu' is not one of" in wrong.stderr and "--configfile config.yaml overlay.yaml" in wrong.stderr


def test_one_table_target_runs_only_its_own_jobs(tmp_path):
    """Rerunning Table 1 trains its 9 rows x 3 seeds on Cityscapes, nothing else."""
    result = run_snakemake(tmp_path, "table1", "-n", *_overlay(tmp_path, {}))
    assert result.returncode == 0, result.stderr
    jobs = _job_counts(result)
    assert jobs["train_model"] == jobs["predict"] == jobs["evaluate"] == "27"
    assert jobs["make_table"] == jobs["table1"] == jobs["generate_twin"] == "1"
    assert not {"plot_fig8", "write_report", "write_manifest", "plot_qualitative"} & set(jobs)
    datasets = set(re.findall(r"dataset=(\w+)", result.stdout + result.stderr))
    assert datasets == {"cityscapes"}


PAPER_OUTPUTS = {
    "synthetic": SMALL_TWINS,
    "seeds": [0, 1],
    "datasets": {"coco": {"enabled": False}, "bdd100k": {"enabled": False}},
    "fig8": {"panels": {"cityscapes": {"models": ["mask_rcnn_r50_fpn", "mask_rcnn_r101_fpn"]}}},
    "variants": {"body-realistic-hmlo": {"region": "body", "method": "realistic", "postprocess": "hmlo", "hmlo_steps": 5}},
    **TINY_TRAINING,
}


def test_tables_figures_and_report_on_the_twins(tmp_path):
    """Table 1, Table 4, the appendix, Fig. 8, the qualitative figure and the reproduction
    report from real (tiny) runs; table cells recomputed from the metric files."""
    overlay = _overlay(tmp_path, PAPER_OUTPUTS)
    result = run_snakemake(tmp_path, "--cores", "2", "table1", "table4", "appendix", "fig8", "figures", "report", *overlay, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    config = load_config(REPO / "config.yaml")
    table1 = read_json(tmp_path / "results" / "tables" / "table1.json")
    rows = {row["variant"]: row for row in table1["tables"][0]["rows"]}
    for variant in config["experiments"]["table1"]["variants"]:
        realistic = config["variants"].get(variant, {}).get("method") == "realistic"
        assert rows[variant]["generator"] == (TWIN_RENDERER_LABEL if realistic else None)
        values = [
            read_json(tmp_path / "results" / "metrics" / "cityscapes" / variant / "mask_rcnn_r50_fpn" / f"seed{seed}.json")["metrics"]["AP"]
            for seed in (0, 1)
        ]
        cell = rows[variant]["metrics"]["AP"]
        assert cell["mean"] == pytest.approx(sum(values) / 2)
        assert cell["se"] == pytest.approx(abs(values[0] - values[1]) / 2)
    tex = (tmp_path / "results" / "tables" / "table1.tex").read_text()
    assert r"\toprule" in tex and "Synthetic twins" in tex and "needs weights" not in tex
    assert r"Realistic$^\dagger$" in tex and "Made with the twin person renderer" in tex
    appendix = read_json(tmp_path / "results" / "tables" / "appendix.json")
    assert [table["name"] for table in appendix["tables"]] == ["appendix_coco_instance_segmentation", "minsize_bdd100k", "minsize_cityscapes", "appendix_cityscapes_no_person"]
    fig8 = read_json(tmp_path / "results" / "figures" / "fig8.json")
    cityscapes = fig8["panels"]["cityscapes"]
    assert cityscapes["variant"] == "body-realistic" and not cityscapes["stand_in"]
    assert "twin person renderer" in cityscapes["variant_label"]
    assert len(cityscapes["points"]) == 2
    for point in cityscapes["points"]:  # tiny runs may score 0: then the drop is undefined
        assert point["original"]["n"] == point["variant"]["n"] == 2
        assert point["status"] == ("ran" if point["original"]["mean"] > 0 else "undefined")
    for name in ("fig8", "qualitative_cityscapes"):
        assert (tmp_path / "results" / "figures" / f"{name}.pdf").read_bytes().startswith(b"%PDF")
        assert (tmp_path / "results" / "figures" / f"{name}.png").read_bytes().startswith(b"\x89PNG")
    markdown = (tmp_path / "results" / "report" / "reproduction.md").read_text()
    assert "synthetic twins" in markdown and "36.7" in markdown  # the paper's Table 1 AP next to ours
    assert "Realistic + HM-LO (twin person renderer)" in markdown
    assert (tmp_path / "results" / "report" / "reproduction.html").read_text().lstrip().lower().startswith("<!doctype html")
    report = run_snakemake(tmp_path, "table1", "fig8", "report", "--report", "report.html", *overlay)
    assert report.returncode == 0, report.stderr[-3000:]
    html = (tmp_path / "report.html").read_text()
    assert "table1.tex" in html and "fig8.png" in html and "reproduction.md" in html

    # The reviewer's path: from the archive alone, rebuild Table 1 without training anything.
    archived = run_snakemake(tmp_path, "--cores", "1", "write_archive", *overlay)
    assert archived.returncode == 0, archived.stderr[-3000:]
    with tarfile.open(tmp_path / "results" / "archive" / "anonymization-impact.tar.gz") as archive:
        names = archive.getnames()
        assert not any(name.endswith((".pth", ".png")) and "/results/models/" in name for name in names)
        archive.extractall(tmp_path / "extracted", filter="data")
    root = tmp_path / "extracted" / "anonymization-impact"
    assert (root / "Snakefile").exists() and (root / "results" / "provenance" / "manifest.json").exists()
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert read_json(root / "archive.json")["version"] == read_json(root / "results" / "provenance" / "manifest.json")["version"] == version
    traced = read_json(root / "results" / "provenance" / "manifest.json")["results_md5"]
    for path in ("results/anonymized/cityscapes/body-realistic-hmlo/audit.json", "results/regions/cityscapes/keypoints-twin.json", "results/regions/cityscapes/faces.json"):
        assert path in traced, path  # the trees' audits and the regions they were made from
    expected = (root / "results" / "tables" / "table1.tex").read_text()
    (root / "results" / "tables" / "table1.tex").unlink()
    rerun = subprocess.run(
        [*SNAKEMAKE, "--directory", str(root), "--snakefile", str(root / "Snakefile"), "table1", "--cores", "1",
         "--configfile", str(root / "archived-config.yaml"), "--allowed-rules", "make_table", "table1"],
        capture_output=True, text=True, timeout=300,
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert _job_counts(rerun) == {"make_table": "1", "table1": "1", "total": "2"}
    assert (root / "results" / "tables" / "table1.tex").read_text() == expected

    # Editing a title reruns only what shows it (each result rule gets its slice of the config),
    # plus the manifest that records the whole config and what contains it (report, archive).
    def rerun_after(edit: dict) -> set[str]:
        (tmp_path / "edit.yaml").write_text(yaml.safe_dump(edit))
        planned = run_snakemake(tmp_path, "-n", "table1", "table4", "appendix", "fig8", "figures", "report", "write_archive", *overlay, str(tmp_path / "edit.yaml"))
        assert planned.returncode == 0, planned.stderr[-3000:]
        return set(_job_counts(planned)) - {"table1", "table4", "appendix", "fig8", "figures", "report", "total"}  # targets, always listed

    assert rerun_after({"fig8": {"panels": {"cityscapes": {"title": "Another Fig. 8 title"}}}}) == {"plot_fig8", "write_manifest", "write_report", "write_archive"}
    assert rerun_after({"experiments": {"table4": {"title": "Another Table 4 title"}}}) == {"make_table", "write_manifest", "write_report", "write_archive"}


def _snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """Content hash and mode of every path under root (directories included)."""
    state = {}
    for path in sorted(root.rglob("*")):
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
        state[str(path.relative_to(root))] = (digest, path.stat().st_mode, path.stat().st_mtime_ns)
    return state


def test_real_dataset_roots_are_read_only_inputs(twins, tmp_path):
    """Run the data stage on datasets configured as real (synthetic: false) with their
    directories made read-only; nothing under them may change."""
    raw = tmp_path / "raw"
    roots = {}
    for dataset in DATASETS:
        roots[dataset] = raw / dataset
        shutil.copytree(twins[dataset]["root"], roots[dataset])
    for path in [raw, *raw.rglob("*")]:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    before = _snapshot(raw)
    workdir = tmp_path / "work"
    workdir.mkdir()
    config = {"datasets": {d: {"synthetic": False, "root": str(roots[d])} for d in DATASETS}}
    try:
        result = run_snakemake(workdir, "--cores", "2", "--keep-going", *DEMO_TARGETS, *_overlay(workdir, config))
        assert result.returncode != 0, "DSFD and ImageNet weights cannot be had here"
        assert "could not download weights 'dsfd_widerface_res152'" in result.stderr, result.stderr[-3000:]
        assert "could not download weights 'resnet50_imagenet'" in result.stderr
        # detections made elsewhere (here: the twins' simulated ones) replace the DSFD rule
        config["face_detection"] = {"precomputed": {dataset: str(twins[dataset]["faces"]) for dataset in DATASETS}}
        tiny = {**TINY_TRAINING["training"]["synthetic"], "backbones": {"resnet50": "resnet10"}, "backbone_width": 16, "trainable_backbone_layers": 5, "init": "scratch"}
        # real datasets train with the paper's frameworks by default; here with torchvision
        backends = {dataset: "torchvision" for dataset in DATASETS}
        config["training"] = {"checkpoint_every": 2, "backends": backends, **{dataset: tiny for dataset in DATASETS}}
        # the blur / mask-out trees (realistic ones need DeepPrivacy2's weights)
        trees = [f"results/anonymized/{d}/{v}/audit.json" for d in DATASETS for v in ("face-blur", "body-maskout")]
        result = run_snakemake(workdir, "--cores", "2", "fig7", *trees, *METRIC_TARGETS, *_overlay(workdir, config))
        assert result.returncode == 0, result.stderr[-4000:]
        assert _snapshot(raw) == before
        assert not (workdir / "resources").exists(), "no twin may be generated for real datasets"
        for dataset in DATASETS:
            persons = read_json(workdir / "results" / "annotations" / dataset / "train" / "persons.json")
            assert len(persons["annotations"]) == twins[dataset]["truth"]["splits"]["train"]["counts"]["persons_eligible"]
    finally:
        for path in [raw, *raw.rglob("*")]:
            path.chmod(path.stat().st_mode | stat.S_IWUSR)


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"datasets": {"coco": {"synthetic": False, "root": "/nonexistent/coco"}}}, ["datasets.coco.root", "/nonexistent/coco", "Getting the real datasets"]),
        ({"datasets": {"coco": {"enabled": True, "colour": "red"}}}, ["unknown config key 'datasets.coco.colour'"]),
    ],
)
def test_bad_config_stops_before_any_job(tmp_path, config, expected):
    result = run_snakemake(tmp_path, "--cores", "1", "all", *_overlay(tmp_path, config))
    assert result.returncode != 0
    for text in expected:
        assert text in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "results").exists() and not (tmp_path / "resources").exists()


def test_a_corrupt_image_fails_the_data_job_with_its_name(twins, tmp_path):
    root = tmp_path / "raw" / "bdd100k"
    shutil.copytree(twins["bdd100k"]["root"], root)
    image = sorted((root / "images" / "10k" / "train").glob("*.jpg"))[0]
    image.write_bytes(b"not a jpeg")
    workdir = tmp_path / "work"
    workdir.mkdir()
    config = {"datasets": {"bdd100k": {"synthetic": False, "root": str(root)}, "coco": {"enabled": False}, "cityscapes": {"enabled": False}}}
    result = run_snakemake(workdir, "--cores", "1", "results/annotations/bdd100k/train/persons.json", *_overlay(workdir, config))
    assert result.returncode != 0
    assert f"DatasetError: image {image} is corrupt" in result.stderr
    assert not (workdir / "results" / "annotations" / "bdd100k" / "train" / "persons.json").exists()
    assert os.listdir(root / "images" / "10k" / "train")  # nothing deleted next to the raw data


def _tree_bytes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file() and not p.name.startswith(".")}


def test_trees_through_the_workflow_do_not_depend_on_the_shard_count(tmp_path):
    """Cityscapes only, with a min-size ablation of mask-out added through the config."""
    trees = {}
    for shards in (1, 3):
        workdir = tmp_path / f"shards{shards}"
        workdir.mkdir()
        config = {
            "synthetic": SMALL_TWINS,
            "anonymization": {"shards": shards},
            "datasets": {"coco": {"enabled": False}, "bdd100k": {"enabled": False}},
            "variants": {"body-maskout-minsize32": {"region": "body", "method": "maskout", "min_size": 32}},
            "experiments": {"minsize_maskout": {"dataset": "cityscapes", "model": "mask_rcnn_r50_fpn", "variants": ["original", "body-maskout", "body-maskout-minsize32"]}},
        }
        result = run_snakemake(workdir, "--cores", "2", "anonymized_trees", *_overlay(workdir, config))
        assert result.returncode == 0, result.stderr[-4000:]
        anonymized = workdir / "results" / "anonymized" / "cityscapes"
        trees[shards] = {variant: _tree_bytes(anonymized / variant / "root") for variant in ("body-maskout", "body-maskout-minsize32", "body-blur")}
        assert len(list((anonymized / "body-maskout" / "shards").glob("*.audit.json"))) == shards
        small = read_json(anonymized / "body-maskout-minsize32" / "audit.json")["instances"]["not_anonymized_by_reason"]
        default = read_json(anonymized / "body-maskout" / "audit.json")["instances"]["not_anonymized_by_reason"]
        assert small[REASON_TOO_SMALL] > default.get(REASON_TOO_SMALL, 0)
    assert trees[1] == trees[3]
    assert all(len(files) == SMALL["n_train"] for files in trees[1].values())


def test_all_plans_every_runnable_row_of_every_experiment(tmp_path):
    result = run_snakemake(tmp_path, "all", "-n", *_overlay(tmp_path, {}))
    assert result.returncode == 0, result.stderr
    jobs = _job_counts(result)
    config = load_config(REPO / "config.yaml")
    assert config["realistic"]["synthetic_generator"] == "twin_renderer"  # every row runs on the twins
    runs = {(e["dataset"], v, e["model"]) for e in config["experiments"].values() for v in e["variants"]}
    for panel in config["fig8"]["panels"].values():
        runs |= {(panel["dataset"], v, m) for m in panel["models"] for v in ("original", panel["synthetic_variant"] or panel["variant"])}
    assert int(jobs["train_model"]) == int(jobs["predict"]) == int(jobs["evaluate"]) == len(runs) * len(config["seeds"])
    assert jobs["write_manifest"] == jobs["write_report"] == jobs["plot_fig8"] == jobs["write_archive"] == "1"
    assert jobs["make_table"] == str(len({e["target"] or name for name, e in config["experiments"].items()}))


def test_planning_the_study_on_real_roots_reads_no_image(twins, tmp_path):
    """A dry run of `all` on real roots whose images are all missing still plans every job:
    building the DAG looks at paths only (perf/benchmark_dag.py measures it at full size)."""
    config = {"datasets": {}}
    for dataset in DATASETS:
        root = tmp_path / "raw" / dataset
        shutil.copytree(twins[dataset]["root"], root)
        for image in [*root.rglob("*.jpg"), *root.rglob("*_leftImg8bit.png")]:
            image.unlink()
        config["datasets"][dataset] = {"synthetic": False, "root": str(root)}
    workdir = tmp_path / "work"
    workdir.mkdir()
    result = run_snakemake(workdir, "all", "-n", *_overlay(workdir, config))
    assert result.returncode == 0, result.stderr[-3000:]
    # every row of every table, the appendix and Fig. 8, realistic ones included, x 3 seeds
    study = load_config(REPO / "config.yaml")
    runs = {(e["dataset"], v, e["model"]) for e in study["experiments"].values() for v in e["variants"]}
    runs |= {(p["dataset"], v, m) for p in study["fig8"]["panels"].values() for m in p["models"] for v in ("original", p["variant"])}
    jobs = _job_counts(result)
    assert int(jobs["train_model"]) == len(runs) * len(study["seeds"])
    realistic = {(d, v) for d, v, _ in runs if v != "original" and study["variants"][v]["method"] == "realistic"}
    assert int(jobs["anonymize_shard_realistic"]) == len(realistic) * study["anonymization"]["shards"]
    assert jobs["detect_keypoints"] == "2" and jobs["detect_faces"] == "3" and jobs["download_deepprivacy2"] == "1"


def test_weights_and_dp2s_checkout_placed_by_hand_are_used_whatever_their_date(twins, tmp_path):
    """Files dated before the download rules' scripts (wget keeps the server's date, tar and cp -p
    the original's) once looked to Snakemake like outputs of changed code: it deleted them and
    fetched them again, or failed where nothing can be fetched. The download rules are commands now."""
    from anonymization_impact.realistic import DP2_COMMIT

    workdir = tmp_path / "work"
    config = load_config(REPO / "config.yaml")
    names = ("dsfd_widerface_res152", "vitpose_h_coco_aic_mpii", *config["realistic"]["weights"].values())
    checkout, weights = workdir / "resources" / "deepprivacy2" / DP2_COMMIT, [workdir / config["weights"][name]["path"] for name in names]
    (checkout / "configs").mkdir(parents=True)
    for path in weights:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"placed by hand")
    for path in [*weights, checkout]:
        os.utime(path, (0, 946684800))  # 2000-01-01
    overlay = {"datasets": {"cityscapes": {"synthetic": False, "root": str(twins["cityscapes"]["root"])}, "coco": {"enabled": False}, "bdd100k": {"enabled": False}}}
    # the placed files' checksums (the DAG build checks every file in place against its entry)
    overlay["weights"] = {name: {algorithm: hashlib.new(algorithm, b"placed by hand").hexdigest() for algorithm in ("md5", "sha256") if config["weights"][name].get(algorithm)}
                          for name in names}
    targets = [f"results/anonymized/cityscapes/{variant}/audit.json" for variant in ("face-realistic-hrfaces", "body-realistic")]
    result = run_snakemake(workdir, "-n", *targets, *_overlay(workdir, overlay))
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = _job_counts(result)
    assert jobs["detect_faces"] == jobs["detect_keypoints"] == "1" and "download_weights" not in jobs and "download_deepprivacy2" not in jobs, jobs

    source = tmp_path / "served.bin"  # the command still fetches and checks what is missing
    source.write_bytes(b"weights")
    overlay["weights"]["served"] = {"path": "resources/weights/served.bin", "url": source.as_uri(), "sha256": hashlib.sha256(b"weights").hexdigest()}
    result = run_snakemake(workdir, "--cores", "1", "resources/weights/served.bin", *_overlay(workdir, overlay))
    assert result.returncode == 0 and (workdir / "resources/weights/served.bin").read_bytes() == b"weights", result.stderr[-3000:]


def test_realistic_trees_on_the_twins_with_the_stand_in_generator(tmp_path):
    """The realistic rules end to end on the Cityscapes twin: simulated keypoints, the stand-in
    generator with DeepPrivacy2's interface, HM-LO, the leak check and the audits."""
    from anonymization_impact.realistic.standin import STANDIN_LABEL

    config = {
        "synthetic": SMALL_TWINS,
        "anonymization": {"shards": 2},
        "realistic": {"synthetic_generator": "standin", "device": "cpu"},
        "datasets": {"coco": {"enabled": False}, "bdd100k": {"enabled": False}},
        "variants": {"body-realistic-hmlo": {"region": "body", "method": "realistic", "postprocess": "hmlo", "hmlo_steps": 4}},
    }
    variants = ("face-realistic", "body-realistic", "body-realistic-hmlo")
    targets = [f"results/anonymized/cityscapes/{variant}/audit.json" for variant in variants]
    result = run_snakemake(tmp_path, "--cores", "2", *targets, *_overlay(tmp_path, config))
    assert result.returncode == 0, result.stderr[-4000:]
    assert "anonymize_shard_realistic" in result.stderr and "simulate_keypoints" in result.stderr
    audits = {variant: read_json(tmp_path / target) for variant, target in zip(variants, targets)}
    for variant, audit in audits.items():
        assert audit["generator"]["generator"] == [STANDIN_LABEL], variant
        assert audit["instances"]["anonymized"] == audit["generator"]["syntheses"] > 0
    assert audits["body-realistic"]["leak_check"]["passed"] and audits["face-realistic"]["leak_check"]["passed"]
    assert not audits["body-realistic-hmlo"]["leak_check"]["applies"]
    assert audits["body-realistic-hmlo"]["generator"]["hmlo"]["max_steps"] <= 4
    assert "generator" in (tmp_path / "results/anonymized/cityscapes/body-realistic-hmlo/audit.md").read_text().lower()
    keypoints = read_json(tmp_path / "results/regions/cityscapes/keypoints-twin.json")
    assert keypoints["format"] == "person-keypoints/v1" and keypoints["images"]

    # The HM-LO tree again, as a chain of attempts: a SLURM job whose end has passed (stop
    # margin 0) makes one image per attempt and exits 75; Snakemake's retries continue it
    # from the work directory beside the shard; the bytes are those of the run above.
    tree = tmp_path / "results/anonymized/cityscapes/body-realistic-hmlo"
    made = {path.relative_to(tree): path.read_bytes() for path in sorted(tree.rglob("*")) if path.is_file()}
    shutil.rmtree(tree)
    # runtime_margin 150: retries for 150x the expected seconds of a shard, about 9 attempts
    limited = {**config, "cluster": {"max_runtime_minutes": 1, "stop_margin_minutes": 0, "runtime_margin": 150}, "training": {"checkpoint_every": 1}}
    ended = {"SLURM_JOB_ID": "1", "SLURM_JOB_END_TIME": "1000000000"}  # 2001: every deadline has passed
    result = run_snakemake(tmp_path, "--cores", "2", targets[2], *_overlay(tmp_path, limited), env=ended)
    assert result.returncode == 0, result.stderr[-4000:]
    again = {path.relative_to(tree): path.read_bytes() for path in sorted(tree.rglob("*")) if path.is_file()}
    shard_audits = [read_json(tree / f"shards/{shard}.audit.json") for shard in range(2)]
    assert again.keys() == made.keys()
    assert [str(name) for name in made if again[name] != made[name]] == ["shards/0.audit.json", "shards/1.audit.json"]
    for shard, audit in enumerate(shard_audits):  # they add how they were made, and nothing else changed
        images = sum(1 for record in audit["images"] if record["anonymized"])
        assert audit.pop("images_from_earlier_attempts") == images - 1 and audit == json.loads(made[Path(f"shards/{shard}.audit.json")])
    images = sum(1 for audit in shard_audits for record in audit["images"] if record["anonymized"])
    assert result.stderr.count("TimeLimitReached: stopped after") == images - 2 > 0  # the last image of each shard finishes it
    assert not list(tree.glob("shards/*.partial"))
