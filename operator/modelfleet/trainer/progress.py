"""Training progress: the latest step's numbers and the FinetuneJob status reporter.

With ``MODELFLEET_STATUS_TARGET=<namespace>/<name>`` the reporter merge-patches the
FinetuneJob's ``status.progress`` at most every ``interval`` seconds from a background thread,
and once more at the end. Its Role allows only ``patch`` on ``finetunejobs/status``; a failed
patch is logged and never fails training.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from typing import Any

from modelfleet import jobstatus


@dataclass(frozen=True)
class ProgressSnapshot:
    """Progress after one optimizer step."""

    step: int = 0
    total_steps: int = 0
    epoch: float = 0.0
    loss: float | None = None
    eta_seconds: int | None = None

    @property
    def percent(self) -> int:
        """Steps done, in whole percent."""
        return 100 * self.step // self.total_steps if self.total_steps else 0

    def to_status(self) -> dict[str, Any]:
        """The ``status.progress`` object, camelCase, as the FinetuneJob schema spells it."""
        return {
            "epoch": round(self.epoch, 4),
            "step": self.step,
            "totalSteps": self.total_steps,
            "loss": None if self.loss is None else round(self.loss, 6),
            "percent": self.percent,
            "etaSeconds": self.eta_seconds,
        }


class TrainingProgress:
    """The latest snapshot, written by the training loop and read by the reporter thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state = ProgressSnapshot()
        self._started = time.monotonic()

    def start(self, total_steps: int) -> None:
        """Training begins now and will take ``total_steps`` optimizer steps."""
        with self._lock:
            self._started = time.monotonic()
            self._state = ProgressSnapshot(total_steps=total_steps)

    def record_step(self, step: int, epoch: float, loss: float) -> ProgressSnapshot:
        """Record a finished optimizer step; the ETA extrapolates the mean step time so far."""
        with self._lock:
            elapsed = time.monotonic() - self._started
            remaining = max(self._state.total_steps - step, 0)
            eta = round(elapsed / step * remaining) if step else None
            self._state = replace(self._state, step=step, epoch=epoch, loss=loss, eta_seconds=eta)
            return self._state

    def snapshot(self) -> ProgressSnapshot:
        """The latest numbers."""
        with self._lock:
            return self._state

    def started_snapshot(self) -> ProgressSnapshot | None:
        """The latest numbers once training has begun (there is nothing to report before)."""
        state = self.snapshot()
        return state if state.total_steps else None


class StatusReporter(jobstatus.StatusReporter):
    """Merge-patches ``status.progress`` of one FinetuneJob at most every ``interval`` seconds."""

    def __init__(self, target: str, progress: TrainingProgress, interval: float = 5.0) -> None:
        super().__init__("finetunejobs", "progress", target, progress.started_snapshot, interval)
