"""What an attacker would try, on the real API server under the chart's identity: take over an
object by naming a Model after it, and use the operator's rights on objects not its own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from tests.hubserver.server import HubServer
from tests.integration.test_model_lifecycle import Models, tiny_manifest
from tests.support.chart import chart_credentials
from tests.support.cluster import TestCluster, wait_for


@pytest.fixture
def default_models(api: client.ApiClient, cluster: TestCluster, operator: Any) -> Any:
    """Models in the `default` namespace, where the API server's own Service lives; deleted
    again afterwards."""
    models = Models(api, "default", cluster.kubeconfig)
    created: list[str] = []
    original = models.create

    def create(manifest: dict[str, Any]) -> None:
        original(manifest)
        created.append(manifest["metadata"]["name"])

    models.create = create  # type: ignore[method-assign]
    yield models
    for name in created:
        models.custom.delete_namespaced_custom_object(
            "modelfleet.io", "v1alpha1", "default", "models", name
        )


def test_a_model_named_kubernetes_leaves_the_api_servers_service_untouched(
    api: client.ApiClient, default_models: Models, model_hub: HubServer
) -> None:
    core = client.CoreV1Api(api)
    before = core.read_namespaced_service("kubernetes", "default")
    default_models.create(tiny_manifest(model_hub, name="kubernetes"))
    condition = default_models.wait_reason("kubernetes", "Stalled", "ChildConflict", timeout=60)
    assert condition["status"] == "True"
    assert "Service default/kubernetes" in condition["message"]
    after = core.read_namespaced_service("kubernetes", "default")
    assert after.metadata.resource_version == before.metadata.resource_version
    assert not after.metadata.owner_references
    assert (
        not client.AppsV1Api(api)
        .list_namespaced_deployment("default", label_selector="modelfleet.io/model=kubernetes")
        .items
    )
    assert not core.list_namespaced_persistent_volume_claim(
        "default", label_selector="modelfleet.io/model=kubernetes"
    ).items, "nothing is created for a Model in conflict"
    events = core.list_namespaced_event(
        "default", field_selector="involvedObject.name=kubernetes,reason=ChildConflict"
    ).items
    assert events, "an Event says why"


def test_the_operators_identity_patches_no_service_account_but_its_job_account(
    api: client.ApiClient, namespace: str, cluster: TestCluster, tmp_path: Path, crds: None
) -> None:
    operator_api = config.new_client_from_config(
        config_file=str(chart_credentials(cluster.kubeconfig, tmp_path))
    )
    admin, operator = client.CoreV1Api(api), client.CoreV1Api(operator_api)
    admin.create_namespaced_service_account(namespace, {"metadata": {"name": "payments"}})
    patch = {"metadata": {"labels": {"taken": "over"}}}
    with pytest.raises(ApiException) as refused:
        operator.patch_namespaced_service_account("payments", namespace, patch)
    assert refused.value.status == 403
    with pytest.raises(ApiException) as unread:
        operator.read_namespaced_service_account("payments", namespace)
    assert unread.value.status == 403
    # Its own Job account it may create and patch.
    operator.create_namespaced_service_account(namespace, {"metadata": {"name": "modelfleet-job"}})
    operator.patch_namespaced_service_account("modelfleet-job", namespace, patch)
    wait_for(
        lambda: admin.read_namespaced_service_account("modelfleet-job", namespace).metadata.labels,
        message="the patch on its own account",
    )
    assert admin.read_namespaced_service_account("payments", namespace).metadata.labels is None


def _job(name: str, account: str, image: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "template": {
                "spec": {
                    "serviceAccountName": account,
                    "restartPolicy": "Never",
                    "containers": [{"name": "c", "image": image, "command": ["true"]}],
                }
            }
        },
    }


def test_the_operators_identity_creates_only_modelfleets_jobs(
    api: client.ApiClient, namespace: str, cluster: TestCluster, tmp_path: Path, crds: None
) -> None:
    """The chart's ValidatingAdmissionPolicy, on the real API server: a Job as another
    ServiceAccount, or with another image, is refused; modelfleet's own is created."""
    operator = client.BatchV1Api(
        config.new_client_from_config(
            config_file=str(chart_credentials(cluster.kubeconfig, tmp_path))
        )
    )
    ours = "ghcr.io/modelfleet/downloader:0.1.0"

    def refused(job: dict[str, Any]) -> str | None:
        try:
            operator.create_namespaced_job(namespace, job, dry_run="All")
        except ApiException as error:
            return str(error.body) if error.status in (403, 422) else None
        return None

    # A new policy takes a moment to be enforced.
    other_account = wait_for(
        lambda: refused(_job("a", "default", ours)), timeout=60, message="the policy enforced"
    )
    assert "modelfleet-job" in other_account
    other_image = refused(_job("b", "modelfleet-job", "docker.io/library/busybox:1"))
    assert other_image is not None and "ghcr.io/modelfleet/downloader:" in other_image
    assert refused(_job("c", "modelfleet-job", ours)) is None
    # The admin is not the operator: the policy does not apply to it.
    client.BatchV1Api(api).create_namespaced_job(
        namespace, _job("d", "default", "docker.io/library/busybox:1"), dry_run="All"
    )
