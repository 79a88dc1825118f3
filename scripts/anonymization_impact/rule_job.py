"""The job a rule script works on, whether Snakemake injected it (``script:``) or passed it on
the command line.

Rules that run in the paper stacks' envs (Python 3.9: detectron2, MMDetection, DeepPrivacy2,
DSFD / ViTPose) call their script as a command: Snakemake 9's ``script:`` preamble builds
``snakemake.params`` with its own ``snakemake.io``, whose annotations (``None | str``) need
Python 3.10, so reading params there raises TypeError. A command also runs with the env's own
packages only (a ``script:`` appends the controller's site-packages to the env's path). The
controller encodes the job as one JSON argument (:func:`encode`); the script reads it back
(:func:`job_of`) as an object with the attributes of Snakemake's (``input.persons``,
``output[0]``, ``params.variant``, ``wildcards.shard``, ``log[0]``, ``threads``), so the same
script also runs under ``script:`` and from a test. Nothing here imports Snakemake.
"""

from __future__ import annotations

import argparse
import json
from types import SimpleNamespace


class Named(list):
    """A list whose named items are also attributes and keys, as Snakemake's Namedlist."""

    def __init__(self, items=(), names: dict | None = None):
        super().__init__(items)
        self.__dict__["_names"] = dict(names or {})

    def __getattr__(self, name):
        try:
            return self.__dict__["_names"][name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, key):
        return self._names[key] if isinstance(key, str) else super().__getitem__(key)

    def keys(self):
        return self._names.keys()

    def items(self):
        return self._names.items()


def _files(named) -> dict:
    """Snakemake's Namedlist (or a plain list) as JSON: every path, and the named ones."""
    return {"items": [str(item) for item in named], "names": dict(named.items()) if hasattr(named, "items") else {}}


def encode(*, input, output, params: dict, wildcards) -> str:
    """The job as the JSON argument of the rule's command (log and threads go as their own
    arguments, so that a new log path or thread count is no new parameter)."""
    wildcards = dict(wildcards.items()) if hasattr(wildcards, "items") else dict(wildcards)
    return json.dumps({"input": _files(input), "output": _files(output), "params": params, "wildcards": wildcards}, sort_keys=True)


def decode(argv: list[str]) -> SimpleNamespace:
    """The job of ``script.py --log LOG --threads N --job JSON``."""
    parser = argparse.ArgumentParser(description="Run one job of a workflow rule (its command is in the rule).")
    parser.add_argument("--log", required=True, help="the rule's log file")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--job", required=True, help="the job as JSON: input, output, params, wildcards")
    args = parser.parse_args(argv)
    job = json.loads(args.job)
    return SimpleNamespace(
        input=Named(job["input"]["items"], job["input"]["names"]),
        output=Named(job["output"]["items"], job["output"]["names"]),
        params=Named((), job["params"]),
        wildcards=Named(job["wildcards"].values(), job["wildcards"]),
        log=Named([args.log]),
        threads=args.threads,
    )


def job_of(script_globals: dict, argv: list[str]) -> SimpleNamespace:
    """The ``snakemake`` object Snakemake (or a test) injected into the script, else the job
    given on the command line."""
    injected = script_globals.get("snakemake")
    return injected if injected is not None else decode(argv)
