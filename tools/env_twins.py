#!/usr/bin/env python3
"""Runnable twins of the conda envs: one virtualenv per envs/*.yaml, built from that file alone.

The conda envs of this workflow cannot be created on machines without conda channels (ours reach
PyPI only). Their twin is a virtualenv with
  - the env's Python (its `python=X.Y` pin; the pyenv interpreter of that minor version),
  - the PyPI build of its PyTorch (`pytorch=` / `torchvision=` conda pins -> `torch==` /
    `torchvision==`; PyPI's Linux wheels are CUDA builds that bundle their CUDA libraries, so the
    conda-only CUDA runtime packages are left out, each with its reason),
  - every other conda pin under its PyPI name and the same version (CONDA_TO_PYPI for the few
    names that differ),
  - the env's `pip:` section as written, except that GitHub sources pinned to a commit come from
    the wheelhouse (a local mirror for tests: a prebuilt wheel for the env's Python + PyTorch when
    there is one, else the source archive of exactly that commit) and OpenMMLab's
    `--find-links https://download.openmmlab.com/...` becomes the wheelhouse folder of prebuilt
    wheels for the env's Python + PyTorch.
After building, every pinned package is checked to have exactly the pinned version.

Install order mirrors `conda env create`: the conda packages first (here: `pip install` of their
PyPI twins), then the pip section in one `pip install -r`. A wheelhouse source whose setup.py
requires further GitHub projects by URL (dp2) is installed last with --no-deps, its requirements
put into the pip step (the GitHub ones mapped to the wheelhouse too), since pip would otherwise
clone them from GitHub.

Twins are cached outside the clone, keyed by the env file's content and TRANSLATION_VERSION:
${ANONYMIZATION_IMPACT_ENV_CACHE:-~/.cache/anonymization-impact/env-twins}/<env>-<hash12>/,
built in a temporary folder beside it and renamed into place, with a marker file (MARKER) saying
what was built. Files identical to those of another cached twin (the same PyTorch wheel) are
hard-linked to save disk.

    python tools/env_twins.py check              # what this machine lacks (pyenv Python, wheelhouse)
    python tools/env_twins.py plan envs/X.yaml   # the commands a build would run
    python tools/env_twins.py build envs/X.yaml ... | --all
    python tools/env_twins.py path envs/X.yaml   # the twin's folder (built if needed)
    python tools/env_twins.py modulefiles DIR --all  # an environment module per twin (--sdm env-modules)
    python tools/env_twins.py gc                 # remove twins of env files that changed since

Standard library + PyYAML only.
"""

from __future__ import annotations

import argparse
import ast
import filecmp
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

# Bump when the translation below changes what a twin contains: every cached twin is rebuilt.
TRANSLATION_VERSION = "1"
REPO = Path(__file__).resolve().parents[1]
MARKER = ".env-twin.json"

