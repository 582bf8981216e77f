"""Make sure a namespace has the Jobs' ServiceAccount before a Job is created there."""

from __future__ import annotations

import threading
import time
from collections import defaultdict

from modelfleet.builders.rbac import build_job_identity
from modelfleet.kube.client import ROLE, ROLE_BINDING, SERVICE_ACCOUNT, Kube
from modelfleet.settings import OperatorSettings

RECHECK_SECONDS = 300.0
"""How long a namespace's identity is trusted before a Job creation looks at it again (someone
may have deleted the ServiceAccount)."""


class JobIdentities:
    """Applies the Job identity when a namespace first needs it, then trusts it for
    ``recheck_seconds`` before the next Job creation there checks again."""

    def __init__(self, recheck_seconds: float = RECHECK_SECONDS) -> None:
        self._checked: dict[str, float] = {}
        self._locks: dict[str, threading.Lock] = defaultdict(threading.Lock)
        self._lock = threading.Lock()
        self.recheck_seconds = recheck_seconds

    def _trusted(self, namespace: str) -> bool:
        checked = self._checked.get(namespace)
        return checked is not None and time.monotonic() - checked < self.recheck_seconds

    def ensure(self, kube: Kube, settings: OperatorSettings, namespace: str) -> None:
        """Create the ServiceAccount, Role and RoleBinding in ``namespace`` when missing."""
        with self._lock:
            if self._trusted(namespace):
                return
            namespace_lock = self._locks[namespace]
        # One reconcile per namespace checks and creates; the others of that namespace wait.
        with namespace_lock:
            with self._lock:
                if self._trusted(namespace):
                    return
            name = settings.job_service_account
            present = all(
                kube.get(resource, namespace, name) is not None
                for resource in (SERVICE_ACCOUNT, ROLE, ROLE_BINDING)
            )
            if not present:
                for manifest in build_job_identity(settings, namespace):
                    kube.apply(manifest)
            with self._lock:
                self._checked[namespace] = time.monotonic()
