"""Sections env (versions, GPU, determinism flags) and roi_align (the deterministic path the training takes on CUDA)."""

from __future__ import annotations

import os
import platform
import shutil
import time

import numpy as np

from .check import Check
from .reporting import Skip


def env(check: Check) -> dict:
    import torch
    import torchvision

    info = {
        "python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
        "numpy": np.__version__, "cpu_count": os.cpu_count(), "torch_threads_default": torch.get_num_threads(),
        "rle": check.rle, "device_requested": check.args.device, "pretend_cuda": check.pretend, "settings_commit": check.settings.get("git_commit"),
        "settings_stale": check.stale, "cuda_available": torch.cuda.is_available(),
        "CUBLAS_WORKSPACE_CONFIG": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
        "c_compiler": os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang"),
        "work_dir": str(check.work),
    }
    try:
        from importlib import metadata

        info["triton"] = metadata.version("triton")
    except Exception:  # noqa: BLE001
        info["triton"] = None
    for name in ("scipy", "skimage", "PIL", "cv2"):
        try:
            info[name] = __import__(name).__version__
        except Exception as error:  # noqa: BLE001
            info[name] = f"missing ({type(error).__name__})"
    flags = {}
    for name, read in (("cudnn.benchmark", lambda: torch.backends.cudnn.benchmark), ("cudnn.deterministic", lambda: torch.backends.cudnn.deterministic),
                       ("cudnn.allow_tf32", lambda: torch.backends.cudnn.allow_tf32), ("cuda.matmul.allow_tf32", lambda: torch.backends.cuda.matmul.allow_tf32),
                       ("float32_matmul_precision", torch.get_float32_matmul_precision),
                       ("cudnn.conv.fp32_precision", lambda: torch.backends.cudnn.conv.fp32_precision),
                       ("cuda.matmul.fp32_precision", lambda: torch.backends.cuda.matmul.fp32_precision)):
        try:
            flags[name] = read()
        except Exception as error:  # noqa: BLE001 - flags differ between torch versions
            flags[name] = f"n/a ({type(error).__name__})"
    info["flags"] = flags
    info["package_determinism"] = ("torchvision_backend.train: torch.use_deterministic_algorithms(True, warn_only=True), torch.manual_seed(seed), "
                                   "torch.set_num_threads(threads); no cudnn.benchmark / CUBLAS_WORKSPACE_CONFIG / TF32 setting; "
                                   "DataLoader workers = threads on CUDA; amp = bfloat16 autocast on CUDA only, no GradScaler")
    if torch.cuda.is_available():
        properties = torch.cuda.get_device_properties(0)
        info.update(gpu=torch.cuda.get_device_name(0), capability=list(torch.cuda.get_device_capability(0)),
                    gpu_memory_gib=round(properties.total_memory / 2**30, 1), cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version(), bf16_supported=torch.cuda.is_bf16_supported())
        try:
            from torch._dynamo.utils import is_compile_supported

            info["deterministic_roi_align_path"] = ("torch.compile'd pure-Python roi_align (torchvision, deterministic backward)"
                                                    if is_compile_supported("cuda") else "eager pure-Python roi_align")
        except Exception as error:  # noqa: BLE001
            info["deterministic_roi_align_path"] = f"unknown ({error})"
    try:
        import inspect

        from anonymization_impact.realistic import twin_renderer

        info["twin_renderer_draws_on_the_crops_device"] = "device" in inspect.signature(twin_renderer._grid).parameters
    except Exception as error:  # noqa: BLE001
        info["twin_renderer_draws_on_the_crops_device"] = f"unknown ({error})"
    if check.cuda and not check.pretend and not torch.cuda.is_available():
        raise RuntimeError("--device cuda but torch.cuda.is_available() is False")
    if check.stale:
        check.report.say("WARNING: " + "; ".join(check.stale) + " -- rerun --prepare here and carry again")
    return info


def roi_align(check: Check) -> dict:
    """The roi_align call MultiScaleRoIAlign makes, with the training's deterministic flag
    (torchvision then runs its pure-Python roi_align through torch.compile on CUDA), against
    the CUDA kernel used without it."""
    if not check.cuda or check.pretend:
        raise Skip("CUDA only (on the CPU roi_align is torchvision's C++ kernel either way)")
    import torch
    from torchvision.ops import roi_align as torchvision_roi_align

    generator = torch.Generator(device="cuda").manual_seed(0)
    features = torch.randn(2, 32, 64, 128, device="cuda", generator=generator)
    boxes = [torch.tensor([[1.0, 2.0, 40.0, 60.0], [10.0, 5.0, 200.0, 120.0], [0.0, 0.0, 511.0, 255.0]], device="cuda"),
             torch.tensor([[30.0, 30.0, 90.0, 100.0]], device="cuda")]
    results = {}
    for deterministic in (True, False):
        torch.use_deterministic_algorithms(deterministic, warn_only=True)
        try:
            results[deterministic] = _roi_align_timed(torchvision_roi_align, features, boxes)
        except Exception:
            if not deterministic:
                raise
            # The workflow's training would fail here as well: report it, and let the
            # rest of the check run with dynamo's eager fallback so it still says something.
            import torch._dynamo

            torch._dynamo.config.suppress_errors = True
            check.roi_align_fallback = True
            check.report.say("WARNING: the deterministic roi_align failed to compile; the rest runs with torch._dynamo.config.suppress_errors = True")
            torch.use_deterministic_algorithms(False)
            raise
    torch.use_deterministic_algorithms(False)
    (out_d, grad_d, first_d, each_d), (out_k, grad_k, first_k, each_k) = results[True], results[False]
    return {"deterministic_first_call_s": round(first_d, 2), "deterministic_per_call_ms": round(each_d * 1000, 2),
            "kernel_first_call_s": round(first_k, 3), "kernel_per_call_ms": round(each_k * 1000, 2),
            "forward_max_abs_diff": float((out_d - out_k).abs().max()), "grad_max_abs_diff": float((grad_d - grad_k).abs().max())}


def _roi_align_timed(roi_align, features, boxes):
    """Forward + backward once (compiles, if it does), then 5 more: outputs, grad, times."""
    import torch

    x = features.clone().requires_grad_(True)
    torch.cuda.synchronize()
    started = time.perf_counter()
    output = roi_align(x, boxes, (7, 7), spatial_scale=0.25, sampling_ratio=2, aligned=False)
    (output * torch.arange(output.numel(), device="cuda").reshape(output.shape).sin()).sum().backward()
    torch.cuda.synchronize()
    first, grad = time.perf_counter() - started, x.grad.detach().clone()
    started = time.perf_counter()
    for _ in range(5):
        roi_align(x, boxes, (7, 7), spatial_scale=0.25, sampling_ratio=2, aligned=False).sum().backward()
    torch.cuda.synchronize()
    return output.detach(), grad, first, (time.perf_counter() - started) / 5
