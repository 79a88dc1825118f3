"""What the check tells: JSON records on stdout, progress on stderr, the warnings it saw; each
section run and caught on its own."""

from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path

import numpy as np


class Report:
    """The clock, the records and the warnings of one run of the tool (summary.json holds them)."""

    def __init__(self):
        self.started = time.perf_counter()
        self.records: list[dict] = []
        self.warnings: dict[str, int] = {}

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def say(self, message: str) -> None:
        print(f"[{self.elapsed():7.1f}s] {message}", file=sys.stderr, flush=True)

    def emit(self, section: str, **fields) -> dict:
        record = plain({"section": section, "t": round(self.elapsed(), 1), **fields})
        self.records.append(record)
        print(json.dumps(record, sort_keys=False), flush=True)
        return record

    def capture_warning(self, message, category, filename, lineno, file=None, line=None) -> None:
        """A ``warnings.showwarning``: counted by category and first line, not printed."""
        key = f"{category.__name__}: {str(message).strip().splitlines()[0][:300]}"
        self.warnings[key] = self.warnings.get(key, 0) + 1


def plain(value):
    """JSON-ready: numpy scalars to Python, non-finite floats to None, floats to 6 digits."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return None if not np.isfinite(value) else float(f"{float(value):.6g}")
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, Path):
        return str(value)
    return value


class Skip(Exception):
    """A section that does not apply here (reported, not a failure)."""


def run_section(report: Report, name: str, function, results: dict, failures: list) -> None:
    report.say(f"--- {name}")
    started = time.perf_counter()
    try:
        outcome = function() or {}
        results[name] = {"status": "ok", "seconds": round(time.perf_counter() - started, 1), **outcome}
        report.emit(name, status="ok", seconds=round(time.perf_counter() - started, 1), **outcome)
    except Skip as reason:
        results[name] = {"status": "skipped", "reason": str(reason)}
        report.emit(name, status="skipped", reason=str(reason))
    except BaseException as error:  # noqa: BLE001 - one section's failure must not hide the others
        if isinstance(error, KeyboardInterrupt):
            raise
        text = traceback.format_exc()
        results[name] = {"status": "failed", "error": f"{type(error).__name__}: {error}"[:2000], "traceback": text[-4000:]}
        failures.append(name)
        report.emit(name, status="failed", seconds=round(time.perf_counter() - started, 1), error=f"{type(error).__name__}: {error}"[:2000])
        print(text, file=sys.stderr, flush=True)
