"""The operator never takes over an object it does not control, and a name from a spec never
adds a segment to an API path."""

from __future__ import annotations

from typing import Any

import pytest

from modelfleet.api.v1alpha1 import Model
from modelfleet.conditions import STALLED_REASONS, ConditionType, Reason, find_condition
from modelfleet.kube.client import PVC, SERVICE, STORAGE_CLASS
from modelfleet.reconcile.model.decide import decide
from modelfleet.reconcile.model.observe import Observed, is_ours, observe
from modelfleet.settings import OperatorSettings

pytestmark = pytest.mark.unit

SETTINGS = OperatorSettings(downloader_image="downloader:test", model_root="/models")
NOW = "2026-01-01T00:00:00Z"


def _model(name: str = "kubernetes") -> Model:
    return Model.model_validate(
        {
            "apiVersion": "modelfleet.io/v1alpha1",
            "kind": "Model",
            "metadata": {"name": name, "namespace": "default", "uid": "u1", "generation": 1},
            "spec": {
                "source": {"huggingface": {"repo": "org/tiny"}},
                "storage": {"size": "1Gi"},
                "serving": {"replicas": 1},
            },
        }
    )


def _foreign(name: str, **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "default", "labels": labels}}


class _Cluster:
    """What ``observe`` reads: a watch cache that holds only modelfleet's objects, and the API
    server, which also has the cluster's own ``kubernetes`` Service."""

    def __init__(self, live: dict[tuple[str, str], dict[str, Any]]) -> None:
        self.live = live
        self.live_reads: list[str] = []

    def get(self, resource: Any, namespace: str | None, name: str) -> dict[str, Any] | None:
        obj = self.live.get((resource.plural, name))
        if resource in (PVC,):
            return obj  # claims are all watched
        if resource == STORAGE_CLASS:
            return {"metadata": {"name": name}}
        return obj if obj is not None and is_ours(obj, "kubernetes") else None

    def read_live(self, resource: Any, namespace: str | None, name: str) -> dict[str, Any] | None:
        self.live_reads.append(f"{resource.plural}/{name}")
        return self.live.get((resource.plural, name))

    def list(self, *_: Any, **__: Any) -> list[dict[str, Any]]:
        return []


def test_a_model_named_kubernetes_leaves_the_api_servers_service_alone() -> None:
    cluster = _Cluster(
        {(SERVICE.plural, "kubernetes"): _foreign("kubernetes", component="apiserver")}
    )
    observed = observe(cluster, _model())  # type: ignore[arg-type]
    assert observed.conflicts == ["Service default/kubernetes"]
    plan = decide(_model(), observed, SETTINGS, NOW)
    assert plan.create == [] and plan.apply == [] and plan.delete_jobs == []
    assert plan.pod_conditions == []
    stalled = find_condition(plan.status["conditions"], ConditionType.STALLED)
    assert stalled is not None and stalled["status"] == "True"
    assert stalled["reason"] == Reason.CHILD_CONFLICT
    assert "Service default/kubernetes" in stalled["message"]
    assert Reason.CHILD_CONFLICT in STALLED_REASONS
    assert plan.events and plan.events[0][:2] == ("Warning", Reason.CHILD_CONFLICT)


def test_a_foreign_claim_of_the_models_claim_name_is_not_written_into() -> None:
    claim = _foreign("kubernetes-weights")
    cluster = _Cluster({(PVC.plural, "kubernetes-weights"): claim})
    observed = observe(cluster, _model())  # type: ignore[arg-type]
    assert observed.conflicts == ["PersistentVolumeClaim default/kubernetes-weights"]
    plan = decide(_model(), observed, SETTINGS, NOW)
    assert plan.create == [] and plan.apply == []


def test_the_models_own_children_are_no_conflict() -> None:
    ours = {"app.kubernetes.io/managed-by": "modelfleet", "modelfleet.io/model": "kubernetes"}
    claim = _foreign("kubernetes-weights", **ours)
    cluster = _Cluster({(PVC.plural, "kubernetes-weights"): claim})
    assert observe(cluster, _model()).conflicts == []  # type: ignore[arg-type]
    other_models = {**ours, "modelfleet.io/model": "other"}
    assert not is_ours(_foreign("x", **other_models), "kubernetes")


def test_without_conflicts_the_model_creates_its_children() -> None:
    plan = decide(_model("tiny"), Observed(), SETTINGS, NOW)
    assert "PersistentVolumeClaim" in [m["kind"] for m in plan.create]


@pytest.mark.parametrize(
    "name",
    ["../../../../api/v1/namespaces/kube-system/secrets/x", "a/b", "x?watch=1", "%2e%2e"],
)
def test_a_name_never_adds_a_path_segment(name: str) -> None:
    path = STORAGE_CLASS.path(None, name)
    assert path.startswith("/apis/storage.k8s.io/v1/storageclasses/")
    tail = path.removeprefix("/apis/storage.k8s.io/v1/storageclasses/")
    assert "/" not in tail and "?" not in tail and tail != ".."
    assert SERVICE.path(name, "s").count("/") == SERVICE.path("ns", "s").count("/")


