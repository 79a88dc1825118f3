"""What the configured study costs: the expected seconds of every job kind, the SLURM runtime each
GPU job requests, and the jobs, GPU-hours and wall time a target implies.

Every reference number is in ``REFERENCES``, with its source: the model zoos' training and
inference times (V100s), the GPU speed factors (assumptions), the twins' times measured on this
project's 2-core CPU, and the assumptions where nothing is published (DeepPrivacy2, ViTPose-H per
crop). A real dataset's jobs are costed on ``cluster.gpu_model``; the twins' on this CPU. Where
``benchmarks/`` of earlier runs hold a job kind's measured times, their median replaces the
reference estimate, if the runs that wrote them are the ones planned now (same schedule,
backbone and backend for a run; the same image count and shard count for a tree); the estimate
then says so. ``rules/`` ask ``slurm_minutes`` for the runtime of their GPU jobs, and
``tools/cost_plan.py`` prints the plan of any target.
"""

from __future__ import annotations

import csv
import heapq
import math
import statistics
from pathlib import Path
from typing import NamedTuple

import yaml

from . import plan
from .errors import WorkflowInputError
from .io import read_json
from .variants import Variant

REPO = Path(__file__).resolve().parents[2]
ZOO = "detectron2 MODEL_ZOO.md (8 V100s, PyTorch 1.3)"
MEASURED_HERE = "measured on this project's 2-core CPU, one thread per job, two jobs at once"


class Reference(NamedTuple):
    value: float
    unit: str
    source: str


