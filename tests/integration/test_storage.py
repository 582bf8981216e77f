"""The weights claim on a real API server with real download Jobs: sized from the hub when the
Model gives no size, grown when the size grows, refused when it shrinks, and ReadWriteOnce
storage under spread replicas answered before anything is created.

The claims use the local cluster's ``modelfleet-local-sized`` class, whose volumes are a tmpfs
of the claim's size: a claim too small for the weights fails for real (no space left), and
growing it is a real online resize.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from modelfleet.builders.storage import derive_claim_size
from modelfleet.dev.provisioner import FIXED_STORAGE_CLASS, SIZED_STORAGE_CLASS
from tests.hubserver import HubServer
from tests.hubserver.repos import large_model_files
from tests.integration.test_model_lifecycle import Models, tiny_manifest
from tests.integration.test_runtime_corpus import events_about
from tests.support.cluster import wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(900),
    pytest.mark.usefixtures("local_cluster"),
]

GIB = 1 << 30
BIG_REPO = "modelfleet-test/three-gb"
BIG_SIZE = 3 * 10**9


@pytest.fixture
def big_hub() -> Iterator[HubServer]:
    """A hub with a 3 GB repository (three lazily generated shards) in two revisions."""
    hub = HubServer().start()
    try:
        hub.add_repo(BIG_REPO, large_model_files(BIG_SIZE, seed=1, shards=3), branches=("v1",))
        hub.add_commit(BIG_REPO, large_model_files(BIG_SIZE, seed=7, shards=3), branches=("v2",))
        yield hub
    finally:
        hub.stop()


def _claim(api: client.ApiClient, namespace: str, name: str) -> Any:
    return client.CoreV1Api(api).read_namespaced_persistent_volume_claim(name, namespace)


def _volume_bytes(api: client.ApiClient, claim: Any) -> int:
    """The size of the file system behind a claim, as a process writing to it sees it."""
    volume = client.CoreV1Api(api).read_persistent_volume(claim.spec.volume_name)
    stat = os.statvfs(Path(volume.spec.host_path.path))
    return stat.f_blocks * stat.f_frsize


def _big_model(hub: HubServer, tag: str) -> dict[str, Any]:
    return {
        "apiVersion": "modelfleet.io/v1alpha1",
        "kind": "Model",
        "metadata": {"name": "big"},
        "spec": {
            "source": {
                "huggingface": {"repo": BIG_REPO, "revision": tag, "endpoint": hub.endpoint}
            },
            "storage": {"storageClassName": SIZED_STORAGE_CLASS, "keepRevisions": 2},
            "download": {"verify": "sha256"},
        },
    }


def _cache_only(hub: HubServer, storage_class: str) -> dict[str, Any]:
    """The tiny Model, weights only, on a 1Gi claim of ``storage_class``."""
    manifest = tiny_manifest(hub, storage={"size": "1Gi", "storageClassName": storage_class})
    del manifest["spec"]["serving"]
    return manifest


def test_a_model_without_a_size_gets_a_claim_that_fits_two_revisions(
    api: client.ApiClient, namespace: str, models: Models, big_hub: HubServer
) -> None:
    models.create(_big_model(big_hub, "v1"))
    models.wait_ready("big", timeout=600)
    claim = _claim(api, namespace, "big-weights")
    expected = derive_claim_size(BIG_SIZE, 2)
    assert claim.spec.resources.requests["storage"] == expected == "7Gi"
    # The volume really is that size: the weights of two revisions fit, a third would not.
    assert 6 * GIB < _volume_bytes(api, claim) <= 7 * GIB
    storage = models.get("big")["status"]["storage"]
    assert storage["size"] == storage["capacity"] == expected
    counted, commit = storage["sizedFrom"].split(" bytes at ")
    assert BIG_SIZE < int(counted) < BIG_SIZE + 4096  # the shards and config.json
    assert commit == f"{big_hub.repos[BIG_REPO].refs['v1'][:12]} x 2 revisions kept + 20%"

    models.patch_spec("big", {"source": {"huggingface": {"revision": "v2"}}})
    v2 = big_hub.repos[BIG_REPO].refs["v2"]

    def on_v2() -> bool:
        status = models.get("big")["status"]
        return (
            status.get("resolvedRevision") == v2
            and models.condition("big", "Ready").get("status") == "True"
        )

    wait_for(on_v2, timeout=600, message="the second 3 GB revision verified")
    status = models.get("big")["status"]
    assert [r["revision"] for r in status["revisions"]] == [v2, big_hub.repos[BIG_REPO].refs["v1"]]
    assert models.condition("big", "Stalled")["status"] == "False"
    # The claim was made once, at the size read from the hub; the resolve Job is gone.
    assert _claim(api, namespace, "big-weights").spec.resources.requests["storage"] == "7Gi"
    jobs = client.BatchV1Api(api).list_namespaced_job(namespace).items
    assert not [j for j in jobs if "-rs-" in j.metadata.name]


def test_raising_the_size_grows_the_claim_and_shrinking_is_refused(
    api: client.ApiClient, namespace: str, models: Models, model_hub: HubServer
) -> None:
    models.create(_cache_only(model_hub, SIZED_STORAGE_CLASS))
    models.wait_ready("tiny")
    models.patch_spec("tiny", {"storage": {"size": "2Gi"}})

    def grown() -> bool:
        storage = models.get("tiny")["status"].get("storage") or {}
        return storage.get("capacity") == "2Gi" and not storage.get("reason")

    wait_for(grown, timeout=60, message="the claim grown to 2Gi")
    claim = _claim(api, namespace, "tiny-weights")
    assert claim.status.capacity["storage"] == "2Gi"
    assert 1 * GIB < _volume_bytes(api, claim) <= 2 * GIB
    reasons = [e.reason for e in events_about(api, namespace, "Model", "tiny")]
    assert "StorageExpanding" in reasons

    with pytest.raises(ApiException) as refused:
        models.patch_spec("tiny", {"storage": {"size": "1Gi"}})
    assert refused.value.status == 422
    assert "spec.storage.size" in refused.value.body
    assert "cannot shrink" in refused.value.body
    assert models.condition("tiny", "Ready")["status"] == "True"


def test_a_class_without_expansion_is_named_and_the_claim_left_alone(
    api: client.ApiClient, namespace: str, models: Models, model_hub: HubServer
) -> None:
    models.create(_cache_only(model_hub, FIXED_STORAGE_CLASS))
    models.wait_ready("tiny")
    models.patch_spec("tiny", {"storage": {"size": "2Gi"}})

    def refused() -> dict[str, Any] | None:
        storage = models.get("tiny")["status"].get("storage") or {}
        return storage if storage.get("reason") == "StorageNotExpandable" else None

    storage = wait_for(refused, timeout=60, message="StorageNotExpandable")
    assert FIXED_STORAGE_CLASS in storage["message"]
    assert storage["size"] == "1Gi"
    assert _claim(api, namespace, "tiny-weights").spec.resources.requests["storage"] == "1Gi"
    warnings = [
        e
        for e in events_about(api, namespace, "Model", "tiny")
        if e.reason == "StorageNotExpandable"
    ]
    assert [e.type for e in warnings] == ["Warning"]
    # The weights serve on: only the growth is refused.
    assert models.condition("tiny", "Ready")["status"] == "True"


def test_spread_replicas_on_read_write_once_storage_are_refused_before_anything_is_made(
    api: client.ApiClient, namespace: str, models: Models, model_hub: HubServer
) -> None:
    manifest = tiny_manifest(model_hub)
    manifest["spec"]["serving"] |= {"replicas": 2, "schedulingStrategy": "spread"}
    models.create(manifest)
    stalled = models.wait_reason("tiny", "Stalled", "ReadWriteOnceMultiReplica", timeout=60)
    assert "ReadWriteMany" in stalled["message"]
    core, batch = client.CoreV1Api(api), client.BatchV1Api(api)
    assert core.list_namespaced_persistent_volume_claim(namespace).items == []
    assert batch.list_namespaced_job(namespace).items == []
    assert client.AppsV1Api(api).list_namespaced_deployment(namespace).items == []
    # Storage every node can mount: the same Model goes on.
    models.patch_spec("tiny", {"storage": {"size": "1Gi", "accessModes": ["ReadWriteMany"]}})
    models.wait_ready("tiny")


def test_a_volume_that_cannot_be_mounted_is_named_within_a_minute(
    api: client.ApiClient, namespace: str, models: Models, model_hub: HubServer, tmp_path: Path
) -> None:
    """A static volume whose directory is gone: the download pod stays in ContainerCreating
    and the node posts FailedMount, which the Model shows as VolumeMountFailed."""
    core = client.CoreV1Api(api)
    volume = f"{namespace}-static"
    core.create_persistent_volume(
        {
            "metadata": {"name": volume},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "",
                "hostPath": {"path": str(tmp_path / "gone"), "type": "Directory"},
                "claimRef": {"namespace": namespace, "name": "static"},
            },
        }
    )
    try:
        core.create_namespaced_persistent_volume_claim(
            namespace,
            {
                "metadata": {"name": "static"},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "storageClassName": "",
                    "volumeName": volume,
                    "resources": {"requests": {"storage": "1Gi"}},
                },
            },
        )
        manifest = tiny_manifest(model_hub, storage={"existingClaim": "static"})
        del manifest["spec"]["serving"]
        started = time.monotonic()
        models.create(manifest)
        condition = models.wait_reason("tiny", "Downloaded", "VolumeMountFailed", timeout=90)
        assert time.monotonic() - started < 60
        assert "FailedMount" in condition["message"]
        assert "is not a directory" in condition["message"]
        warnings = [e.reason for e in events_about(api, namespace, "Model", "tiny")]
        assert "VolumeMountFailed" in warnings
    finally:
        core.delete_persistent_volume(volume)
