"""A Model from apply to Ready and through its life, on a real API server, with the download
Job executed for real against the local hub."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from modelfleet.dev.engines import SIMULATED_ENGINE_IMAGE
from tests.hubserver.__main__ import DEMO_REPO
from tests.hubserver.server import HubServer
from tests.support.cluster import REPO_ROOT, tool_path, wait_for
from tests.support.operator import OperatorProcess

GROUP, VERSION, PLURAL = "modelfleet.io", "v1alpha1", "models"


def tiny_manifest(
    hub: HubServer, name: str = "tiny", *, real_engine: bool = False, **spec_overrides: Any
) -> dict[str, Any]:
    """examples/model-tiny.yaml, pointed at the test hub. Its serving pods run a simulated
    engine (Ready at once, answering nothing) unless ``real_engine``: then the local cluster
    runs them with a real CPU vLLM (tests/integration/test_serving.py)."""
    manifest: dict[str, Any] = yaml.safe_load((REPO_ROOT / "examples/model-tiny.yaml").read_text())
    manifest["metadata"]["name"] = name
    manifest["spec"]["source"]["huggingface"]["endpoint"] = hub.endpoint
    manifest["spec"].update(spec_overrides)
    serving = manifest["spec"].get("serving")
    if serving is not None and not real_engine:
        serving["image"] = SIMULATED_ENGINE_IMAGE
    return manifest


class Models:
    """Model objects of one namespace."""

    def __init__(self, api: client.ApiClient, namespace: str, kubeconfig: Path) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.namespace = namespace
        self.kubeconfig = kubeconfig

    def create(self, manifest: dict[str, Any]) -> None:
        self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, manifest
        )

    def get(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name
        )
        return result

    def patch_spec(self, name: str, spec: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name, {"spec": spec}
        )

    def condition(self, name: str, type_: str) -> dict[str, Any]:
        for condition in self.get(name).get("status", {}).get("conditions", []):
            if condition["type"] == type_:
                return dict(condition)
        return {}

    def kubectl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                tool_path("kubectl"),
                "--kubeconfig",
                str(self.kubeconfig),
                "-n",
                self.namespace,
                *args,
            ],
            capture_output=True,
            text=True,
            check=False,
        )

    def wait_ready(self, name: str, timeout: int = 120) -> None:
        result = self.kubectl(
            "wait", "--for=condition=Ready", f"model/{name}", f"--timeout={timeout}s"
        )
        assert result.returncode == 0, (result.stderr, self.get(name).get("status"))

    def wait_reason(
        self, name: str, type_: str, reason: str, timeout: float = 120
    ) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            condition = self.condition(name, type_)
            return condition if condition.get("reason") == reason else None

        condition: dict[str, Any] = wait_for(
            reached,
            timeout=timeout,
            message=f"{type_} reason {reason}",
        )
        return condition


def _host_path(api: client.ApiClient, namespace: str, claim: str) -> Path:
    core = client.CoreV1Api(api)
    volume = core.read_namespaced_persistent_volume_claim(claim, namespace).spec.volume_name
    return Path(core.read_persistent_volume(volume).spec.host_path.path)


def _ready_serving_pods(core: client.CoreV1Api, namespace: str, name: str) -> int:
    pods = core.list_namespaced_pod(
        namespace, label_selector=f"modelfleet.io/model={name},app.kubernetes.io/component=serving"
    ).items
    return sum(
        1
        for p in pods
        if p.metadata.deletion_timestamp is None
        and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
    )


def test_tiny_model_reaches_ready_with_verified_files_on_gpu_nodes(
    api: client.ApiClient, namespace: str, models: Models, model_hub: HubServer
) -> None:
    models.create(tiny_manifest(model_hub))
    models.wait_ready("tiny")
    status = models.get("tiny")["status"]
    sha = model_hub.repos[DEMO_REPO].refs["main"]
    assert status["resolvedRevision"] == sha
    assert status["modelPath"] == f"/models/{DEMO_REPO}/{sha}"
    assert status["serving"]["activeRevision"] == sha
    assert status["summary"] == {
        "revision": sha[:7],
        "progress": "100%",
        "replicas": "2/2",
        "source": f"{DEMO_REPO}@main",
    }
    # kubectl get -o wide: where the weights come from, and the in-cluster endpoint.
    wide = models.kubectl("get", "mfm", "tiny", "-o", "wide").stdout
    assert f"{DEMO_REPO}@main" in wide
    assert status["serving"]["endpoint"] in wide

    weights = _host_path(api, namespace, "tiny-weights") / DEMO_REPO / sha
    manifest = json.loads((weights / ".modelfleet-manifest.json").read_text())
    assert manifest["revision"] == sha or manifest.get("sha") == sha or sha in json.dumps(manifest)
    for entry in ("config.json", "model.safetensors"):
        assert (weights / entry).is_file()

    table = models.kubectl("get", "mfm")
    assert table.returncode == 0
    assert "tiny" in table.stdout and sha[:7] in table.stdout and "2/2" in table.stdout

    core = client.CoreV1Api(api)
    deployment = client.AppsV1Api(api).read_namespaced_deployment("tiny", namespace)
    limits = deployment.spec.template.spec.containers[0].resources.limits
    assert limits["nvidia.com/gpu"] == "1"
    for pod in core.list_namespaced_pod(
        namespace, label_selector="app.kubernetes.io/component=serving"
    ).items:
        node = core.read_node(pod.spec.node_name)
        assert node.metadata.labels.get("nvidia.com/gpu.present") == "true"


def test_revision_change_rolls_without_losing_capacity(
    api: client.ApiClient, namespace: str, models: Models, model_hub: HubServer
) -> None:
    core, apps, batch = client.CoreV1Api(api), client.AppsV1Api(api), client.BatchV1Api(api)
    models.create(tiny_manifest(model_hub))
    models.wait_ready("tiny")
    old_sha = model_hub.repos[DEMO_REPO].refs["main"]
    new_sha = model_hub.repos[DEMO_REPO].refs["v2"]

    lowest = {"ready": 10**6}
    path_changes: list[tuple[str, bool]] = []
    stop = threading.Event()

    def observe() -> None:
        last_path = None
        while not stop.is_set():
            lowest["ready"] = min(lowest["ready"], _ready_serving_pods(core, namespace, "tiny"))
            path = apps.read_namespaced_deployment("tiny", namespace).metadata.annotations.get(
                "modelfleet.io/model-path"
            )
            if last_path is not None and path != last_path:
                jobs = batch.list_namespaced_job(namespace).items
                verified = any(
                    any(
                        c.type == "Complete" and c.status == "True"
                        for c in j.status.conditions or []
                    )
                    for j in jobs
                )
                path_changes.append((path, verified))
            last_path = path
            time.sleep(0.1)

    watcher = threading.Thread(target=observe, daemon=True)
    watcher.start()
    try:
        models.patch_spec("tiny", {"source": {"huggingface": {"revision": "v2"}}})
        wait_for(
            lambda: (
                models.get("tiny")["status"].get("serving", {}).get("activeRevision") == new_sha
            ),
            timeout=120,
            message="the new revision to be active",
        )
        models.wait_ready("tiny")
    finally:
        stop.set()
        watcher.join(timeout=5)
    assert lowest["ready"] >= 2, f"ready serving replicas fell to {lowest['ready']}"
    assert path_changes == [(f"/models/{DEMO_REPO}/{new_sha}", True)]
    volume = _host_path(api, namespace, "tiny-weights") / DEMO_REPO
    assert (volume / old_sha / ".modelfleet-manifest.json").is_file(), "old revision kept"
    assert (volume / new_sha / ".modelfleet-manifest.json").is_file()
    revisions = [r["revision"] for r in models.get("tiny")["status"]["revisions"]]
    assert revisions[:2] == [new_sha, old_sha]


def test_failing_revision_keeps_the_old_one_serving_and_recovers(
    api: client.ApiClient, namespace: str, models: Models, model_hub: HubServer
) -> None:
    models.create(tiny_manifest(model_hub))
    models.wait_ready("tiny")
    sha = model_hub.repos[DEMO_REPO].refs["main"]
    deployment_before = client.AppsV1Api(api).read_namespaced_deployment("tiny", namespace)

    models.patch_spec("tiny", {"source": {"huggingface": {"revision": "no-such-branch"}}})
    stalled = models.wait_reason("tiny", "Stalled", "RevisionNotFound")
    assert stalled["status"] == "True"
    assert models.condition("tiny", "Ready")["status"] == "False"
    assert models.condition("tiny", "Serving")["status"] == "True"
    deployment = client.AppsV1Api(api).read_namespaced_deployment("tiny", namespace)
    assert deployment.metadata.generation == deployment_before.metadata.generation
    assert deployment.metadata.annotations["modelfleet.io/revision"] == sha
    assert _ready_serving_pods(client.CoreV1Api(api), namespace, "tiny") == 2
    # A failure is terminal: no Job is retried in a loop.
    jobs = client.BatchV1Api(api).list_namespaced_job(namespace).items
    failed = [j for j in jobs if j.status.failed]
    assert len(failed) == 1 and failed[0].status.failed == 1, "a permanent failure is not retried"

    models.patch_spec("tiny", {"source": {"huggingface": {"revision": "main"}}})
    models.wait_ready("tiny")
    assert models.condition("tiny", "Stalled")["status"] == "False"


def test_scale_stop_start_and_pod_recreation_then_delete(
    api: client.ApiClient, namespace: str, models: Models, model_hub: HubServer
) -> None:
    core = client.CoreV1Api(api)
    models.create(tiny_manifest(model_hub))
    models.wait_ready("tiny")

    models.patch_spec("tiny", {"serving": {"replicas": 0}})
    models.wait_reason("tiny", "Serving", "Stopped")
    models.wait_ready("tiny")
    wait_for(lambda: _ready_serving_pods(core, namespace, "tiny") == 0 or None, message="no pods")

    models.patch_spec("tiny", {"serving": {"replicas": 3}})
    wait_for(lambda: models.get("tiny")["status"]["summary"]["replicas"] == "3/3", message="3/3")
    models.wait_ready("tiny")

    pods = core.list_namespaced_pod(
        namespace, label_selector="app.kubernetes.io/component=serving"
    ).items
    victim = pods[0].metadata.name
    core.delete_namespaced_pod(victim, namespace)
    wait_for(
        lambda: (
            _ready_serving_pods(core, namespace, "tiny") == 3
            and victim not in [p.metadata.name for p in core.list_namespaced_pod(namespace).items]
        ),
        message="a replacement pod",
    )

    client.CustomObjectsApi(api).delete_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "tiny"
    )
    apps = client.AppsV1Api(api)
    wait_for(
        lambda: (
            not apps.list_namespaced_deployment(namespace).items
            and not core.list_namespaced_persistent_volume_claim(namespace).items
        ),
        timeout=90,
        message="children and claim gone",
    )


def test_retained_claim_survives_the_model(
    api: client.ApiClient, namespace: str, models: Models, model_hub: HubServer
) -> None:
    manifest = tiny_manifest(model_hub, storage={"size": "1Gi", "retainOnDelete": True})
    del manifest["spec"]["serving"]
    models.create(manifest)
    models.wait_ready("tiny")
    assert models.condition("tiny", "Serving")["reason"] == "CacheOnly"
    client.CustomObjectsApi(api).delete_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "tiny"
    )
    wait_for(
        lambda: not client.BatchV1Api(api).list_namespaced_job(namespace).items,
        timeout=90,
        message="the Job gone",
    )
    claim = client.CoreV1Api(api).read_namespaced_persistent_volume_claim("tiny-weights", namespace)
    assert claim.metadata.deletion_timestamp is None


def test_operator_killed_mid_download_makes_no_second_job(
    api: client.ApiClient,
    namespace: str,
    models: Models,
    model_hub: HubServer,
    operator: OperatorProcess,
) -> None:
    from tests.hubserver.server import Fault

    model_hub.add_fault(Fault(path="model.safetensors", stall_after=0, stall_seconds=6.0, times=1))
    models.create(tiny_manifest(model_hub))
    batch = client.BatchV1Api(api)
    wait_for(lambda: batch.list_namespaced_job(namespace).items, message="the download Job")
    operator.kill()
    time.sleep(1)
    operator.start()
    models.wait_ready("tiny", timeout=180)
    jobs = batch.list_namespaced_job(namespace).items
    assert len(jobs) == 1, [j.metadata.name for j in jobs]


def _written_state(api: client.ApiClient, namespace: str) -> dict[str, str]:
    """The resourceVersion of everything in ``namespace`` the operator writes: any write that
    changed something shows here, whichever client sent it (kopf's included)."""
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    batch, custom = client.BatchV1Api(api), client.CustomObjectsApi(api)
    state = {
        f"Model/{item['metadata']['name']}": item["metadata"]["resourceVersion"]
        for item in custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]
    }
    for kind, items in (
        ("Deployment", apps.list_namespaced_deployment(namespace).items),
        ("Service", core.list_namespaced_service(namespace).items),
        ("Job", batch.list_namespaced_job(namespace).items),
        ("PersistentVolumeClaim", core.list_namespaced_persistent_volume_claim(namespace).items),
        ("Event", core.list_namespaced_event(namespace).items),
    ):
        for item in items:
            state[f"{kind}/{item.metadata.name}"] = item.metadata.resource_version
    return state


def test_reconcile_without_change_writes_nothing(
    api: client.ApiClient,
    namespace: str,
    models: Models,
    model_hub: HubServer,
    operator: OperatorProcess,
) -> None:
    models.create(tiny_manifest(model_hub))
    models.wait_ready("tiny")
    time.sleep(3)  # let the last status write, its echo and the controllers' writes settle
    before = _written_state(api, namespace)
    operator.restart()  # resuming reconciles every Model once more, from a cold cache
    wait_for(
        lambda: operator.reconciles() > 0, timeout=60, message="the restarted operator to reconcile"
    )
    time.sleep(5)
    # The operator counts each request it sends; kopf's own would change a resourceVersion.
    assert operator.writes() == {}, "a reconcile with nothing to change wrote"
    assert _written_state(api, namespace) == before