# The one place of every number the model assumes. "V100 s": seconds on one V100 (the zoos' GPU).
REFERENCES = {
    # GPU speed relative to a V100
    "gpu.v100": Reference(1.0, "x V100", "the model zoos' GPU"),
    "gpu.a100": Reference(2.0, "x V100", "assumption: an A100 trains and runs these R-CNNs twice as fast as a V100 (TF32); not measured"),
    "gpu.h100": Reference(3.0, "x V100", "assumption: 1.5x an A100; not measured"),
    # training: the zoo's seconds per iteration on 8 GPUs, spread over the images of its batch
    "train.coco.keypoint_rcnn": Reference(0.316 * 8 / 16, "V100 s / training image", f"{ZOO}: keypoint_rcnn_R_50_FPN_3x, 0.316 s/iter at batch 16"),
    "train.coco.mask_rcnn": Reference(0.261 * 8 / 16, "V100 s / training image", f"{ZOO}: mask_rcnn_R_50_FPN_3x, 0.261 s/iter at batch 16"),
    "train.cityscapes.mask_rcnn": Reference(0.240 * 8 / 8, "V100 s / training image", f"{ZOO}: Cityscapes mask_rcnn_R_50_FPN, 0.240 s/iter at batch 8"),
    "train.bdd100k.mask_rcnn": Reference(0.265 * 8 / 16, "V100 s / training image",
                                         "MMDetection 2.x docs/model_zoo.md, 'Comparison with Detectron2': Mask R-CNN R-50-FPN 0.265 s/iter on 8 V100s at "
                                         "batch 16 (BDD100K's zoo, which trains with MMDetection's settings, lists no times; its images are taken as "
                                         "COCO-sized)"),
    "train.job_overhead": Reference(300, "s / job", "assumption: starting the framework, reading the annotations, checkpoints"),
    # ResNet-101 from the zoo; ResNet-152 (in no zoo) by backbone FLOPs, R-CNN heads unchanged
    "depth.resnet101.mask_rcnn": Reference(0.340 / 0.261, "x ResNet-50", f"{ZOO}: mask_rcnn_R_101_FPN_3x 0.340 s/iter against R50's 0.261"),
    "depth.resnet101.keypoint_rcnn": Reference(0.390 / 0.316, "x ResNet-50", f"{ZOO}: keypoint_rcnn_R_101_FPN_3x 0.390 s/iter against R50's 0.316"),
    "flops.resnet50": Reference(4.09, "GFLOPs", "torchvision's model docs (ImageNet, 224 px)"),
    "flops.resnet101": Reference(7.80, "GFLOPs", "torchvision's model docs"),
    "flops.resnet152": Reference(11.51, "GFLOPs", "torchvision's model docs; ResNet-152's run time extrapolated from ResNet-101's by backbone FLOPs"),
    # prediction on the validation split, one image at a time
    "predict.coco.keypoint_rcnn": Reference(0.066, "V100 s / image", f"{ZOO}: keypoint_rcnn_R_50_FPN_3x inference time"),
    "predict.coco.mask_rcnn": Reference(0.043, "V100 s / image", f"{ZOO}: mask_rcnn_R_50_FPN_3x inference time"),
    "predict.cityscapes.mask_rcnn": Reference(0.078, "V100 s / image", f"{ZOO}: Cityscapes mask_rcnn_R_50_FPN inference time"),
    "predict.bdd100k.mask_rcnn": Reference(1 / 16.1, "V100 s / image", "MMDetection 2.x configs/mask_rcnn/README.md: R-50-FPN 16.1 images/s on a V100"),
    "predict.job_overhead": Reference(120, "s / job", "assumption: starting the framework, loading the weights, writing the results"),
    "evaluate.real": Reference(600, "CPU s / job", "assumption: pycocotools / cityscapesscripts on a full validation split"),
    "val_images.coco": Reference(5000, "images", "COCO val2017"),
    "val_images.cityscapes": Reference(500, "images", "Cityscapes fine val"),
    "val_images.bdd100k": Reference(1000, "images", "BDD100K instance segmentation val (SysCV/bdd100k-models ins_seg README: 7k / 1k / 2k)"),
    # image decoding and encoding inside a tree or detector job (CPU)
    "image_io.coco": Reference(0.010, "CPU s / image", "assumption: 3x the 3.4 ms floor measured on 640x480 synthetic JPEGs (docs/anonymization.md)"),
    "image_io.cityscapes": Reference(0.45, "CPU s / image", "docs/anonymization.md: 2048x1024 PNG decoded and encoded at 2.21 images/s"),
    "image_io.bdd100k": Reference(0.030, "CPU s / image", "assumption: 1280x720 JPEG, 3x a COCO image"),
    "blur.per_person": Reference(0.004, "CPU s / person", "docs/anonymization.md: 1.5 ms (mask-out) to 4 ms (crop-space blur) per person"),
    # DeepPrivacy2 and the detectors on the real datasets
    "dp2.face": Reference(0.03, "V100 s / face", "assumption (no published timing): one FDF128 generator pass with crop and paste"),
    "dp2.face_hr": Reference(0.06, "V100 s / face", "assumption (no published timing): one FDF256 generator pass with crop and paste"),
    "dp2.body": Reference(0.08, "V100 s / person", "assumption (no published timing): one TriA-GAN L_im288 pass with crop and paste"),
    "dp2.hmlo_step": Reference(3, "generator passes / Adam step", "assumption: forward and backward through the generator; all hmlo_steps run "
                                                                   "(on the twins none reached the loss threshold)"),
    "dp2.job_overhead": Reference(120, "s / job", "assumption: starting DeepPrivacy2, loading the generators"),
    "dsfd.image": Reference(0.100 / (1024 * 687), "V100 s / pixel", "DSFD-Pytorch-Inference README: DSFD 100 ms per 1024x687 image on a V100, fp32"),
    "vitpose.person": Reference(0.05, "V100 s / person", "assumption: one ViTPose-H pass on a 256x192 crop (~240 GFLOPs) and mmpose's pipeline"),
    "detector.job_overhead": Reference(120, "s / job", "assumption: starting the detector, loading its weights"),
    "pixels.coco": Reference(640 * 480, "pixels / image", "COCO's usual image size"),
    "pixels.cityscapes": Reference(2048 * 1024, "pixels / image", "Cityscapes"),
    "pixels.bdd100k": Reference(1280 * 720, "pixels / image", "BDD100K"),
    # the twins' schedule on this CPU (torchvision, narrow ResNets at 256 px, batch 2)
    "twin.train.mask_rcnn.resnet10": Reference(0.11, "CPU s / iteration", f"docs/training.md, perf/benchmark_training.py; {MEASURED_HERE}"),
    "twin.train.mask_rcnn.resnet18": Reference(0.13, "CPU s / iteration", "between ResNet-10's and ResNet-34's (not measured)"),
    "twin.train.mask_rcnn.resnet34": Reference(0.15, "CPU s / iteration", "docs/training.md, perf/benchmark_training.py"),
    "twin.train.keypoint_rcnn": Reference(0.09 / 0.11, "x Mask R-CNN", "docs/training.md: Keypoint R-CNN ResNet-10 0.09 s / iteration"),
    "twin.train.job_overhead": Reference(5, "CPU s / job", "measured here: a pretraining job of 4 iterations took 4.6 s of CPU (starting Python and PyTorch, reading the twin)"),
    "twin.two_jobs": Reference(1.2, "x one job alone", "calibrated on the demo, two jobs at once on the 2 cores: its 132 runs took 6,121 s, 1.2x what the single-job speeds give"),
    "twin.pretrain": Reference(1.1, "x a run's iteration", "calibrated on the demo's 427 s for the twins and the pretraining (pretraining trains every stage)"),
    "twin.predict.job_overhead": Reference(4, "CPU s / job", "calibrated on the demo: 685 s for 132 predictions of 32 images"),
    "twin.predict.image": Reference(0.03, "CPU s / image", "calibrated on the demo"),
    "twin.evaluate": Reference(0.6, "CPU s / job", "the demo: 81 s for 132 evaluations"),
    "twin.renderer.person": Reference(0.055, "CPU s / person", "perf/benchmark_realistic.py: the twin person renderer, one thread"),
    "twin.renderer.hmlo_step": Reference(0.018, "CPU s / person / step", "perf/benchmark_realistic.py: HM-LO 1.8 s for 100 steps"),
    "twin.shard.job_overhead": Reference(0.5, "CPU s / job", "the demo: 23 s for 48 blur / mask-out shards"),
    "twin.renderer.job_overhead": Reference(1.5, "CPU s / job", "calibrated on the demo: 197 s for 44 realistic shards without HM-LO"),
    "twin.persons.coco": Reference(210 / 96, "persons / training image", "the COCO twin at seed 0 (truth.json), when persons.json is not there yet"),
    "twin.persons.cityscapes": Reference(200 / 96, "persons / training image", "the Cityscapes twin at seed 0"),
    "twin.persons.bdd100k": Reference(144 / 96, "persons / training image", "the BDD100K twin at seed 0"),
    "twin.faces": Reference(355 / 554, "faces / person", "the twins at seed 0: 355 visible faces of 554 persons"),
}
# each stage's jobs wait for the stage before (the DAG's order, coarsely)
STAGES = ("regions", "trees", "training", "prediction", "evaluation")
STAGE_OF = {"detect_faces": 0, "detect_keypoints": 0, "pretrain_backbone": 0, "anonymize_shard": 1, "anonymize_shard_realistic": 1,
            "train_model": 2, "predict": 3, "evaluate": 4}
