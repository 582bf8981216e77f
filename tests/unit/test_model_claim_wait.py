"""The download Job waits for its claim's volume when the claim binds without a pod.

A pod that mounts an unbound claim of an ``Immediate`` StorageClass cannot be scheduled: the
scheduler retries it on every volume event in the cluster and posts a FailedScheduling Warning
each time. So the Job is created once the claim is bound, and a claim that stays unbound shows
on the Model as ``ClaimPending``. A ``WaitForFirstConsumer`` claim binds only for a pod, so its
Job is created at once.
"""

from __future__ import annotations

from typing import Any

import pytest

from modelfleet.api.v1alpha1 import Model
from modelfleet.builders.naming import weights_claim_name
from modelfleet.conditions import Reason
from modelfleet.kube.client import STORAGE_CLASS, Resource
from modelfleet.reconcile.model.decide import decide
from modelfleet.reconcile.model.observe import Observed, claim_waits_for_volume
from modelfleet.settings import OperatorSettings

pytestmark = pytest.mark.unit

SETTINGS = OperatorSettings(downloader_image="downloader:test", model_root="/models")
CREATED = "2026-01-01T00:00:00Z"


def _model() -> Model:
    return Model.model_validate(
        {
            "apiVersion": "modelfleet.io/v1alpha1",
            "kind": "Model",
            "metadata": {"name": "tiny", "namespace": "team-a", "uid": "u1", "generation": 1},
            "spec": {"source": {"huggingface": {"repo": "org/tiny"}}, "storage": {"size": "1Gi"}},
        }
    )


def _claim(phase: str = "Pending", storage_class: str | None = "local", **annotations: str) -> Any:
    spec = {} if storage_class is None else {"storageClassName": storage_class}
    return {
        "metadata": {
            "name": weights_claim_name(_model()),
            "namespace": "team-a",
            "creationTimestamp": CREATED,
            "annotations": annotations,
        },
        "spec": spec,
        "status": {"phase": phase},
    }


class _Classes:
    """What ``claim_waits_for_volume`` reads: StorageClasses by name."""

    def __init__(self, **modes: str) -> None:
        self.modes = modes
        self.reads = 0

    def get(self, resource: Resource, namespace: str | None, name: str) -> Any:
        assert resource == STORAGE_CLASS
        self.reads += 1
        mode = self.modes.get(name)
        return None if mode is None else {"metadata": {"name": name}, "volumeBindingMode": mode}


def _kinds(plan: Any) -> list[str]:
    return [manifest["kind"] for manifest in plan.create]


def _condition(plan: Any, type_: str) -> dict[str, Any]:
    return next(c for c in plan.status["conditions"] if c["type"] == type_)


@pytest.mark.parametrize(
    ("claim", "modes", "waits"),
    [
        (_claim(), {"local": "Immediate"}, True),
        (_claim(), {"local": "WaitForFirstConsumer"}, False),
        (_claim(phase="Bound"), {"local": "Immediate"}, False),
        (_claim(**{"volume.kubernetes.io/selected-node": "n1"}), {"local": "Immediate"}, False),
        (_claim(storage_class=None), {}, True),  # a static volume, bound when it appears
        (_claim(storage_class="missing"), {}, True),  # never bound until the class exists
    ],
    ids=["immediate", "first-consumer", "bound", "node-selected", "no-class", "class-missing"],
)
def test_which_claims_make_the_job_wait(claim: Any, modes: dict[str, str], waits: bool) -> None:
    assert claim_waits_for_volume(_Classes(**modes), claim) is waits  # type: ignore[arg-type]


def test_the_first_reconcile_makes_the_claim_and_looks_again_for_the_job() -> None:
    plan = decide(_model(), Observed(), SETTINGS, CREATED)
    assert _kinds(plan) == ["PersistentVolumeClaim"]
    assert plan.requeue_after == 1.0
    assert _condition(plan, "Downloaded")["reason"] == Reason.PENDING


def test_an_unbound_claim_holds_the_job_without_a_new_reason() -> None:
    now = "2026-01-01T00:00:10Z"
    plan = decide(_model(), Observed(claim=_claim(), claim_unbound=True), SETTINGS, now)
    assert _kinds(plan) == []
    # What the Job will show while its pod starts: a claim that binds in time costs no write.
    bound = decide(_model(), Observed(claim=_claim(phase="Bound")), SETTINGS, now)
    assert _condition(plan, "Ready") == _condition(bound, "Ready")
    assert _condition(plan, "Ready")["reason"] == Reason.PENDING
    assert plan.requeue_after == pytest.approx(SETTINGS.claim_bind_grace_seconds - 10)


def test_a_claim_unbound_past_the_grace_shows_as_claim_pending_with_a_warning() -> None:
    now = "2026-01-01T00:10:00Z"
    model = _model()
    plan = decide(model, Observed(claim=_claim(), claim_unbound=True), SETTINGS, now)
    assert _kinds(plan) == []
    ready = _condition(plan, "Ready")
    assert ready["reason"] == Reason.CLAIM_PENDING
    assert weights_claim_name(model) in ready["message"]
    assert "600s" in ready["message"]
    assert [(kind, reason) for kind, reason, _ in plan.events] == [
        ("Warning", Reason.CLAIM_PENDING)
    ]


def test_a_bound_claim_gets_its_job() -> None:
    plan = decide(_model(), Observed(claim=_claim(phase="Bound")), SETTINGS, CREATED)
    assert _kinds(plan) == ["Job"]
    assert _condition(plan, "Downloaded")["reason"] == Reason.PENDING
