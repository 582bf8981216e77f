"""A Model's status: built typed (``ModelStatus``), serialised once as a merge patch; which
part of it is more than progress; and the one Event that announces a reconcile's transitions."""

from __future__ import annotations

from typing import Any

from modelfleet.api.v1alpha1 import Model
from modelfleet.api.v1alpha1.common import Condition
from modelfleet.api.v1alpha1.model import (
    DownloadStatus,
    Lineage,
    ModelStatus,
    ModelSummary,
    RevisionStatus,
    ServingStatus,
    StorageStatus,
)
from modelfleet.conditions import ConditionType, event_type

# Which transition names the Event of a reconcile: a problem first, then what became true.
_HEADLINE_ORDER = {
    ConditionType.DOWNLOADED: 1,
    ConditionType.SERVING: 2,
    ConditionType.READY: 3,
}


def transition_events(
    before: list[dict[str, Any]], after: list[dict[str, Any]]
) -> list[tuple[str, str, str]]:
    """(type, reason, message) of the one Event that announces a reconcile's condition
    transitions (those that changed status or reason), or none. Its reason is the headline's
    (a problem first, then Ready turning True, then Downloaded, Serving, Ready); its note names
    every transition with its reason and message, grouped by reason."""
    previous = {c["type"]: (c.get("status"), c.get("reason")) for c in before}
    grouped: dict[str, list[dict[str, Any]]] = {}
    for c in after:
        # Reconciling mirrors Ready, and a Stalled=False needs no announcement.
        if c["type"] == ConditionType.RECONCILING or (
            c["type"] == ConditionType.STALLED and c["status"] == "False"
        ):
            continue
        if previous.get(c["type"]) != (c["status"], c["reason"]):
            grouped.setdefault(c["reason"], []).append(c)
    if not grouped:
        return []

    def warning(reason: str) -> bool:
        return event_type(reason) == "Warning"

    def rank(reason: str) -> tuple[int, int]:
        changed = grouped[reason]
        became_ready = any(
            c["type"] == ConditionType.READY and c["status"] == "True" for c in changed
        )
        order = min(_HEADLINE_ORDER.get(c["type"], 9) for c in changed)
        return (0 if warning(reason) else 1, 0 if became_ready else order)

    headline = min(grouped, key=rank)
    parts = []
    for reason in sorted(grouped, key=rank):
        changed = grouped[reason]
        states = ", ".join(f"{c['type']}={c['status']}" for c in changed)
        message = next((c["message"] for c in changed if c["message"]), "")
        label = states if reason == headline else f"{states} ({reason})"
        parts.append(f"{label}: {message}" if message else label)
    return [(event_type(headline), headline, "; ".join(parts))]


def significant(status: dict[str, Any]) -> dict[str, Any]:
    """What in a status is more than progress: each condition's status and reason, the
    generation, the revisions and paths; not replica counts, messages or percentages."""
    serving = status.get("serving") or {}
    return {
        "conditions": sorted(
            (c.get("type"), c.get("status"), c.get("reason"), c.get("observedGeneration"))
            for c in status.get("conditions") or []
        ),
        "observedGeneration": status.get("observedGeneration"),
        "resolvedRevision": status.get("resolvedRevision"),
        "modelPath": status.get("modelPath"),
        "revisions": status.get("revisions"),
        "activeRevision": serving.get("activeRevision"),
        "endpoint": serving.get("endpoint"),
        "lineage": status.get("lineage"),
        "downloadPhase": (status.get("download") or {}).get("phase"),
        "storage": [(status.get("storage") or {}).get(k) for k in ("size", "capacity", "reason")],
    }


def progress_text(download: dict[str, Any] | None, downloaded: bool) -> str | None:
    if downloaded:
        return "100%"
    if not download:
        return None
    total, done = download.get("bytesTotal") or 0, download.get("bytesDone") or 0
    return f"{min(100, int(done * 100 / total))}%" if total else None


def short(revision: str | None) -> str | None:
    return revision[:7] if revision else None


def source_text(model: Model) -> str:
    """The Source column: where the weights come from."""
    source = model.spec.source
    hub = source.huggingface or source.modelscope
    if hub is not None:
        return f"{hub.repo}@{hub.revision}"
    if source.pvc is not None:
        return f"pvc:{source.pvc.claim_name}/{source.pvc.path.lstrip('/')}"
    return f"finetuneJob:{source.finetune_job.name if source.finetune_job else ''}"


def model_status(
    model: Model,
    conditions: list[dict[str, Any]],
    *,
    verified: tuple[str, str] | None,
    verified_bytes: int | None = None,
    download: dict[str, Any],
    serving: ServingStatus | None,
    storage: StorageStatus | None,
    lineage: Lineage | None,
    now: str,
) -> ModelStatus:
    """The Model's new status. ``verified`` is the (path, revision) of the weights the spec
    asks for, once verified; ``download`` the operator's own word on the download (a failure),
    empty when the Job's progress stands."""
    previous = model.status
    revisions = list(previous.revisions)
    if verified and all(r.path != verified[0] for r in revisions):
        revisions.insert(
            0,
            RevisionStatus.model_validate(
                {
                    "revision": verified[1],
                    "path": verified[0],
                    "downloadedAt": now,
                    "sizeBytes": verified_bytes,
                }
            ),
        )
    # The revision serving moved off: when it was last served.
    before = previous.serving.active_revision if previous.serving else None
    after = serving.active_revision if serving else None
    if before and before != after:
        revisions = [
            RevisionStatus.model_validate({**kept.to_wire(), "lastServedAt": now})
            if kept.revision == before
            else kept
            for kept in revisions
        ]
    progress = download or (previous.download.to_wire() if previous.download else {})
    resolved = (verified[1] if verified else None) or progress.get("revision")
    resolved = resolved or previous.resolved_revision
    desired = model.spec.serving.replicas if model.spec.serving else None
    return ModelStatus(
        observed_generation=model.metadata.generation,
        conditions=[Condition.model_validate(c) for c in conditions],
        resolved_revision=resolved,
        model_path=verified[0] if verified else previous.model_path,
        download=DownloadStatus.model_validate(download) if download else None,
        serving=serving,
        storage=storage or previous.storage,
        revisions=revisions[: model.spec.storage.keep_revisions],
        lineage=lineage,
        summary=ModelSummary(
            revision=short(resolved),
            progress=progress_text(progress, verified is not None),
            replicas=f"{serving.ready_replicas}/{desired}" if serving is not None else None,
            source=source_text(model),
        ),
    )