GPU_RULES = ("train_model", "predict", "anonymize_shard_realistic", "detect_faces", "detect_keypoints")
# jobs longer than cluster.max_runtime_minutes continue over a chain of jobs (their retries: *_retries below)
CHAINED_RULES = ("train_model", "anonymize_shard_realistic")


def reference(name: str) -> float:
    return REFERENCES[name].value


class DatasetCounts(NamedTuple):
    train_images: int
    val_images: int
    persons: int  # anonymization targets (persons.json)
    faces: int  # detected faces matched to persons
    large_faces: int  # of them at least 128x128 (the HR face generator's)
    basis: str


class Estimate(NamedTuple):
    seconds: float
    basis: str  # "reference" or where the measured median comes from


class Job(NamedTuple):
    rule: str
    kind: str  # what shares one estimate: "<dataset>/<model>", "<dataset>/<variant>", "<dataset>"
    stage: int
    device: str  # the GPU model, or "cpu"
    seconds: float
    basis: str


# --------------------------------------------------------------------------------- inputs of the model


def published_counts(config: dict) -> dict:
    """``text_results.dataset_counts`` of the published results (train images, persons, faces)."""
    path = Path(config["report"]["published_results"])
    with open(path if path.is_absolute() else REPO / path) as handle:
        return yaml.safe_load(handle)["text_results"]["dataset_counts"]


