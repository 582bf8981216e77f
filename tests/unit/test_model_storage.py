"""The weights claim of a Model: sized from the hub when ``storage.size`` is left out, grown
when ``storage.size`` grows (where its StorageClass allows it), and shown in
``status.storage``. The reasons ``reconcile/model/storage.py`` names each have a test here."""

from __future__ import annotations

import re
from typing import Any

import pytest

from modelfleet.api.v1alpha1 import Model
from modelfleet.builders.storage import SIZED_FROM_ANNOTATION, derive_claim_size
from modelfleet.conditions import Reason
from modelfleet.contracts.results import DownloadResult
from modelfleet.kube.timestamps import parse_time
from modelfleet.reconcile.model.decide import Plan, decide
from modelfleet.reconcile.model.observe import (
    VOLUME_CHECK_SECONDS,
    Observed,
    check_volumes,
    current_resolve_job_name,
    seconds_creating,
)
from tests.support.cluster import REPO_ROOT
from tests.unit.test_model_decide import NOW, SETTINGS, SHA, bound_claim, job_pod, model

pytestmark = pytest.mark.unit

GB = 10**9


def resolve_job(m: Model, finished: str | None = None) -> dict[str, Any]:
    conditions = [] if finished is None else [{"type": finished, "status": "True"}]
    return {"metadata": {"name": current_resolve_job_name(m)}, "status": {"conditions": conditions}}


def resolved(m: Model, bytes_total: int = 3 * GB) -> Observed:
    """The resolve Job done: the repository's selected files are ``bytes_total`` bytes."""
    result = DownloadResult(
        result="Succeeded",
        reason=Reason.RESOLVED,
        resolved_revision=SHA,
        bytes_total=bytes_total,
        files=3,
    )
    return Observed(
        resolve_job=resolve_job(m, "Complete"),
        resolve_job_pods=[job_pod("Succeeded", result)],
        other_jobs=[resolve_job(m, "Complete")],
    )


def _kinds(plan: Plan) -> list[str]:
    return [m["kind"] for m in plan.create]


def _condition(plan: Plan, type_: str) -> dict[str, Any]:
    return next(c for c in plan.status["conditions"] if c["type"] == type_)


def claim_of(m: Model, size: str, capacity: str | None = None, **extra: Any) -> dict[str, Any]:
    claim = bound_claim(m)
    claim["metadata"] |= {"namespace": "team-a", "annotations": {SIZED_FROM_ANNOTATION: "x"}}
    claim["spec"] = {
        "storageClassName": "local",
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": size}},
    }
    claim["status"]["capacity"] = {"storage": capacity or size}
    return claim | extra


# -- the size, from the hub ------------------------------------------------------------------
def test_without_a_size_the_resolve_job_comes_first_and_no_claim() -> None:
    m = model()
    plan = decide(m, Observed(), SETTINGS, NOW)
    [job] = plan.create
    assert job["metadata"]["name"] == current_resolve_job_name(m)
    assert _condition(plan, "Downloaded")["reason"] == Reason.RESOLVING
    # While it runs: nothing more is created.
    running = decide(m, Observed(resolve_job=resolve_job(m)), SETTINGS, NOW)
    assert running.create == []
    assert _condition(running, "Downloaded")["reason"] == Reason.RESOLVING


def test_the_claim_fits_the_revisions_kept_and_says_why() -> None:
    m = model(storage={"keepRevisions": 2})
    plan = decide(m, resolved(m), SETTINGS, NOW)
    [claim] = plan.create
    assert claim["kind"] == "PersistentVolumeClaim"
    size = claim["spec"]["resources"]["requests"]["storage"]
    assert size == derive_claim_size(3 * GB, 2) == "7Gi"  # 6 GB * 1.2 = 6.7 GiB
    why = claim["metadata"]["annotations"][SIZED_FROM_ANNOTATION]
    assert why == f"{3 * GB} bytes at {SHA[:12]} x 2 revisions kept + 20%"
    assert plan.requeue_after is not None  # looks again for the claim, then the download Job
    three = model(storage={"keepRevisions": 3})
    [larger] = decide(three, resolved(three), SETTINGS, NOW).create
    assert larger["spec"]["resources"]["requests"]["storage"] == "11Gi"


