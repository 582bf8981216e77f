"""The kopf operator: settings in one startup handler, one worker per Model, wake-ups from
the Model's own events and from its children's.

Each Model has one long-lived worker (a kopf daemon) that runs the level-based reconcile
whenever something about the Model changes, and at least every ``resync_seconds`` to catch
drift. Failed reconciles back off exponentially, capped at ``retry_max_seconds``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import kopf
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from modelfleet import metrics
from modelfleet.api.v1alpha1 import GROUP, VERSION
from modelfleet.builders.common import MANAGED_BY, MODEL_LABEL
from modelfleet.builders.training import FINETUNE_LABEL
from modelfleet.handlers import model as model_reconciler
from modelfleet.handlers.events import EventRecorder
from modelfleet.handlers.finetune import reconcile_finetune
from modelfleet.handlers.kube import Kube
from modelfleet.kubeconfig import load_kube_credentials
from modelfleet.metrics import MODEL_CONDITIONS, RECONCILE_DURATION, RECONCILES
from modelfleet.settings import OperatorSettings, get_settings

LOG = logging.getLogger(__name__)

ANNOTATION_PREFIX = "modelfleet.io"
FINALIZER = "modelfleet.io/finalizer"
# Let several events that arrive together cause one reconcile.
DEBOUNCE_SECONDS = 0.2
MANAGED = {"app.kubernetes.io/managed-by": MANAGED_BY}


class Wakeups:
    """One asyncio.Event per object, set when anything about that object changes."""

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = defaultdict(asyncio.Event)

    def event(self, kind: str, namespace: str, name: str) -> asyncio.Event:
        """The wake-up event of an object."""
        return self._events[f"{kind}/{namespace}/{name}"]

    def wake(self, kind: str, namespace: str | None, name: str | None) -> None:
        """Wake the worker of an object, if it has one."""
        if namespace and name:
            self._events[f"{kind}/{namespace}/{name}"].set()

    def forget(self, kind: str, namespace: str, name: str) -> None:
        """Drop the event of a deleted object."""
        self._events.pop(f"{kind}/{namespace}/{name}", None)


class Runtime:
    """What the handlers share: settings, the API client, the event recorder."""

    def __init__(self, settings: OperatorSettings, api: client.ApiClient) -> None:
        self.settings = settings
        self.kube = Kube(api, timeout=settings.request_timeout_seconds)
        self.emit = EventRecorder(self.kube)
        self.wakeups = Wakeups()


_runtime: Runtime | None = None


def runtime() -> Runtime:
    """The runtime created at startup."""
    if _runtime is None:
        raise RuntimeError("the operator has not started")
    return _runtime


def _api_client() -> client.ApiClient:
    load_kube_credentials()
    return client.ApiClient()


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    """All kopf settings in one place, from modelfleet's own settings."""
    global _runtime  # noqa: PLW0603 - one runtime per process, made when kopf starts
    ours = get_settings()
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=ANNOTATION_PREFIX
    )
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    settings.watching.server_timeout = ours.watch_timeout_seconds
    settings.watching.client_timeout = ours.watch_timeout_seconds + 30
    settings.watching.connect_timeout = ours.request_timeout_seconds
    settings.networking.request_timeout = ours.request_timeout_seconds
    # modelfleet posts its own Events, one per condition transition; kopf's per-log-line
    # Events would be noise and writes.
    settings.posting.enabled = False
    settings.peering.name = ours.peering_name
    settings.peering.standalone = ours.standalone
    settings.peering.mandatory = not ours.standalone
    settings.execution.max_workers = ours.max_workers
    # One line per handled event is noise at scale; keep warnings and errors.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    _runtime = Runtime(ours, _api_client())
    metrics.serve(ours.metrics_port)


@kopf.on.login()
def login(settings: kopf.OperatorSettings, **_: Any) -> kopf.ConnectionInfo | None:
    """Log in the way the kubernetes client does: in-cluster, else KUBECONFIG."""
    return kopf.login_via_client(logger=LOG, settings=settings)


