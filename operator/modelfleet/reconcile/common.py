"""What the Model and FinetuneJob reconciles share: Secret checks, reading their children's
manifests, and writing status only when it changes."""

from __future__ import annotations

import base64
import threading
import time
from typing import Any

from modelfleet.api.v1alpha1.common import ApiModel, SecretKeyRef
from modelfleet.conditions import Reason
from modelfleet.kube.client import SECRET, Kube, Manifest

Verdict = tuple[Reason, str]
"""A condition's reason and message."""


def secret_problem(kube: Kube, namespace: str, ref: SecretKeyRef) -> tuple[Reason, str] | None:
    """Why the token ``ref`` names cannot be used, or None when it can."""
    secret = kube.get(SECRET, namespace, ref.name)
    if secret is None:
        return Reason.SECRET_NOT_FOUND, f'Secret "{ref.name}" not found in namespace {namespace}'
    value = secret.get("data", {}).get(ref.key)
    if not value or not base64.b64decode(value).strip():
        return (
            Reason.SECRET_KEY_NOT_FOUND,
            f'Secret "{ref.name}" has no (non-empty) key "{ref.key}"',
        )
    return None


def base_claim_name(base: Manifest) -> str:
    """The claim that holds a Model's weights, read from its manifest."""
    spec = base.get("spec", {})
    if "pvc" in spec.get("source", {}):
        return str(spec["source"]["pvc"]["claimName"])
    return str(
        spec.get("storage", {}).get("existingClaim") or f"{base['metadata']['name']}-weights"
    )


def annotation(obj: Manifest | None, key: str) -> str | None:
    """The annotation ``key`` of ``obj``, if both exist."""
    if obj is None:
        return None
    value = obj.get("metadata", {}).get("annotations", {}).get(key)
    return str(value) if value is not None else None


def pod_condition(pod: Manifest, type_: str) -> dict[str, Any] | None:
    """The condition ``type_`` of a pod, if it has one."""
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == type_:
            return dict(condition)
    return None


def without_none(value: Any) -> Any:
    """What a JSON merge patch of ``value`` leaves stored: keys set to None are deleted."""
    if isinstance(value, dict):
        return {k: without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_none(item) for item in value]
    return value


def status_patch(
    status: ApiModel, previous: dict[str, Any], *, not_owned: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The JSON merge patch that stores the typed ``status`` over ``previous``: its wire form,
    plus a null for every field it no longer has (nested objects too), except the top-level
    fields in ``not_owned``, which others write (a Job's download progress)."""
    wire = status.to_wire()
    patch: dict[str, Any] = dict(wire)
    for key, old in previous.items():
        if key in not_owned and key not in wire:
            continue
        patch[key] = _removed(old, wire.get(key))
    return patch


def _removed(old: Any, new: Any) -> Any:
    if new is None:
        return None
    if isinstance(old, dict) and isinstance(new, dict):
        return {
            **{k: None for k in old if k not in new},
            **{k: _removed(old.get(k), v) if k in old else v for k, v in new.items()},
        }
    return new


def status_changed(model_body: Manifest, status: dict[str, Any]) -> bool:
    """Whether merge-patching ``status`` would change what is stored."""
    current = model_body.get("status") or {}
    return any(current.get(k) != without_none(v) for k, v in status.items())


class StatusClock:
    """When each object's status was last written, so that progress is written calmly."""

    def __init__(self) -> None:
        self._written: dict[str, float] = {}
        self._lock = threading.Lock()

    def wait(self, key: str, interval: float) -> float:
        """Seconds until a progress-only write of ``key`` is due (0: now)."""
        with self._lock:
            last = self._written.get(key)
        return 0.0 if last is None else max(0.0, last + interval - time.monotonic())

    def written(self, key: str) -> None:
        """Record a status write of ``key``."""
        with self._lock:
            self._written[key] = time.monotonic()

    def forget(self, key: str) -> None:
        """Drop a deleted object."""
        with self._lock:
            self._written.pop(key, None)
