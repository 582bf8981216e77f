"""The PersistentVolumeClaim that keeps a Model's weights, and its derived size."""

from __future__ import annotations

from typing import Any

from kubernetes.utils.quantity import parse_quantity

from modelfleet.api.v1alpha1 import Model
from modelfleet.builders.common import Manifest, object_meta, stamp_spec_hash
from modelfleet.builders.naming import weights_claim_name

GIB = 1024**3

SIZED_FROM_ANNOTATION = "modelfleet.io/sized-from"
"""Why the weights claim has its size: spec.storage.size, or the repository's file list."""

SPEC_SIZE = "spec.storage.size"


def needs_weights_claim(model: Model) -> bool:
    """True when the operator creates the weights claim; false for a user's existing claim."""
    return model.spec.source.pvc is None and not model.spec.storage.existing_claim


def build_weights_claim(model: Model, size: str, sized_from: str = SPEC_SIZE) -> Manifest:
    """The weights PVC of ``size`` (``sized_from`` says why, in an annotation); unowned when
    ``storage.retainOnDelete`` so it outlives the Model. Refuses a Model whose weights live on
    a claim the user owns."""
    if not needs_weights_claim(model):
        # An owner reference on the user's claim would let garbage collection delete it.
        raise ValueError(
            f"Model {model.metadata.name!r} uses the existing claim"
            f" {weights_claim_name(model)!r}; the operator creates no claim for it"
        )
    storage = model.spec.storage
    spec: dict[str, Any] = {"accessModes": list(storage.access_modes)}
    if storage.storage_class_name:
        spec["storageClassName"] = storage.storage_class_name
    spec["resources"] = {"requests": {"storage": size}}
    manifest: Manifest = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": object_meta(
            model,
            weights_claim_name(model),
            "weights",
            owned=not storage.retain_on_delete,
            annotations={SIZED_FROM_ANNOTATION: sized_from},
        ),
        "spec": spec,
    }
    return stamp_spec_hash(manifest)


def build_claim_resize(claim: Manifest, size: str) -> Manifest:
    """The server-side apply of a larger size onto ``claim``, and nothing else."""
    meta = claim["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
        "spec": {"resources": {"requests": {"storage": size}}},
    }


def claim_request(claim: Manifest) -> str | None:
    """The size a claim requests."""
    requests = ((claim.get("spec") or {}).get("resources") or {}).get("requests") or {}
    return requests.get("storage")


def claim_capacity(claim: Manifest) -> str | None:
    """The size of the volume bound to a claim, once bound."""
    return ((claim.get("status") or {}).get("capacity") or {}).get("storage")


def quantity_above(size: object, than: str | None) -> bool:
    """Whether the quantity ``size`` is larger than ``than`` (False when either is missing)."""
    if size is None or than is None:
        return False
    return bool(parse_quantity(str(size)) > parse_quantity(than))


def derive_claim_size(total_bytes: int, keep_revisions: int) -> str:
    """Room for ``keep_revisions`` copies of ``total_bytes`` plus 20 % headroom, in whole Gi
    (at least 1Gi)."""
    if total_bytes < 0 or keep_revisions < 1:
        raise ValueError("total_bytes must be >= 0 and keep_revisions >= 1")
    # Integer arithmetic: x * 1.2 in floats can round a boundary size up by a whole Gi.
    needed = total_bytes * keep_revisions * 6
    gib = -(-needed // (5 * GIB))
    return f"{max(gib, 1)}Gi"
