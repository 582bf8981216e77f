"""On a real API server: an Ingress for a served Model (and gone when no longer asked for),
each kept revision's size in status, and a Model's own Job placement landing in its download
Job's pod."""

from __future__ import annotations

import pytest
from kubernetes import client

from tests.hubserver.server import HubServer
from tests.integration.test_model_lifecycle import Models, tiny_manifest
from tests.support.cluster import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def test_an_ingress_exposes_the_model_and_goes_with_it(
    api: client.ApiClient, namespace: str, models: Models, model_hub: HubServer
) -> None:
    manifest = tiny_manifest(model_hub)
    manifest["spec"]["serving"]["service"] = {
        "ingress": {"host": "tiny.models.example.com", "tlsSecretName": "tiny-tls"}
    }
    models.create(manifest)
    models.wait_ready("tiny")
    networking = client.NetworkingV1Api(api)
    ingress = networking.read_namespaced_ingress("tiny", namespace)
    (rule,) = ingress.spec.rules
    assert rule.host == "tiny.models.example.com"
    assert rule.http.paths[0].backend.service.name == "tiny"
    assert ingress.spec.tls[0].secret_name == "tiny-tls"
    status = models.get("tiny")["status"]
    assert status["serving"]["externalUrl"] == "https://tiny.models.example.com/v1"
    (kept,) = status["revisions"]
    assert kept["sizeBytes"] > 0

    models.patch_spec("tiny", {"serving": {"service": {"ingress": None}}})

    def gone() -> bool:
        return not networking.list_namespaced_ingress(namespace).items

    wait_for(gone, timeout=60, message="the Ingress deleted")
    models.wait_ready("tiny")


def test_the_models_job_placement_lands_in_the_download_pod(
    api: client.ApiClient, namespace: str, models: Models, model_hub: HubServer
) -> None:
    manifest = tiny_manifest(model_hub)
    del manifest["spec"]["serving"]
    manifest["spec"]["download"] = {
        "nodeSelector": {"node.kubernetes.io/instance-type": "sim.cpu"},
        "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
        "imagePullSecrets": ["regcred"],
        "env": [{"name": "EXTRA_SETTING", "value": "1"}],
    }
    models.create(manifest)
    models.wait_ready("tiny")
    (job,) = client.BatchV1Api(api).list_namespaced_job(namespace).items
    pod = job.spec.template.spec
    assert pod.node_selector == {"node.kubernetes.io/instance-type": "sim.cpu"}
    assert [(t.key, t.operator) for t in pod.tolerations] == [("dedicated", "Exists")]
    assert [s.name for s in pod.image_pull_secrets] == ["regcred"]
    assert {"EXTRA_SETTING": "1"}.items() <= {
        e.name: e.value for e in pod.containers[0].env
    }.items()
    (ran,) = client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector="job-name").items
    assert ran.spec.node_name.startswith("cpu-node-"), ran.spec.node_name
