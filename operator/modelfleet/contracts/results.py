"""The one-line JSON result a Job's program prints when it ends (on stdout and into the pod's
termination message), one pydantic model per kind of Job.

The program dumps it with :meth:`ResultLine.publish` and exits with :func:`exit_code`; the
operator reads it back with :func:`read_result` from the termination message. Keys are
camelCase; keys a newer program adds are ignored, so an operator and a Job image one version
apart still understand each other.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Collection
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

LOG = logging.getLogger(__name__)
DEFAULT_TERMINATION_LOG = Path("/dev/termination-log")

EXIT_SUCCESS, EXIT_RETRYABLE, EXIT_PERMANENT = 0, 1, 2
"""How a Job's program exits: the Job's pod failure policy retries only EXIT_RETRYABLE."""

# Kubernetes keeps at most 4096 bytes of a termination message; a message gets a quarter.
MAX_MESSAGE = 1024


def shorten(message: str) -> str:
    """``message``, cut to what the result line has room for."""
    return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 3] + "..."


class ResultLine(BaseModel):
    """What every Job reports: how it ended, a typed reason and a message for people."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True
    )

    result: Literal["Succeeded", "Failed"]
    reason: str
    """A value of :class:`modelfleet.conditions.Reason`."""
    message: str = ""

    @property
    def succeeded(self) -> bool:
        """True when the Job's program reached its goal."""
        return self.result == "Succeeded"

    def line(self) -> str:
        """The result as one line of compact JSON, the message shortened to fit."""
        shortened = self.model_copy(update={"message": shorten(self.message)})
        return json.dumps(
            shortened.model_dump(mode="json", by_alias=True, exclude=self._omitted()),
            separators=(",", ":"),
        )

    def _omitted(self) -> set[str]:
        return set()

    def publish(self, termination_log: Path | None) -> str:
        """Print the line to stdout and write it to the termination log; return the line."""
        line = self.line()
        print(line, file=sys.stdout, flush=True)
        target = termination_log_path(termination_log)
        if target is not None:
            try:
                target.write_text(line + "\n")
            except OSError as error:
                LOG.warning("cannot write termination log %s: %s", target, error)
        return line


def exit_code(result: ResultLine, permanent: Collection[str]) -> int:
    """0 on success, 2 when no retry can help (the reason is ``permanent``), 1 otherwise."""
    if result.succeeded:
        return EXIT_SUCCESS
    return EXIT_PERMANENT if result.reason in permanent else EXIT_RETRYABLE


def termination_log_path(configured: Path | None) -> Path | None:
    """The configured path, else ``/dev/termination-log`` when writable, else None."""
    if configured is not None:
        return configured
    if DEFAULT_TERMINATION_LOG.exists() and os.access(DEFAULT_TERMINATION_LOG, os.W_OK):
        return DEFAULT_TERMINATION_LOG
    return None


class DownloadResult(ResultLine):
    """The end of a download or verify Job."""

    resolved_revision: str | None = None
    """The commit the revision resolved to (checked by the operator to be 40 hex digits)."""
    model_path: str | None = None
    bytes_total: int = Field(default=0, ge=0)
    bytes_transferred: int = Field(default=0, ge=0)
    files: int = Field(default=0, ge=0)


class TrainingResult(ResultLine):
    """The end of a training Job (or of its dataset fetch, which reports a DownloadResult's
    fields; those are ignored here)."""

    output_path: str | None = None
    final_loss: float | None = None
    """The last step's loss, to 6 decimal places."""
    steps: int = Field(default=0, ge=0)
    dataset_revision: str | None = None
    """Commit sha of a Hugging Face dataset; absent for a mounted dataset."""

    @field_validator("final_loss")
    @classmethod
    def _round_loss(cls, value: float | None) -> float | None:
        return None if value is None else round(value, 6)

    def _omitted(self) -> set[str]:
        return {"dataset_revision"} if self.dataset_revision is None else set()


Result = TypeVar("Result", bound=ResultLine)


def read_result(message: str, kind: type[Result]) -> Result | None:
    """The last result line of ``kind`` in a termination message, or None when there is none
    (the program died before writing it, or wrote something else)."""
    for text in reversed(message.strip().splitlines()):
        try:
            return kind.model_validate(json.loads(text))
        except (ValueError, ValidationError):
            continue
    return None
