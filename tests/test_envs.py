"""Static checks of the per-rule conda envs (they cannot be created here: no conda channels).

Every rule that runs code has a `conda:` env under envs/; every env parses, uses conda-forge
without `defaults`, and pins every dependency exactly; the packages a rule's script imports
(through the anonymization_impact package, transitively) are in its env; and every version
that is both in an env and in requirements.txt (what `make` installs) is the same.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO

PACKAGE = "anonymization_impact"
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
}
CONDA_SPEC = re.compile(r"^(?P<name>[A-Za-z0-9_.-]+)=(?P<version>[0-9][A-Za-z0-9_.+!]*)$")
PIP_SPEC = re.compile(r"^(?P<name>[A-Za-z0-9_.-]+)==(?P<version>[0-9][A-Za-z0-9_.+!]*)$")


def rule_blocks() -> dict[str, str]:
    """Rule name -> its text, from the (snakefmt-formatted) Snakefile and rules/*.smk."""
    blocks = {}
    for path in [REPO / "Snakefile", *sorted((REPO / "rules").glob("*.smk"))]:
        text = path.read_text()
        for match in re.finditer(r"^rule (\w+):\n((?:(?:    .*)?\n)*)", text, flags=re.M):
            blocks[match.group(1)] = match.group(2)
    return blocks


def directive(block: str, name: str) -> str | None:
    match = re.search(rf"^    {name}:\n        \"([^\"]+)\"", block, flags=re.M)
    return match.group(1) if match else None


def runs_code(block: str) -> bool:
    return bool(re.search(r"^    (script|shell|run|notebook|wrapper):", block, flags=re.M))


def env_dependencies(path: Path) -> dict[str, str]:
    """Normalized name -> pinned version of every conda and pip dependency of an env file."""
    env = yaml.safe_load(path.read_text())
    pins = {}
    for entry in env["dependencies"]:
        if isinstance(entry, dict):
            for pip_entry in entry["pip"]:
                match = PIP_SPEC.match(pip_entry)
                assert match, f"{path.name}: pip dependency {pip_entry!r} is not pinned as name==version"
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
    assert {"twins_generate", "annotations_normalize", "anonymize_shard", "train_model", "evaluate", "fig7"} <= set(CODE_RULES)


@pytest.mark.parametrize("rule", CODE_RULES)
def test_every_rule_that_runs_code_has_a_conda_env_and_a_log(rule):
    block = BLOCKS[rule]
    env = directive(block, "conda")
    assert env, f"rule {rule} has no conda: directive"
    assert (REPO / "rules" / env).resolve().is_file(), f"rule {rule}: {env} does not exist"
    assert re.search(r"^    log:", block, flags=re.M), f"rule {rule} has no log:"


@pytest.mark.parametrize("env", sorted((REPO / "envs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_env_parses_uses_conda_forge_and_pins_everything(env):
    document = yaml.safe_load(env.read_text())
    assert document["channels"] == ["conda-forge", "nodefaults"], f"{env.name}: channels must be conda-forge + nodefaults"
    pins = env_dependencies(env)
    assert pins.get("python", "").startswith("3.11"), f"{env.name}: python must be pinned to 3.11"


@pytest.mark.parametrize("rule", [r for r in CODE_RULES if directive(BLOCKS[r], "script")])
def test_packages_a_rule_imports_are_in_its_env(rule):
    block = BLOCKS[rule]
    script = (REPO / "rules" / directive(block, "script")).resolve()
    env = (REPO / "rules" / directive(block, "conda")).resolve()
    pins = env_dependencies(env)
    for module in sorted(imported_modules(script)):
        assert module in DISTRIBUTIONS, f"{script.name} imports {module}, unknown to this test: add its distribution"
        assert DISTRIBUTIONS[module] & set(pins), f"rule {rule}: {script.name} imports {module}, missing from {env.name}"


def test_env_versions_equal_the_local_setup():
    local = requirement_pins()
    aliases = {"matplotlib-base": "matplotlib", "pytorch": "torch"}
    checked = 0
    for env in sorted((REPO / "envs").glob("*.yaml")):
        for name, version in env_dependencies(env).items():
            local_name = aliases.get(name, name)
            if local_name in local:
                assert local[local_name] == version, f"{env.name}: {name} {version} but requirements.txt has {local[local_name]}"
                checked += 1
    assert checked >= 15


def test_gpu_rules_get_a_cuda_build_of_pytorch():
    """train_model / predict ask the SLURM profile for a GPU; their env's PyTorch is PyPI's
    Linux wheel, which is the CUDA 13 build (the CPU build would be torch==X+cpu)."""
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    gpu_rules = [rule for rule, resources in profile["set-resources"].items() if resources.get("gpu")]
    assert set(gpu_rules) == {"train_model", "predict"}
    for rule in gpu_rules:
        pins = env_dependencies((REPO / "rules" / directive(BLOCKS[rule], "conda")).resolve())
        assert "torch" in pins and "+cpu" not in pins["torch"]