# conda name -> PyPI name, where they differ (all others are the same name on both).
CONDA_TO_PYPI = {
    "pytorch": "torch",
    "matplotlib-base": "matplotlib",
}
# conda-only packages: no PyPI twin, and why none is needed.
CONDA_ONLY = {
    "cudatoolkit": "conda-only CUDA runtime that the pytorch channel's builds link against; PyPI's torch wheels bundle their own CUDA libraries",
    "pytorch-cuda": "conda-only metapackage choosing the pytorch channel's CUDA build; PyPI's Linux torch wheels are CUDA builds (bundled CUDA libraries)",
    "pytorch-gpu": "conda-forge metapackage choosing its CUDA build of pytorch; PyPI's Linux torch wheels are CUDA builds (bundled CUDA libraries)",
    "cuda-version": "conda-forge metapackage constraining the CUDA runtime; PyPI's torch wheels bundle their own CUDA libraries",
    "mkl": "Intel MKL shared libraries that the pytorch channel's builds link against; PyPI's torch wheels carry MKL linked in",
}
# Packages set up before the others, exactly as conda orders them: the interpreter and pip.
INTERPRETER = "python"
INSTALLER = "pip"
# GitHub sources the wheelhouse cannot mirror -> (PyPI stand-in, why). Said in the plan.
STAND_INS = {
    "open-mmlab/mmdetection": (
        "mmdet==2.28.2",
        "the wheelhouse does not mirror open-mmlab/mmdetection (too large); mmdet 2.28.2 is the last 2.x release",
    ),
    "hukkelas/DSFD-Pytorch-Inference": (
        "face_detection==0.2.2",
        "not mirrored; the PyPI release face_detection 0.2.2 of the same project (as envs/detectors.yaml pins)",
    ),
    "wmuron/motpy": (
        "motpy==0.0.10",
        "not mirrored; the PyPI release motpy 0.0.10, the last one",
    ),
}
CONDA_PIN = re.compile(r"^(?P<name>[A-Za-z0-9_.-]+)=(?P<version>[0-9][A-Za-z0-9_.+!]*)$")
PIP_PIN = re.compile(r"^(?P<name>[A-Za-z0-9_.\[\]-]+)==(?P<version>[0-9][A-Za-z0-9_.+!]*)$")
GIT_REQUIREMENT = re.compile(
    r"^(?P<name>[A-Za-z0-9_.-]+)\s*@\s*git\+https://github\.com/(?P<repo>[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+?)(?:\.git)?"
    r"(?:@(?P<commit>[0-9a-f]{7,40}))?(?:#subdirectory=(?P<subdirectory>[A-Za-z0-9_./-]+))?$"
)
OPENMMLAB_FIND_LINKS = re.compile(r"^--find-links\s+https://download\.openmmlab\.com/\S+$")


class TwinError(Exception):
    """An env that cannot be twinned or built here, with the reason."""


def normalize(name: str) -> str:
    """PEP 503 name: `Pillow`, `pillow` and `PILLOW` are one project, as `a_b` and `a-b`."""
    return re.sub(r"[-_.]+", "-", name.split("[")[0]).lower()


# --------------------------------------------------------------------------- the machine


def pyenv_root() -> Path:
    return Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))


def find_python(minor: str) -> Path | None:
    """The interpreter of Python `minor` (e.g. "3.9"): pyenv's newest X.Y.Z, else pythonX.Y on PATH."""
    versions = pyenv_root() / "versions"
    candidates = []
    if versions.is_dir():
        for entry in versions.iterdir():
            match = re.fullmatch(rf"{re.escape(minor)}\.(\d+)", entry.name)
            if match and (entry / "bin" / "python").exists():
                candidates.append((int(match.group(1)), entry / "bin" / "python"))
    if candidates:
        return max(candidates)[1]
    found = shutil.which(f"python{minor}")
    return Path(found) if found else None


def find_wheelhouse() -> Path | None:
    """The wheelhouse: $ANONYMIZATION_IMPACT_WHEELHOUSE, else shared/wheelhouse in or beside the clone."""
    candidates = []
    if os.environ.get("ANONYMIZATION_IMPACT_WHEELHOUSE"):
        candidates.append(Path(os.environ["ANONYMIZATION_IMPACT_WHEELHOUSE"]))
    candidates += [REPO / "shared" / "wheelhouse", REPO.parent / "shared" / "wheelhouse"]
    for candidate in candidates:
        if (candidate / "sources").is_dir() and (candidate / "wheels").is_dir():
            return candidate
    return None


