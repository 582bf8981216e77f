"""Live progress from inside a Job: one field of the owning object's status, merge-patched at
most every ``interval`` seconds. A failed patch is logged, never raised: progress must not fail
the download or the training it reports on."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, Protocol, Self

from modelfleet.api.v1alpha1.common import GROUP, VERSION
from modelfleet.kubeconfig import load_kube_credentials

LOG = logging.getLogger(__name__)


class Snapshot(Protocol):
    """Numbers that can be compared and written into a status."""

    def to_status(self) -> dict[str, Any]:
        """The status field's value."""
        ...


class StatusReporter:
    """Patches ``status.<field>`` of ``<namespace>/<name>`` of ``plural`` from ``snapshot()``,
    on entry, every ``interval`` seconds while changed, and on exit."""

    def __init__(
        self,
        plural: str,
        field: str,
        target: str,
        snapshot: Callable[[], Snapshot | None],
        interval: float = 5.0,
    ) -> None:
        namespace, _, name = target.partition("/")
        if not namespace or not name or "/" in name:
            raise ValueError(f"status target must be <namespace>/<name>, got {target!r}")
        self.namespace, self.name = namespace, name
        self.plural, self.field = plural, field
        self.interval = interval
        self._snapshot = snapshot
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="status-reporter", daemon=True)
        self._api: Any = None
        self._last_sent: Snapshot | None = None
        self.patches_sent = 0

    def _connect(self) -> Any:
        # Imported lazily: only a Job with a status target needs the kubernetes client.
        from kubernetes import client  # noqa: PLC0415

        load_kube_credentials()
        return client.CustomObjectsApi()

    def patch_now(self) -> None:
        """Send the current snapshot if there is one and it changed since the last patch."""
        state = self._snapshot()
        if state is None or state == self._last_sent:
            return
        try:
            if self._api is None:
                self._api = self._connect()
            self._api.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                self.namespace,
                self.plural,
                self.name,
                {"status": {self.field: state.to_status()}},
                _content_type="application/merge-patch+json",
                _request_timeout=10,
            )
        except Exception as error:  # noqa: BLE001 - progress must never fail the Job
            LOG.warning("status patch of %s/%s failed: %s", self.namespace, self.name, error)
            return
        self._last_sent = state
        self.patches_sent += 1

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.patch_now()

    def __enter__(self) -> Self:
        self.patch_now()
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
