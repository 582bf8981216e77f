"""The one exception type of the trainer: a typed reason plus a message for the user."""

from __future__ import annotations

from modelfleet.conditions import Reason

# Failures another attempt of the same Job cannot fix: the Job exits 2 and is not retried.
PERMANENT_REASONS: frozenset[Reason] = frozenset({Reason.DATASET_INVALID, Reason.INVALID_SPEC})


class TrainerError(Exception):
    """A failure with a reason the operator can put in a condition."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
