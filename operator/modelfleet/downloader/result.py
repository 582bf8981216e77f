"""The one-line JSON result of a Job, for the termination log and stdout, and its exit code."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from modelfleet.conditions import Reason
from modelfleet.downloader.errors import PERMANENT_REASONS, redact

LOG = logging.getLogger(__name__)
DEFAULT_TERMINATION_LOG = Path("/dev/termination-log")
# Kubernetes keeps at most 4096 bytes of a termination message.
_MAX_MESSAGE = 1024

EXIT_SUCCESS, EXIT_RETRYABLE, EXIT_PERMANENT = 0, 1, 2


@dataclass(frozen=True)
class JobResult:
    """How the Job ended; the operator reads it from the pod's termination message."""

    result: Literal["Succeeded", "Failed"]
    reason: Reason
    message: str
    resolved_revision: str | None = None
    model_path: str | None = None
    bytes_total: int = 0
    bytes_transferred: int = 0
    files: int = 0

    @property
    def exit_code(self) -> int:
        """0 on success, 2 when no retry can help, 1 otherwise."""
        if self.result == "Succeeded":
            return EXIT_SUCCESS
        return EXIT_PERMANENT if self.reason in PERMANENT_REASONS else EXIT_RETRYABLE

    def to_json(self, secrets: Sequence[str | None] = ()) -> str:
        """One line of JSON with camelCase keys; secrets redacted from the message."""
        message = redact(self.message, secrets)
        if len(message) > _MAX_MESSAGE:
            message = message[: _MAX_MESSAGE - 3] + "..."
        return json.dumps(
            {
                "result": self.result,
                "reason": str(self.reason),
                "message": message,
                "resolvedRevision": self.resolved_revision,
                "modelPath": self.model_path,
                "bytesTotal": self.bytes_total,
                "bytesTransferred": self.bytes_transferred,
                "files": self.files,
            },
            separators=(",", ":"),
        )


def termination_log_path(configured: Path | None) -> Path | None:
    """The configured path, else ``/dev/termination-log`` when writable, else None."""
    if configured is not None:
        return configured
    if DEFAULT_TERMINATION_LOG.exists() and os.access(DEFAULT_TERMINATION_LOG, os.W_OK):
        return DEFAULT_TERMINATION_LOG
    return None


def write_result(
    result: JobResult, termination_log: Path | None, secrets: Sequence[str | None] = ()
) -> str:
    """Print the result line to stdout and write it to the termination log; return the line."""
    line = result.to_json(secrets)
    print(line, file=sys.stdout, flush=True)
    target = termination_log_path(termination_log)
    if target is not None:
        try:
            target.write_text(line + "\n")
        except OSError as error:
            LOG.warning("cannot write termination log %s: %s", target, error)
    return line