def cache_root() -> Path:
    configured = os.environ.get("ANONYMIZATION_IMPACT_ENV_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "anonymization-impact" / "env-twins"


# --------------------------------------------------------------------------- the wheelhouse


@dataclass
class Wheelhouse:
    root: Path

    def sources(self) -> dict[str, Path]:
        """'<repo name>-<full commit>' -> archive."""
        return {p.name[: -len(".tar.gz")]: p for p in sorted((self.root / "sources").glob("*.tar.gz"))}

    def source(self, repo: str, commit: str | None) -> Path | None:
        """The archive of `repo` (owner/name) at `commit` (a prefix of at least 7 digits), or, for
        no commit, the only archive of that repository."""
        name = repo.split("/")[1]
        found = [path for key, path in self.sources().items() if key.rsplit("-", 1)[0] == name and (commit is None or key.rsplit("-", 1)[1].startswith(commit))]
        return found[0] if len(found) == 1 else None

    def wheel_folder(self, python: str, torch: str | None) -> Path | None:
        folder = self.root / "wheels" / f"cp{python.replace('.', '')}-torch{torch}"
        return folder if torch and folder.is_dir() else None

    def built_from(self) -> dict[tuple[str, str], str]:
        """(folder, wheel file) -> the short commit it was built from, read from the README's
        wheels table (a wheel built from a PyPI sdist names no commit)."""
        readme = self.root / "README.md"
        found = {}
        if readme.is_file():
            for line in readme.read_text().splitlines():
                cells = [cell.strip().strip("`").rstrip("/") for cell in line.strip().strip("|").split("|")]
                if len(cells) >= 3 and cells[1].endswith(".whl"):
                    commit = re.search(r"\b([0-9a-f]{7,40})\b", cells[2])
                    if commit:
                        found[(cells[0], cells[1])] = commit.group(1)
        return found

    def wheel(self, python: str, torch: str | None, project: str, commit: str | None) -> Path | None:
        """The prebuilt wheel of `project` for this Python + PyTorch, built from `commit` (any
        commit when None: an unpinned GitHub requirement)."""
        folder = self.wheel_folder(python, torch)
        if folder is None:
            return None
        built_from = self.built_from()
        for wheel in sorted(folder.glob("*.whl")):
            if normalize(wheel.name.split("-")[0]) != normalize(project):
                continue
            source_commit = built_from.get((folder.name, wheel.name))
            if commit is None or (source_commit and (source_commit.startswith(commit) or commit.startswith(source_commit))):
                return wheel
        return None


# --------------------------------------------------------------------------- the plan


@dataclass
class Plan:
    """What a twin of one env file is: its interpreter, pip steps and the versions to verify."""

    env: str  # the env file's stem, e.g. "detectron2"
    env_file: str
    digest: str  # sha256 of TRANSLATION_VERSION + the env file
    python: str  # "3.9"
    torch: str | None
    pip_version: str | None
    conda_requirements: list[str] = field(default_factory=list)
    pip_lines: list[str] = field(default_factory=list)  # the pip step's requirements file
    no_deps: list[str] = field(default_factory=list)  # installed last, --no-deps --no-build-isolation
    expected: dict[str, str] = field(default_factory=dict)  # normalized name -> exact version
    expected_present: list[str] = field(default_factory=list)  # GitHub sources: installed, any version
    dropped: dict[str, str] = field(default_factory=dict)  # conda-only name=version -> why
    substitutions: list[str] = field(default_factory=list)  # what the wheelhouse / PyPI stands in for

    @property
    def folder_name(self) -> str:
        return f"{self.env}-{self.digest[:12]}"


def env_digest(env_file: Path) -> str:
    return hashlib.sha256(f"env-twins translation {TRANSLATION_VERSION}\n".encode() + env_file.read_bytes()).hexdigest()


def read_env(env_file: Path) -> tuple[list[str], list[str]]:
    """(conda dependencies, pip section) of a conda env file."""
    document = yaml.safe_load(env_file.read_text())
    conda, pip = [], []
    for entry in document.get("dependencies", []):
        if isinstance(entry, dict):
            if set(entry) != {"pip"}:
                raise TwinError(f"{env_file.name}: unknown dependency section {sorted(entry)}")
            pip += [str(line).strip() for line in entry["pip"]]
        else:
            conda.append(str(entry).strip())
    return conda, pip


def setup_py_requirements(archive: Path, subdirectory: str | None = None) -> list[str]:
    """install_requires of a source archive's setup.py, read statically (a literal list in the
    setup() call; setup.py is not run: several import torch)."""
    with tarfile.open(archive) as tar:
        top = tar.getnames()[0].split("/")[0]
        path = "/".join(part for part in (top, subdirectory, "setup.py") if part)
        try:
            text = tar.extractfile(path).read().decode()
        except KeyError:
            return []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setup":
            for keyword in node.keywords:
                if keyword.arg == "install_requires":
                    try:
                        return [str(r) for r in ast.literal_eval(keyword.value)]
                    except ValueError:
                        return []
    return []


def make_plan(env_file: Path, wheelhouse: Wheelhouse | None) -> Plan:
    """Translate an env file into a twin's install plan (no side effects)."""
    env_file = Path(env_file)
    conda, pip = read_env(env_file)
    plan = Plan(env=env_file.stem, env_file=str(env_file), digest=env_digest(env_file), python="", torch=None, pip_version=None)
    for entry in conda:
        match = CONDA_PIN.match(entry)
        if not match:
            raise TwinError(f"{env_file.name}: conda dependency {entry!r} is not pinned as name=version")
        name, version = match["name"].lower(), match["version"]
        if name == INTERPRETER:
            plan.python = ".".join(version.split(".")[:2])
        elif name == INSTALLER:
            plan.pip_version = version
            plan.expected["pip"] = version
        elif name in CONDA_ONLY:
            plan.dropped[f"{name}={version}"] = CONDA_ONLY[name]
        else:
            pypi = CONDA_TO_PYPI.get(name, name)
            plan.conda_requirements.append(f"{pypi}=={version}")
            plan.expected[normalize(pypi)] = version
    if not plan.python:
        raise TwinError(f"{env_file.name}: no python=X.Y pin")
    pip_pins = {}
    for line in pip:
        match = PIP_PIN.match(line)
        if match:
            pip_pins[normalize(match["name"])] = match["version"]
    plan.torch = plan.expected.get("torch") or pip_pins.get("torch")

    for line in pip:
        if OPENMMLAB_FIND_LINKS.match(line) and wheelhouse is None:  # a user's machine: OpenMMLab's own index
            plan.pip_lines.append(line)
            continue
        if OPENMMLAB_FIND_LINKS.match(line):
            folder = wheelhouse.wheel_folder(plan.python, plan.torch)
            if folder is None:
                raise TwinError(f"{env_file.name}: {line!r}: the wheelhouse has no wheels/cp{plan.python.replace('.', '')}-torch{plan.torch}/")
            plan.pip_lines.append(f"--find-links {folder}")
            plan.substitutions.append(f"{line} -> the wheelhouse's {folder.name}/ (prebuilt for Python {plan.python} + torch {plan.torch})")
            continue
        git = GIT_REQUIREMENT.match(line)
        if git:
            _add_github_requirement(plan, wheelhouse, git, env_file)
            continue
        if line.startswith("-"):
            raise TwinError(f"{env_file.name}: pip option {line!r} is not understood by this tool")
        match = PIP_PIN.match(line)
        if not match:
            raise TwinError(f"{env_file.name}: pip dependency {line!r} is not pinned as name==version")
        plan.pip_lines.append(line)
        plan.expected[normalize(match["name"])] = match["version"]
    return plan


def _add_github_requirement(plan: Plan, wheelhouse: Wheelhouse | None, git: re.Match, env_file: Path) -> None:
    """Map `name @ git+https://github.com/owner/repo@commit` to the wheelhouse (or a stand-in)."""
    name, repo, commit, subdirectory = git["name"], git["repo"], git["commit"], git["subdirectory"]
    what = f"{name} @ github.com/{repo}" + (f"@{commit}" if commit else " (no commit)") + (f"#{subdirectory}" if subdirectory else "")
    if wheelhouse is None:  # a user's machine: pip clones the pinned commit from GitHub
        plan.pip_lines.append(git.string.strip())
        plan.expected_present.append(normalize(name))
        plan.substitutions.append(f"{what} -> cloned from GitHub by pip (no wheelhouse)")
        return
    if repo in STAND_INS:
        requirement, why = STAND_INS[repo]
        plan.pip_lines.append(requirement)
        plan.expected[normalize(requirement.split("==")[0])] = requirement.split("==")[1]
        plan.substitutions.append(f"{what} -> PyPI {requirement}: {why}")
        return
    wheel = None if subdirectory else wheelhouse.wheel(plan.python, plan.torch, name, commit)
    if wheel is not None:
        plan.pip_lines.append(f"{name} @ {wheel.as_uri()}")
        plan.expected_present.append(normalize(name))
        plan.substitutions.append(f"{what} -> the wheelhouse's prebuilt {wheel.parent.name}/{wheel.name}")
        return
    archive = wheelhouse.source(repo, commit)
    if archive is None:
        raise TwinError(f"{env_file.name}: {what}: the wheelhouse has no source archive of that commit and no prebuilt wheel")
    uri = archive.as_uri() + (f"#subdirectory={subdirectory}" if subdirectory else "")
    plan.expected_present.append(normalize(name))
    plan.substitutions.append(f"{what} -> the wheelhouse's {archive.name}" + (f" ({subdirectory})" if subdirectory else ""))
    requirements = setup_py_requirements(archive, subdirectory)
    nested = [GIT_REQUIREMENT.match(r.replace(" ", "").replace("@git+", " @ git+")) for r in requirements]
    if not any(nested):
        plan.pip_lines.append(f"{name} @ {uri}")
        return
    # Its setup.py requires GitHub projects by URL: pip would clone them. Installed last without
    # its dependencies, which go into the pip step (the GitHub ones mapped here as well).
    plan.no_deps.insert(0, uri)
    plan.substitutions.append(f"{name}: its setup.py requires GitHub projects by URL; installed with --no-deps, its requirements in the pip step")
    for requirement, git_dep in zip(requirements, nested):
        if git_dep:
            if normalize(git_dep["name"]) not in plan.expected_present and normalize(git_dep["name"]) not in plan.expected:
                _add_github_requirement(plan, wheelhouse, git_dep, env_file)
        else:
            plan.pip_lines.append(requirement.replace(" ", ""))


def pip_commands(plan: Plan, python: str, requirements_file: str = "<pip-section.txt>", constraints_file: str = "<pins.txt>") -> list[list[str]]:
    """The commands that build a twin, in order (python: the venv's interpreter)."""
    pip = [python, "-m", "pip", "install", "--no-compile", "--disable-pip-version-check"]
    commands = []
    if plan.pip_version:
        commands.append([*pip, f"pip=={plan.pip_version}"])
    if plan.conda_requirements:
        commands.append([*pip, *plan.conda_requirements])
    if plan.pip_lines:
        commands.append([*pip, "-r", requirements_file, "-c", constraints_file])
    if plan.no_deps:
        commands.append([*pip, "--no-deps", "--no-build-isolation", *plan.no_deps])
    return commands


def constraints(plan: Plan) -> str:
    """The env's exact pins as pip constraints: the pip step may not move what conda installed."""
    return "".join(f"{name}=={version}\n" for name, version in sorted(plan.expected.items()) if name != "pip")


# --------------------------------------------------------------------------- building


def installed_versions(python: Path) -> dict[str, str]:
    code = "import json, importlib.metadata as m; print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))"
    out = subprocess.run([str(python), "-c", code], check=True, capture_output=True, text=True).stdout
    return {normalize(name): version for name, version in json.loads(out).items() if name}


def drift(plan: Plan, versions: dict[str, str]) -> list[str]:
    """Every pinned package that is missing or has another version than the env file pins."""
    problems = []
    for name, version in sorted(plan.expected.items()):
        if name not in versions:
            problems.append(f"{name}: pinned {version}, not installed")
        elif versions[name] != version:
            problems.append(f"{name}: pinned {version}, installed {versions[name]}")
    for name in plan.expected_present:
        if name not in versions:
            problems.append(f"{name}: from GitHub, not installed")
    return problems


def python_minor(python: Path) -> str:
    return subprocess.run([str(python), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], check=True, capture_output=True, text=True).stdout.strip()


def twin_path(plan: Plan) -> Path:
    return cache_root() / plan.folder_name


def is_built(path: Path) -> bool:
    return (path / MARKER).is_file() and (path / "bin" / "python").exists()


def _relocate(venv: Path, old: Path, new: Path) -> None:
    """Rewrite the building folder's path in bin/ (script shebangs, activate) to the final one."""
    for item in (venv / "bin").iterdir():
        if item.is_symlink() or not item.is_file() or item.stat().st_size > 1 << 20:
            continue
        data = item.read_bytes()
        if str(old).encode() in data:
            mode = item.stat().st_mode
            item.write_bytes(data.replace(str(old).encode(), str(new).encode()))
            os.chmod(item, mode)
    config = venv / "pyvenv.cfg"
    config.write_text(config.read_text().replace(str(old), str(new)))


def _link_duplicates(venv: Path, log) -> int:
    """Hard-link this twin's large files to identical ones of other cached twins; bytes saved."""
    saved = 0
    others = [p for p in cache_root().iterdir() if p != venv and is_built(p)] if cache_root().is_dir() else []
    if not others:
        return 0
    for path in venv.rglob("*"):
        if path.is_symlink() or not path.is_file():
            continue
        size = path.stat().st_size
        if size < 1 << 20:
            continue
        relative = path.relative_to(venv)
        for other in others:
            twin = other / relative
            if twin.is_file() and not twin.is_symlink() and twin.stat().st_size == size and filecmp.cmp(path, twin, shallow=False):
                temporary = path.with_name(path.name + ".link-tmp")
                os.link(twin, temporary)
                os.replace(temporary, path)
                saved += size
                break
    log(f"hard-linked {saved / 2**30:.2f} GiB of files identical to other cached twins")
    return saved


def build(env_file: Path, quiet: bool = False) -> Path:
    """The twin of env_file, built unless cached; raises TwinError naming what is wrong."""
    wheelhouse_root = find_wheelhouse()
    plan = make_plan(env_file, Wheelhouse(wheelhouse_root) if wheelhouse_root else None)
    final = twin_path(plan)
    log = (lambda message: None) if quiet else (lambda message: print(f"[{plan.env}] {message}", file=sys.stderr, flush=True))
    if is_built(final):
        log(f"cached: {final}")
        return final
    base = find_python(plan.python)
    if base is None:
        raise TwinError(f"{plan.env}: no Python {plan.python} (pyenv install {plan.python}, or python{plan.python} on PATH)")
    final.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".building-{plan.folder_name}-", dir=final.parent))
    started = time.monotonic()
    try:
        log(f"building in {building} with {base}")
        subprocess.run([str(base), "-m", "venv", "--prompt", plan.env, str(building)], check=True)
        python = building / "bin" / "python"
        work = building / ".env-twin"
        work.mkdir()
        (work / "pip-section.txt").write_text("".join(line + "\n" for line in plan.pip_lines))
        (work / "pins.txt").write_text(constraints(plan))
        environment = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONNOUSERSITE": "1"}
        environment.pop("PYTHONPATH", None)
        build_log = work / "build.log"
        for command in pip_commands(plan, str(python), str(work / "pip-section.txt"), str(work / "pins.txt")):
            log("$ " + shlex.join(command))
            with build_log.open("a") as output:
                output.write("$ " + shlex.join(command) + "\n")
                output.flush()
                result = subprocess.run(command, env=environment, stdout=output, stderr=subprocess.STDOUT)
            if result.returncode:
                lines = [line for line in build_log.read_text().splitlines() if not line.startswith("WARNING: Location ")]
                raise TwinError(f"{plan.env}: pip failed ({shlex.join(command[3:])}):\n" + "\n".join(lines[-40:]))
        minor = python_minor(python)
        if minor != plan.python:
            raise TwinError(f"{plan.env}: built with Python {minor}, the env pins {plan.python}")
        versions = installed_versions(python)
        problems = drift(plan, versions)
        if problems:
            raise TwinError(f"{plan.env}: versions differ from {env_file}:\n  " + "\n  ".join(problems))
        seconds = time.monotonic() - started
        _relocate(building, building, final)
        _link_duplicates(building, log)
        marker = {
            "env_file": str(env_file),
            "sha256": plan.digest,
            "translation_version": TRANSLATION_VERSION,
            "python": str(base),
            "build_seconds": round(seconds, 1),
            "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "plan": asdict(plan),
            "installed": versions,
        }
        (building / MARKER).write_text(json.dumps(marker, indent=1) + "\n")
        os.chmod(building, 0o755)  # mkdtemp's 0700: others may read a shared cache
        try:
            os.rename(building, final)
        except OSError:  # another build finished first: use it
            if not is_built(final):
                raise
            shutil.rmtree(building, ignore_errors=True)
        log(f"built in {seconds:.0f} s: {final}")
        return final
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise


