"""Reproduction report: our numbers next to the paper's (reference/published_results.yaml).

:func:`build_report` compares every published number that the config maps to one of our
experiments (mean ± SE, the difference in units of the paper's SE, both Δ vs. original with
a Welch t-test of ours), the numbers of the paper's text (``report.text_results``), and
checks the paper's qualitative claims on our numbers. :func:`markdown` and :func:`html`
render the same content; :func:`html` escapes every text it inserts.

Modules: ``published`` reads the published numbers, ``statistics`` tests our Δ, ``comparisons``
sets ours against the paper's, ``findings`` checks the paper's claims, ``build`` assembles the
report and ``rendering`` writes it as Markdown or HTML.
"""

from __future__ import annotations

from .build import build_report
from .rendering import html, markdown

__all__ = ["build_report", "html", "markdown"]
