"""Operating modelfleet: secrets never leak, restricted namespaces, runtime situations shown as
typed reasons, metrics."""

from __future__ import annotations

import base64
import json
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client

from tests.hubserver.repos import tiny_model_files
from tests.hubserver.server import Fault, HubServer
from tests.integration.test_model_lifecycle import Models, tiny_manifest
from tests.support.cluster import TestCluster, scratch_namespace, tool_path, wait_for
from tests.support.operator import OperatorProcess

TOKEN = "hf_modelfleetCanary" + "Zq7" * 6


def _gated_repo(hub: HubServer) -> str:
    repo = f"modelfleet-test/gated-{uuid.uuid4().hex[:6]}"
    hub.add_repo(repo, tiny_model_files(seed=3), gated=True, token=TOKEN)
    return repo


def _gated_manifest(hub: HubServer, repo: str) -> dict[str, object]:
    manifest = tiny_manifest(hub)
    source = manifest["spec"]["source"]["huggingface"]
    source["repo"] = repo
    source["tokenSecretRef"] = {"name": "hf-token", "key": "token"}
    return manifest


def _secret(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_secret(
        namespace,
        {
            "metadata": {"name": "hf-token"},
            "data": {"token": base64.b64encode(TOKEN.encode()).decode()},
        },
    )


def test_token_appears_nowhere(
    api: client.ApiClient,
    namespace: str,
    models: Models,
    model_hub: HubServer,
    operator: OperatorProcess,
    cluster: TestCluster,
) -> None:
    core = client.CoreV1Api(api)
    repo = _gated_repo(model_hub)
    model_hub.add_fault(Fault(path="model.safetensors", stall_after=0, stall_seconds=3.0, times=1))
    _secret(core, namespace)
    process_lists: list[str] = []
    stop = threading.Event()

    def sample_processes() -> None:
        while not stop.is_set():
            ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=False)
            process_lists.append(ps.stdout)
            time.sleep(0.2)

    sampler = threading.Thread(target=sample_processes, daemon=True)
    sampler.start()
    try:
        models.create(_gated_manifest(model_hub, repo))
        models.wait_ready("tiny", timeout=120)
    finally:
        stop.set()
        sampler.join(timeout=5)
    assert any("modelfleet.downloader" in listing for listing in process_lists), (
        "the download process was never seen running"
    )
    places = {
        "process list": "\n".join(process_lists),
        "operator log": operator.logs(),
        "model": json.dumps(models.get("tiny")),
        "events": json.dumps(
            client.ApiClient().sanitize_for_serialization(core.list_namespaced_event(namespace))
        ),
        "jobs": json.dumps(
            client.ApiClient().sanitize_for_serialization(
                client.BatchV1Api(api).list_namespaced_job(namespace)
            )
        ),
        "pods": json.dumps(
            client.ApiClient().sanitize_for_serialization(core.list_namespaced_pod(namespace))
        ),
    }
    for place, text in places.items():
        assert TOKEN not in text, f"the token leaked into the {place}"
    job = client.BatchV1Api(api).list_namespaced_job(namespace).items[0]
    env = {e.name: e for e in job.spec.template.spec.containers[0].env}
    assert env["HF_TOKEN"].value is None
    assert env["HF_TOKEN"].value_from.secret_key_ref.name == "hf-token"


def test_missing_secret_stalls_until_it_appears(
    api: client.ApiClient, namespace: str, models: Models, model_hub: HubServer
) -> None:
    repo = _gated_repo(model_hub)
    models.create(_gated_manifest(model_hub, repo))
    stalled = models.wait_reason("tiny", "Stalled", "SecretNotFound", timeout=60)
    assert stalled["status"] == "True" and "hf-token" in stalled["message"]
    events = client.CoreV1Api(api).list_namespaced_event(namespace).items
    assert any(e.reason == "SecretNotFound" and e.type == "Warning" for e in events)
    assert not client.BatchV1Api(api).list_namespaced_job(namespace).items
    _secret(client.CoreV1Api(api), namespace)
    models.wait_ready("tiny", timeout=120)


