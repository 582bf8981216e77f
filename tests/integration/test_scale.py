"""The scale benchmark's CI-sized run: 50 Models across 5 namespaces on one operator.

It fails only on correctness (a Model that never becomes Ready, or serves the wrong revision; a
second download Job, Deployment or Service for one Model), never on timing: the bound below is
generous and the timings the run takes are printed, not asserted. `benchmarks/scale.py` measures
the same shape at 100 to 1,000 Models.

Downloads complete by simulation: the download image ``simulate.invalid/download`` makes the dev
agent succeed the pod with a real result line and no bytes. An agent started from older code runs
the downloader for real against the test hub instead, which reaches the same state, slower.
Serving pods ask for no GPU so that 50 Models fit beside other tests on the shared cluster.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from kubernetes import client

from modelfleet.dev.engines import SIMULATED_ENGINE_IMAGE
from modelfleet.dev.podrunner import SIMULATED_DOWNLOAD_IMAGE, simulated_revision
from tests.hubserver.__main__ import DEMO_REPO
from tests.hubserver.server import HubServer
from tests.support.cluster import wait_for
from tests.support.operator import OperatorProcess

GROUP, VERSION, PLURAL = "modelfleet.io", "v1alpha1", "models"
MODELS = 50
NAMESPACES = 5
READY_BOUND_SECONDS = 240  # a correctness bound: far above what the run takes


@pytest.fixture
def namespaces(api: client.ApiClient) -> Iterator[list[str]]:
    """Fresh namespaces for the run, deleted afterwards."""
    core = client.CoreV1Api(api)
    prefix = f"scale-{uuid.uuid4().hex[:6]}"
    names = [f"{prefix}-{i}" for i in range(NAMESPACES)]
    for name in names:
        core.create_namespace(
            {"metadata": {"name": name, "labels": {"modelfleet.dev/test": "true"}}}
        )
    try:
        yield names
    finally:
        for name in names:
            core.delete_namespace(name)


def scale_model(index: int, namespace: str, hub: HubServer) -> dict[str, Any]:
    """Model ``index``: cache-only, serving 1 replica or serving 2, by index modulo 3."""
    spec: dict[str, Any] = {
        "source": {
            "huggingface": {"repo": DEMO_REPO, "revision": "main", "endpoint": hub.endpoint}
        },
        "storage": {"size": "1Gi"},
        "download": {"image": SIMULATED_DOWNLOAD_IMAGE},
    }
    if index % 3:
        spec["serving"] = {
            "replicas": index % 3,
            "gpu": {"count": 0},
            "maxModelLen": 512,
            "image": SIMULATED_ENGINE_IMAGE,
        }
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Model",
        "metadata": {"name": f"m-{index:03d}", "namespace": namespace},
        "spec": spec,
    }


def _ready(model: dict[str, Any]) -> bool:
    status = model.get("status") or {}
    ready = [c for c in status.get("conditions", []) if c["type"] == "Ready"]
    return (
        bool(ready)
        and ready[0]["status"] == "True"
        and status.get("observedGeneration") == model["metadata"]["generation"]
    )


def test_fifty_models_all_become_ready_with_one_job_each(
    api: client.ApiClient,
    operator: OperatorProcess,
    model_hub: HubServer,
    namespaces: list[str],
) -> None:
    custom = client.CustomObjectsApi(api)
    manifests = [scale_model(i, namespaces[i % NAMESPACES], model_hub) for i in range(MODELS)]
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda m: custom.create_namespaced_custom_object(
                    GROUP, VERSION, m["metadata"]["namespace"], PLURAL, m
                ),
                manifests,
            )
        )

    def models() -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for namespace in namespaces:
            for item in custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)[
                "items"
            ]:
                found[f"{namespace}/{item['metadata']['name']}"] = item
        return found

    def all_ready() -> bool:
        return sum(_ready(m) for m in models().values()) == MODELS

    try:
        wait_for(all_ready, timeout=READY_BOUND_SECONDS, interval=2, message="50 Models Ready")
    except AssertionError:
        stuck = {
            key: [
                (c["type"], c["status"], c.get("reason"))
                for c in (m.get("status") or {}).get("conditions", [])
            ]
            for key, m in models().items()
            if not _ready(m)
        }
        raise AssertionError(f"{len(stuck)} Models never became Ready: {stuck}") from None
    print(f"50 Models Ready after {time.monotonic() - started:.0f}s")

    # Every Model verified one revision and serves it; nothing is Stalled.
    revisions = {simulated_revision(DEMO_REPO, "main"), model_hub.repos[DEMO_REPO].refs["main"]}
    for key, model in models().items():
        status = model["status"]
        assert status["resolvedRevision"] in revisions, key
        assert status["modelPath"] == f"/models/{DEMO_REPO}/{status['resolvedRevision']}", key
        stalled = [c for c in status["conditions"] if c["type"] == "Stalled"]
        assert stalled and stalled[0]["status"] == "False", (key, stalled)
        if model["spec"].get("serving"):
            assert status["serving"]["activeRevision"] == status["resolvedRevision"], key
            assert status["serving"]["readyReplicas"] == model["spec"]["serving"]["replicas"], key

    # Exactly one download Job per Model, and one Deployment and Service per serving Model.
    batch, apps, core = client.BatchV1Api(api), client.AppsV1Api(api), client.CoreV1Api(api)
    jobs: Counter[str] = Counter()
    deployments: Counter[str] = Counter()
    services: Counter[str] = Counter()
    for namespace in namespaces:
        for job in batch.list_namespaced_job(namespace).items:
            jobs[f"{namespace}/{job.metadata.labels['modelfleet.io/model']}"] += 1
        for deployment in apps.list_namespaced_deployment(namespace).items:
            deployments[f"{namespace}/{deployment.metadata.labels['modelfleet.io/model']}"] += 1
        for service in core.list_namespaced_service(namespace).items:
            services[f"{namespace}/{service.metadata.labels['modelfleet.io/model']}"] += 1
    keys = {f"{m['metadata']['namespace']}/{m['metadata']['name']}" for m in manifests}
    serving = {
        f"{m['metadata']['namespace']}/{m['metadata']['name']}"
        for m in manifests
        if m["spec"].get("serving")
    }
    assert jobs == Counter(dict.fromkeys(keys, 1)), "one download Job per Model"
    assert deployments == Counter(dict.fromkeys(serving, 1)), "one Deployment per serving Model"
    assert services == Counter(dict.fromkeys(serving, 1)), "one Service per serving Model"