def dataset_counts(config: dict, dataset: str, workdir: Path | None = None) -> DatasetCounts:
    """A real dataset's published counts; a twin's from its persons.json under ``workdir`` when
    the data stage ran there, else from the twins' persons per image."""
    if not config["datasets"][dataset]["synthetic"]:
        published = published_counts(config)[f"{dataset}_train"]
        return DatasetCounts(published["images"], int(reference(f"val_images.{dataset}")), published["person_instances"], published["faces_detected"],
                             published.get("faces_larger_than_128sq", 0), "published counts")
    n_train, n_val = config["synthetic"]["n_train"], config["synthetic"]["n_val"]
    persons_file = workdir and workdir / "results" / "annotations" / dataset / "train" / "persons.json"
    if persons_file and persons_file.is_file():
        document = read_json(persons_file)
        train, persons, basis = len(document["images"]), len(document["annotations"]), f"{persons_file.relative_to(workdir)}"
    else:
        train, persons, basis = n_train, round(n_train * reference(f"twin.persons.{dataset}")), "twin persons per image"
    return DatasetCounts(train, n_val, persons, round(persons * reference("twin.faces")), 0, basis)


class Context(NamedTuple):
    """What the model reads besides the config: each dataset's counts and measured benchmarks."""

    counts: dict[str, DatasetCounts]
    measured: dict[tuple, list[float]]  # (rule, dataset, model or variant) -> seconds of matching runs

    @classmethod
    def of(cls, config: dict, workdir: Path | None = None) -> "Context":
        """The reference model (``workdir`` None) or one that also reads the results and
        benchmarks of earlier runs under ``workdir``."""
        counts = {dataset: dataset_counts(config, dataset, workdir) for dataset in config["datasets"]}
        return cls(counts, measured_benchmarks(config, workdir, counts) if workdir else {})


def _benchmark_seconds(path: Path) -> float | None:
    """Mean wall-clock seconds (column ``s``) of a Snakemake benchmark TSV."""
    try:
        with open(path, newline="") as handle:
            values = [float(row["s"]) for row in csv.DictReader(handle, delimiter="\t")]
    except (OSError, KeyError, ValueError):
        return None
    return statistics.fmean(values) if values else None


def _read_json_or_none(path: Path):
    """The JSON, or None where it is gone (a run's results deleted, its benchmark left) or unreadable."""
    try:
        return read_json(path)
    except (OSError, ValueError, WorkflowInputError):
        return None


def _same_run(config: dict, summary: dict | None, dataset: str, model: str) -> bool:
    """Whether training.json describes the run planned now, trained in one go (a resumed run's
    benchmark holds its last attempt only)."""
    if summary is None or dataset not in config["datasets"] or model not in config["models"]:
        return False
    return (summary.get("schedule") == plan.schedule(config, dataset) and summary.get("backbone") == plan.backbone(config, dataset, model)
            and summary.get("backend") == plan.training_backend(config, dataset, model) and not summary.get("resumed_at"))


