"""Make sure a namespace has the Jobs' ServiceAccount before a Job is created there."""

from __future__ import annotations

import threading
from collections import defaultdict

from modelfleet.builders.rbac import build_job_identity
from modelfleet.kube.client import ROLE, ROLE_BINDING, SERVICE_ACCOUNT, Kube
from modelfleet.settings import OperatorSettings


class JobIdentities:
    """Applies the Job identity once per namespace per process; a cheap check afterwards."""

    def __init__(self) -> None:
        self._ready: set[str] = set()
        self._locks: dict[str, threading.Lock] = defaultdict(threading.Lock)
        self._lock = threading.Lock()

    def ensure(self, kube: Kube, settings: OperatorSettings, namespace: str) -> None:
        """Create the ServiceAccount, Role and RoleBinding in ``namespace`` when missing."""
        with self._lock:
            if namespace in self._ready:
                return
            namespace_lock = self._locks[namespace]
        # One reconcile per namespace checks and creates; the others of that namespace wait.
        with namespace_lock:
            with self._lock:
                if namespace in self._ready:
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
                self._ready.add(namespace)

    def forget(self, namespace: str) -> None:
        """Check the namespace again next time (e.g. after a Job could not find its account)."""
        with self._lock:
            self._ready.discard(namespace)


JOB_IDENTITIES = JobIdentities()
