"""The one-line JSON result of a training Job, for the termination log and stdout."""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from modelfleet.conditions import Reason
from modelfleet.downloader.result import termination_log_path
from modelfleet.trainer.errors import PERMANENT_REASONS

LOG = logging.getLogger(__name__)
# Kubernetes keeps at most 4096 bytes of a termination message.
_MAX_MESSAGE = 1024

EXIT_SUCCESS, EXIT_RETRYABLE, EXIT_PERMANENT = 0, 1, 2


@dataclass(frozen=True)
class TrainerResult:
    """How the run ended; the operator reads it from the pod's termination message."""

    result: Literal["Succeeded", "Failed"]
    reason: Reason
    message: str
    output_path: str | None = None
    final_loss: float | None = None
    steps: int = 0

    @property
    def exit_code(self) -> int:
        """0 on success, 2 when no retry can help (bad dataset or settings), 1 otherwise."""
        if self.result == "Succeeded":
            return EXIT_SUCCESS
        return EXIT_PERMANENT if self.reason in PERMANENT_REASONS else EXIT_RETRYABLE

    def to_json(self) -> str:
        """One line of JSON with camelCase keys."""
        message = self.message
        if len(message) > _MAX_MESSAGE:
            message = message[: _MAX_MESSAGE - 3] + "..."
        return json.dumps(
            {
                "result": self.result,
                "reason": str(self.reason),
                "message": message,
                "outputPath": self.output_path,
                "finalLoss": None if self.final_loss is None else round(self.final_loss, 6),
                "steps": self.steps,
            },
            separators=(",", ":"),
        )


def write_result(result: TrainerResult, termination_log: Path | None) -> str:
    """Print the result line to stdout and write it to the termination log; return the line."""
    line = result.to_json()
    print(line, file=sys.stdout, flush=True)
    target = termination_log_path(termination_log)
    if target is not None:
        try:
            target.write_text(line + "\n")
        except OSError as error:
            LOG.warning("cannot write termination log %s: %s", target, error)
    return line
