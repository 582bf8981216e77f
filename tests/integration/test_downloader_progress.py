"""The download Job's progress reaches the Model's ``status.download`` on a real API server.

The downloader runs as the Job runs it (``python -m modelfleet.downloader``, status target in
its environment) against the test hub, with a throttled shard so the download takes seconds;
a watch records every change of ``status.download`` the API server stored.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, watch

from modelfleet.downloader.verify import sha256_file
from tests.hubserver import Fault, HubServer, LazyBlob, tiny_model_files
from tests.hubserver.fixtures import job_env, running_hub
from tests.support.cluster import REPO_ROOT, TestCluster, wait_for

# Generous: the first test of a session also pays for the cluster fixture (tool builds). Every
# wait inside the test has its own, shorter bound.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]
GROUP, VERSION, PLURAL = "modelfleet.io", "v1alpha1", "models"
REPO = "modelfleet-test/progress"
SHARD_SIZE = 12 << 20
THROTTLE_BPS = 2.5e6  # about five seconds for the shard
INTERVAL = 1.0


@pytest.fixture
def hub() -> Iterator[HubServer]:
    yield from running_hub()


def install_crds(api: client.ApiClient) -> None:
    """Server-side apply every CRD in crds/ (idempotent) and wait until they are served."""
    extensions = client.ApiextensionsV1Api(api)
    names = []
    documents = [
        document
        for path in sorted((REPO_ROOT / "crds").glob("*.yaml"))
        for document in yaml.safe_load_all(path.read_text())
    ]
    for crd in documents:
        if not crd or crd.get("kind") != "CustomResourceDefinition":
            continue
        names.append(crd["metadata"]["name"])
        extensions.patch_custom_resource_definition(
            crd["metadata"]["name"],
            crd,
            field_manager="modelfleet-tests",
            force=True,
            _content_type="application/apply-patch+yaml",
        )

    def established() -> bool:
        for name in names:
            conditions = extensions.read_custom_resource_definition(name).status.conditions or []
            if not any(c.type == "Established" and c.status == "True" for c in conditions):
                return False
        return True

    wait_for(established, timeout=30, message="CRDs established")


def model_manifest(name: str, hub: HubServer) -> dict[str, Any]:
    """examples/model-tiny.yaml pointed at the test hub, weights cached only (no serving)."""
    manifest: dict[str, Any] = yaml.safe_load((REPO_ROOT / "examples/model-tiny.yaml").read_text())
    manifest["metadata"] = {"name": name}
    source = manifest["spec"]["source"]["huggingface"]
    source.update(repo=REPO, endpoint=hub.endpoint)
    manifest["spec"].pop("serving", None)
    return manifest


@dataclass(frozen=True)
class Seen:
    """One stored change of ``status.download``."""

    at: float
    resource_version: str
    download: dict[str, Any]


class DownloadWatch:
    """Records every change of one Model's ``status.download``, in a thread."""

    def __init__(self, api: client.ApiClient, namespace: str, name: str) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.namespace, self.name = namespace, name
        self.seen: list[Seen] = []
        self._watch = watch.Watch()
        self._since = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name
        )["metadata"]["resourceVersion"]
        self._thread = threading.Thread(target=self._run, daemon=True, name="download-watch")

    def _run(self) -> None:
        stream = self._watch.stream(
            self.custom.list_namespaced_custom_object,
            GROUP,
            VERSION,
            self.namespace,
            PLURAL,
            field_selector=f"metadata.name={self.name}",
            resource_version=self._since,
            timeout_seconds=120,
            _request_timeout=130,
        )
        for event in stream:
            obj = event["object"]
            download = obj.get("status", {}).get("download")
            if download and (not self.seen or download != self.seen[-1].download):
                self.seen.append(
                    Seen(time.monotonic(), obj["metadata"]["resourceVersion"], download)
                )
            if download and download.get("phase") in ("Succeeded", "Failed"):
                return

    def __enter__(self) -> DownloadWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._thread.join(timeout=20)
        self._watch.stop()


def test_progress_is_patched_into_status_at_a_bounded_rate(
    api: client.ApiClient, cluster: TestCluster, namespace: str, hub: HubServer, tmp_path: Path
) -> None:
    install_crds(api)
    shard = LazyBlob(SHARD_SIZE, seed=5)
    files: dict[str, bytes | LazyBlob] = {**tiny_model_files(), "model.safetensors": shard}
    sha = hub.add_repo(REPO, files)
    hub.add_fault(Fault(path="model.safetensors", throttle_bps=THROTTLE_BPS))
    custom = client.CustomObjectsApi(api)
    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, model_manifest("progress", hub)
    )
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(REPO_ROOT / "operator"),
        "KUBECONFIG": str(cluster.kubeconfig),
        **job_env(hub, tmp_path, REPO),
        "MODELFLEET_STATUS_TARGET": f"{namespace}/progress",
        "MODELFLEET_PROGRESS_INTERVAL": str(INTERVAL),
        "MODELFLEET_MAX_WORKERS": "2",
    }

    with DownloadWatch(api, namespace, "progress") as seen:
        started = time.monotonic()
        job = subprocess.run(
            [sys.executable, "-m", "modelfleet.downloader"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        duration = time.monotonic() - started
        assert job.returncode == 0, job.stderr[-2000:]
        wait_for(
            lambda: seen.seen and seen.seen[-1].download.get("phase") == "Succeeded",
            timeout=20,
            message="status.download.phase Succeeded",
        )

    total = sum(len(c) if isinstance(c, bytes) else c.size for c in files.values())
    downloading = [s.download for s in seen.seen if s.download.get("phase") == "Downloading"]
    partial = [d["bytesDone"] for d in downloading if 0 < d["bytesDone"] < total]
    assert len(partial) >= 2, f"too few progress patches while downloading: {downloading}"
    assert partial == sorted(partial) and partial[0] < partial[-1], "bytesDone must grow"
    assert all(d["bytesTotal"] == total for d in downloading)

    final = seen.seen[-1].download
    assert final["phase"] == "Succeeded"
    assert final["bytesDone"] == final["bytesTotal"] == total
    assert final["filesDone"] == final["filesTotal"] == len(files)
    assert final["revision"] == sha
    assert final.get("completionTime")

    # Rate limit: one patch at start, one per interval, one at the end.
    patches = len({s.resource_version for s in seen.seen})
    assert patches <= duration / INTERVAL + 2, (patches, duration)
    assert duration >= SHARD_SIZE / THROTTLE_BPS * 0.8  # the throttle really made it slow

    weights = tmp_path / REPO / sha / "model.safetensors"
    assert sha256_file(weights) == shard.sha256
