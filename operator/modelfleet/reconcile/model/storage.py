"""The weights claim as the Model sees it: ``status.storage`` (size, capacity, why), and the
resize applied when ``spec.storage.size`` grows where the claim's StorageClass allows it."""

from __future__ import annotations

from modelfleet.api.v1alpha1 import Model
from modelfleet.api.v1alpha1.model import StorageStatus
from modelfleet.builders.storage import (
    SIZED_FROM_ANNOTATION,
    build_claim_resize,
    claim_capacity,
    claim_request,
    quantity_above,
)
from modelfleet.conditions import Reason, event_type
from modelfleet.kube.client import Manifest
from modelfleet.reconcile.common import annotation
from modelfleet.reconcile.model.observe import Observed


def storage_state(
    model: Model, observed: Observed, *, makes_claim: bool
) -> tuple[StorageStatus | None, list[Manifest]]:
    """``status.storage`` of the claim the Model makes, and the resize to apply when
    spec.storage.size grew (where its StorageClass allows expansion)."""
    claim = observed.claim
    if claim is None or not makes_claim or observed.conflicts:
        return None, []
    requested, capacity = claim_request(claim), claim_capacity(claim)
    status = StorageStatus(
        claim_name=claim["metadata"]["name"],
        size=requested,
        capacity=capacity,
        sized_from=annotation(claim, SIZED_FROM_ANNOTATION),
    )
    wanted = model.spec.storage.size
    if quantity_above(wanted, requested):
        class_name = (claim.get("spec") or {}).get("storageClassName") or "none"
        if not (observed.claim_class or {}).get("allowVolumeExpansion"):
            status.reason = Reason.STORAGE_NOT_EXPANDABLE
            status.message = (
                f'spec.storage.size is {wanted} but StorageClass "{class_name}" does not allow'
                f" volume expansion: the claim stays at {requested}. Copy the weights to a"
                " larger claim (storage.existingClaim), or use a class with"
                " allowVolumeExpansion"
            )
            return status, []
        status.reason = Reason.STORAGE_EXPANDING
        status.message = f"the claim was asked to grow from {requested} to {wanted}"
        return status, [build_claim_resize(claim, str(wanted))]
    if quantity_above(requested, capacity):
        status.reason = Reason.STORAGE_EXPANDING
        status.message = f"the volume grows from {capacity} to {requested}"
    return status, []


def storage_events(
    previous: StorageStatus | None, storage: StorageStatus | None
) -> list[tuple[str, str, str]]:
    """An Event when the claim starts to grow or cannot."""
    reason = storage.reason if storage else None
    if not reason or reason == (previous.reason if previous else None):
        return []
    assert storage is not None and storage.message is not None
    return [(event_type(reason), reason, storage.message)]
