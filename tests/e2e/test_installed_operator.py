"""The operator as users run it: installed by the chart from the built images, its download Jobs
run by real kubelets against the hub in the test's namespace."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.e2e.conftest import InClusterHub
from tests.hubserver.__main__ import DEMO_REPO
from tests.integration.test_model_lifecycle import Models
from tests.support.cluster import wait_for

pytestmark = pytest.mark.e2e


def cached_model(hub: InClusterHub, name: str, revision: str = "main") -> dict[str, Any]:
    """A Model that only caches the demo weights: no GPU needed."""
    return {
        "apiVersion": "modelfleet.io/v1alpha1",
        "kind": "Model",
        "metadata": {"name": name},
        "spec": {
            "source": {
                "huggingface": {"repo": DEMO_REPO, "revision": revision, "endpoint": hub.endpoint}
            },
            "storage": {"size": "1Gi"},
        },
    }


@pytest.fixture
def models(api: client.ApiClient, namespace: str, kubeconfig: Path) -> Models:
    return Models(api, namespace, kubeconfig)


def test_operator_runs_under_the_charts_service_account(
    api: client.ApiClient, release_namespace: str, operator_deployment: client.V1Deployment
) -> None:
    spec = operator_deployment.spec.template.spec
    assert spec.service_account_name, "the chart names a ServiceAccount"
    pods = (
        client.CoreV1Api(api)
        .list_namespaced_pod(release_namespace, label_selector="app.kubernetes.io/name=modelfleet")
        .items
    )
    running = [p for p in pods if p.status.phase == "Running"]
    assert running, "an operator pod runs"
    assert {p.spec.service_account_name for p in running} == {spec.service_account_name}


def test_cached_model_is_downloaded_verified_and_moved_to_a_new_revision(
    api: client.ApiClient, namespace: str, models: Models, hub: InClusterHub
) -> None:
    models.create(cached_model(hub, "tiny"))
    models.wait_ready("tiny", timeout=300)
    main = hub.sha("main")
    status = models.get("tiny")["status"]
    assert status["resolvedRevision"] == main
    assert status["modelPath"] == f"/models/{DEMO_REPO}/{main}"
    download = status["download"]
    assert download["phase"] == "Succeeded"
    assert download["bytesDone"] == download["bytesTotal"] > 0
    assert download["filesDone"] == download["filesTotal"] > 0

    models.patch_spec("tiny", {"source": {"huggingface": {"repo": DEMO_REPO, "revision": "v2"}}})
    v2 = hub.sha("v2")
    assert v2 != main
    wait_for(
        lambda: models.get("tiny").get("status", {}).get("resolvedRevision") == v2,
        timeout=60,
        message="the new revision to be resolved",
    )
    models.wait_ready("tiny", timeout=300)
    revisions = [r["revision"] for r in models.get("tiny")["status"]["revisions"]]
    assert revisions[0] == v2 and main in revisions

    core = client.CoreV1Api(api)
    assert core.list_namespaced_persistent_volume_claim(namespace).items
    models.kubectl("delete", "model", "tiny", "--wait=true", "--timeout=120s")
    wait_for(
        lambda: (
            not core.list_namespaced_persistent_volume_claim(namespace).items
            and not client.BatchV1Api(api).list_namespaced_job(namespace).items
        ),
        timeout=120,
        message="the Model's claim and Jobs to be garbage collected",
    )


def test_serving_without_gpus_in_the_cluster_is_reported_unschedulable(
    api: client.ApiClient, namespace: str, models: Models, hub: InClusterHub
) -> None:
    manifest = cached_model(hub, "served")
    manifest["spec"]["serving"] = {"replicas": 1, "gpu": {"count": 1}}
    models.create(manifest)
    condition = models.wait_reason("served", "Ready", "Unschedulable", timeout=300)
    assert "nvidia.com/gpu" in condition["message"], condition
    assert models.condition("served", "Downloaded").get("status") == "True"
    events = client.CoreV1Api(api).list_namespaced_event(
        namespace, field_selector="involvedObject.name=served"
    )
    assert any(e.type == "Warning" and e.reason == "Unschedulable" for e in events.items)
