"""Static checks of the per-rule conda envs (they cannot be created here: no conda channels).

Every rule that runs code has a `conda:` env under envs/ (train_model and predict: a function
choosing the env of the run's backend, anonymization_impact.training.BACKEND_ENVS); every env
parses, uses conda-forge without `defaults` (the paper-stack envs also the pytorch channel, for
PyTorch 1.12.1 + CUDA 11.3), and pins every dependency exactly (a git dependency: a commit);
the packages a rule's script imports (through the anonymization_impact package, transitively,
with each backend module checked against its own envs) are in its env; and every version that
is both in an env and in requirements.txt (what `make` installs) is the same, except in the
paper-stack envs and where MMDetection's newest stack needs an older PyTorch.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest
import yaml

from anonymization_impact.training import BACKEND_ENVS
from anonymization_impact.training.detectron2_backend import DETECTRON2_COMMIT, DETECTRON2_CURRENT_COMMIT
from anonymization_impact.training.mmdetection.common import MMDETECTION_COMMIT

from conftest import REPO
from tools.cost_plan import read_profile

PACKAGE = "anonymization_impact"
TRAINING = REPO / "scripts" / PACKAGE / "training"
# Envs of the paper's stack: PyTorch 1.12.1 + CUDA 11.3 from the pytorch channel, Python 3.9.
PAPER_ENVS = {BACKEND_ENVS[backend]["paper"] for backend in ("detectron2", "mmdetection")}
# DeepPrivacy2 at the paper's commit: its own pins (Python 3.9, PyTorch 1.13.1 + CUDA 11.7 from
# the pytorch and nvidia channels), not this project's versions.
DEEPPRIVACY2_ENV = "envs/deepprivacy2.yaml"
# DSFD + ViTPose-H: the ViTPose authors' stack (Python 3.9, PyTorch 1.9.0 + CUDA 11.1, mmcv-full 1.3.9).
DETECTORS_ENV = "envs/detectors.yaml"
# Packages where an env may differ from requirements.txt, and why.
UNSYNCED = {
    "envs/mmdetection-current.yaml": {"torch", "torchvision", "numpy"},  # mmcv 2.1.0 wheels: torch 2.1 (numpy < 2)
}
# The backend modules each backend's envs must serve (the other backends' are not imported there), relative to TRAINING.
BACKEND_MODULES = {
    "torchvision": {"torchvision_backend.py"},
    "detectron2": {"detectron2_backend.py"},
    "mmdetection": {"mmdetection/__init__.py", "mmdetection/common.py", "mmdetection/v2.py", "mmdetection/v3.py"},
}
STACK_MODULES = {("mmdetection", "paper"): {"mmdetection/v3.py"}, ("mmdetection", "current"): {"mmdetection/v2.py"}}  # left out
# Import name -> distribution names that provide it (conda-forge name first).
DISTRIBUTIONS = {
    "PIL": {"pillow"},
    "yaml": {"pyyaml"},
    "cityscapesscripts": {"cityscapesscripts"},
    "pycocotools": {"pycocotools"},
    "numpy": {"numpy"},
    "scipy": {"scipy"},
    "matplotlib": {"matplotlib-base", "matplotlib"},
    "jsonschema": {"jsonschema"},
    "tqdm": {"tqdm"},
    "torch": {"torch", "pytorch"},
    "torchvision": {"torchvision"},
    "detectron2": {"detectron2"},
    "mmdet": {"mmdet"},
    "mmcv": {"mmcv-full", "mmcv"},
    "mmengine": {"mmengine"},
    "skimage": {"scikit-image"},
}
CONDA_SPEC = re.compile(r"^(?P<name>[A-Za-z0-9_.-]+)=(?P<version>[0-9][A-Za-z0-9_.+!]*)$")
PIP_SPEC = re.compile(r"^(?P<name>[A-Za-z0-9_.-]+)==(?P<version>[0-9][A-Za-z0-9_.+!]*)$")
# A source build pinned to a commit: name @ git+https://...@<hex commit>[#subdirectory=<path>]
GIT_SPEC = re.compile(r"^(?P<name>[A-Za-z0-9_.-]+) @ git\+https://[^@ ]+\.git@(?P<version>[0-9a-f]{10,40})(?:#subdirectory=[A-Za-z0-9_./-]+)?$")
PIP_OPTION = re.compile(r"^--find-links https://\S+$")  # where prebuilt wheels (mmcv) come from


def _directives(block: str) -> dict[str, str]:
    """Directive name -> its lines, of one rule's text."""
    return {m.group(1): m.group(0) for m in re.finditer(r"^    (\w+):\n(?:(?:        .*)?\n)*", block, flags=re.M)}


