"""Two operator replicas at once, as the chart runs them with ``replicaCount: 2``: kopf peering
lets only the higher-priority one act; the other writes nothing, and takes over when the
active one dies."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from tests.hubserver.server import HubServer
from tests.integration.test_model_lifecycle import Models, tiny_manifest
from tests.support.chart import chart_credentials
from tests.support.cluster import TestCluster, wait_for
from tests.support.operator import OperatorProcess

pytestmark = pytest.mark.integration

LIFETIME_SECONDS = 10


def _conflicts(process: OperatorProcess) -> float:
    return sum(
        value
        for labels, value in process.samples("modelfleet_api_errors_total")
        if labels.get("code") == "409"
    )


@pytest.fixture
def replicas(
    cluster: TestCluster, crds: None, operator: OperatorProcess, tmp_path: Path
) -> Iterator[tuple[OperatorProcess, OperatorProcess]]:
    """Two replicas under the chart's ServiceAccount with peering on; the session's standalone
    operator is stopped meanwhile (it would act beside them) and started again afterwards."""
    if not cluster.local:
        pytest.skip("the replicas run Jobs on the local control plane")
    operator.stop()
    kubeconfig = chart_credentials(cluster.kubeconfig, tmp_path, "peering.enabled=true")
    env = {
        "MODELFLEET_STANDALONE": "false",
        "MODELFLEET_PEERING_NAME": "modelfleet",
        "MODELFLEET_PEERING_LIFETIME_SECONDS": str(LIFETIME_SECONDS),
    }
    active = OperatorProcess(
        kubeconfig, tmp_path / "active.log", env={**env, "MODELFLEET_PRIORITY": "200"}
    )
    standby = OperatorProcess(
        kubeconfig, tmp_path / "standby.log", env={**env, "MODELFLEET_PRIORITY": "100"}
    )
    try:
        active.start()
        standby.start()
        yield active, standby
    finally:
        standby.stop()
        active.stop()
        print(f"replica logs: {tmp_path}")
        chart_credentials(cluster.kubeconfig, tmp_path)  # peering off again
        operator.start()


def test_two_replicas_only_one_acts_and_the_other_takes_over(
    api: client.ApiClient,
    namespace: str,
    cluster: TestCluster,
    model_hub: HubServer,
    replicas: tuple[OperatorProcess, OperatorProcess],
) -> None:
    active, standby = replicas
    models = Models(api, namespace, cluster.kubeconfig)
    models.create(tiny_manifest(model_hub, name="cached", serving=None))
    models.create(tiny_manifest(model_hub, name="served"))
    models.wait_ready("cached", timeout=180)
    models.wait_ready("served", timeout=180)

    batch, apps = client.BatchV1Api(api), client.AppsV1Api(api)
    jobs = sorted(j.metadata.name for j in batch.list_namespaced_job(namespace).items)
    assert len(jobs) == 2, jobs  # one download Job per Model, none twice
    assert len(apps.list_namespaced_deployment(namespace).items) == 1
    assert active.reconciles() > 0
    assert standby.reconciles() == 0, standby.logs()[-3000:]
    assert standby.writes() == {}, standby.logs()[-3000:]
    assert _conflicts(active) == 0
    assert "Resuming operations" in active.logs()

    # The active replica dies without a goodbye: the standby acts once its record expires.
    active.kill()
    models.patch_spec("served", {"serving": {"replicas": 1}})

    def scaled() -> bool:
        deployment = apps.read_namespaced_deployment("served", namespace)
        return bool(
            deployment.spec.replicas == 1
            and models.condition("served", "Ready").get("observedGeneration")
            == models.get("served")["metadata"]["generation"]
        )

    wait_for(scaled, timeout=LIFETIME_SECONDS * 6 + 60, message="the standby to take over")
    models.wait_ready("served", timeout=120)
    assert standby.reconciles() > 0
    assert _conflicts(standby) == 0
    assert sorted(j.metadata.name for j in batch.list_namespaced_job(namespace).items) == jobs
