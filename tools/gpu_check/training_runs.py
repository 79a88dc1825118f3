"""The training sections: pretrain, train_fp32, cpu_rate, train_amp, determinism, resume."""

from __future__ import annotations

from pathlib import Path

from . import MODEL
from .check import Check
from .prediction import describe_predictions, predict_val
from .reporting import Skip


def pretrain(check: Check) -> dict:
    from anonymization_impact.training import torchvision_backend

    iterations = check.args.pretrain_iters
    job = check.job("pretrain", "pretrain", device=check.device, amp=False, iterations=iterations, threads=check.args.threads)
    configured = check.settings["jobs"]["pretrain"]["schedule"]["iterations"]
    check.report.say(f"pretraining {job.backbone} from scratch, {iterations} iterations on {check.label} (config: {configured})")
    result = check.train(job)
    state = torchvision_backend.backbone_state(job.output)  # as pretrain_backbone.py
    path = check.work / "runs" / "pretrain" / f"{job.backbone}.pth"
    torchvision_backend.save_atomic(state, path)
    schedule = check.settings["jobs"]["train"]["schedule"]
    torchvision_backend.build_model("mask_rcnn", job.backbone, 8, schedule, path)  # loads as a run's initial weights
    result["backbone_tensors"] = len(state)
    if check.backbone is None:
        check.backbone, check.backbone_source = path, f"this device's pretrain section ({iterations} iterations): no carried backbone"
    result["training_runs_start_from"] = check.backbone_source
    return result


def train_fp32(check: Check) -> dict:
    check.need_backbone()
    job = check.job("train", "fp32", device=check.device, amp=False, iterations=check.args.iters, threads=check.args.threads)
    check.report.say(f"training {MODEL} ({job.backbone}, twins' schedule) {check.args.iters} iterations on {check.label}, fp32")
    result = check.train(job)
    result["initial_backbone"] = check.backbone_source
    check.runs["fp32"] = {**result, "job": job}
    if check.cuda and not check.pretend and result.get("summary_device") != "cuda":
        raise AssertionError(f"training.device {job.device!r} trained on {result.get('summary_device')}, not cuda")
    check.keep(job.output, f"model_{check.label}_fp32.pth")
    return result


def cpu_rate(check: Check) -> dict:
    if not check.cuda:
        raise Skip("the check itself runs on the CPU (train_fp32's rate is the CPU rate)")
    check.need_backbone()
    iterations = check.args.cpu_iters
    check.budget_allows(iterations * 1.0 + 10, "the CPU rate")
    job = check.job("train", "cpu_rate", device="cpu", amp=False, iterations=check.args.iters, threads=check.args.cpu_threads)
    check.report.say(f"the fp32 job on the CPU with {check.args.cpu_threads} threads, stopped after {iterations} iterations")
    result = check.train(job, stop_at=iterations, warm=2)
    if "fp32" in check.runs and result["s_per_iteration"]:
        result["cuda_speedup"] = round(result["s_per_iteration"] / check.runs["fp32"]["s_per_iteration"], 2)
    return result


def train_amp(check: Check) -> dict:
    if not check.cuda:
        raise Skip("amp only changes CUDA runs (the backend enables autocast on CUDA only)")
    check.need_backbone()
    check.budget_allows(check.estimate(check.args.iters, 40), "the amp run")
    job = check.job("train", "amp", device=check.gpu, amp=True, iterations=check.args.iters, threads=check.args.threads)
    check.report.say(f"training with amp (bfloat16 autocast), {check.args.iters} iterations")
    result = check.train(job)
    result["autocast_dtype"] = "torch.bfloat16 (torchvision_backend.train: torch.autocast(device.type, dtype=torch.bfloat16, enabled=job.amp and device.type == 'cuda'))"
    if "fp32" in check.runs:
        result["speed_vs_fp32"] = round(check.runs["fp32"]["s_per_iteration"] / result["s_per_iteration"], 2)
    predictions, per_image = predict_val(check, job.output, check.gpu, check.args.threads)
    name = "pred_train-cuda-amp_predict-cuda.json"
    check.write_predictions(name, predictions)
    result["predictions"] = {"file": name, "s_per_image": round(per_image, 4), **describe_predictions(predictions)}
    return result


def determinism(check: Check) -> dict:
    """The same job (--check-iters iterations) twice, each in a fresh checkpoint directory."""
    check.need_backbone()
    iterations = check.args.check_iters
    check.budget_allows(check.estimate(2 * iterations, 15), "two runs of the same job")
    runs = []
    for name in ("same_job_1", "same_job_2"):
        job = check.job("train", name, device=check.device, amp=False, iterations=iterations, threads=check.args.threads)
        check.report.say(f"{name}: fp32, {iterations} iterations on {check.label}")
        runs.append((check.train(job), job))
        check.runs[name] = {**runs[-1][0], "job": job}
    keys = ("iterations_run", "s_per_iteration", "loss_last", "losses_finite", "weights_sha256")
    return {"iterations": iterations, "first": {k: runs[0][0].get(k) for k in keys}, "second": {k: runs[1][0].get(k) for k in keys},
            "weights_equal": check.weights_diff(runs[0][1].output, runs[1][1].output)}


def resume(check: Check) -> dict:
    """That job interrupted after its checkpoint at half way, then run again: it must resume
    there; its weights are compared with the uninterrupted run's."""
    run = check.runs.get("same_job_1")
    if not run:
        raise Skip("no uninterrupted run of the same job to compare with (determinism did not run)")
    iterations = check.args.check_iters
    check.budget_allows(check.estimate(iterations, 15), "the interrupted + resumed run")
    half = iterations // 2
    job = check.job("train", "resumed", device=check.device, amp=False, iterations=iterations, threads=check.args.threads, checkpoint_every=half)
    check.report.say(f"the fp32 job with a checkpoint every {half} iterations, interrupted before iteration {half}, then run again")
    first = check.train(job, stop_at=half)
    checkpoints = sorted(str(p.relative_to(job.checkpoint_dir)) for p in Path(job.checkpoint_dir).rglob("*.pth"))
    second = check.train(job)
    result = {"interrupted": {k: first[k] for k in ("iterations_run", "interrupted_before_iteration", "wall_s")}, "checkpoints_after_interrupt": checkpoints,
              "resumed": {k: second.get(k) for k in ("resumed_at", "iterations_run", "wall_s", "loss_last", "losses_finite")},
              "vs_uninterrupted": check.weights_diff(run["job"].output, job.output)}
    if "same_job_2" in check.runs:
        result["uninterrupted_runs_vs_each_other"] = check.weights_diff(run["job"].output, check.runs["same_job_2"]["job"].output)
    if second.get("resumed_at") != half:
        raise AssertionError(f"the second run resumed at {second.get('resumed_at')}, expected {half}")
    return result