class _Jobs:
    """The Kube a FinetuneJob reconcile reads: its base Model, and a Job of the training Job's
    name that belongs to someone else."""

    def __init__(self, job: dict[str, Any]) -> None:
        self.job = job
        self.created: list[Any] = []
        self.status: dict[str, Any] = {}

    def get(self, resource: Any, namespace: str | None, name: str) -> dict[str, Any] | None:
        return self.job if resource.plural == "jobs" else None

    def list(self, *_: Any, **__: Any) -> list[dict[str, Any]]:
        return []

    def create(self, *args: Any) -> None:
        self.created.append(args)

    def patch_status(self, resource: Any, namespace: str, name: str, status: Any) -> None:
        self.status = status


def test_a_finetunejob_never_reads_or_promotes_a_job_it_does_not_own() -> None:
    from modelfleet.reconcile.context import Context
    from modelfleet.reconcile.finetune.act import reconcile_finetune

    foreign = {
        "metadata": {
            "name": "tune-train",
            "namespace": "default",
            "ownerReferences": [{"kind": "FinetuneJob", "name": "tune", "uid": "an-older-one"}],
        },
        "status": {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]},
    }
    body = {
        "apiVersion": "modelfleet.io/v1alpha1",
        "kind": "FinetuneJob",
        "metadata": {"name": "tune", "namespace": "default", "uid": "this-one", "generation": 1},
        "spec": {
            "baseModel": {"name": "tiny"},
            "dataset": {"configMap": {"name": "data", "key": "train.jsonl"}},
            "promote": {"modelName": "tiny"},
        },
    }
    kube = _Jobs(foreign)
    events: list[tuple[str, str, str]] = []
    context = Context(kube, SETTINGS, lambda _body, *event: events.append(event))  # type: ignore[arg-type]
    reconcile_finetune(context, body)
    assert kube.created == [], "nothing created, nothing promoted"
    failed = find_condition(kube.status["conditions"], ConditionType.FAILED)
    assert failed is not None and failed["status"] == "True"
    assert failed["reason"] == Reason.CHILD_CONFLICT
    assert "Job default/tune-train" in failed["message"]
    assert "outputPath" not in kube.status


def test_a_download_job_never_prunes_what_other_models_on_the_claim_use() -> None:
    """Two Models on one claim: the new Job of one protects what the other serves and keeps."""
    import json

    from modelfleet.reconcile.model.observe import paths_other_models_use

    sharing = _model("tiny")
    sharing.spec.storage.existing_claim = "shared"
    other = {
        "apiVersion": "modelfleet.io/v1alpha1",
        "kind": "Model",
        "metadata": {"name": "other", "namespace": "default"},
        "spec": {
            "source": {"huggingface": {"repo": "org/tiny"}},
            "storage": {"existingClaim": "shared"},
        },
        "status": {
            "modelPath": "/models/org/tiny/" + "b" * 40,
            "revisions": [{"revision": "c" * 40, "path": "/models/org/tiny/" + "c" * 40}],
        },
    }
    unrelated = {
        "apiVersion": "modelfleet.io/v1alpha1",
        "kind": "Model",
        "metadata": {"name": "elsewhere", "namespace": "default"},
        "spec": {"source": {"huggingface": {"repo": "org/tiny"}}},
        "status": {"modelPath": "/models/org/tiny/" + "d" * 40},
    }
    deployment = {
        "metadata": {"annotations": {"modelfleet.io/model-path": "/models/x/" + "e" * 40}}
    }

    class _Namespace:
        def list(self, resource: Any, *_: Any) -> list[dict[str, Any]]:
            return [other, unrelated] if resource.plural == "models" else []

        def get(self, resource: Any, namespace: str | None, name: str) -> Any:
            return deployment if (resource.plural, name) == ("deployments", "other") else None

    shared = paths_other_models_use(_Namespace(), sharing)  # type: ignore[arg-type]
    assert shared == sorted(
        {"/models/org/tiny/" + "b" * 40, "/models/org/tiny/" + "c" * 40, "/models/x/" + "e" * 40}
    )
    claim = {
        "metadata": {"name": "shared", "namespace": "default"},
        "spec": {"storageClassName": ""},
        "status": {"phase": "Bound"},
    }
    plan = decide(sharing, Observed(claim=claim, shared_paths=shared), SETTINGS, NOW)
    (job,) = [m for m in plan.create if m["kind"] == "Job"]
    env = {
        e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert set(shared) <= set(json.loads(env["MODELFLEET_PROTECTED_PATHS"]))
