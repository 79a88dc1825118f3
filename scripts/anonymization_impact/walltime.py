"""When a job under a scheduler's time limit must stop: training that is longer than the
partition allows runs as a chain of jobs, each stopping cleanly before its limit with a
checkpoint, the next attempt (Snakemake's retries) resuming it.

The limit is the scheduler's own record of the job's end (SLURM_JOB_END_TIME where SLURM
sets it, else ``squeue -o %e`` for SLURM_JOB_ID), so it holds for whatever the job asked for
and for an interactive allocation alike. Outside a scheduler there is no limit. The margin,
``cluster.stop_margin_minutes``, reaches the job through the environment variable
ANONYMIZATION_IMPACT_STOP_MARGIN_MINUTES (set by the workflow; no parameter, so changing it
reruns nothing).
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime

from .errors import WorkflowInputError

MARGIN_VARIABLE = "ANONYMIZATION_IMPACT_STOP_MARGIN_MINUTES"
# cluster.stop_margin_minutes's schema default, for a job started without the workflow; the
# training envs carry no YAML reader, so tests/test_walltime.py holds the two equal
DEFAULT_MARGIN_MINUTES = 10


class TimeLimitReached(RuntimeError):
    """A job stopped before its scheduler's time limit, its progress checkpointed."""


def slurm_end_time(environ=os.environ, run=subprocess.run) -> float | None:
    """Epoch seconds at which SLURM ends the job this process runs in; None outside SLURM
    or where the end cannot be read (no time limit, squeue missing)."""
    job_id = environ.get("SLURM_JOB_ID")
    if not job_id:
        return None
    if environ.get("SLURM_JOB_END_TIME", "").isdigit():
        return float(environ["SLURM_JOB_END_TIME"])
    try:
        shown = run(["squeue", "--noheader", "--jobs", job_id, "--format=%e"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    try:
        return datetime.fromisoformat(shown.stdout.strip()).timestamp()  # local time, as squeue prints it
    except ValueError:  # "N/A", "Unknown", nothing: no limit known
        return None


@dataclass(frozen=True)
class Deadline:
    """The time (epoch seconds) by which a job stops, and where that came from."""

    at: float
    source: str

    def reached(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) >= self.at

    def stops_after(self, done: int, total: int) -> bool:
        """Whether training that has done ``done`` of its ``total`` iterations stops now: at
        the deadline, never after the last iteration (the run is over then)."""
        return done < total and self.reached()

    def describe(self) -> str:
        return f"{datetime.fromtimestamp(self.at).isoformat(timespec='seconds')} ({self.source})"


def job_deadline(environ=os.environ, run=subprocess.run, log: logging.Logger | None = None) -> Deadline | None:
    """The deadline of this job: the scheduler's end time less the stop margin; None without
    a scheduler's limit."""
    end = slurm_end_time(environ, run)
    if end is None:
        return None
    raw = environ.get(MARGIN_VARIABLE) or str(DEFAULT_MARGIN_MINUTES)
    try:
        margin = float(raw)
    except ValueError:
        raise WorkflowInputError(f"{MARGIN_VARIABLE} is {raw!r}; expected minutes (cluster.stop_margin_minutes sets it)") from None
    deadline = Deadline(end - 60 * margin, f"SLURM job {environ['SLURM_JOB_ID']} ends {datetime.fromtimestamp(end).isoformat(timespec='seconds')}, "
                                            f"less cluster.stop_margin_minutes {margin:g}")
    if log:
        log.info("stopping with a checkpoint by %s", deadline.describe())
    return deadline
