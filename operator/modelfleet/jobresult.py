"""How a Job's process reports its end: one line of JSON on stdout and in the pod's termination
log, which the operator reads, and an exit code that tells the Job whether to retry."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Collection
from pathlib import Path

LOG = logging.getLogger(__name__)
DEFAULT_TERMINATION_LOG = Path("/dev/termination-log")

EXIT_SUCCESS, EXIT_RETRYABLE, EXIT_PERMANENT = 0, 1, 2


def exit_code(succeeded: bool, reason: str, permanent: Collection[str]) -> int:
    """0 on success, 2 when no retry can help (``reason`` is ``permanent``), 1 otherwise."""
    if succeeded:
        return EXIT_SUCCESS
    return EXIT_PERMANENT if reason in permanent else EXIT_RETRYABLE


def termination_log_path(configured: Path | None) -> Path | None:
    """The configured path, else ``/dev/termination-log`` when writable, else None."""
    if configured is not None:
        return configured
    if DEFAULT_TERMINATION_LOG.exists() and os.access(DEFAULT_TERMINATION_LOG, os.W_OK):
        return DEFAULT_TERMINATION_LOG
    return None


def publish(line: str, termination_log: Path | None) -> str:
    """Print the result line to stdout and write it to the termination log; return the line."""
    print(line, file=sys.stdout, flush=True)
    target = termination_log_path(termination_log)
    if target is not None:
        try:
            target.write_text(line + "\n")
        except OSError as error:
            LOG.warning("cannot write termination log %s: %s", target, error)
    return line
