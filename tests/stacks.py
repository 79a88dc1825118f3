"""What the tests that run code inside the env twins (`pytest -m stacks`) share: tools/env_twins.py
as a module, the skip where this machine lacks what twins need, a twin by env file, and the
environment a twin's interpreter runs in (the package on PYTHONPATH, no GPU, a headless
matplotlib)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

if "env_twins" not in sys.modules:
    _spec = importlib.util.spec_from_file_location("env_twins", REPO / "tools" / "env_twins.py")
    sys.modules["env_twins"] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(sys.modules["env_twins"])
env_twins = sys.modules["env_twins"]


@pytest.fixture(scope="session")
def stacks_machine():
    lines = env_twins.missing()
    if lines:
        pytest.skip("; ".join(lines))


def twin(env: Path) -> Path:
    """The twin of ``env`` (an envs/*.yaml), built unless cached."""
    try:
        return env_twins.build(env, quiet=True)
    except env_twins.TwinError as error:
        pytest.fail(str(error))


def twin_environment(python: Path, paths: tuple[Path, ...] = ()) -> dict:
    pythonpath = ":".join(str(path) for path in (REPO / "scripts", *paths))
    return {"PATH": f"{python.parent}:/usr/bin:/bin", "PYTHONPATH": pythonpath, "HOME": str(Path.home()), "MPLBACKEND": "Agg", "CUDA_VISIBLE_DEVICES": ""}


def run_in_twin(python: Path, code: str, paths: tuple[Path, ...] = (), timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(python), "-c", code], capture_output=True, text=True, cwd=REPO, env=twin_environment(python, paths), timeout=timeout)
