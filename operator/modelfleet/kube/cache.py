"""What the operator knows of its children without asking: an in-memory copy fed by watches.

A reconcile reads a Model's Jobs, pods, Deployment, Service, PDB, Ingress and claim from here
instead of sending a GET or LIST each time, so a reconcile that changes nothing sends nothing,
and the cost of a reconcile does not grow with the number of objects in a namespace. kopf fills it
(index handlers, which kopf runs to completion for every watched kind before any other handler,
so a reconcile never sees a half-filled copy), and every write the operator makes is put in at
once from the server's reply, so the next reconcile sees it before its watch event arrives.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from modelfleet.kube.client import (
    DEPLOYMENT,
    DISRUPTION_BUDGET,
    FINETUNE_JOB,
    INGRESS,
    JOB,
    MODEL,
    POD,
    PVC,
    SERVICE,
    STORAGE_CLASS,
    Kube,
    Manifest,
    Resource,
    resource_of,
)

CACHED = (JOB, POD, DEPLOYMENT, SERVICE, PVC, DISRUPTION_BUDGET, INGRESS)
"""Kinds read only from the cache; the watches that fill it are set up in ``operator.py``."""

OWN_WRITES_KEPT = 10_000
"""Object states written by the operator whose watch event has not come yet (a bound)."""


def _version(obj: Manifest) -> int | None:
    """The resourceVersion as a number, when it is one (etcd revisions are)."""
    text = str(obj.get("metadata", {}).get("resourceVersion") or "")
    return int(text) if text.isdigit() else None


def newer(candidate: Manifest, current: Manifest | None) -> bool:
    """Whether ``candidate`` is a later state of the object than ``current``."""
    if current is None:
        return True
    a, b = _version(candidate), _version(current)
    return a is None or b is None or a >= b


SPEC_UNREAD = frozenset(
    {JOB.plural, POD.plural, DEPLOYMENT.plural, DISRUPTION_BUDGET.plural, INGRESS.plural}
)
"""Kinds whose spec no reconcile reads (it compares spec hashes in annotations): not kept."""


def slim(resource: Resource, obj: Mapping[str, Any]) -> Manifest:
    """What the cache keeps of an object: no managedFields, and no spec where none is read
    (pod templates are most of a Job's, pod's or Deployment's size). Shallow: the parts kept
    are shared with ``obj``."""
    kept = {k: v for k, v in obj.items() if not (k == "spec" and resource.plural in SPEC_UNREAD)}
    meta = kept.get("metadata")
    if isinstance(meta, Mapping) and "managedFields" in meta:
        kept["metadata"] = {k: v for k, v in meta.items() if k != "managedFields"}
    return kept


def _matches(obj: Manifest, selector: dict[str, str]) -> bool:
    labels = obj.get("metadata", {}).get("labels") or {}
    return all(labels.get(k) == v for k, v in selector.items())


def parse_selector(selector: str | None) -> dict[str, str]:
    """An equality-based label selector (``a=b,c=d``) as a dict."""
    pairs = [term.split("=", 1) for term in (selector or "").split(",") if term]
    if any(len(pair) != 2 or pair[1].startswith("=") or pair[0].endswith("!") for pair in pairs):
        raise ValueError(f"only equality selectors are cached: {selector!r}")
    return {k.strip(): v.strip() for k, v in pairs}


class ObjectCache:
    """Objects by kind, namespace and name; safe to read from the reconcile threads.

    Lists by one of ``indexed_labels`` (the Model or Job a child belongs to) look only at the
    objects carrying that label value, so a reconcile's cost does not grow with the fleet.
    """

    def __init__(self, indexed_labels: tuple[str, ...] = ()) -> None:
        self._objects: dict[str, dict[str, dict[str, Manifest]]] = {}
        self._index: dict[tuple[str, str, str, str], set[str]] = {}
        self._indexed = indexed_labels
        self._own: dict[tuple[str, str, str], str] = {}
        self._lock = threading.Lock()

    def _unindex(self, plural: str, namespace: str, obj: Manifest) -> None:
        labels = obj.get("metadata", {}).get("labels") or {}
        for key in self._indexed:
            if key in labels:
                names = self._index.get((plural, namespace, key, labels[key]))
                if names is not None:
                    names.discard(obj["metadata"]["name"])
                    if not names:
                        del self._index[(plural, namespace, key, labels[key])]

    def put(self, resource: Resource, obj: Manifest) -> None:
        """Store ``obj`` (slimmed) unless a later state of it is stored already."""
        obj = slim(resource, obj)
        meta = obj.get("metadata", {})
        namespace, name = meta.get("namespace") or "", meta["name"]
        with self._lock:
            objects = self._objects.setdefault(resource.plural, {}).setdefault(namespace, {})
            current = objects.get(name)
            if not newer(obj, current):
                return
            if current is not None:
                self._unindex(resource.plural, namespace, current)
            objects[name] = obj
            labels = meta.get("labels") or {}
            for key in self._indexed:
                if key in labels:
                    index_key = (resource.plural, namespace, key, labels[key])
                    self._index.setdefault(index_key, set()).add(name)

    def remove(self, resource: Resource, namespace: str | None, name: str) -> None:
        """Forget a deleted object."""
        with self._lock:
            objects = self._objects.get(resource.plural, {}).get(namespace or "", {})
            current = objects.pop(name, None)
            if current is not None:
                self._unindex(resource.plural, namespace or "", current)

    def get(self, resource: Resource, namespace: str | None, name: str) -> Manifest | None:
        """The stored object, or None."""
        with self._lock:
            return self._objects.get(resource.plural, {}).get(namespace or "", {}).get(name)

    def list(
        self, resource: Resource, namespace: str | None, label_selector: str | None = None
    ) -> list[Manifest]:
        """Stored objects of a kind in a namespace whose labels match the selector."""
        selector = parse_selector(label_selector)
        with self._lock:
            by_namespace = self._objects.get(resource.plural, {})
            namespaces = [namespace or ""] if namespace is not None else sorted(by_namespace)
            found: list[Manifest] = []
            for ns in namespaces:
                objects = by_namespace.get(ns, {})
                indexed = next((key for key in self._indexed if key in selector), None)
                if indexed is not None:
                    index_key = (resource.plural, ns, indexed, selector[indexed])
                    names = sorted(self._index.get(index_key, ()))
                else:
                    names = sorted(objects)
                found.extend(objects[name] for name in names if name in objects)
        return [obj for obj in found if _matches(obj, selector)]

    def wrote(self, resource: Resource, obj: Manifest) -> None:
        """Note that the operator itself produced this state of the object."""
        meta = obj["metadata"]
        key = (resource.plural, meta.get("namespace") or "", meta["name"])
        with self._lock:
            self._own[key] = str(meta.get("resourceVersion") or "")
            while len(self._own) > OWN_WRITES_KEPT:
                del self._own[next(iter(self._own))]

    def is_own_write(self, resource: Resource, obj: Mapping[str, Any]) -> bool:
        """Whether a watch event shows exactly a state the operator wrote: it brings the
        reconcile that wrote it nothing new, so it need not wake one."""
        meta = obj.get("metadata", {})
        key = (resource.plural, meta.get("namespace") or "", meta.get("name", ""))
        version = str(meta.get("resourceVersion") or "")
        with self._lock:
            if version and self._own.get(key) == version:
                del self._own[key]
                return True
        return False

    def count(self, resource: Resource) -> int:
        """How many objects of a kind are stored."""
        with self._lock:
            return sum(len(objects) for objects in self._objects.get(resource.plural, {}).values())


REMEMBERED_SECONDS = {STORAGE_CLASS: 60.0}
"""Kinds that seldom change and are not watched: a GET of one is remembered this long."""


class CachedKube(Kube):
    """The operator's client: cached kinds are read from the cache, writes go through to it.

    Reads of other kinds (Secrets, StorageClasses, Models, FinetuneJobs named by a spec) go to
    the API server; they happen only for Models that reference such an object. StorageClasses
    are remembered for a minute, since every Model whose claim is not bound yet reads one.
    """

    def __init__(
        self, kube: Kube, cache: ObjectCache, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__(kube.api, timeout=kube.timeout)
        self.cache = cache
        self._clock = clock
        self._remembered: dict[tuple[str, str, str], tuple[float, Manifest | None]] = {}
        self._remembered_lock = threading.Lock()

    def get(self, resource: Resource, namespace: str | None, name: str) -> Manifest | None:
        """The object from the cache when its kind is cached, else from the API server."""
        if resource in CACHED:
            return self.cache.get(resource, namespace, name)
        keep = REMEMBERED_SECONDS.get(resource)
        if keep is None:
            return super().get(resource, namespace, name)
        key = (resource.plural, namespace or "", name)
        with self._remembered_lock:
            until, obj = self._remembered.get(key, (0.0, None))
        if until > self._clock():
            return obj
        obj = super().get(resource, namespace, name)
        with self._remembered_lock:
            self._remembered[key] = (self._clock() + keep, obj)
        return obj

    def list(
        self, resource: Resource, namespace: str | None, label_selector: str | None = None
    ) -> list[Manifest]:
        """Objects from the cache when their kind is cached, else from the API server."""
        if resource in CACHED:
            return self.cache.list(resource, namespace, label_selector)
        return super().list(resource, namespace, label_selector)

    def _remember(self, resource: Resource, obj: Any) -> None:
        remembered = resource in CACHED or resource in (MODEL, FINETUNE_JOB)
        if remembered and isinstance(obj, dict) and obj.get("metadata", {}).get("name"):
            self.cache.put(resource, obj)
            self.cache.wrote(resource, obj)

    def apply(self, manifest: Manifest) -> Manifest:
        """Server-side apply, remembering the result."""
        result = super().apply(manifest)
        self._remember(resource_of(manifest), result)
        return result

    def create(self, resource: Resource, namespace: str | None, body: Manifest) -> Manifest:
        """Create, remembering the result."""
        result = super().create(resource, namespace, body)
        self._remember(resource, result)
        return result

    def delete(self, resource: Resource, namespace: str | None, name: str) -> bool:
        """Delete, and forget the object (its watch event may come later)."""
        gone = super().delete(resource, namespace, name)
        if resource in CACHED:
            self.cache.remove(resource, namespace, name)
        return gone

    def patch_status(
        self, resource: Resource, namespace: str, name: str, status: dict[str, Any]
    ) -> Manifest:
        """Patch the status, remembering the object it produced (see ``fresher``)."""
        result = super().patch_status(resource, namespace, name, status)
        self._remember(resource, result)
        return result

    def fresher(self, resource: Resource, body: Manifest) -> Manifest:
        """``body`` (from a watch), or the object our own last write produced when that is
        later: a reconcile woken before the watch shows our status patch must not repeat it."""
        meta = body.get("metadata", {})
        ours = self.cache.get(resource, meta.get("namespace"), meta.get("name", ""))
        same = ours is not None and ours["metadata"].get("uid") == meta.get("uid")
        if same and ours is not None and newer(ours, body) and _version(ours) != _version(body):
            return ours
        return body