def measured_benchmarks(config: dict, workdir: Path, counts: dict[str, DatasetCounts]) -> dict[tuple, list[float]]:
    """Seconds of earlier jobs whose runs or trees are the ones planned now, by job kind."""
    found: dict[tuple, list[float]] = {}
    benchmarks, results = workdir / "benchmarks", workdir / "results"
    for rule, folder in (("train_model", "models"), ("predict", "predictions"), ("evaluate", "metrics")):
        for path in sorted((benchmarks / folder).glob("*/*/*/seed*.tsv")):
            dataset, variant, model, seed = *path.parts[-4:-1], path.stem
            summary = _read_json_or_none(results / "models" / dataset / variant / model / seed / "training.json")
            if _same_run(config, summary, dataset, model) and (seconds := _benchmark_seconds(path)) is not None:
                found.setdefault((rule, dataset, model), []).append(seconds)
    for path in sorted((benchmarks / "anonymized").glob("*/*/shard-*.tsv")):
        dataset, variant = path.parts[-3:-1]
        audit = _read_json_or_none(results / "anonymized" / dataset / variant / "shards" / f"{path.stem.split('-')[1]}.audit.json")
        if dataset not in counts or variant not in config["variants"] or not audit or audit.get("shards") != config["anonymization"]["shards"]:
            continue
        if audit.get("images_from_earlier_attempts"):  # a chain of jobs: its benchmark is the last job's
            continue
        images = len(audit.get("images", [])) * audit["shards"]  # a shard of another dataset size is someone else's
        if 0.5 <= images / max(counts[dataset].train_images, 1) <= 2 and (seconds := _benchmark_seconds(path)) is not None:
            found.setdefault((_shard_rule(config, variant), dataset, variant), []).append(seconds)
    for rule, pattern in (("detect_faces", "faces/*/detections.tsv"), ("detect_keypoints", "regions/*/keypoints-vitpose.tsv")):
        for path in sorted(benchmarks.glob(pattern)):  # these rules run on real datasets only
            dataset = path.parts[-2]
            if dataset in counts and not config["datasets"][dataset]["synthetic"] and (seconds := _benchmark_seconds(path)) is not None:
                found.setdefault((rule, dataset), []).append(seconds)
    return found


def _shard_rule(config: dict, variant: str) -> str:
    return "anonymize_shard_realistic" if Variant.of(config, variant).is_realistic else "anonymize_shard"


# --------------------------------------------------------------------------------- expected seconds


def device(config: dict, dataset: str, rule: str) -> str:
    """Where a job runs: the twins on this CPU, a real dataset's GPU rules on cluster.gpu_model."""
    if config["datasets"][dataset]["synthetic"] or rule not in GPU_RULES:
        return "cpu"
    return config["cluster"]["gpu_model"]


def gpu_speed(config: dict) -> float:
    return reference(f"gpu.{config['cluster']['gpu_model']}")


def depth_factor(architecture: str, backbone: str) -> float:
    """Run time of an R-CNN with ``backbone`` relative to ResNet-50: the zoo's ResNet-101 ratio,
    extrapolated to ResNet-152 by the backbones' FLOPs."""
    if backbone == "resnet50" or f"flops.{backbone}" not in REFERENCES:
        return 1.0
    extra = reference(f"depth.resnet101.{architecture}") - 1
    flops = (reference(f"flops.{backbone}") - reference("flops.resnet50")) / (reference("flops.resnet101") - reference("flops.resnet50"))
    return 1 + extra * flops


def _zoo(prefix: str, architecture: str, dataset: str) -> float:
    """A zoo number of the dataset's schedule, else of the architecture on COCO."""
    return reference(f"{prefix}.{dataset}.{architecture}" if f"{prefix}.{dataset}.{architecture}" in REFERENCES else f"{prefix}.coco.{architecture}")


def _twin_iteration(architecture: str, backbone: str, schedule: dict) -> float:
    """CPU seconds of one iteration of the twins' schedule: the measured 256 px, batch 2 speed of a
    job alone, scaled by the schedule's pixels and batch, and slowed by a second job at once."""
    name = f"twin.train.mask_rcnn.{backbone}"
    seconds = reference(name if name in REFERENCES else "twin.train.mask_rcnn.resnet34")
    if architecture == "keypoint_rcnn":
        seconds *= reference("twin.train.keypoint_rcnn")
    side = max(schedule["image_min_size"]) if isinstance(schedule["image_min_size"], list) else schedule["image_min_size"]
    return seconds * schedule["batch_size"] / 2 * (side / 256) ** 2 * reference("twin.two_jobs")


