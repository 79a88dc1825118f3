"""What the tests that run the paper's stacks share: tools/env_twins.py as a module, the fixture
that skips where this machine cannot build the env twins, a twin's folder, running code and the
jobs of tests/twin_jobs/ in it; dp2's checkout and random-weight checkpoints of its generators; an
environment module per twin, Snakemake running the workflow with them, and which twin ran a job.

The tests marked `stacks` (deselected by `make test`, run by `make test-stacks`) use these to run
the package inside a twin's interpreter, as the workflow's rules do in the conda envs, and the
workflow itself with `--sdm env-modules`, each rule in its env's twin.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from conftest import REPO, SNAKEMAKE

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


def run_twin_job(python: Path, job: str, *args, timeout: int = 1200) -> subprocess.CompletedProcess:
    """tests/twin_jobs/<job> with ``args`` as its command line, in a twin's interpreter."""
    script = REPO / "tests" / "twin_jobs" / job
    argv = [str(script), *map(str, args)]
    result = run(python, f"import runpy, sys; sys.argv = {argv!r}; runpy.run_path({str(script)!r}, run_name='__main__')", timeout=timeout)
    assert result.returncode == 0, result.stderr[-6000:]
    return result


@pytest.fixture(scope="session")
def extra_paths(tmp_path_factory) -> dict[str, tuple[Path, ...]]:
    """env stem -> what the workflow puts on sys.path there: dp2 runs from its checkout at
    DP2_COMMIT (rule download_deepprivacy2), here the wheelhouse's archive of that commit."""
    from anonymization_impact.realistic import DP2_COMMIT

    wheelhouse = env_twins.find_wheelhouse()
    archive = wheelhouse / "sources" / f"deep_privacy2-{DP2_COMMIT}.tar.gz" if wheelhouse else None
    if archive is None or not archive.is_file():
        return {}
    target = tmp_path_factory.mktemp("dp2")
    with tarfile.open(archive) as tar:
        tar.extractall(target)
    return {"deepprivacy2": tuple(target.iterdir())}


# the generator of each role of a realistic variant (realistic.weights.<role>)
DP2_GENERATORS = {"face": "fdf128", "face_hr": "fdf256", "body": "triagan"}


@pytest.fixture(scope="session")
def dp2_checkpoints(stacks_machine, extra_paths, tmp_path_factory) -> dict:
    """Random-weight checkpoints of dp2's three generators (tests/twin_jobs/realistic_job.py, in the
    deepprivacy2 twin): {"dp2_root": dp2's checkout, "python": the twin's, "made": {generator: {path, md5,
    parameters}}, "config": the overlay that registers each as a `weights` entry of its own (path, md5)
    named by realistic.weights, the only way a file that is not the paper's loads}."""
    if "deepprivacy2" not in extra_paths:
        pytest.skip("the wheelhouse has no deep_privacy2 archive at DP2_COMMIT")
    python = twin(REPO / "envs" / "deepprivacy2.yaml") / "bin" / "python"
    work = tmp_path_factory.mktemp("dp2_checkpoints")
    dp2_root = extra_paths["deepprivacy2"][0]
    run_twin_job(python, "realistic_job.py", "checkpoints", dp2_root, work, 0, work / "checkpoints.json")
    made = json.loads((work / "checkpoints.json").read_text())
    config = {
        "weights": {f"test_random_{generator}": {"path": made[generator]["path"], "md5": made[generator]["md5"], "url": None} for generator in made},
        "realistic": {"weights": {role: f"test_random_{generator}" for role, generator in DP2_GENERATORS.items()}},
    }
    return {"dp2_root": dp2_root, "python": python, "made": made, "config": config}


# ----------------------------------------------------------------- the workflow with environment modules

MODULES_INIT = Path("/usr/share/modules/init/bash")


@pytest.fixture(scope="session")
def modulepath(tmp_path_factory) -> Path:
    """An environment module per env twin (built unless cached)."""
    missing = env_twins.missing()
    if not MODULES_INIT.is_file():
        missing.append(f"Environment Modules missing ({MODULES_INIT}): bash .ci/install-modules")
    if missing:
        pytest.skip("; ".join(missing))
    directory = tmp_path_factory.mktemp("modulefiles")
    for env_file in sorted((REPO / "envs").glob("*.yaml")):
        env_twins.write_modulefile(directory, env_file, twin(env_file))
    return directory


def snakemake_with_modules(workdir: Path, modulepath: Path, overlay: dict, *arguments: str) -> tuple[list[str], dict[str, str]]:
    """The command and environment of `snakemake --sdm env-modules` on this repository's workflow in
    ``workdir``, config.yaml with ``overlay`` on top (written to workdir/overlay.yaml)."""
    (workdir / "overlay.yaml").write_text(yaml.safe_dump(overlay))
    environment = {**os.environ, "BASH_ENV": str(MODULES_INIT), "MODULEPATH": str(modulepath)}
    command = [*SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir), "--cores", "2", "--sdm", "env-modules",
               "--configfile", str(REPO / "config.yaml"), str(workdir / "overlay.yaml"), *arguments]
    return command, environment


def run_with_modules(workdir: Path, modulepath: Path, overlay: dict, *targets: str, options: tuple[str, ...] = (), timeout: int = 900) -> subprocess.CompletedProcess:
    command, environment = snakemake_with_modules(workdir, modulepath, overlay, *options, "--", *targets)
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=environment)


def ran_in(log: Path, env: str) -> bool:
    """Whether a job's log says that the Python of ``env``'s twin ran it (its first line names the
    interpreter: anonymization_impact.logs)."""
    return f"({twin(REPO / 'envs' / f'{env}.yaml')}/bin/python" in log.read_text().splitlines()[0]