# --------------------------------------------------------------------------- command line


def env_files(arguments: list[str], all_envs: bool) -> list[Path]:
    if all_envs:
        return sorted((REPO / "envs").glob("*.yaml"))
    if not arguments:
        raise SystemExit("name env files (envs/X.yaml ...) or --all")
    return [Path(argument) for argument in arguments]


def missing(env_files_: list[Path] | None = None) -> list[str]:
    """What this machine lacks to build the twins: one line each (empty: nothing)."""
    lines = []
    if find_wheelhouse() is None:
        lines.append("wheelhouse missing: set ANONYMIZATION_IMPACT_WHEELHOUSE or put shared/wheelhouse in or beside the clone")
    minors = sorted({_python_pin(env) for env in (env_files_ or sorted((REPO / "envs").glob("*.yaml")))})
    for minor in minors:
        if find_python(minor) is None:
            lines.append(f"Python {minor} missing: pyenv install {minor} (or python{minor} on PATH)")
    return lines


def stale(env_files_: list[Path]) -> list[Path]:
    """Cached twins of these envs whose env file has changed since (another hash), and building
    folders left by a build that was killed (older than a day)."""
    root = cache_root()
    if not root.is_dir():
        return []
    current = {f"{env.stem}-{env_digest(env)[:12]}" for env in env_files_}
    names = {env.stem for env in env_files_}
    found = []
    for entry in sorted(root.iterdir()):
        match = re.fullmatch(r"(?P<env>.+)-(?P<hash>[0-9a-f]{12})", entry.name)
        if match and match["env"] in names and entry.name not in current:
            found.append(entry)
        elif entry.name.startswith(".building-") and time.time() - entry.stat().st_mtime > 86400:
            found.append(entry)
    return found