def reference_seconds(config: dict, counts: dict[str, DatasetCounts], rule: str, dataset: str | None = None, model: str | None = None,
                      variant: str | None = None, backbone: str | None = None) -> float:
    """Expected wall-clock seconds of one job of ``rule`` from the reference numbers."""
    if rule == "pretrain_backbone":
        schedule = plan.pretraining_job_settings(config, backbone)["schedule"]
        return reference("twin.train.job_overhead") + schedule["iterations"] * reference("twin.pretrain") * _twin_iteration("mask_rcnn", backbone, schedule)
    synthetic, count = config["datasets"][dataset]["synthetic"], counts[dataset]
    speed = 1.0 if synthetic else gpu_speed(config)
    architecture = model and config["models"][model]["architecture"]
    if rule == "train_model":
        schedule, depth = plan.schedule(config, dataset), plan.backbone(config, dataset, model)
        if synthetic:
            return reference("twin.train.job_overhead") + schedule["iterations"] * _twin_iteration(architecture, depth, schedule)
        images = schedule["iterations"] * schedule["batch_size"]
        return reference("train.job_overhead") + images * _zoo("train", architecture, dataset) * depth_factor(architecture, depth) / speed
    if rule == "predict":
        if synthetic:
            return reference("twin.predict.job_overhead") + count.val_images * reference("twin.predict.image")
        depth = plan.backbone(config, dataset, model)
        return reference("predict.job_overhead") + count.val_images * _zoo("predict", architecture, dataset) * depth_factor(architecture, depth) / speed
    if rule == "evaluate":
        return reference("twin.evaluate" if synthetic else "evaluate.real")
    if rule in ("anonymize_shard", "anonymize_shard_realistic"):
        return _shard_seconds(config, count, dataset, variant, speed)
    if rule == "detect_faces":
        seconds = count.train_images * (reference("image_io." + dataset) + reference("dsfd.image") * reference(f"pixels.{dataset}") / speed)
        return reference("detector.job_overhead") + seconds
    if rule == "detect_keypoints":
        seconds = count.train_images * reference("image_io." + dataset) + count.persons * reference("vitpose.person") / speed
        return reference("detector.job_overhead") + seconds
    raise WorkflowInputError(f"the cost model has no estimate for rule {rule!r}")


def _shard_seconds(config: dict, count: DatasetCounts, dataset: str, variant: str, speed: float) -> float:
    """One shard of a tree: its images decoded and written, its persons (or faces) anonymized."""
    settings = Variant.of(config, variant).settings
    shards = config["anonymization"]["shards"]
    targets = count.faces if settings["region"] == "face" else count.persons
    hmlo_steps = settings["hmlo_steps"] if settings["postprocess"] == "hmlo" else 0
    synthetic = config["datasets"][dataset]["synthetic"]
    if synthetic:
        if settings["method"] != "realistic":
            return reference("twin.shard.job_overhead")
        per_target = reference("twin.renderer.person") + hmlo_steps * reference("twin.renderer.hmlo_step")
        return reference("twin.shard.job_overhead") + reference("twin.renderer.job_overhead") + targets * per_target / shards
    images = count.train_images * reference(f"image_io.{dataset}")
    if settings["method"] != "realistic":
        return (images + targets * reference("blur.per_person")) / shards
    if settings["region"] == "face":
        large = count.large_faces if settings["hr_faces"] else 0
        generator = (targets - large) * reference("dp2.face") + large * reference("dp2.face_hr")
    else:
        generator = targets * reference("dp2.body") * (1 + hmlo_steps * reference("dp2.hmlo_step"))
    return reference("dp2.job_overhead") + (images + generator / speed) / shards


def _kind(rule: str, dataset: str | None, model: str | None, variant: str | None, backbone: str | None) -> tuple:
    if rule == "pretrain_backbone":
        return (rule, backbone)
    if rule in ("train_model", "predict", "evaluate"):
        return (rule, dataset, model)
    if rule.startswith("anonymize_shard"):
        return (rule, dataset, variant)
    return (rule, dataset)


def estimate(config: dict, context: Context, rule: str, dataset: str | None = None, model: str | None = None, variant: str | None = None,
             backbone: str | None = None, **_) -> Estimate:
    """Expected seconds of one job: the median of matching benchmarks where there are any, else
    the reference model. Other wildcards (seed, shard) do not change it."""
    measured = context.measured.get(_kind(rule, dataset, model, variant, backbone))
    if measured:
        return Estimate(statistics.median(measured), f"measured: median of {len(measured)} benchmark{'s' * (len(measured) > 1)}")
    return Estimate(reference_seconds(config, context.counts, rule, dataset, model, variant, backbone), "reference")


