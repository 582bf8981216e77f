"""Training progress: the latest step's numbers and the FinetuneJob status reporter.

With ``MODELFLEET_STATUS_TARGET=<namespace>/<name>`` the reporter merge-patches the
FinetuneJob's ``status.progress`` at most every ``interval`` seconds from a background thread,
and once more at the end. Its Role allows only ``patch`` on ``finetunejobs/status``; a failed
patch is logged and never fails training.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any

from modelfleet.kubeconfig import load_kube_credentials

LOG = logging.getLogger(__name__)
GROUP, VERSION, PLURAL = "modelfleet.io", "v1alpha1", "finetunejobs"


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


class StatusReporter:
    """Merge-patches ``status.progress`` of one FinetuneJob at most every ``interval`` seconds."""

    def __init__(self, target: str, progress: TrainingProgress, interval: float = 5.0) -> None:
        namespace, _, name = target.partition("/")
        if not namespace or not name or "/" in name:
            raise ValueError(f"status target must be <namespace>/<name>, got {target!r}")
        self.namespace, self.name = namespace, name
        self.interval = interval
        self._progress = progress
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="status-reporter", daemon=True)
        self._api: Any = None
        self._last_sent: ProgressSnapshot | None = None
        self.patches_sent = 0

    def _connect(self) -> Any:
        # Imported lazily: only a Job with a status target needs the kubernetes client.
        from kubernetes import client  # noqa: PLC0415

        load_kube_credentials()
        return client.CustomObjectsApi()

    def patch_now(self) -> None:
        """Send the current snapshot if it changed since the last patch; never raises."""
        state = self._progress.snapshot()
        if state == self._last_sent or state.total_steps == 0:
            return
        try:
            if self._api is None:
                self._api = self._connect()
            self._api.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                self.namespace,
                PLURAL,
                self.name,
                {"status": {"progress": state.to_status()}},
                _content_type="application/merge-patch+json",
                _request_timeout=10,
            )
        except Exception as error:  # noqa: BLE001 - progress must never fail training
            LOG.warning("status patch of %s/%s failed: %s", self.namespace, self.name, error)
            return
        self._last_sent = state
        self.patches_sent += 1

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.patch_now()

    def __enter__(self) -> StatusReporter:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval + 15)
        self.patch_now()