def _python_pin(env_file: Path) -> str:
    for entry in read_env(env_file)[0]:
        match = CONDA_PIN.match(entry)
        if match and match["name"] == INTERPRETER:
            return ".".join(match["version"].split(".")[:2])
    raise TwinError(f"{env_file}: no python=X.Y pin")


MODULE_FAMILY = "anonymization-impact"  # rules/common.smk's env_module(): anonymization-impact/<env>


def write_modulefile(directory: Path, env_file: Path, twin: Path) -> Path:
    """An environment module (Environment Modules / Lmod, Tcl) that puts a twin first on PATH:
    what `snakemake --sdm env-modules` loads for the rules of that env."""
    plan = json.loads((twin / MARKER).read_text())["plan"]
    path = Path(directory) / MODULE_FAMILY / env_file.stem
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "#%Module1.0\n"
        f"## {MODULE_FAMILY}/{env_file.stem}: the env twin of {plan['env_file']} (tools/env_twins.py)\n"
        f'module-whatis "{plan["env_file"]} as a virtualenv: Python {plan["python"]}'
        + (f', torch {plan["torch"]}' if plan.get("torch") else "")
        + '"\n'
        f"conflict {MODULE_FAMILY}\n"
        f"setenv VIRTUAL_ENV {twin}\n"
        f"prepend-path PATH {twin / 'bin'}\n"
    )
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="say what this machine lacks (exit 0; 'skip: ...' lines)")
    check.add_argument("env_files", nargs="*", type=Path)
    plan_parser = commands.add_parser("plan", help="print the commands a build would run")
    plan_parser.add_argument("env_file", type=Path)
    build_parser = commands.add_parser("build", help="build (or reuse) twins")
    build_parser.add_argument("env_files", nargs="*")
    build_parser.add_argument("--all", action="store_true", help="every envs/*.yaml")
    path_parser = commands.add_parser("path", help="print a twin's folder, building it if needed")
    path_parser.add_argument("env_file", type=Path)
    modules_parser = commands.add_parser("modulefiles", help="write an environment module per twin (for snakemake --sdm env-modules)")
    modules_parser.add_argument("directory", type=Path, help="put it on MODULEPATH")
    modules_parser.add_argument("env_files", nargs="*")
    modules_parser.add_argument("--all", action="store_true", help="every envs/*.yaml")
    gc_parser = commands.add_parser("gc", help="remove cached twins of envs/*.yaml whose env file has changed")
    gc_parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)

    try:
        if args.command == "check":
            lines = missing(args.env_files or None)
            for line in lines:
                print(f"skip: {line}")
            if not lines:
                print(f"ok: wheelhouse {find_wheelhouse()}; twins cached under {cache_root()}")
            return 0
        if args.command == "plan":
            wheelhouse_root = find_wheelhouse()
            plan = make_plan(args.env_file, Wheelhouse(wheelhouse_root) if wheelhouse_root else None)
            base = find_python(plan.python)
            venv = twin_path(plan)
            print(f"# {plan.env_file} -> {venv}{' (cached)' if is_built(venv) else ''}")
            print(f"# Python {plan.python}: {base or 'MISSING'}; torch {plan.torch}")
            for pin, why in plan.dropped.items():
                print(f"# left out {pin}: {why}")
            for line in plan.substitutions:
                print(f"# {line}")
            print(shlex.join([str(base or f"python{plan.python}"), "-m", "venv", "--prompt", plan.env, str(venv)]))
            for command in pip_commands(plan, str(venv / "bin" / "python")):
                print(shlex.join(command))
            print("# <pip-section.txt>:")
            for line in plan.pip_lines:
                print(f"#   {line}")
            print("# <pins.txt> (constraints):")
            for line in constraints(plan).splitlines():
                print(f"#   {line}")
            return 0
        if args.command == "build":
            failed = []
            for env_file in env_files(args.env_files, args.all):
                try:
                    print(build(Path(env_file)))
                except TwinError as error:
                    print(f"FAILED {env_file}: {error}", file=sys.stderr)
                    failed.append(str(env_file))
            if failed:
                print(f"failed: {' '.join(failed)}", file=sys.stderr)
                return 1
            return 0
        if args.command == "modulefiles":
            for env_file in env_files(args.env_files, args.all):
                print(write_modulefile(args.directory, Path(env_file), build(Path(env_file), quiet=True)))
            return 0
        if args.command == "gc":
            for entry in stale(sorted((REPO / "envs").glob("*.yaml"))):
                print(f"{'would remove' if args.dry_run else 'removing'} {entry}")
                if not args.dry_run:
                    shutil.rmtree(entry)
            return 0
        if args.command == "path":
            print(build(args.env_file, quiet=True))
            return 0
    except TwinError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
