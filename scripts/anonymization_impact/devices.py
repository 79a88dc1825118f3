"""Which device a job runs on, and why: the GPU guard.

A job that asked for a GPU - its device setting is ``cuda``, or the scheduler gave it one (SLURM
sets ``SLURM_JOB_GPUS`` / ``SLURM_GPUS_ON_NODE`` for a job with a GPU) and the setting is
``auto`` - refuses to run on the CPU, with one message naming the cause: a PyTorch built
without CUDA, no NVIDIA driver, a driver older than the PyTorch build needs, or no device
visible. Otherwise ``auto`` takes a visible GPU, else the CPU (laptops, the twins here). Every
job logs the device, the driver, the CUDA runtime and the PyTorch build, and keeps them for its
record (training.json, and through it the metric JSON).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from .errors import WorkflowInputError

GPU_ALLOCATION_VARIABLES = ("SLURM_JOB_GPUS", "SLURM_GPUS_ON_NODE", "SLURM_STEP_GPUS")
NVIDIA_DRIVER_FILE = Path("/proc/driver/nvidia/version")
# what to do about a driver older than the env's CUDA build: the paper stacks' envs are built for CUDA 11.x
OLDER_CUDA_ENVS = "the paper stack's envs (training.stack: paper: envs/detectron2.yaml, envs/mmdetection.yaml; CUDA 11.x builds)"


def gpu_allocated(environ=os.environ) -> bool:
    """Whether the scheduler gave this job a GPU."""
    return any(environ.get(name) for name in GPU_ALLOCATION_VARIABLES)


def driver_version(path: Path = NVIDIA_DRIVER_FILE) -> str | None:
    """The NVIDIA kernel driver's version (e.g. 535.104.05), None without one."""
    try:
        text = path.read_text()
    except OSError:
        return None
    words = [word for word in text.split() if word[:1].isdigit() and word.count(".") >= 1]
    return words[0] if words else "unknown"


def why_no_gpu(torch, driver_file: Path = NVIDIA_DRIVER_FILE, environ=os.environ) -> str:
    """The reason CUDA cannot be used by this PyTorch in this job."""
    if torch.version.cuda is None:
        return f"this PyTorch ({torch.__version__}) is a CPU build without CUDA: run the job in its env's CUDA build of PyTorch"
    driver = driver_version(driver_file)
    if driver is None:
        return f"this node has no NVIDIA driver ({driver_file} is missing)"
    try:
        torch.cuda.init()
    except Exception as error:  # torch's message says what CUDA found
        message = str(error).strip()
        if "too old" in message or "insufficient" in message.lower():
            return (f"the NVIDIA driver {driver} is older than this PyTorch's CUDA {torch.version.cuda} needs ({message.splitlines()[0]}); "
                    f"update the driver or use an env built for an older CUDA, e.g. {OLDER_CUDA_ENVS}")
        if message:
            return f"CUDA does not start ({message.splitlines()[0]})"
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    return f"no CUDA device is visible to this job (CUDA_VISIBLE_DEVICES={visible!r}, driver {driver})"


def describe(torch, device: str) -> dict:
    """What a job ran on: the device, its name, the driver, the CUDA runtime and the PyTorch build."""
    record = {"device": device, "torch": torch.__version__, "cuda_build": torch.version.cuda, "driver": driver_version(), "gpu_allocated": gpu_allocated()}
    if device == "cuda":
        record["name"] = torch.cuda.get_device_name(0)
    return record


def resolve(requested: str, setting: str, log: logging.Logger | None = None) -> tuple[str, dict]:
    """("cuda" or "cpu", the job's device record) for a device setting (auto, cpu or cuda) named
    ``setting`` in messages; raises WorkflowInputError where a GPU was asked for and cannot be used."""
    import torch

    log = log or logging.getLogger("anonymization_impact")
    requested = "cuda" if requested.startswith("cuda") else requested  # a torch device string such as cuda:0
    if requested not in ("auto", "cpu", "cuda"):
        raise WorkflowInputError(f"{setting} is {requested!r}; expected auto, cpu or cuda")
    allocated, available = gpu_allocated(), torch.cuda.is_available()
    if (requested == "cuda" or (requested == "auto" and allocated)) and not available:
        asked = f"{setting} is {requested}" + (" and the scheduler gave this job a GPU" if allocated else "")
        raise WorkflowInputError(f"{asked}, but the job cannot use it: {why_no_gpu(torch)}. Refusing to run on the CPU instead "
                                 f"(days where a GPU takes hours); set {setting}: cpu to run on the CPU on purpose.")
    device = "cuda" if requested != "cpu" and available else "cpu"
    record = describe(torch, device)
    log.info("device %s (%s %s): %s", device, setting, requested, record)
    if device == "cpu" and allocated:
        log.warning("the scheduler gave this job a GPU, but %s is cpu: the GPU stays unused", setting)
    return device, record
