"""The one-line JSON result of a download Job (see ``modelfleet.jobresult``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from modelfleet.conditions import Reason
from modelfleet.contracts.results import shorten
from modelfleet.downloader.errors import PERMANENT_REASONS, redact
from modelfleet.jobresult import exit_code, publish


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
        return exit_code(self.result == "Succeeded", self.reason, PERMANENT_REASONS)

    def to_json(self, secrets: Sequence[str | None] = ()) -> str:
        """One line of JSON with camelCase keys; secrets redacted from the message."""
        return json.dumps(
            {
                "result": self.result,
                "reason": str(self.reason),
                "message": shorten(redact(self.message, secrets)),
                "resolvedRevision": self.resolved_revision,
                "modelPath": self.model_path,
                "bytesTotal": self.bytes_total,
                "bytesTransferred": self.bytes_transferred,
                "files": self.files,
            },
            separators=(",", ":"),
        )


def write_result(
    result: JobResult, termination_log: Path | None, secrets: Sequence[str | None] = ()
) -> str:
    """Print the result line to stdout and write it to the termination log; return the line."""
    return publish(result.to_json(secrets), termination_log)
