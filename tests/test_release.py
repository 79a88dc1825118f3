"""Release hygiene: a licence, a citation, one version everywhere, a changelog entry for it."""

from __future__ import annotations

import re
import tomllib

import yaml

from anonymization_impact.provenance import own_version
from conftest import REPO

VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


def test_the_licence_is_apache_2_like_the_frameworks():
    assert "Apache License\n                           Version 2.0" in (REPO / "LICENSE").read_text()
    assert tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["license"] == "Apache-2.0"


def test_citation_cites_this_release_and_the_paper():
    citation = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0" and citation["version"] == VERSION and citation["license"] == "Apache-2.0"
    paper = citation["preferred-citation"]
    assert paper["title"] == "Does Image Anonymization Impact Computer Vision Training?" and paper["year"] == 2023
    assert [author["family-names"] for author in paper["authors"]] == ["Hukkelås", "Lindseth"]


def test_the_changelog_opens_with_this_version_and_the_package_reports_it():
    entries = re.findall(r"^## \[?([0-9][^\]\s]*)\]?", (REPO / "CHANGELOG.md").read_text(), re.M)
    assert entries and entries[0] == VERSION
    assert own_version() == VERSION
