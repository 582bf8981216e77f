"""Progress of one download: thread-safe counters, listeners, and the Model status reporter.

In a Job, ``MODELFLEET_STATUS_TARGET=<namespace>/<name>`` makes the reporter merge-patch the
Model's ``status.download`` at a bounded rate. Its Role allows only ``patch`` on
``models/status``; a failed patch is logged and never fails the download.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

from modelfleet import jobstatus

Phase = Literal["Pending", "Downloading", "Verifying", "Succeeded", "Failed"]


@dataclass(frozen=True)
class ProgressSnapshot:
    """A consistent view of the counters at one moment."""

    phase: Phase = "Pending"
    revision: str | None = None
    bytes_done: int = 0
    bytes_total: int = 0
    files_done: int = 0
    files_total: int = 0
    attempts: int = 0
    last_error: str | None = None
    start_time: datetime | None = None
    completion_time: datetime | None = None

    def to_status(self) -> dict[str, Any]:
        """The ``status.download`` object, camelCase, as the Model's schema spells it."""
        names = {
            "bytes_done": "bytesDone",
            "bytes_total": "bytesTotal",
            "files_done": "filesDone",
            "files_total": "filesTotal",
            "last_error": "lastError",
            "start_time": "startTime",
            "completion_time": "completionTime",
        }
        status: dict[str, Any] = {}
        for key, value in asdict(self).items():
            rendered = (
                value.strftime("%Y-%m-%dT%H:%M:%SZ") if isinstance(value, datetime) else value
            )
            status[names.get(key, key)] = rendered
        return status


Listener = Callable[[ProgressSnapshot], None]


class DownloadProgress:
    """Counters updated from transfer threads; listeners are called on every change."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state = ProgressSnapshot(start_time=datetime.now(UTC))
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener`` with a snapshot after each change (keep it cheap)."""
        self._listeners.append(listener)

    def _update(self, **changes: Any) -> None:
        with self._lock:
            self._state = replace(self._state, **changes)
            state = self._state
        for listener in self._listeners:
            listener(state)

    def snapshot(self) -> ProgressSnapshot:
        """The current counters."""
        with self._lock:
            return self._state

    def set_phase(self, phase: Phase) -> None:
        """Enter a phase; Succeeded and Failed also stamp the completion time."""
        done = datetime.now(UTC) if phase in ("Succeeded", "Failed") else None
        self._update(phase=phase, completion_time=done)

    def plan(self, *, revision: str, bytes_total: int, files_total: int) -> None:
        """Record what this download covers."""
        self._update(revision=revision, bytes_total=bytes_total, files_total=files_total)

    def add_bytes(self, count: int) -> None:
        """Bytes that became present (transferred, or found already complete)."""
        with self._lock:
            self._state = replace(self._state, bytes_done=self._state.bytes_done + count)
            state = self._state
        for listener in self._listeners:
            listener(state)

    def file_done(self) -> None:
        """One more file is in place and verified."""
        with self._lock:
            self._state = replace(self._state, files_done=self._state.files_done + 1)
            state = self._state
        for listener in self._listeners:
            listener(state)

    def record_attempt(self, attempt: int) -> None:
        """The highest attempt number any file or request reached."""
        with self._lock:
            if attempt <= self._state.attempts:
                return
            self._state = replace(self._state, attempts=attempt)
            state = self._state
        for listener in self._listeners:
            listener(state)

    def record_error(self, message: str) -> None:
        """The last error seen (already redacted)."""
        self._update(last_error=message)


class StatusReporter(jobstatus.StatusReporter):
    """Merge-patches ``status.download`` of one Model at most every ``interval`` seconds."""

    def __init__(self, target: str, progress: DownloadProgress, interval: float = 5.0) -> None:
        super().__init__("models", "download", target, progress.snapshot, interval)
