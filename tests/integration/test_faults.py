"""The operator survives the bad day: killed mid-work, the API server or etcd restarted, the
API server throttling it."""

from __future__ import annotations

import subprocess
import time
import urllib.request

import pytest
from kubernetes import client

from tests.hubserver.server import HubServer
from tests.integration.test_model_lifecycle import Models, tiny_manifest
from tests.support.cluster import TestCluster, tool_path, wait_for
from tests.support.faults import restart_component
from tests.support.operator import OperatorProcess

# Faults are injected into the local control plane.
pytestmark = pytest.mark.usefixtures("local_cluster")


def _children(api: client.ApiClient, namespace: str) -> dict[str, int]:
    return {
        "jobs": len(client.BatchV1Api(api).list_namespaced_job(namespace).items),
        "deployments": len(client.AppsV1Api(api).list_namespaced_deployment(namespace).items),
        "claims": len(
            client.CoreV1Api(api).list_namespaced_persistent_volume_claim(namespace).items
        ),
        "services": len(client.CoreV1Api(api).list_namespaced_service(namespace).items),
    }


def _api_healthy(cluster: TestCluster) -> bool:
    result = subprocess.run(
        [tool_path("kubectl"), "--kubeconfig", str(cluster.kubeconfig), "get", "--raw", "/readyz"],
        capture_output=True,
        check=False,
    )
    return result.returncode == 0


def test_killed_right_after_apply_converges_without_duplicates(
    api: client.ApiClient,
    namespace: str,
    models: Models,
    model_hub: HubServer,
    operator: OperatorProcess,
) -> None:
    models.create(tiny_manifest(model_hub))
    time.sleep(0.3)  # mid-reconcile: the claim may exist, the Job may not
    operator.kill()
    operator.start()
    models.wait_ready("tiny", timeout=120)
    assert _children(api, namespace) == {"jobs": 1, "deployments": 1, "claims": 1, "services": 1}


def test_killed_mid_rollout_converges_on_the_new_revision(
    api: client.ApiClient,
    namespace: str,
    models: Models,
    model_hub: HubServer,
    operator: OperatorProcess,
) -> None:
    apps = client.AppsV1Api(api)
    models.create(tiny_manifest(model_hub))
    models.wait_ready("tiny")
    new_sha = model_hub.repos["modelfleet-test/tiny-llama"].refs["v2"]
    models.patch_spec("tiny", {"source": {"huggingface": {"revision": "v2"}}})
    wait_for(
        lambda: (
            apps.read_namespaced_deployment("tiny", namespace).metadata.annotations[
                "modelfleet.io/revision"
            ]
            == new_sha
        ),
        timeout=120,
        interval=0.1,
        message="the rollout to begin",
    )
    operator.kill()
    time.sleep(1)
    operator.start()
    wait_for(
        lambda: models.get("tiny")["status"].get("serving", {}).get("activeRevision") == new_sha,
        timeout=120,
        message="the new revision active",
    )
    models.wait_ready("tiny")
    assert _children(api, namespace) == {"jobs": 1, "deployments": 1, "claims": 1, "services": 1}


@pytest.mark.parametrize("component", ["kube-apiserver", "etcd"])
def test_control_plane_restart_is_survived(
    api: client.ApiClient,
    namespace: str,
    models: Models,
    model_hub: HubServer,
    cluster: TestCluster,
    operator: OperatorProcess,
    component: str,
) -> None:
    models.create(tiny_manifest(model_hub, name="before"))
    models.wait_ready("before")
    restart_component(cluster.name, component)
    wait_for(lambda: _api_healthy(cluster), timeout=90, message="the API server healthy again")
    # Work that starts after the restart must be seen through the re-established watches.
    models.patch_spec("before", {"serving": {"replicas": 3}})
    models.create(tiny_manifest(model_hub, name="after"))
    models.wait_ready("after", timeout=180)
    wait_for(
        lambda: models.get("before")["status"]["summary"]["replicas"] == "3/3",
        timeout=180,
        message="the scale-up after the restart",
    )
    assert operator.process is not None and operator.process.poll() is None


# The API server admits one request at a time and answers 429 to the rest, everyone's.
THROTTLED = (
    "--enable-priority-and-fairness=false",
    "--max-requests-inflight=1",
    "--max-mutating-requests-inflight=1",
)


def test_throttled_api_server_is_survived(
    api: client.ApiClient,
    namespace: str,
    models: Models,
    model_hub: HubServer,
    cluster: TestCluster,
    operator: OperatorProcess,
) -> None:
    original = restart_component(cluster.name, "kube-apiserver", extra_args=THROTTLED)
    try:
        wait_for(lambda: _api_healthy(cluster), timeout=90, message="the throttled API server")
        models.create(tiny_manifest(model_hub))

        def throttled() -> bool:
            # Either kopf's own requests (it logs them) or a reconcile's (counted) got a 429.
            with urllib.request.urlopen(operator.metrics_url) as response:
                text = response.read().decode()
            return 'code="429"' in text or "Too many requests" in operator.logs()

        wait_for(throttled, timeout=120, message="the operator to be answered 429")
    finally:
        restart_component(cluster.name, "kube-apiserver", argv_override=original)
        wait_for(lambda: _api_healthy(cluster), timeout=90, message="the API server back")
    models.wait_ready("tiny", timeout=240)
    assert _children(api, namespace) == {"jobs": 1, "deployments": 1, "claims": 1, "services": 1}
    assert operator.process is not None and operator.process.poll() is None