def slurm_minutes(config: dict, seconds: float, attempt: int = 1) -> int:
    """The SLURM runtime a job requests: its expected time with the safety margin, at least
    cluster.min_runtime_minutes, proportionally more on each retry, at most the partition's
    cluster.max_runtime_minutes (a training run resumes from its checkpoint on the next attempt)."""
    cluster = config["cluster"]
    minutes = attempt * max(cluster["min_runtime_minutes"], math.ceil(seconds * cluster["runtime_margin"] / 60))
    return min(minutes, cluster["max_runtime_minutes"] or minutes)


def usable_minutes(config: dict) -> float | None:
    """Minutes of work in one job under cluster.max_runtime_minutes: the limit less the stop
    margin; None without a limit."""
    cluster = config["cluster"]
    return cluster["max_runtime_minutes"] - cluster["stop_margin_minutes"] if cluster["max_runtime_minutes"] else None


def attempts_needed(config: dict, seconds: float) -> int:
    """SLURM jobs one run needs under cluster.max_runtime_minutes (each resuming the last)."""
    usable = usable_minutes(config)
    return math.ceil(seconds * config["cluster"]["runtime_margin"] / 60 / usable) if usable else 1


def _usable_minutes_or_refuse(config: dict) -> tuple[float | None, str]:
    """usable_minutes, and the limit in words; refuses a limit that leaves no time to work."""
    usable, cluster = usable_minutes(config), config["cluster"]
    limit = f"cluster.max_runtime_minutes {cluster['max_runtime_minutes']} less cluster.stop_margin_minutes {cluster['stop_margin_minutes']:g}"
    if usable is not None and usable <= 0:
        raise WorkflowInputError(f"{limit} leaves no time for work; lower stop_margin_minutes or raise max_runtime_minutes to the partition's limit")
    return usable, limit


def training_retries(config: dict, context: Context) -> int | None:
    """Retries of rule train_model under a time limit: the attempts its longest run needs, and
    one for a failure; None without a limit (the profile's retries apply). Refuses a limit that
    leaves less than one checkpoint interval of the slowest schedule per job."""
    usable, limit = _usable_minutes_or_refuse(config)
    if usable is None:
        return None
    cluster, every = config["cluster"], config["training"]["checkpoint_every"]
    attempts = 1
    for kind in sorted({(run.dataset, run.model) for run in plan.metric_runs(config)}):
        seconds = estimate(config, context, "train_model", *kind).seconds
        iterations = plan.schedule(config, kind[0])["iterations"]
        interval = seconds / iterations * min(every, iterations) * cluster["runtime_margin"]
        if interval > usable * 60:
            raise WorkflowInputError(
                f"{limit} leaves {usable:g} min per job, shorter than one checkpoint interval of {kind[1]} on {kind[0]} "
                f"(training.checkpoint_every {every} iterations, ~{interval / 60:.0f} min with the runtime margin): "
                "lower training.checkpoint_every, or raise the limit")
        attempts = max(attempts, attempts_needed(config, seconds))
    return attempts


def shard_retries(config: dict, context: Context) -> int | None:
    """Retries of rule anonymize_shard_realistic under a time limit: the attempts its longest
    shard needs (each continuing the last's images, see shard_journal), and one for a failure;
    None without a limit."""
    usable, _ = _usable_minutes_or_refuse(config)
    if usable is None:
        return None
    realistic = [tree for tree in plan.anonymized_trees(config) if Variant.of(config, tree[1]).is_realistic]
    seconds = [estimate(config, context, "anonymize_shard_realistic", dataset, variant=variant).seconds for dataset, variant in realistic]
    return max((attempts_needed(config, value) for value in seconds), default=1)


# --------------------------------------------------------------------------------- targets