def rule_blocks() -> dict[str, str]:
    """Rule name -> its text, from the (snakefmt-formatted) Snakefile and rules/*.smk; a
    `use rule A as B with:` block is A's text with the directives it overrides replaced."""
    blocks = {}
    for path in [REPO / "Snakefile", *sorted((REPO / "rules").glob("*.smk"))]:
        text = path.read_text()
        for match in re.finditer(r"^rule (\w+):\n((?:(?:    .*)?\n)*)", text, flags=re.M):
            blocks[match.group(1)] = match.group(2)
        for match in re.finditer(r"^use rule (\w+) as (\w+) with:\n((?:(?:    .*)?\n)*)", text, flags=re.M):
            directives = {**_directives(blocks[match.group(1)]), **_directives(match.group(3))}
            blocks[match.group(2)] = "".join(directives.values())
    return blocks


def directive(block: str, name: str) -> str | None:
    match = re.search(rf"^    {name}:\n        \"([^\"]+)\"", block, flags=re.M)
    return match.group(1) if match else None


def rule_script(block: str) -> str | None:
    """The script a rule runs (relative to rules/): its `script:`, or the script its shell
    `command("<name>")` runs (rules whose env runs Python 3.9; rules/common.smk)."""
    literal = directive(block, "script")
    if literal:
        return literal
    match = re.search(r'^    shell:\n        command\("(\w+)"', block, flags=re.M)
    return f"../scripts/{match.group(1)}.py" if match else None


def conda_envs(block: str) -> dict[str, set[Path]]:
    """env path relative to rules/ -> backend modules left out of the import check there.

    A literal `conda:` is one env, checked against everything but the detectron2 / MMDetection
    modules (reached only through backend(name), which only get_training_env's rules call with
    those names); `get_training_env` is each backend's env of each stack, checked against that
    backend's modules only."""
    literal = directive(block, "conda")
    if literal:
        return {literal: {TRAINING / module for name, modules in BACKEND_MODULES.items() if name != "torchvision" for module in modules}}
    if re.search(r"^    conda:\n        get_training_env$", block, flags=re.M):
        envs = {}
        for backend, stacks in BACKEND_ENVS.items():
            others = set().union(*(modules for name, modules in BACKEND_MODULES.items() if name != backend))
            for stack, env in stacks.items():
                skip = {TRAINING / module for module in others | STACK_MODULES.get((backend, stack), set())}
                envs["../" + env] = envs.get("../" + env, skip) & skip
        return envs
    return {}


def runs_code(block: str) -> bool:
    return bool(re.search(r"^    (script|shell|run|notebook|wrapper):", block, flags=re.M))


def env_dependencies(path: Path) -> dict[str, str]:
    """Normalized name -> pinned version of every conda and pip dependency of an env file."""
    env = yaml.safe_load(path.read_text())
    pins = {}
    for entry in env["dependencies"]:
        if isinstance(entry, dict):
            for pip_entry in entry["pip"]:
                if PIP_OPTION.match(pip_entry):
                    continue
                match = PIP_SPEC.match(pip_entry) or GIT_SPEC.match(pip_entry)
                assert match, f"{path.name}: pip dependency {pip_entry!r} is not pinned as name==version or name @ git+https://...git@commit"
                pins[match["name"].lower()] = match["version"]
            continue
        match = CONDA_SPEC.match(entry)
        assert match, f"{path.name}: conda dependency {entry!r} is not pinned as name=version"
        pins[match["name"].lower()] = match["version"]
    return pins


def imported_modules(path: Path, seen: set[Path] | None = None) -> set[str]:
    """Top-level third-party modules imported by a script, following the project package."""
    seen = seen if seen is not None else set()
    if path in seen:
        return set()
    seen.add(path)
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import inside the package
                base = path.parent
                for _ in range(node.level - 1):
                    base = base.parent
                parts = (node.module or "").split(".") if node.module else []
                names = [".".join([PACKAGE, *_package_parts(base, parts)])]
                names += [f"{names[0]}.{alias.name}" for alias in node.names]
            else:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top == PACKAGE:
                module = _module_file(name)
                if module:
                    found |= imported_modules(module, seen)
            elif top not in sys.stdlib_module_names and top != "snakemake" and top != "__future__":
                found.add(top)
    return found


def _package_parts(base: Path, parts: list[str]) -> list[str]:
    package_root = REPO / "scripts" / PACKAGE
    return [*base.relative_to(package_root).parts, *parts]


