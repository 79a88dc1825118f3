"""docs/architecture.md against the code: every module, rule and rule file it names exists, and
every module of the package is on its map."""

from __future__ import annotations

import re

from conftest import REPO

PAGE = (REPO / "docs" / "architecture.md").read_text()
PACKAGE = REPO / "scripts" / "anonymization_impact"


def _package_map() -> str:
    return PAGE.split("## Package map")[1].split("\n## ")[0]


def _listed_modules() -> set[str]:
    """Package paths the map names: a folder row `x/` and the modules in its cell, or a module row."""
    listed = set()
    for line in _package_map().splitlines():
        cells = line.split("|")
        if len(cells) < 3 or not cells[1].strip().startswith("`"):
            continue
        first = re.findall(r"`([^`]+)`", cells[1])
        folder = first[0] if first[0].endswith("/") else ""
        listed.update(name for name in first if not name.endswith("/"))
        if folder:
            listed.add(folder)
            for name in re.findall(r"`([^`]+)`", cells[2]):
                listed.add(folder + name)
    return listed


def test_every_module_the_map_names_exists():
    for name in sorted(_listed_modules()):
        path = PACKAGE / name
        assert path.is_dir() if name.endswith("/") else path.is_file(), f"docs/architecture.md lists {name}, which is not in the package"


def test_every_module_of_the_package_is_on_the_map():
    listed = _listed_modules()
    nested = {name.rstrip("/") for name in listed if name.endswith("/")}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = str(path.relative_to(PACKAGE))
        top = name.split("/")[0]
        if name == "__init__.py" or "/" not in name:
            assert name in listed, f"{name} is missing from the package map of docs/architecture.md"
        elif name.endswith("/__init__.py"):
            assert top in nested, f"{top}/ is missing from the package map of docs/architecture.md"
        else:
            inner = name.split("/", 1)[1]
            assert f"{top}/{inner}" in listed or f"{top}/{inner.split('/')[0]}/" in listed, f"{name} is missing from the package map"


def test_every_rule_and_rule_file_it_names_exists():
    rules = {match for smk in (REPO / "rules").glob("*.smk") for match in re.findall(r"^(?:use )?rule (\w+)", smk.read_text(), re.M)}
    rules |= set(re.findall(r"^use rule \w+ as (\w+)", "\n".join(p.read_text() for p in (REPO / "rules").glob("*.smk")), re.M))
    stages = PAGE.split("## Stages")[1].split("\n## ")[0]
    for line in stages.splitlines():
        cells = line.split("|")
        if len(cells) < 5 or not cells[2].strip().startswith("`rules/"):
            continue
        assert (REPO / cells[2].strip().strip("`")).is_file(), cells[2]
        for name in re.findall(r"`(\w+)`", cells[3]):
            assert name in rules, f"docs/architecture.md names rule {name}, which no rule file defines"
    assert all(name in PAGE for name in rules), sorted(rule for rule in rules if rule not in PAGE)
