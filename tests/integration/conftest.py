"""The integration tier's cluster: the local control plane, or whatever
MODELFLEET_TEST_KUBECONFIG names (kind, a real cluster)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from tests.hubserver.__main__ import demo_hub
from tests.hubserver.server import HubServer
from tests.integration.test_model_lifecycle import Models
from tests.support.chart import chart_credentials
from tests.support.cluster import REPO_ROOT, TestCluster, scratch_namespace, tool_path, wait_for
from tests.support.operator import OperatorProcess

pytestmark = pytest.mark.integration


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def cluster() -> Iterator[TestCluster]:
    """A running cluster for the whole session; started here, and stopped again, when needed."""
    external = os.environ.get("MODELFLEET_TEST_KUBECONFIG")
    if external:
        yield TestCluster(kubeconfig=Path(external), local=False)
        return
    name = os.environ.get("MODELFLEET_TEST_CLUSTER", "modelfleet-test")
    subprocess.run(["bash", str(REPO_ROOT / "hack/cluster.sh"), "up", "--name", name], check=True)
    kubeconfig = Path(
        subprocess.run(
            ["bash", str(REPO_ROOT / "hack/cluster.sh"), "env", "--name", name],
            check=True,
            capture_output=True,
            text=True,
        )
        .stdout.strip()
        .removeprefix("export KUBECONFIG=")
    )
    try:
        yield TestCluster(kubeconfig=kubeconfig, local=True, name=name)
    finally:
        if not os.environ.get("MODELFLEET_KEEP_CLUSTER"):
            subprocess.run(
                ["bash", str(REPO_ROOT / "hack/cluster.sh"), "down", "--name", name], check=False
            )


@pytest.fixture(scope="session")
def api(cluster: TestCluster) -> client.ApiClient:
    """A kubernetes client for the session's cluster, with admin rights."""
    return config.new_client_from_config(config_file=str(cluster.kubeconfig))


@pytest.fixture
def namespace(api: client.ApiClient) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards."""
    with scratch_namespace(api) as name:
        yield name


@pytest.fixture(scope="session")
def crds(cluster: TestCluster) -> None:
    """The CRDs from crds/, applied server-side (idempotent) and Established."""
    kubectl = [tool_path("kubectl"), "--kubeconfig", str(cluster.kubeconfig)]

    def installed() -> bool:
        # A just-started API server may still answer 429 "storage is (re)initializing".
        apply = subprocess.run(
            [
                *kubectl,
                "apply",
                "--server-side",
                "--force-conflicts",
                "-f",
                str(REPO_ROOT / "crds"),
            ],
            capture_output=True,
            check=False,
        )
        wait = subprocess.run(
            [
                *kubectl,
                "wait",
                "--for=condition=Established",
                "crd/models.modelfleet.io",
                "crd/finetunejobs.modelfleet.io",
                "crd/kopfpeerings.kopf.dev",
                "--timeout=30s",
            ],
            capture_output=True,
            check=False,
        )
        return apply.returncode == 0 and wait.returncode == 0

    wait_for(installed, timeout=180, interval=2, message="the CRDs to be Established")


@pytest.fixture(scope="session")
def model_hub() -> Iterator[HubServer]:
    """A Hugging Face protocol hub on 127.0.0.1 with the tiny demo repository (main, v2)."""
    hub = demo_hub(port=0)
    try:
        yield hub
    finally:
        hub.stop()


@pytest.fixture(scope="session")
def operator(
    cluster: TestCluster, crds: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """The operator, running for the whole session under the Helm chart's ServiceAccount, so a
    verb the chart does not grant fails the tests (MODELFLEET_TEST_OPERATOR_CREDENTIALS=admin
    runs it with the admin kubeconfig instead)."""
    if not cluster.local:
        pytest.skip("the lifecycle tests execute Jobs locally; run them on the local cluster")
    directory = tmp_path_factory.mktemp("operator")
    if os.environ.get("MODELFLEET_TEST_OPERATOR_CREDENTIALS") == "admin":
        kubeconfig = cluster.kubeconfig
    else:
        kubeconfig = chart_credentials(cluster.kubeconfig, directory)
    log = directory / "operator.log"
    process = OperatorProcess(kubeconfig, log).start()
    try:
        yield process
    finally:
        process.stop()
        print(f"operator log: {log}")


@pytest.fixture
def models(
    api: client.ApiClient, namespace: str, cluster: TestCluster, operator: OperatorProcess
) -> Models:
    """The Models of the test's namespace, reconciled by the session's operator."""
    return Models(api, namespace, cluster.kubeconfig)


@pytest.fixture
def local_cluster(cluster: TestCluster) -> None:
    """Skips a test that needs the local cluster (executed pods, its volumes, its processes)
    where the tests run against another one."""
    if not cluster.local:
        pytest.skip("needs the local cluster")