def _module_file(dotted: str) -> Path | None:
    path = REPO / "scripts" / Path(*dotted.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def requirement_pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        if "==" in line:
            name, version = line.split("==")
            pins[name.strip().lower()] = version.strip()
    return pins


BLOCKS = rule_blocks()
CODE_RULES = sorted(name for name, block in BLOCKS.items() if runs_code(block))


def test_rules_were_found():
    assert {"generate_twin", "normalize_annotations", "anonymize_shard", "train_model", "evaluate", "plot_fig7"} <= set(CODE_RULES)


@pytest.mark.parametrize("rule", CODE_RULES)
def test_every_rule_that_runs_code_has_a_conda_env_and_a_log(rule):
    block = BLOCKS[rule]
    envs = conda_envs(block)
    assert envs, f"rule {rule} has no conda: directive (a path, or get_training_env)"
    for env in envs:
        assert (REPO / "rules" / env).resolve().is_file(), f"rule {rule}: {env} does not exist"
    assert re.search(r"^    log:", block, flags=re.M), f"rule {rule} has no log:"


def test_every_backend_env_exists_and_every_env_is_used():
    used = {(REPO / "rules" / env).resolve() for block in BLOCKS.values() for env in conda_envs(block)}
    assert used == set((REPO / "envs").glob("*.yaml"))
    assert {"../envs/detectron2.yaml", "../envs/mmdetection-current.yaml"} <= set(conda_envs(BLOCKS["train_model"]))
    assert conda_envs(BLOCKS["train_model"]) == conda_envs(BLOCKS["predict"])


@pytest.mark.parametrize("env", sorted((REPO / "envs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_env_parses_uses_conda_forge_and_pins_everything(env):
    document = yaml.safe_load(env.read_text())
    pins = env_dependencies(env)
    if f"envs/{env.name}" in PAPER_ENVS:
        assert document["channels"] == ["pytorch", "conda-forge", "nodefaults"], f"{env.name}: channels must be pytorch + conda-forge + nodefaults"
        assert pins.get("python") == "3.9", f"{env.name}: the paper's stack is pinned to python 3.9"
    elif f"envs/{env.name}" == DETECTORS_ENV:
        assert document["channels"] == ["pytorch", "conda-forge", "nodefaults"], f"{env.name}: channels must be pytorch + conda-forge + nodefaults"
        assert pins.get("python") == "3.9" and pins.get("cudatoolkit"), f"{env.name}: ViTPose's stack is python 3.9 with a CUDA build of PyTorch"
    elif f"envs/{env.name}" == DEEPPRIVACY2_ENV:
        assert document["channels"] == ["pytorch", "nvidia", "conda-forge", "nodefaults"], f"{env.name}: channels must be pytorch + nvidia + conda-forge + nodefaults"
        assert pins.get("python") == "3.9" and "pytorch-cuda" in pins, f"{env.name}: dp2's stack is python 3.9 with a CUDA build of PyTorch"
    else:
        assert document["channels"] == ["conda-forge", "nodefaults"], f"{env.name}: channels must be conda-forge + nodefaults"
        assert pins.get("python", "").startswith("3.11"), f"{env.name}: python must be pinned to 3.11"


def test_paper_envs_pin_the_papers_stack_and_commits():
    """PyTorch 1.12.1 + CUDA 11.3 (the paper: PyTorch 1.12), the frameworks at the paper's commits."""
    for env in sorted(PAPER_ENVS):
        pins = env_dependencies(REPO / env)
        assert pins["pytorch"] == "1.12.1" and pins["torchvision"] == "0.13.1", env
        assert pins["cudatoolkit"].startswith("11.3"), env
    assert env_dependencies(REPO / BACKEND_ENVS["detectron2"]["paper"])["detectron2"] == DETECTRON2_COMMIT
    assert env_dependencies(REPO / BACKEND_ENVS["detectron2"]["current"])["detectron2"] == DETECTRON2_CURRENT_COMMIT
    assert env_dependencies(REPO / BACKEND_ENVS["mmdetection"]["paper"])["mmdet"] == MMDETECTION_COMMIT
    assert env_dependencies(REPO / BACKEND_ENVS["mmdetection"]["paper"])["mmcv-full"].startswith("1.")  # the 2.x API
    assert env_dependencies(REPO / BACKEND_ENVS["mmdetection"]["current"])["mmdet"].startswith("3.")



def test_envs_with_detectron2_keep_pkg_resources():
    """`from detectron2 import model_zoo` imports pkg_resources (both pinned commits), which
    setuptools 81 removed: every env installing detectron2 pins setuptools below 81."""
    envs = [env for env in sorted((REPO / "envs").glob("*.yaml")) if "detectron2" in env_dependencies(env)]
    assert {env.name for env in envs} >= {Path(BACKEND_ENVS["detectron2"][stack]).name for stack in ("paper", "current")}
    for env in envs:
        assert int(env_dependencies(env)["setuptools"].split(".")[0]) < 81, env.name


@pytest.mark.parametrize("rule", [r for r in CODE_RULES if rule_script(BLOCKS[r])])
def test_packages_a_rule_imports_are_in_its_env(rule):
    block = BLOCKS[rule]
    script = (REPO / "rules" / rule_script(block)).resolve()
    for env_name, skip in conda_envs(block).items():
        env = (REPO / "rules" / env_name).resolve()
        pins = env_dependencies(env)
        for module in sorted(imported_modules(script, seen=set(skip))):
            assert module in DISTRIBUTIONS, f"{script.name} imports {module}, unknown to this test: add its distribution"
            assert DISTRIBUTIONS[module] & set(pins), f"rule {rule}: {script.name} imports {module}, missing from {env.name}"


def test_the_import_check_sees_each_backends_framework():
    """The walk reaches the frameworks imported inside functions (so the check above means something)."""
    script = REPO / "scripts" / "train_model.py"
    envs = conda_envs(BLOCKS["train_model"])
    assert "detectron2" in imported_modules(script, seen=set(envs["../envs/detectron2.yaml"]))
    assert "detectron2" not in imported_modules(script, seen=set(envs["../envs/mmdetection.yaml"]))
    assert {"mmcv", "mmdet"} <= imported_modules(script, seen=set(envs["../envs/mmdetection.yaml"]))
    assert "mmengine" not in imported_modules(script, seen=set(envs["../envs/mmdetection.yaml"]))
    assert "mmengine" in imported_modules(script, seen=set(envs["../envs/mmdetection-current.yaml"]))


def test_env_versions_equal_the_local_setup():
    local = requirement_pins()
    aliases = {"matplotlib-base": "matplotlib", "pytorch": "torch"}
    checked = 0
    for env in sorted((REPO / "envs").glob("*.yaml")):
        if f"envs/{env.name}" in PAPER_ENVS | {DEEPPRIVACY2_ENV, DETECTORS_ENV}:
            continue
        for name, version in env_dependencies(env).items():
            local_name = aliases.get(name, name)
            if local_name in local and local_name not in UNSYNCED.get(f"envs/{env.name}", ()):
                assert local[local_name] == version, f"{env.name}: {name} {version} but requirements.txt has {local[local_name]}"
                checked += 1
    assert checked >= 15


def test_gpu_rules_get_a_cuda_build_of_pytorch():
    """The rules the SLURM profile gives a GPU get a CUDA build: PyPI's Linux wheel (the CUDA
    build; the CPU one would be torch==X+cpu), or conda's PyTorch with cudatoolkit / pytorch-cuda
    (the pytorch channel) or pytorch-gpu (conda-forge's CUDA build)."""
    profile = read_profile(REPO / "profiles" / "slurm")
    gpu_rules = [rule for rule, resources in profile["set-resources"].items() if resources.get("gpu")]
    assert set(gpu_rules) == {"train_model", "predict", "anonymize_shard_realistic", "detect_faces", "detect_keypoints"}
    for rule in gpu_rules:
        for env in conda_envs(BLOCKS[rule]):
            pins = env_dependencies((REPO / "rules" / env).resolve())
            torch_pin = pins.get("torch") or pins.get("pytorch")
            assert torch_pin and "+cpu" not in torch_pin, env
            if "pytorch" in pins:  # conda's PyTorch: CUDA from its cudatoolkit / pytorch-cuda / pytorch-gpu
                assert "cudatoolkit" in pins or "pytorch-cuda" in pins or pins.get("pytorch-gpu") == pins["pytorch"], env


def test_the_package_parses_as_python_3_9():
    """The paper-stack, detector and DeepPrivacy2 envs run this code under Python 3.9."""
    import ast

    for path in sorted((REPO / "scripts").rglob("*.py")):
        ast.parse(path.read_text(), filename=str(path), feature_version=(3, 9))
    # `X | None` annotations are evaluated on 3.9 unless postponed
    modules = [p for p in (REPO / "scripts" / PACKAGE).rglob("*.py") if p.name not in ("__init__.py", "errors.py")]
    assert modules and all("from __future__ import annotations" in p.read_text() for p in modules)