def target_runs(config: dict, target: str) -> list[plan.Run]:
    """The training runs a Snakemake target implies."""
    if target in plan.table_targets(config):
        return plan.target_runs(config, target)
    if target in ("tables", "report"):
        return plan.all_experiment_runs(config)
    if target == "fig8":
        return plan.fig8_runs(config)
    if target in ("all", "metrics", "figures"):
        return plan.metric_runs(config)
    if target in ("anonymized_trees", "fig7"):
        return []
    known = ", ".join(["all", "metrics", "tables", *plan.table_targets(config), "fig7", "fig8", "figures", "report", "anonymized_trees"])
    raise WorkflowInputError(f"no cost plan for target {target!r}; targets: {known}")


def target_trees(config: dict, target: str) -> list[tuple[str, str]]:
    """(dataset, variant) of the trees a target needs: those its runs train on (every tree for
    all, anonymized_trees and the qualitative figures)."""
    if target in ("all", "anonymized_trees", "figures"):
        return plan.anonymized_trees(config)
    return sorted({(run.dataset, run.variant) for run in target_runs(config, target) if run.variant != "original"})


def _region_jobs(config: dict, trees) -> list[tuple[str, str]]:
    """(rule, dataset) of the detector jobs the trees read (real datasets without the authors' files)."""
    jobs = set()
    for dataset, variant in trees:
        inputs = Variant.of(config, variant).region_inputs(dataset)
        if "faces" in inputs and plan.face_detections_source(config, dataset) == "dsfd":
            jobs.add(("detect_faces", dataset))
        if "keypoints" in inputs and plan.keypoints_source(config, dataset) == "vitpose":
            jobs.add(("detect_keypoints", dataset))
    return sorted(jobs)


def target_jobs(config: dict, context: Context, target: str) -> list[Job]:
    """Every costed job of a target: detectors, the twins' backbone pretraining, tree shards,
    training, prediction and evaluation (the data stage, assembly, tables and figures take
    minutes and are left out)."""
    jobs = []

    def add(rule, dataset=None, model=None, variant=None, backbone=None):
        kind = "/".join(part for part in (dataset, variant, model, backbone) if part)
        guess = estimate(config, context, rule, dataset, model, variant, backbone)
        where = "cpu" if dataset is None else device(config, dataset, rule)
        jobs.append(Job(rule, kind, STAGE_OF[rule], where, guess.seconds, guess.basis))

    runs, trees = target_runs(config, target), target_trees(config, target)
    for rule, dataset in _region_jobs(config, trees):
        add(rule, dataset)
    pretrained = {plan.backbone(config, run.dataset, run.model) for run in runs
                  if config["datasets"][run.dataset]["synthetic"] and plan.schedule(config, run.dataset)["init"] == "imagenet"}
    for backbone in sorted(pretrained):
        add("pretrain_backbone", backbone=backbone)
    for dataset, variant in trees:
        for _ in range(config["anonymization"]["shards"]):
            add(_shard_rule(config, variant), dataset, variant=variant)
    for run in runs:
        for rule in ("train_model", "predict", "evaluate"):
            add(rule, run.dataset, run.model)
    return jobs


def wall_seconds(jobs: list[Job], parallel: int) -> float:
    """Wall time with ``parallel`` jobs at once: each stage's jobs spread longest first over the
    slots, the stages one after the other (an upper bound: the DAG lets them overlap)."""
    total = 0.0
    for stage in range(len(STAGES)):
        slots = [0.0] * parallel
        for seconds in sorted((job.seconds for job in jobs if job.stage == stage), reverse=True):
            heapq.heapreplace(slots, slots[0] + seconds)
        total += max(slots)
    return total


class Summary(NamedTuple):
    runs: int
    trees: int
    shards: int
    region_jobs: int
    gpu_hours: float
    cpu_hours: float
    wall_seconds: float


def summarize(config: dict, context: Context, target: str, parallel: int) -> Summary:
    jobs = target_jobs(config, context, target)
    trees = target_trees(config, target)
    gpu = sum(job.seconds for job in jobs if job.device != "cpu") / 3600
    cpu = sum(job.seconds for job in jobs if job.device == "cpu") / 3600
    regions = sum(job.stage == 0 and job.rule != "pretrain_backbone" for job in jobs)
    return Summary(len(target_runs(config, target)), len(trees), len(trees) * config["anonymization"]["shards"], regions, gpu, cpu,
                   wall_seconds(jobs, parallel))
