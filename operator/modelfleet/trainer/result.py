"""The training Job's result line (the contract in ``modelfleet.contracts.results``) and the
exit code that tells the Job whether to retry."""

from __future__ import annotations

from pathlib import Path

from modelfleet.contracts.results import TrainingResult
from modelfleet.jobresult import exit_code, publish
from modelfleet.trainer.errors import PERMANENT_REASONS


class TrainerResult(TrainingResult):
    """How the run ended, as the operator reads it, and the exit code for the Job."""

    @property
    def exit_code(self) -> int:
        """0 on success, 2 when no retry can help (bad dataset or settings), 1 otherwise."""
        return exit_code(self.succeeded, self.reason, PERMANENT_REASONS)


def write_result(result: TrainerResult, termination_log: Path | None) -> str:
    """Print the result line to stdout and write it to the termination log; return the line."""
    return publish(result.line(), termination_log)