def test_a_failed_resolve_job_stalls_with_the_hubs_reason() -> None:
    m = model()
    result = DownloadResult(result="Failed", reason="RepoNotFound", message="no such repo")
    observed = Observed(
        resolve_job={
            "metadata": {"name": current_resolve_job_name(m)},
            "status": {
                "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimit"}]
            },
        },
        resolve_job_pods=[job_pod("Failed", result)],
    )
    plan = decide(m, observed, SETTINGS, NOW)
    assert plan.create == []
    stalled = _condition(plan, "Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", Reason.REPO_NOT_FOUND)
    assert "no such repo" in stalled["message"]


def test_a_given_size_needs_no_resolve_job() -> None:
    m = model(storage={"size": "40Gi"})
    [claim] = decide(m, Observed(), SETTINGS, NOW).create
    assert claim["spec"]["resources"]["requests"]["storage"] == "40Gi"
    assert claim["metadata"]["annotations"][SIZED_FROM_ANNOTATION] == "spec.storage.size"


def test_a_new_retry_token_names_a_new_resolve_job() -> None:
    m = model()
    retried = model()
    retried.metadata.annotations["modelfleet.io/retry"] = "2"
    assert current_resolve_job_name(m) != current_resolve_job_name(retried)


# -- status.storage and growing ----------------------------------------------------------------
def test_status_shows_the_claims_size_capacity_and_why() -> None:
    m = model(storage={"size": "5Gi"})
    plan = decide(m, Observed(claim=claim_of(m, "5Gi")), SETTINGS, NOW)
    assert plan.status["storage"] == {
        "claimName": "tiny-weights",
        "size": "5Gi",
        "capacity": "5Gi",
        "sizedFrom": "x",
    }
    assert plan.apply == [] or all(a["kind"] != "PersistentVolumeClaim" for a in plan.apply)


def test_a_larger_size_grows_the_claim_where_the_class_allows_it() -> None:
    m = model(storage={"size": "8Gi"})
    observed = Observed(claim=claim_of(m, "5Gi"), claim_class={"allowVolumeExpansion": True})
    plan = decide(m, observed, SETTINGS, NOW)
    [resize] = [a for a in plan.apply if a["kind"] == "PersistentVolumeClaim"]
    assert resize["spec"] == {"resources": {"requests": {"storage": "8Gi"}}}
    assert resize["metadata"] == {"name": "tiny-weights", "namespace": "team-a"}
    assert plan.status["storage"]["reason"] == Reason.STORAGE_EXPANDING
    assert [(t, r) for t, r, _ in plan.events if r.startswith("Storage")] == [
        ("Normal", Reason.STORAGE_EXPANDING)
    ]
    # Asked: the volume has not grown yet, and the status says so.
    asked = Observed(claim=claim_of(m, "8Gi", capacity="5Gi"))
    waiting = decide(m, asked, SETTINGS, NOW)
    assert not [a for a in waiting.apply if a["kind"] == "PersistentVolumeClaim"]
    assert waiting.status["storage"]["reason"] == Reason.STORAGE_EXPANDING
    assert "from 5Gi to 8Gi" in waiting.status["storage"]["message"]
    # Grown: no reason left.
    done = decide(m, Observed(claim=claim_of(m, "8Gi")), SETTINGS, NOW)
    assert done.status["storage"]["capacity"] == "8Gi"
    assert done.status["storage"].get("reason") is None


def test_a_class_without_expansion_is_a_warning_once_and_nothing_is_written() -> None:
    m = model(storage={"size": "8Gi"})
    observed = Observed(claim=claim_of(m, "5Gi"), claim_class={"allowVolumeExpansion": False})
    plan = decide(m, observed, SETTINGS, NOW)
    assert not [a for a in plan.apply if a["kind"] == "PersistentVolumeClaim"]
    storage = plan.status["storage"]
    assert storage["reason"] == Reason.STORAGE_NOT_EXPANDABLE
    assert 'StorageClass "local" does not allow volume expansion' in storage["message"]
    assert [(t, r) for t, r, _ in plan.events if r.startswith("Storage")] == [
        ("Warning", Reason.STORAGE_NOT_EXPANDABLE)
    ]
    # Told once: the same situation again is no new Event.
    told = m.model_copy(deep=True)
    told.status = told.status.model_validate({"storage": storage})
    again = decide(told, observed, SETTINGS, NOW)
    assert not [r for _, r, _ in again.events if r.startswith("Storage")]


