"""The kopf operator: settings in one startup handler, one worker per Model, wake-ups from
the Model's own events and from its children's.

Each Model has one long-lived worker (a kopf daemon) that runs the level-based reconcile
whenever something about the Model changes, and at least every ``resync_seconds`` to catch
drift. Failed reconciles back off exponentially, capped at ``retry_max_seconds``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import functools
import json
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, cast

import kopf
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from modelfleet import metrics
from modelfleet.api.v1alpha1 import GROUP, VERSION
from modelfleet.builders.common import MANAGED_BY, MODEL_LABEL
from modelfleet.builders.training import FINETUNE_LABEL
from modelfleet.kube.cache import CACHED, CachedKube, ObjectCache, slim
from modelfleet.kube.client import (
    FINETUNE_JOB,
    MODEL,
    PVC,
    Kube,
    Resource,
    describe_error,
    namespace_terminating,
)
from modelfleet.kube.events import EventRecorder
from modelfleet.kubeconfig import load_kube_credentials
from modelfleet.metrics import MODEL_CONDITIONS, RECONCILE_DURATION, RECONCILES
from modelfleet.reconcile.context import Context
from modelfleet.reconcile.finetune.act import reconcile_finetune
from modelfleet.reconcile.model import act as model_reconciler
from modelfleet.settings import OperatorSettings, get_settings

LOG = logging.getLogger(__name__)

ANNOTATION_PREFIX = GROUP
FINALIZER = "modelfleet.io/finalizer"
# Let several events that arrive together cause one reconcile.
DEBOUNCE_SECONDS = 0.2
MANAGED = {"app.kubernetes.io/managed-by": MANAGED_BY}


class Wakeups:
    """One asyncio.Event per object, set when anything about that object changes."""

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self._gone: set[str] = set()

    def event(self, kind: str, namespace: str, name: str) -> asyncio.Event:
        """The wake-up event of an object."""
        return self._events[f"{kind}/{namespace}/{name}"]

    def wake(self, kind: str, namespace: str | None, name: str | None) -> None:
        """Wake the worker of an object, if it has one."""
        if namespace and name:
            self._events[f"{kind}/{namespace}/{name}"].set()

    def gone(self, kind: str, namespace: str | None, name: str | None) -> None:
        """The object was deleted: its worker ends at its next wake-up."""
        if namespace and name:
            self._gone.add(f"{kind}/{namespace}/{name}")
            self.wake(kind, namespace, name)

    def is_gone(self, kind: str, namespace: str, name: str) -> bool:
        """Whether the object was deleted."""
        return f"{kind}/{namespace}/{name}" in self._gone

    def forget(self, kind: str, namespace: str, name: str) -> None:
        """Drop what is kept about a deleted object."""
        self._events.pop(f"{kind}/{namespace}/{name}", None)
        self._gone.discard(f"{kind}/{namespace}/{name}")


class Runtime:
    """What the handlers share: settings, the API client, the event recorder."""

    def __init__(self, settings: OperatorSettings, api: client.ApiClient) -> None:
        self.settings = settings
        self.cache = ObjectCache(indexed_labels=(MODEL_LABEL, FINETUNE_LABEL, "job-name"))
        self.kube = CachedKube(Kube(api, timeout=settings.request_timeout_seconds), self.cache)
        self.emit = EventRecorder(self.kube)
        self.context = Context(self.kube, settings, self.emit)
        self.wakeups = Wakeups()
        # Reconciles wait on the API server most of their time: their own threads, so that
        # ``max_workers`` sets how many run at once.
        self.executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=settings.max_workers, thread_name_prefix="reconcile"
        )


_runtime: Runtime | None = None


def runtime() -> Runtime:
    """The runtime created at startup."""
    if _runtime is None:
        raise RuntimeError("the operator has not started")
    return _runtime


def _api_client(threads: int) -> client.ApiClient:
    """A client whose connection pool holds a connection for each reconcile thread (a
    connection beyond the pool is closed after its request, and the next one pays for a new
    TLS handshake)."""
    load_kube_credentials()
    configuration = client.Configuration.get_default_copy()
    configuration.connection_pool_maxsize = max(configuration.connection_pool_maxsize, threads)
    return client.ApiClient(configuration)


class NoDiffBase(kopf.DiffBaseStorage):
    """No last-handled state: modelfleet has no on.create/on.update handlers (its workers are
    level-based), so kopf need not copy and compare every object on every watch event."""

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None
    ) -> kopf.BodyEssence:
        """Nothing of an object is compared."""
        return cast(kopf.BodyEssence, {})

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        """Nothing is stored."""
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        """Nothing is stored."""


def _quiet_per_object(record: logging.LogRecord) -> bool:
    """kopf logs a line per handled event of every object, noise at scale; keep its warnings
    and errors, and which replica acts (the peering object's lines)."""
    if record.levelno >= logging.WARNING:
        return True
    ref = getattr(record, "k8s_ref", None) or {}
    return str(ref.get("kind") or "").endswith("KopfPeering")


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    """All kopf settings in one place, from modelfleet's own settings."""
    global _runtime  # noqa: PLW0603 - one runtime per process, made when kopf starts
    ours = get_settings()
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=ANNOTATION_PREFIX
    )
    settings.persistence.diffbase_storage = NoDiffBase()
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
    settings.peering.priority = ours.priority
    settings.peering.lifetime = ours.peering_lifetime_seconds
    settings.execution.max_workers = ours.max_workers
    logging.getLogger("kopf.objects").addFilter(_quiet_per_object)
    _runtime = Runtime(ours, _api_client(ours.max_workers))
    metrics.serve(ours.metrics_port)


