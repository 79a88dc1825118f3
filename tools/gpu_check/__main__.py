"""``python -m tools.gpu_check``: the options and the three modes (--prepare, OUTDIR, --evaluate)."""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import shutil
import sys
import threading
import warnings
from pathlib import Path

from . import DEFAULT_INPUTS
from . import __doc__ as USAGE
from . import coco_mask, environment, prediction, realistic, training_runs
from .check import Check
from .evaluate import evaluate_dir
from .prepare import prepare
from .reporting import Report, plain, run_section

# in the order they run; env always runs
SECTIONS = {
    "env": environment.env,
    "roi_align": environment.roi_align,
    "pretrain": training_runs.pretrain,
    "train_fp32": training_runs.train_fp32,
    "predict": prediction.predict,
    "cpu_rate": training_runs.cpu_rate,
    "realistic": realistic.realistic,
    "train_amp": training_runs.train_amp,
    "determinism": training_runs.determinism,
    "resume": training_runs.resume,
}
# option: (default, default with --quick)
SIZES = {"pretrain_iters": (100, 10), "iters": (None, 12), "check_iters": (100, 8), "cpu_iters": (12, 5), "images": (5, 2), "hmlo_steps": (None, 5),
         "val_images": (None, 6)}


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.gpu_check", description=USAGE.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=USAGE.split("\n", 2)[2])
    parser.add_argument("outdir", nargs="?", help="where summary.json, predictions, the fp32 model and the montage go")
    parser.add_argument("--prepare", action="store_true", help="write the inputs (here, with the project's .venv)")
    parser.add_argument("--prepare-pretrain-iters", type=int, help="--prepare: backbone pretraining iterations (default: the config's)")
    parser.add_argument("--evaluate", metavar="DIR", help="score the pred_*.json files in DIR (here)")
    parser.add_argument("--inputs", default=str(DEFAULT_INPUTS), help="what --prepare wrote (default resources/gpu_check)")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to test the tool itself")
    parser.add_argument("--sections", help="comma-separated sections to run (default all; env always runs)")
    parser.add_argument("--pretrain-iters", type=int, help="backbone pretraining iterations on the device, a check of that path "
                        "(default 100; --prepare pre-trains the runs' backbone on the CPU with the config's 800)")
    parser.add_argument("--iters", type=int, help="iterations of the fp32 and amp runs (default: the config's, 300)")
    parser.add_argument("--check-iters", type=int, help="iterations of the determinism and resume runs (default 100)")
    parser.add_argument("--cpu-iters", type=int, help="iterations of the CPU rate run (default 12)")
    parser.add_argument("--threads", type=int, help="the runs' threads (DataLoader workers on CUDA; default 8 on cuda, all cores on cpu)")
    parser.add_argument("--cpu-threads", type=int, default=os.cpu_count(), help="torch threads of CPU comparisons (default all cores)")
    parser.add_argument("--images", type=int, help="training images anonymized by the realistic section (default 5)")
    parser.add_argument("--hmlo-steps", type=int, help="override the variant's hmlo_steps (default: the config's)")
    parser.add_argument("--val-images", type=int, help="predict on the first N val images only (default all)")
    parser.add_argument("--budget-s", type=float, default=300, help="optional runs are skipped once they would end after this (default 300)")
    parser.add_argument("--hard-timeout-s", type=float, default=340, help="write summary.json and exit 3 after this (default 340)")
    parser.add_argument("--work", help="scratch directory (default a new one under the temp dir)")
    parser.add_argument("--keep-work", action="store_true")
    parser.add_argument("--cublas-deterministic", action="store_true",
                        help="set CUBLAS_WORKSPACE_CONFIG=:4096:8 (the workflow does not) to see whether that makes CUDA runs bit-identical")
    parser.add_argument("--pretend-cuda", action="store_true", help=argparse.SUPPRESS)  # test the CUDA sections' logic on a CPU
    parser.add_argument("--rle-fallback", action="store_true", help="use the pure-Python RLE even if pycocotools imports (test)")
    return parser


