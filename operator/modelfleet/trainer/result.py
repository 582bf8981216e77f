"""The training Job's result line (the contract in ``modelfleet.contracts.results``) and the
exit code that tells the Job whether to retry."""

from __future__ import annotations

from modelfleet.contracts.results import TrainingResult, exit_code
from modelfleet.trainer.errors import PERMANENT_REASONS


class TrainerResult(TrainingResult):
    """How the run ended, as the operator reads it, and the exit code for the Job."""

    @property
    def exit_code(self) -> int:
        """0 on success, 2 when no retry can help (bad dataset or settings), 1 otherwise."""
        return exit_code(self, PERMANENT_REASONS)