@kopf.on.login()
def login(settings: kopf.OperatorSettings, **_: Any) -> kopf.ConnectionInfo | None:
    """Log in the way the kubernetes client does: in-cluster, else KUBECONFIG."""
    return kopf.login_via_client(logger=LOG, settings=settings)


def _plain(body: Any) -> dict[str, Any]:
    """A deep, plain copy of a kopf body view."""
    result: dict[str, Any] = json.loads(json.dumps(body, default=dict))
    return result


Reconciler = Callable[[Context, dict[str, Any]], float | None]
RECONCILERS: dict[str, tuple[Resource, Reconciler]] = {
    "Model": (MODEL, model_reconciler.reconcile),
    "FinetuneJob": (FINETUNE_JOB, reconcile_finetune),
}


def _timed(kind: str, reconcile: Callable[[], float | None]) -> float | None:
    """Run one reconcile and record how long it took, not counting its wait for a thread."""
    started = time.monotonic()
    try:
        return reconcile()
    finally:
        RECONCILE_DURATION.labels(kind).observe(time.monotonic() - started)


async def _work(
    kind: str, body: kopf.Body, name: str, namespace: str, stopped: kopf.DaemonStopped
) -> None:
    """Reconcile one object whenever it or a child changes, and at least every resync period."""
    rt = runtime()
    resource, reconcile = RECONCILERS[kind]
    wake = rt.wakeups.event(kind, namespace, name)
    loop = asyncio.get_running_loop()
    failures = 0
    try:
        while not stopped and not rt.wakeups.is_gone(kind, namespace, name):
            wake.clear()
            try:
                latest = rt.kube.fresher(resource, _plain(body))
                delay = await loop.run_in_executor(
                    rt.executor,
                    _timed,
                    kind,
                    functools.partial(reconcile, rt.context, latest),
                )
                failures = 0
                RECONCILES.labels(kind, "success").inc()
            except (ApiException, HTTPError, OSError) as error:
                if namespace_terminating(error):
                    # The namespace is being deleted, and the object with it: nothing to do.
                    LOG.debug("%s %s/%s: its namespace is terminating", kind, namespace, name)
                    delay = rt.settings.resync_seconds
                else:
                    RECONCILES.labels(kind, "error").inc()
                    failures += 1
                    delay = min(rt.settings.retry_max_seconds, 2.0 ** min(failures, 12))
                    LOG.warning(
                        "reconcile of %s %s/%s failed (%s); retry in %.0fs",
                        kind,
                        namespace,
                        name,
                        describe_error(error),
                        delay,
                    )
            timeout = min(delay or rt.settings.resync_seconds, rt.settings.resync_seconds)
            try:
                await asyncio.wait_for(wake.wait(), timeout=timeout)
                await asyncio.sleep(DEBOUNCE_SECONDS)
            except TimeoutError:
                pass
    finally:
        gone = rt.wakeups.is_gone(kind, namespace, name)
        if gone or (stopped.reason is not None and stopped.reason.name == "DONE"):
            rt.wakeups.forget(kind, namespace, name)
            rt.cache.remove(resource, namespace, name)
            if kind == "Model":
                MODEL_CONDITIONS.forget(f"{namespace}/{name}")
                rt.context.status_clock.forget(f"{namespace}/{name}")


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


