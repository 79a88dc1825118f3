"""The GPU guard: a job that asked for a GPU never runs on the CPU, and says why it cannot use one."""

from __future__ import annotations

import logging
import types

import pytest

from anonymization_impact import devices
from anonymization_impact.errors import WorkflowInputError

torch = pytest.importorskip("torch")


@pytest.fixture
def no_cuda(monkeypatch):
    """This machine, whatever it has: no usable GPU, no scheduler allocation."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for name in devices.GPU_ALLOCATION_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_auto_runs_on_the_cpu_without_a_gpu_and_says_so(no_cuda, caplog):
    with caplog.at_level(logging.INFO):
        device, record = devices.resolve("auto", "training.device")
    assert device == "cpu" and record["device"] == "cpu" and record["torch"] == torch.__version__ and record["gpu_allocated"] is False
    assert "device cpu (training.device auto)" in caplog.text


@pytest.mark.parametrize("requested, allocated", [("cuda", False), ("cuda:0", False), ("auto", True)])
def test_a_job_that_asked_for_a_gpu_refuses_the_cpu(no_cuda, monkeypatch, requested, allocated):
    if allocated:
        monkeypatch.setenv("SLURM_JOB_GPUS", "0")  # what SLURM sets for a job with --gpus / --gres=gpu
    with pytest.raises(WorkflowInputError, match="Refusing to run on the CPU") as error:
        devices.resolve(requested, "training.device")
    assert ("the scheduler gave this job a GPU" in str(error.value)) == allocated


def test_cpu_on_purpose_runs_with_a_warning_when_a_gpu_was_given(no_cuda, monkeypatch, caplog):
    monkeypatch.setenv("SLURM_GPUS_ON_NODE", "1")
    with caplog.at_level(logging.WARNING):
        assert devices.resolve("cpu", "training.device")[0] == "cpu"
    assert "the GPU stays unused" in caplog.text


def fake_torch(cuda_build, init_error=None):
    def init():
        if init_error:
            raise RuntimeError(init_error)

    return types.SimpleNamespace(__version__="1.12.1", version=types.SimpleNamespace(cuda=cuda_build), cuda=types.SimpleNamespace(init=init))


def test_the_reason_names_the_cause(tmp_path):
    driver = tmp_path / "version"
    assert "CPU build without CUDA" in devices.why_no_gpu(fake_torch(None), driver)
    assert f"no NVIDIA driver ({driver} is missing)" in devices.why_no_gpu(fake_torch("11.3"), driver)
    driver.write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  450.80.02  Wed Sep 23 01:13:39 UTC 2020\nGCC version:  gcc 9.3.0\n")
    old = "The NVIDIA driver on your system is too old (found version 11000). Please update your GPU driver"
    reason = devices.why_no_gpu(fake_torch("13.0", old), driver)
    assert "driver 450.80.02 is older than this PyTorch's CUDA 13.0 needs" in reason and "training.stack: paper" in reason
    assert "no CUDA device is visible to this job (CUDA_VISIBLE_DEVICES=''" in devices.why_no_gpu(fake_torch("11.3"), driver, {"CUDA_VISIBLE_DEVICES": ""})
