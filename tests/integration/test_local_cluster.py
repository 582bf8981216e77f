"""The local control plane behaves like a cluster with GPU nodes: scheduling, Jobs, volumes."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.support.cluster import REPO_ROOT, TestCluster, wait_for

GPU = "nvidia.com/gpu"


def _deployment(name: str, gpus: int, replicas: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {
                            "name": "main",
                            "image": "registry.k8s.io/pause:3.10",
                            "resources": {"limits": {GPU: str(gpus)}},
                        }
                    ]
                },
            },
        },
    }


def _job(
    name: str, *, labels: dict[str, str] | None = None, backoff_limit: int = 0
) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": backoff_limit,
            "template": {
                "metadata": {"labels": labels or {}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": "registry.k8s.io/pause:3.10"}],
                },
            },
        },
    }


def _job_condition(batch: client.BatchV1Api, name: str, namespace: str) -> str | None:
    job = batch.read_namespaced_job_status(name, namespace)
    for condition in job.status.conditions or []:
        if condition.type in ("Complete", "Failed") and condition.status == "True":
            return str(condition.type)
    return None


def test_nodes_are_ready_with_gpu_capacity(api: client.ApiClient, cluster: TestCluster) -> None:
    nodes = client.CoreV1Api(api).list_node().items
    gpu_nodes = [n for n in nodes if int(n.status.capacity.get(GPU, "0")) > 0]
    cpu_nodes = [n for n in nodes if GPU not in n.status.capacity]
    if cluster.local:
        assert len(gpu_nodes) >= 4 and len(cpu_nodes) >= 2
        for node in gpu_nodes:
            assert node.status.capacity[GPU] == "8"
            assert node.status.allocatable[GPU] == "8"
            assert node.metadata.labels["nvidia.com/gpu.present"] == "true"
    for node in nodes:
        ready = {c.type: c.status for c in node.status.conditions}["Ready"]
        assert ready == "True", node.metadata.name


def test_gpu_deployment_runs_only_on_gpu_nodes(api: client.ApiClient, namespace: str) -> None:
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    apps.create_namespaced_deployment(namespace, _deployment("gpu2", gpus=2, replicas=3))
    wait_for(
        lambda: (
            (apps.read_namespaced_deployment("gpu2", namespace).status.ready_replicas or 0) == 3
        ),
        message="3 ready replicas",
    )
    for pod in core.list_namespaced_pod(namespace, label_selector="app=gpu2").items:
        node = core.read_node(pod.spec.node_name)
        assert int(node.status.allocatable.get(GPU, "0")) >= 2, pod.spec.node_name


def test_more_gpus_than_any_node_stays_pending_unschedulable(
    api: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(api)
    client.AppsV1Api(api).create_namespaced_deployment(namespace, _deployment("gpu9", gpus=9))

    def unschedulable() -> bool:
        pods = core.list_namespaced_pod(namespace, label_selector="app=gpu9").items
        for pod in pods:
            for condition in pod.status.conditions or []:
                if condition.type == "PodScheduled" and condition.reason == "Unschedulable":
                    assert pod.status.phase == "Pending"
                    assert "Insufficient nvidia.com/gpu" in condition.message
                    return True
        return False

    wait_for(unschedulable, message="an Unschedulable condition")


def test_job_completes(api: client.ApiClient, namespace: str) -> None:
    batch = client.BatchV1Api(api)
    batch.create_namespaced_job(namespace, _job("ok"))
    assert wait_for(lambda: _job_condition(batch, "ok", namespace)) == "Complete"


def test_job_told_to_fail_fails_after_its_backoff_limit(
    api: client.ApiClient, namespace: str, cluster: TestCluster
) -> None:
    if not cluster.local:
        pytest.skip("failure is simulated by the local cluster's kwok stages")
    batch = client.BatchV1Api(api)
    batch.create_namespaced_job(
        namespace, _job("doomed", labels={"modelfleet.dev/simulate": "fail"}, backoff_limit=1)
    )
    assert wait_for(lambda: _job_condition(batch, "doomed", namespace), timeout=120) == "Failed"
    job = batch.read_namespaced_job_status("doomed", namespace)
    assert job.status.failed == 2  # the first attempt plus backoffLimit retries
    reasons = [c.reason for c in job.status.conditions if c.type == "Failed"]
    assert reasons == ["BackoffLimitExceeded"]


def test_claim_binds(api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api)
    core.create_namespaced_persistent_volume_claim(
        namespace,
        {
            "metadata": {"name": "data"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "3Gi"}},
            },
        },
    )
    claim = wait_for(
        lambda: (
            (c := core.read_namespaced_persistent_volume_claim("data", namespace)).status.phase
            == "Bound"
            and c
        ),
        message="the claim to bind",
    )
    assert claim.status.capacity["storage"] == "3Gi"


def test_deleted_pod_of_a_deployment_is_recreated(api: client.ApiClient, namespace: str) -> None:
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    apps.create_namespaced_deployment(namespace, _deployment("web", gpus=1))
    wait_for(
        lambda: apps.read_namespaced_deployment("web", namespace).status.ready_replicas == 1,
        message="a ready replica",
    )
    (old,) = core.list_namespaced_pod(namespace, label_selector="app=web").items
    core.delete_namespaced_pod(old.metadata.name, namespace)

    def replaced() -> bool:
        pods = core.list_namespaced_pod(namespace, label_selector="app=web").items
        return any(
            p.metadata.uid != old.metadata.uid
            and p.status.phase == "Running"
            and p.metadata.deletion_timestamp is None
            for p in pods
        ) and all(p.metadata.uid != old.metadata.uid for p in pods)

    wait_for(replaced, message="a replacement pod")


def _executed_job(name: str, script: str, claim: str) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {
                    "labels": {
                        "app.kubernetes.io/managed-by": "modelfleet",
                        "app.kubernetes.io/component": "download",
                    }
                },
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "download",
                            "image": "modelfleet/downloader:test",
                            "command": ["python", "-c", script],
                            "env": [
                                {"name": "TARGET", "value": "/models/out.json"},
                                {"name": "RESULT", "value": "/dev/termination-log"},
                                {
                                    "name": "TOKEN",
                                    "valueFrom": {"secretKeyRef": {"name": "tok", "key": "token"}},
                                },
                                {
                                    "name": "POD_NAMESPACE",
                                    "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
                                },
                            ],
                            "volumeMounts": [{"name": "weights", "mountPath": "/models"}],
                        }
                    ],
                    "volumes": [{"name": "weights", "persistentVolumeClaim": {"claimName": claim}}],
                },
            },
        },
    }


def test_job_pods_of_modelfleet_are_executed_for_real(
    api: client.ApiClient, namespace: str, cluster: TestCluster
) -> None:
    if not cluster.local:
        pytest.skip("on a real cluster the kubelet runs the container")
    core, batch = client.CoreV1Api(api), client.BatchV1Api(api)
    core.create_namespaced_secret(
        namespace,
        {"metadata": {"name": "tok"}, "data": {"token": base64.b64encode(b"s3cret").decode()}},
    )
    core.create_namespaced_persistent_volume_claim(
        namespace,
        {
            "metadata": {"name": "w"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )
    script = (
        "import json, os, pathlib;"
        "pathlib.Path(os.environ['TARGET']).write_text(json.dumps("
        "{'ns': os.environ['POD_NAMESPACE'], 'token_len': len(os.environ['TOKEN'])}));"
        "open(os.environ['RESULT'], 'w').write('{\"result\": \"Succeeded\"}')"
    )
    batch.create_namespaced_job(namespace, _executed_job("real", script, "w"))
    assert wait_for(lambda: _job_condition(batch, "real", namespace), timeout=60) == "Complete"

    claim = core.read_namespaced_persistent_volume_claim("w", namespace)
    host_path = Path(core.read_persistent_volume(claim.spec.volume_name).spec.host_path.path)
    assert json.loads((host_path / "out.json").read_text()) == {"ns": namespace, "token_len": 6}
    (pod,) = core.list_namespaced_pod(namespace, label_selector="job-name=real").items
    terminated = pod.status.container_statuses[0].state.terminated
    assert terminated.exit_code == 0
    assert json.loads(terminated.message) == {"result": "Succeeded"}

    batch.create_namespaced_job(namespace, _executed_job("bad", "raise SystemExit(3)", "w"))
    assert wait_for(lambda: _job_condition(batch, "bad", namespace), timeout=60) == "Failed"
    (pod,) = core.list_namespaced_pod(namespace, label_selector="job-name=bad").items
    assert pod.status.container_statuses[0].state.terminated.exit_code == 3


def _harness_processes(name: str) -> list[str]:
    ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True, check=True)
    return [
        line
        for line in ps.stdout.splitlines()
        if f"clusters/{name}" in line or f"--name {name}" in line
    ]


def test_down_leaves_no_process(cluster: TestCluster) -> None:
    if not cluster.local:
        pytest.skip("only the local control plane is started by the harness")
    name = f"down-{uuid.uuid4().hex[:6]}"
    script = str(REPO_ROOT / "hack/cluster.sh")
    env = {**os.environ}
    subprocess.run(
        ["bash", script, "up", "--name", name, "--gpu-nodes", "1", "--cpu-nodes", "0"],
        check=True,
        env=env,
    )
    assert _harness_processes(name), "the cluster's processes should be running"
    subprocess.run(["bash", script, "down", "--name", name], check=True, env=env)
    assert (
        wait_for(lambda: not _harness_processes(name) or None, timeout=30, message="no processes")
        is None
        or True
    )
    assert _harness_processes(name) == []
