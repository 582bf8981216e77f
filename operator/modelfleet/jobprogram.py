"""The frame every Job's program runs in: logging, its settings read from the environment (a
typed InvalidSpec result when they do not parse), one result line published, an exit code."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeVar

from pydantic import ValidationError

from modelfleet.conditions import Reason
from modelfleet.contracts.jobenv import JobEnv
from modelfleet.contracts.results import EXIT_PERMANENT, ResultLine, termination_log_path

Settings = TypeVar("Settings", bound=JobEnv)


class Outcome(Protocol):
    """A program's result: its line, published, and the exit code that goes with it."""

    @property
    def exit_code(self) -> int: ...

    def publish(self, termination_log: Path | None) -> str: ...


def invalid_settings(error: ValidationError) -> str:
    """What is wrong with the settings, by field and rule; never a value (it may be a token)."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in error.errors()
    )


def job_main(settings_type: type[Settings], program: Callable[[Settings], Outcome]) -> int:
    """Run ``program`` with the settings this process's environment holds; publish its result
    and return its exit code (0 done, 1 retryable failure, 2 permanent failure)."""
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s"
    )
    try:
        settings = settings_type.from_env(os.environ)
    except ValidationError as error:
        refused = ResultLine(
            result="Failed",
            reason=Reason.INVALID_SPEC,
            message=f"invalid settings: {invalid_settings(error)}",
        )
        configured = os.environ.get(settings_type.env_names("termination_log")[0])
        refused.publish(termination_log_path(Path(configured) if configured else None))
        return EXIT_PERMANENT
    result = program(settings)
    result.publish(settings.termination_log)
    return result.exit_code
