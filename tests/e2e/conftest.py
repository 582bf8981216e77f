"""The e2e tier: the operator installed by the Helm chart from built images, in a cluster with
real kubelets (kind, via ``hack/e2e-kind.sh``). The weights come from the test hub, run in a
pod of the test's own namespace; nothing outside the cluster is reached."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from tests.hubserver.__main__ import DEMO_REPO
from tests.support.cluster import REPO_ROOT, scratch_namespace, wait_for

HUB_PORT = 8080
# The hub's sources, mounted from a ConfigMap into a pod of the downloader image (it has Python).
HUB_SOURCES = (
    "tests/__init__.py",
    "tests/hubserver/__init__.py",
    "tests/hubserver/__main__.py",
    "tests/hubserver/repos.py",
    "tests/hubserver/server.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def kubeconfig() -> Path:
    """The cluster the chart was installed into."""
    path = os.environ.get("MODELFLEET_TEST_KUBECONFIG")
    if not path:
        pytest.skip("the e2e tier needs a cluster with the chart installed: run hack/e2e-kind.sh")
    return Path(path)


@pytest.fixture(scope="session")
def api(kubeconfig: Path) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(kubeconfig))


@pytest.fixture(scope="session")
def release_namespace() -> str:
    """Where the chart's release runs."""
    return os.environ.get("MODELFLEET_E2E_RELEASE_NAMESPACE", "modelfleet-system")


@pytest.fixture(scope="session")
def operator_deployment(api: client.ApiClient, release_namespace: str) -> client.V1Deployment:
    """The chart's operator Deployment, once Available."""
    apps = client.AppsV1Api(api)
    selector = "app.kubernetes.io/name=modelfleet"

    def available() -> client.V1Deployment | None:
        for deployment in apps.list_namespaced_deployment(
            release_namespace, label_selector=selector
        ).items:
            for condition in deployment.status.conditions or []:
                if condition.type == "Available" and condition.status == "True":
                    return deployment
        return None

    return wait_for(available, timeout=180, interval=2, message="the operator to be Available")


@pytest.fixture
def namespace(api: client.ApiClient) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards."""
    with scratch_namespace(api, "e2e") as name:
        yield name


class InClusterHub:
    """The test hub, serving the demo repository (``main`` and ``v2``) from a pod."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.api = api
        self.namespace = namespace
        self.endpoint = f"http://hub.{namespace}.svc:{HUB_PORT}"

    def sha(self, revision: str) -> str:
        """The commit a revision of the demo repository resolves to, asked through the API
        server's Service proxy."""
        path = (
            f"/api/v1/namespaces/{self.namespace}/services/hub:{HUB_PORT}/proxy"
            f"/api/models/{DEMO_REPO}/revision/{revision}"
        )
        method, url, headers, body, _ = self.api.param_serialize(
            "GET", path, header_params={"Accept": "application/json"}, auth_settings=["BearerToken"]
        )
        response = self.api.call_api(method, url, header_params=headers, body=body)
        sha: str = json.loads(response.read())["sha"]
        return sha


def hub_manifests(image: str) -> list[dict[str, Any]]:
    """ConfigMap with the hub's sources, its Pod and its Service."""
    labels = {"app.kubernetes.io/name": "hub"}
    keys = {source: source.replace("/", ".") for source in HUB_SOURCES}
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "hub-sources"},
            "data": {key: (REPO_ROOT / source).read_text() for source, key in keys.items()},
        },
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "hub", "labels": labels},
            "spec": {
                "containers": [
                    {
                        "name": "hub",
                        "image": image,
                        "imagePullPolicy": "IfNotPresent",
                        "command": ["python", "-m", "tests.hubserver"],
                        "args": ["--host", "0.0.0.0", "--port", str(HUB_PORT)],
                        "workingDir": "/hub",
                        "env": [{"name": "PYTHONPATH", "value": "/hub"}],
                        "ports": [{"name": "http", "containerPort": HUB_PORT}],
                        "readinessProbe": {
                            "httpGet": {"path": f"/api/models/{DEMO_REPO}", "port": HUB_PORT},
                            "periodSeconds": 2,
                        },
                        "volumeMounts": [{"name": "sources", "mountPath": "/hub"}],
                        "securityContext": {
                            "allowPrivilegeEscalation": False,
                            "runAsNonRoot": True,
                            "capabilities": {"drop": ["ALL"]},
                        },
                    }
                ],
                "volumes": [
                    {
                        "name": "sources",
                        "configMap": {
                            "name": "hub-sources",
                            "items": [{"key": key, "path": source} for source, key in keys.items()],
                        },
                    }
                ],
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "hub", "labels": labels},
            "spec": {"selector": labels, "ports": [{"name": "http", "port": HUB_PORT}]},
        },
    ]


@pytest.fixture
def hub(
    api: client.ApiClient, namespace: str, operator_deployment: client.V1Deployment
) -> InClusterHub:
    """The hub in the test's namespace, on the downloader image the chart configured."""
    env = {e.name: e.value for e in operator_deployment.spec.template.spec.containers[0].env}
    core = client.CoreV1Api(api)
    configmap, pod, service = hub_manifests(env["MODELFLEET_DOWNLOADER_IMAGE"])
    core.create_namespaced_config_map(namespace, configmap)
    core.create_namespaced_pod(namespace, pod)
    core.create_namespaced_service(namespace, service)

    def ready() -> bool:
        status = core.read_namespaced_pod("hub", namespace).status
        return any(c.type == "Ready" and c.status == "True" for c in status.conditions or [])

    wait_for(ready, timeout=180, interval=2, message="the hub pod to be Ready")
    return InClusterHub(api, namespace)
