"""Run a rule's work with its output in the rule's log and bad input reported in one line."""

from __future__ import annotations

import contextlib
import logging
import platform
import sys
from pathlib import Path

from .errors import WorkflowInputError
from .walltime import TimeLimitReached

EXIT_TIME_LIMIT = 75  # EX_TEMPFAIL: try again (the next attempt resumes the job)


@contextlib.contextmanager
def logged(log_path: str | Path):
    """Send stdout, stderr (tqdm, warnings) and logging to ``log_path``; a
    :class:`WorkflowInputError` or :class:`TimeLimitReached` ends the job with its message on
    the console too."""
    console = sys.stderr
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", buffering=1) as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        logging.basicConfig(stream=log, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", force=True)
        logger = logging.getLogger("anonymization_impact")
        logger.info("Python %s (%s)", platform.python_version(), sys.executable)  # which env ran the job
        try:
            yield logger
        except (WorkflowInputError, TimeLimitReached) as error:
            message = f"{type(error).__name__}: {error}"
            print(message, file=log)
            print(message, file=console)
            raise SystemExit(EXIT_TIME_LIMIT if isinstance(error, TimeLimitReached) else 1) from None
        except Exception:  # a bug or a framework's error: its traceback belongs in the rule's log too
            logger.exception("the job failed")
            raise