def run_check(args, report: Report, order: list[str]) -> int:
    """The device mode: the sections in ``order``, summary.json, exit status 0 / 1 (3: the watchdog's)."""
    if args.cublas_deterministic:  # before the first cuBLAS handle: torch is imported by the sections
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    rle = coco_mask.install(args.rle_fallback)
    warnings.showwarning = report.capture_warning
    warnings.simplefilter("always")
    check = Check(args, report, rle)
    if args.iters is None:
        args.iters = check.settings["jobs"]["train"]["schedule"]["iterations"]
    report.say(f"gpu_check: device {args.device}, pretrain {args.pretrain_iters} / train {args.iters} iterations, work dir {check.work}")
    report.emit("options", **{k: v for k, v in vars(args).items()})
    results, failures = {}, []

    def write_summary(**extra) -> dict:
        summary = {"ok": not failures and not extra.get("timed_out"), "failures": failures, "device": args.device, "total_s": round(report.elapsed(), 1),
                   "files": check.files + ["summary.json"], "roi_align_compile_fallback": check.roi_align_fallback, **extra,
                   "sections": results, "warnings": report.warnings}
        try:
            import torch

            if torch.cuda.is_available():
                summary["cuda_peak_memory_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
            from torch._dynamo.utils import compile_times, counters

            summary["dynamo_counters"] = {key: dict(value) for key, value in counters.items() if value}
            summary["dynamo_compile_times"] = str(compile_times(repr="str"))[:4000]
        except Exception as error:  # noqa: BLE001
            summary["dynamo_counters"] = f"unavailable ({type(error).__name__}: {error})"
        summary["records"] = report.records
        (check.out / "summary.json").write_text(json.dumps(plain(summary), indent=1))
        return summary

    def on_timeout() -> None:  # a hang (e.g. DataLoader workers forked from a threaded process) must not eat the device time
        report.say(f"HARD TIMEOUT after {args.hard_timeout_s:.0f} s: writing summary.json and exiting; stacks follow")
        running = next((name for name in order if name not in results), None)
        failures.append(f"hard timeout in {running}")
        write_summary(timed_out=True, running_section=running)
        faulthandler.dump_traceback(all_threads=True)
        sys.stderr.flush()
        os._exit(3)

    watchdog = threading.Timer(args.hard_timeout_s, on_timeout)
    watchdog.daemon = True
    watchdog.start()
    for name in order:
        if name != "env" and check.cuda and not check.pretend and results["env"].get("cuda_available") is not True:
            results[name] = {"status": "skipped", "reason": "--device cuda but no CUDA device (see env)"}
            report.emit(name, **results[name])
            continue
        run_section(report, name, lambda section=SECTIONS[name]: section(check), results, failures)
    watchdog.cancel()
    write_summary()
    compact = {name: results[name]["status"] for name in order}
    report.emit("summary", ok=not failures, failures=failures, total_s=round(report.elapsed(), 1), statuses=compact, files=check.files + ["summary.json"],
                roi_align_compile_fallback=check.roi_align_fallback)
    if not args.keep_work and not args.work:
        shutil.rmtree(check.work, ignore_errors=True)
    return 1 if failures else 0


def main() -> int:
    report = Report()
    options = parser()
    args = options.parse_args()
    for key, (normal, small) in SIZES.items():
        if getattr(args, key) is None:
            setattr(args, key, small if args.quick else normal)
    if args.threads is None:
        args.threads = 8 if args.device == "cuda" else (os.cpu_count() or 1)

    if args.prepare:
        prepare(report, Path(args.inputs), pretrain_iterations=args.prepare_pretrain_iters)
        return 0
    if args.evaluate:
        evaluate_dir(Path(args.evaluate), Path(args.inputs))
        return 0
    if not args.outdir:
        options.error("OUTDIR is required (or --prepare / --evaluate)")
    order = list(SECTIONS)
    if args.sections:
        wanted = {"env", *args.sections.split(",")}
        unknown = wanted - set(order)
        if unknown:
            options.error(f"unknown sections {sorted(unknown)}; known: {', '.join(order)}")
        order = [name for name in order if name in wanted]
    return run_check(args, report, order)


if __name__ == "__main__":
    sys.exit(main())