def _without_finalizer(*workers: Callable[..., Any]) -> None:
    """Let the workers run without kopf's finalizer on their objects.

    kopf blocks the deletion of every object with a daemon until the daemon has stopped, which
    costs a finalizer patch per object. Nothing of ours needs it: children are owned and
    garbage-collected, and a worker ends by itself when the watch reports its object deleted
    (``Wakeups.gone``). kopf removes the finalizer from objects that still carry it.
    """
    spawning = kopf.get_default_registry()._spawning
    spawning._handlers = [
        dataclasses.replace(handler, requires_finalizer=False)
        if getattr(handler, "fn", None) in workers
        else handler
        for handler in spawning._handlers
    ]


_without_finalizer(model_worker, finetune_worker)


# The handlers below only touch memory: they are coroutines, so kopf runs them on its event
# loop instead of handing each watch event to a thread.


@kopf.on.event(GROUP, VERSION, "models")
async def model_changed(
    name: str, namespace: str | None, type: str | None, body: kopf.Body, **_: Any
) -> None:
    """Wake the Model's worker on any change of the Model but its own status writes."""
    rt = runtime()
    if type == "DELETED":
        rt.wakeups.gone("Model", namespace, name)
    elif not rt.cache.is_own_write(MODEL, body):
        rt.wakeups.wake("Model", namespace, name)


@kopf.on.event(GROUP, VERSION, "finetunejobs")
async def finetune_changed(
    name: str, namespace: str | None, spec: kopf.Spec, type: str | None, **_: Any
) -> None:
    """Wake the FinetuneJob's worker, and the Model it promotes into (which serves its output)."""
    wakeups = runtime().wakeups
    if type == "DELETED":
        wakeups.gone("FinetuneJob", namespace, name)
    else:
        wakeups.wake("FinetuneJob", namespace, name)
    promote = spec.get("promote") or {}
    wakeups.wake("Model", namespace, promote.get("modelName"))


def _cache_child(resource: Resource) -> Callable[..., Awaitable[None]]:
    async def remember(body: kopf.Body, **_: Any) -> None:
        # Slim first: only what the cache keeps is copied out of kopf's view.
        runtime().cache.put(resource, _plain(slim(resource, body)))

    return remember


def _child_changed(resource: Resource) -> Callable[..., Awaitable[None]]:
    async def changed(
        type: str | None,
        name: str,
        namespace: str | None,
        labels: kopf.Labels,
        body: kopf.Body,
        **_: Any,
    ) -> None:
        rt = runtime()
        if type == "DELETED":
            rt.cache.remove(resource, namespace, name)
        elif rt.cache.is_own_write(resource, body):
            return  # exactly what a reconcile just wrote: nothing new for it
        rt.wakeups.wake("Model", namespace, labels.get(MODEL_LABEL))
        rt.wakeups.wake("FinetuneJob", namespace, labels.get(FINETUNE_LABEL))

    return changed


# The children the reconcile reads from the cache. Index handlers fill it: kopf runs them for
# the initial listing of every kind before it starts any worker. Claims are not all ours (a
# Model may name an existing one), so every claim is watched; the rest only when ours.
for _resource in CACHED:
    _group, _, _version = _resource.api_version.rpartition("/")
    _labels = None if _resource == PVC else MANAGED
    _plural = _resource.plural
    kopf.index(_group, _version, _plural, labels=_labels, id=f"cache-{_plural}")(
        _cache_child(_resource)
    )
    kopf.on.event(_group, _version, _plural, labels=_labels, id=f"changed-{_plural}")(
        _child_changed(_resource)
    )
