"""``python -m tools.cost_plan [TARGET ...]``: what the targets cost before anything is submitted.

For each target (default: every table, fig8 and all) the training runs, anonymized trees, shards
and detector jobs it implies, its GPU-hours on ``cluster.gpu_model``, CPU-hours and wall time
with ``--jobs`` jobs at once; then every job kind: its expected time, where that comes from and
the SLURM runtime its jobs request. It reads the config only (validated, roots need not exist),
the published dataset counts, and, under ``--directory``, the persons.json of twins and the
benchmarks of earlier runs (``anonymization_impact.cost``; reference numbers: docs/cost.md).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "scripts") not in sys.path:  # the project's package, where pyproject puts it for pytest
    sys.path.insert(0, str(REPO / "scripts"))

from anonymization_impact import cost, plan  # noqa: E402
from anonymization_impact.config import enabled_datasets, validate_config  # noqa: E402
from anonymization_impact.errors import ConfigError, WorkflowInputError  # noqa: E402


def load_config(paths: list[str]) -> dict:
    """The config files merged in order, key by key, as Snakemake's --configfile does."""
    from snakemake.utils import update_config

    merged: dict = {}
    for path in paths:
        with open(path) as handle:
            update_config(merged, yaml.safe_load(handle) or {})
    return validate_config(merged)


def default_targets(config: dict) -> list[str]:
    """Every table (the appendix last), Fig. 8 and all."""
    return [*sorted(plan.table_targets(config), key=lambda name: (name == "appendix", name)), "fig8", "all"]


def read_profile(profile: Path) -> dict:
    """A Snakemake profile's settings as Snakemake reads them: a YTE template (profiles/slurm's
    site values in __variables__) evaluated."""
    import yte

    with open(profile / "config.yaml") as handle:
        return yte.process_yaml(handle, require_use_yte=True)


def profile_runtimes(profile: Path) -> tuple[dict[str, int], int | None, int]:
    """({rule: runtime} set by the SLURM profile, its default runtime, its retries)."""
    settings = read_profile(profile)
    rules = {rule: values["runtime"] for rule, values in (settings.get("set-resources") or {}).items() if "runtime" in values}
    return rules, (settings.get("default-resources") or {}).get("runtime"), settings.get("retries", 0)


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.2f} d"


def hours(value: float) -> str:
    return f"{value:,.1f}" if value >= 10 else f"{value:.2f}"


def describe_datasets(config: dict, context: cost.Context) -> list[str]:
    lines = []
    for dataset in enabled_datasets(config):
        counts = context.counts[dataset]
        kind = "twin, on this CPU" if config["datasets"][dataset]["synthetic"] else f"real, on {config['cluster']['gpu_model']}"
        lines.append(f"- {dataset} ({kind}): {counts.train_images:,} training / {counts.val_images:,} validation images, {counts.persons:,} persons, "
                     f"{counts.faces:,} faces ({counts.basis})")
    return lines


def target_table(config: dict, context: cost.Context, targets: list[str], parallel: int) -> list[str]:
    gpu = config["cluster"]["gpu_model"]
    lines = [f"| target | training runs | trees (shards) | detector jobs | GPU-hours ({gpu}) | CPU-hours | wall time, {parallel} jobs at once |",
             "|---|---|---|---|---|---|---|"]
    for target in targets:
        summary = cost.summarize(config, context, target, parallel)
        lines.append(f"| {target} | {summary.runs} | {summary.trees} ({summary.shards}) | {summary.region_jobs} | {hours(summary.gpu_hours)} | "
                     f"{hours(summary.cpu_hours)} | {duration(summary.wall_seconds)} |")
    return lines