def test_a_smaller_size_is_left_to_the_schema() -> None:
    """The API server refuses a shrink; a claim made larger from the hub stays as it is."""
    m = model(storage={"size": "2Gi"})
    plan = decide(m, Observed(claim=claim_of(m, "7Gi")), SETTINGS, NOW)
    assert not [a for a in plan.apply if a["kind"] == "PersistentVolumeClaim"]
    assert plan.status["storage"].get("reason") is None


def test_spread_replicas_on_read_write_many_are_fine() -> None:
    m = model(
        serving={"replicas": 2, "schedulingStrategy": "spread"},
        storage={"size": "1Gi", "accessModes": ["ReadWriteMany"]},
    )
    plan = decide(m, Observed(), SETTINGS, NOW)
    assert _condition(plan, "Stalled")["status"] == "False"
    assert _kinds(plan) == ["PersistentVolumeClaim"]


def test_every_reason_the_storage_module_names_is_tested_here() -> None:
    source = (REPO_ROOT / "operator/modelfleet/reconcile/model/storage.py").read_text()
    named = set(re.findall(r"Reason\.([A-Z_]+)", source))
    tested = set(re.findall(r"Reason\.([A-Z_]+)", (REPO_ROOT / __file__).read_text()))
    assert named and named <= tested


# -- pods held by their volumes ---------------------------------------------------------------
class _Events:
    """What ``check_volumes`` reads: the Events of a pod."""

    def __init__(self, *events: dict[str, Any]) -> None:
        self.events = list(events)
        self.asked: list[str] = []

    def pod_events(self, namespace: str, pod: str) -> list[dict[str, Any]]:
        self.asked.append(pod)
        return self.events


def _creating_pod(name: str, scheduled_at: str, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "team-a"},
        "status": {
            "phase": "Pending",
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": scheduled_at}
            ],
            "containerStatuses": [{"name": "vllm", "state": {"waiting": {"reason": "x"}}}],
            **status,
        },
    }


def test_a_pod_held_past_the_check_names_its_latest_volume_event() -> None:
    now = parse_time("2026-01-01T00:01:00Z")
    assert now is not None
    kube = _Events(
        {"reason": "Scheduled", "message": "assigned"},
        {"reason": "FailedMount", "message": "old", "lastTimestamp": "2026-01-01T00:00:10Z"},
        {
            "reason": "FailedAttachVolume",
            "message": "Multi-Attach error for volume pvc-1",
            "lastTimestamp": "2026-01-01T00:00:50Z",
        },
    )
    observed = Observed()
    held = _creating_pod("held", "2026-01-01T00:00:00Z")
    fresh = _creating_pod("fresh", "2026-01-01T00:00:55Z")
    running = _creating_pod("running", "2026-01-01T00:00:00Z", phase="Running")
    check_volumes(kube, observed, [held, fresh, running], now)  # type: ignore[arg-type]
    assert kube.asked == ["held"]  # the others are not read: no request per pod and reconcile
    assert observed.volume_problems == {
        "held": "pod held: FailedAttachVolume: Multi-Attach error for volume pvc-1"
    }
    assert observed.volume_check_after == pytest.approx(VOLUME_CHECK_SECONDS - 5)


def test_a_started_container_is_not_waiting_for_a_volume() -> None:
    now = parse_time("2026-01-01T00:01:00Z")
    assert now is not None
    started = _creating_pod(
        "p", "2026-01-01T00:00:00Z", containerStatuses=[{"state": {"running": {}}}]
    )
    assert seconds_creating(started, now) is None
    assert seconds_creating(_creating_pod("p", "2026-01-01T00:00:00Z"), now) == 60.0
    unscheduled = _creating_pod("p", "2026-01-01T00:00:00Z")
    unscheduled["status"]["conditions"][0]["status"] = "False"
    assert seconds_creating(unscheduled, now) is None