def _plain(body: Any) -> dict[str, Any]:
    """A deep, plain copy of a kopf body view."""
    result: dict[str, Any] = json.loads(json.dumps(body, default=dict))
    return result


Reconciler = Callable[[Kube, dict[str, Any], OperatorSettings, EventRecorder], float | None]
RECONCILERS: dict[str, Reconciler] = {
    "Model": model_reconciler.reconcile,
    "FinetuneJob": reconcile_finetune,
}


async def _work(
    kind: str, body: kopf.Body, name: str, namespace: str, stopped: kopf.DaemonStopped
) -> None:
    """Reconcile one object whenever it or a child changes, and at least every resync period."""
    rt = runtime()
    reconcile = RECONCILERS[kind]
    wake = rt.wakeups.event(kind, namespace, name)
    loop = asyncio.get_running_loop()
    failures = 0
    try:
        while not stopped:
            wake.clear()
            started = time.monotonic()
            try:
                delay = await loop.run_in_executor(
                    None, reconcile, rt.kube, _plain(body), rt.settings, rt.emit
                )
                failures = 0
                RECONCILES.labels(kind, "success").inc()
            except (ApiException, HTTPError, OSError) as error:
                RECONCILES.labels(kind, "error").inc()
                failures += 1
                delay = min(rt.settings.retry_max_seconds, 2.0 ** min(failures, 12))
                LOG.warning(
                    "reconcile of %s %s/%s failed (%s); retry in %.0fs",
                    kind,
                    namespace,
                    name,
                    error,
                    delay,
                )
            RECONCILE_DURATION.labels(kind).observe(time.monotonic() - started)
            timeout = min(delay or rt.settings.resync_seconds, rt.settings.resync_seconds)
            try:
                await asyncio.wait_for(wake.wait(), timeout=timeout)
                await asyncio.sleep(DEBOUNCE_SECONDS)
            except TimeoutError:
                pass
    finally:
        if stopped.reason is not None and stopped.reason.name == "DONE":
            rt.wakeups.forget(kind, namespace, name)
            if kind == "Model":
                MODEL_CONDITIONS.forget(f"{namespace}/{name}")


@kopf.daemon(GROUP, VERSION, "models", cancellation_timeout=5.0)
async def model_worker(
    body: kopf.Body, name: str, namespace: str | None, stopped: kopf.DaemonStopped, **_: Any
) -> None:
    """One worker per Model."""
    await _work("Model", body, name, namespace or "", stopped)


@kopf.daemon(GROUP, VERSION, "finetunejobs", cancellation_timeout=5.0)
async def finetune_worker(
    body: kopf.Body, name: str, namespace: str | None, stopped: kopf.DaemonStopped, **_: Any
) -> None:
    """One worker per FinetuneJob."""
    await _work("FinetuneJob", body, name, namespace or "", stopped)


@kopf.on.event(GROUP, VERSION, "models")
def model_changed(name: str, namespace: str | None, **_: Any) -> None:
    """Wake the Model's worker on any change of the Model."""
    runtime().wakeups.wake("Model", namespace, name)


@kopf.on.event(GROUP, VERSION, "finetunejobs")
def finetune_changed(name: str, namespace: str | None, spec: kopf.Spec, **_: Any) -> None:
    """Wake the FinetuneJob's worker, and the Model it promotes into (which serves its output)."""
    wakeups = runtime().wakeups
    wakeups.wake("FinetuneJob", namespace, name)
    promote = spec.get("promote") or {}
    wakeups.wake("Model", namespace, promote.get("modelName"))


def _wake_owner(labels: kopf.Labels, namespace: str | None, **_: Any) -> None:
    wakeups = runtime().wakeups
    wakeups.wake("Model", namespace, labels.get(MODEL_LABEL))
    wakeups.wake("FinetuneJob", namespace, labels.get(FINETUNE_LABEL))


for _group, _version, _plural in (
    ("batch", "v1", "jobs"),
    ("apps", "v1", "deployments"),
    ("", "v1", "pods"),
):
    kopf.on.event(_group, _version, _plural, labels=MANAGED)(_wake_owner)