def job_table(config: dict, context: cost.Context, targets: list[str], profile: Path) -> tuple[list[str], list[str]]:
    """The job kinds of the targets with their SLURM runtime (and the chain of jobs a run or a
    shard longer than cluster.max_runtime_minutes takes), and warnings on other jobs that need
    more attempts than the profile's retries give."""
    set_runtimes, default_runtime, retries = profile_runtimes(profile)
    jobs = {}
    for target in targets:
        jobs.update({(job.rule, job.kind): job for job in cost.target_jobs(config, context, target)})
    counts = Counter((job.rule, job.kind) for job in cost.target_jobs(config, context, "all"))
    lines = ["| rule | dataset / variant / model | jobs in all | device | expected each | basis | SLURM runtime |", "|---|---|---|---|---|---|---|"]
    warnings = []
    for (rule, kind), job in sorted(jobs.items(), key=lambda item: (item[1].stage, item[0])):
        if rule in cost.GPU_RULES:
            minutes = cost.slurm_minutes(config, job.seconds)
            runtime = f"{minutes:,} min (model)"
            attempts = cost.attempts_needed(config, job.seconds)
            if rule in cost.CHAINED_RULES and attempts > 1:
                runtime += f", a chain of {attempts} jobs"
            elif attempts > retries + 1:
                warnings.append(f"- {rule} {kind}: {attempts} attempts of {minutes:,} min each, the profile's retries ({retries}) give "
                                f"{retries + 1}: raise `retries`")
        else:
            runtime = f"{set_runtimes.get(rule, default_runtime)} min (profile)"
        lines.append(f"| {rule} | {kind} | {counts.get((rule, kind), 0)} | {job.device} | {duration(job.seconds)} | {job.basis} | {runtime} |")
    return lines, warnings


def references_table() -> list[str]:
    lines = ["| name | value | unit | source |", "|---|---|---|---|"]
    lines += [f"| `{name}` | {value.value:.4g} | {value.unit} | {value.source} |" for name, value in cost.REFERENCES.items()]
    return lines


def report(config: dict, context: cost.Context, targets: list[str], parallel: int, profile: Path, config_names: list[str]) -> str:
    cluster = config["cluster"]
    gpu = cluster["gpu_model"]
    limit = f", at most {cluster['max_runtime_minutes']} min" if cluster["max_runtime_minutes"] else ""
    lines = [f"# Cost plan ({' + '.join(config_names)})", "",
             f"GPU: {gpu} ({cost.gpu_speed(config):g}x a V100: {cost.REFERENCES['gpu.' + gpu].source}); the twins run on this CPU "
             f"(times measured here). SLURM runtime of a GPU job: its expected time x {cluster['runtime_margin']:g}, at least "
             f"{cluster['min_runtime_minutes']} min{limit}; "
             "x the attempt on a retry. Reference numbers and their sources: docs/cost.md.", "", *describe_datasets(config, context), ""]
    measured = sorted("/".join(key) for key in context.measured)
    lines += [f"Measured benchmarks used: {', '.join(measured) if measured else 'none (no matching benchmarks/ of earlier runs)'}.", ""]
    lines += ["## Targets", "", *target_table(config, context, targets, parallel), ""]
    lines += ["Shared jobs (a tree, a detector) count in every target that needs them; `all` counts each once. Wall time: the "
              "stages (detectors, trees, training, prediction, evaluation) one after the other, each spread over the jobs at once.", ""]
    jobs, warnings = job_table(config, context, targets, profile)
    lines += ["## Jobs", "", *jobs, ""]
    if warnings:
        lines += ["Jobs longer than `cluster.max_runtime_minutes` that do not continue where the last attempt stopped (each attempt starts over):",
                  *warnings, ""]
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.cost_plan", description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="*", help="Snakemake targets (default: every table, fig8 and all)")
    parser.add_argument("--configfile", nargs="+", default=["config.yaml"], help="config files, merged in order (default config.yaml)")
    parser.add_argument("--jobs", type=int, default=8, help="jobs at once for the wall time: GPUs of the cluster, cores here (default 8)")
    parser.add_argument("--directory", default=".", help="where earlier runs wrote results/ and benchmarks/ (default .)")
    parser.add_argument("--no-benchmarks", action="store_true", help="the reference model only, ignoring benchmarks/ of earlier runs")
    parser.add_argument("--profile", default=str(REPO / "profiles" / "slurm"), help="SLURM profile of the CPU rules' runtimes")
    parser.add_argument("--references", action="store_true", help="print the reference numbers and their sources, and stop")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.references:
        print("\n".join(references_table()))
        return 0
    try:
        config = load_config(args.configfile)
        context = cost.Context.of(config, None if args.no_benchmarks else Path(args.directory))
        targets = args.targets or default_targets(config)
        print(report(config, context, targets, args.jobs, Path(args.profile), args.configfile))
    except (ConfigError, WorkflowInputError, OSError) as error:
        print(f"{type(error).__name__}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