def test_a_refused_child_shows_on_the_model_until_it_is_allowed(
    api: client.ApiClient, namespace: str, models: Models, model_hub: HubServer
) -> None:
    core = client.CoreV1Api(api)
    quota = client.V1ResourceQuota(
        metadata=client.V1ObjectMeta(name="no-services"),
        spec=client.V1ResourceQuotaSpec(hard={"services": "0"}),
    )
    core.create_namespaced_resource_quota(namespace, quota)
    models.create(tiny_manifest(model_hub))
    failed = models.wait_reason("tiny", "Ready", "ApplyFailed", timeout=120)
    assert failed["status"] == "False"
    assert "exceeded quota" in failed["message"], failed["message"]
    assert models.condition("tiny", "Reconciling")["reason"] == "ApplyFailed"
    events = core.list_namespaced_event(namespace).items
    assert any(e.reason == "ApplyFailed" and e.type == "Warning" for e in events)
    core.delete_namespaced_resource_quota("no-services", namespace)
    models.wait_ready("tiny", timeout=120)


def test_wrong_token_is_unauthorized_without_retries(
    api: client.ApiClient, namespace: str, models: Models, model_hub: HubServer
) -> None:
    repo = _gated_repo(model_hub)
    client.CoreV1Api(api).create_namespaced_secret(
        namespace,
        {"metadata": {"name": "hf-token"}, "stringData": {"token": "hf_wrong"}},
    )
    models.create(_gated_manifest(model_hub, repo))
    condition = wait_for(
        lambda: (c := models.condition("tiny", "Stalled")).get("status") == "True" and c,
        timeout=90,
        message="Stalled",
    )
    assert condition["reason"] in ("Unauthorized", "Gated"), condition
    (job,) = client.BatchV1Api(api).list_namespaced_job(namespace).items
    assert job.status.failed == 1, "a permanent failure is not retried"


@pytest.fixture
def restricted_namespace(api: client.ApiClient) -> Iterator[str]:
    with scratch_namespace(
        api,
        "r",
        {
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/enforce-version": "latest",
        },
    ) as name:
        yield name


def test_restricted_namespace_accepts_every_pod(
    api: client.ApiClient,
    restricted_namespace: str,
    cluster: TestCluster,
    operator: OperatorProcess,
    model_hub: HubServer,
) -> None:
    core = client.CoreV1Api(api)
    # The namespace really enforces: a privileged pod is refused.
    with pytest.raises(client.exceptions.ApiException) as refused:
        core.create_namespaced_pod(
            restricted_namespace,
            {
                "metadata": {"name": "privileged"},
                "spec": {
                    "containers": [
                        {"name": "c", "image": "x", "securityContext": {"privileged": True}}
                    ]
                },
            },
        )
    assert refused.value.status == 403
    models = Models(api, restricted_namespace, cluster.kubeconfig)
    models.create(tiny_manifest(model_hub))
    models.wait_ready("tiny", timeout=120)
    events = core.list_namespaced_event(restricted_namespace).items
    assert not [e.message for e in events if e.reason == "FailedCreate"]


def test_metrics_are_served_and_valid(
    api: client.ApiClient,
    namespace: str,
    models: Models,
    model_hub: HubServer,
    operator: OperatorProcess,
) -> None:
    models.create(tiny_manifest(model_hub))
    models.wait_ready("tiny")
    with urllib.request.urlopen(operator.metrics_url, timeout=5) as response:
        text = response.read().decode()
    for name in (
        "modelfleet_reconciles_total",
        "modelfleet_reconcile_duration_seconds_bucket",
        "modelfleet_api_requests_total",
        "modelfleet_models",
        "modelfleet_download_bytes_total",
        "modelfleet_download_duration_seconds_bucket",
    ):
        assert name in text, name
    assert 'modelfleet_models{ready="True",reason="Ready"}' in text
    promtool = tool_path("promtool")
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
