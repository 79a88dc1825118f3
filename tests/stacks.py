"""What the tests that run the paper's stacks share: tools/env_twins.py as a module, the fixture
that skips where this machine cannot build the env twins, a twin's folder, and running code in it.

The tests marked `stacks` (deselected by `make test`, run by `make test-stacks`) use these to run
the package inside a twin's interpreter, as the workflow's rules do in the conda envs.
"""

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
    """The twin of an env file (built unless cached)."""
    try:
        return env_twins.build(env, quiet=True)
    except env_twins.TwinError as error:
        pytest.fail(str(error))


def environment(python: Path, paths: tuple[Path, ...] = ()) -> dict[str, str]:
    """What a rule's job sees in the env: its bin on PATH, the package on PYTHONPATH, no GPU."""
    pythonpath = ":".join(str(path) for path in (REPO / "scripts", *paths))
    return {"PATH": f"{python.parent}:/usr/bin:/bin", "PYTHONPATH": pythonpath, "HOME": str(Path.home()), "MPLBACKEND": "Agg", "CUDA_VISIBLE_DEVICES": ""}


def run(python: Path, code: str, paths: tuple[Path, ...] = (), *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(python), "-c", code, *args], capture_output=True, text=True, cwd=REPO, env=environment(python, paths), timeout=timeout)
