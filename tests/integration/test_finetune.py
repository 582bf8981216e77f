"""A FinetuneJob through the control plane: waits for its base, trains for real (the training
Job executed by the local agent), shows progress, succeeds and promotes into serving."""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.hubserver.server import Content, HubServer
from tests.integration.test_model_lifecycle import (
    Models,
    _host_path,
    _ready_serving_pods,
    tiny_manifest,
)
from tests.support.cluster import TestCluster, wait_for
from tests.support.operator import OperatorProcess
from tests.support.tinymodel import dataset_rows, write_tiny_llama

pytest.importorskip("torch", reason="the trainer extra is installed by hack/test.sh")

GROUP, VERSION = "modelfleet.io", "v1alpha1"


def _real_tiny_repo(hub: HubServer, directory: Path) -> str:
    model_dir = write_tiny_llama(directory)
    files: dict[str, Content] = {
        p.relative_to(model_dir).as_posix(): p.read_bytes()
        for p in model_dir.rglob("*")
        if p.is_file()
    }
    repo = f"modelfleet-test/llama-{uuid.uuid4().hex[:6]}"
    hub.add_repo(repo, files)
    return repo


def _base_manifest(hub: HubServer, repo: str, replicas: int) -> dict[str, Any]:
    manifest = tiny_manifest(hub, name="base")
    manifest["spec"]["source"]["huggingface"]["repo"] = repo
    manifest["spec"]["serving"]["replicas"] = replicas
    return manifest


def _finetune(
    name: str, promote_to: str | None, dataset_key: str = "train.jsonl"
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "baseModel": {"name": "base"},
        "dataset": {"configMap": {"name": "data", "key": dataset_key}},
        "method": "lora",
        "hyperparameters": {
            "epochs": 3,
            "batchSize": 4,
            "maxSeqLength": 64,
            "loraRank": 8,
            "loraAlpha": 16,
        },
        "gpu": {"count": 0},
    }
    if promote_to:
        spec["promote"] = {"modelName": promote_to}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "FinetuneJob",
        "metadata": {"name": name},
        "spec": spec,
    }


def _config_map(core: client.CoreV1Api, namespace: str, text: str) -> None:
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "data"}, "data": {"train.jsonl": text}}
    )


class FinetuneJobs:
    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.namespace = namespace

    def create(self, manifest: dict[str, Any]) -> None:
        self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "finetunejobs", manifest
        )

    def get(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "finetunejobs", name
        )
        return result

    def condition(self, name: str, type_: str) -> dict[str, Any]:
        for condition in self.get(name).get("status", {}).get("conditions", []):
            if condition["type"] == type_:
                return dict(condition)
        return {}


def _cached_base(models: Models, hub: HubServer, directory: Path) -> None:
    """The Model "base": a real tiny model from ``hub``, cached and not served."""
    manifest = _base_manifest(hub, _real_tiny_repo(hub, directory), replicas=1)
    del manifest["spec"]["serving"]
    models.create(manifest)


def _wait_finished(jobs: FinetuneJobs, name: str, timeout: float) -> None:
    wait_for(
        lambda: (
            jobs.condition(name, "Succeeded").get("status") == "True"
            or jobs.condition(name, "Failed").get("status") == "True"
        ),
        timeout=timeout,
        interval=1,
        message=f"the FinetuneJob {name} to finish",
    )


def _column(table: str, name: str) -> str:
    """The value under ``name`` in the first row of a kubectl table."""
    header, row = table.splitlines()[:2]
    start = header.index(name)
    return row[start:].split()[0] if len(row) > start else ""


def test_finetune_trains_and_promotes_without_dropping_replicas(
    api: client.ApiClient,
    namespace: str,
    cluster: TestCluster,
    operator: OperatorProcess,
    model_hub: HubServer,
    tmp_path: Path,
) -> None:
    core = client.CoreV1Api(api)
    models = Models(api, namespace, cluster.kubeconfig)
    jobs = FinetuneJobs(api, namespace)
    repo = _real_tiny_repo(model_hub, tmp_path / "model")
    models.create(_base_manifest(model_hub, repo, replicas=2))
    models.wait_ready("base")
    base_path = models.get("base")["status"]["modelPath"]
    _config_map(core, namespace, "\n".join(json.dumps(r) for r in dataset_rows(40)) + "\n")

    jobs.create(_finetune("tune", promote_to="base"))
    progress_seen: list[dict[str, Any]] = []
    lowest = {"ready": 10**6}
    stop = threading.Event()

    def observe() -> None:
        while not stop.is_set():
            progress = jobs.get("tune").get("status", {}).get("progress")
            if progress and jobs.condition("tune", "Running").get("status") == "True":
                progress_seen.append(progress)
            lowest["ready"] = min(lowest["ready"], _ready_serving_pods(core, namespace, "base"))
            time.sleep(0.3)

    watcher = threading.Thread(target=observe, daemon=True)
    watcher.start()
    try:
        _wait_finished(jobs, "tune", timeout=420)
        assert jobs.condition("tune", "Succeeded")["status"] == "True", jobs.get("tune")["status"]
        finetuned = f"/models/finetunes/{namespace}/tune/merged_model"
        wait_for(
            lambda: models.get("base")["status"].get("modelPath") == finetuned,
            timeout=120,
            message="the promoted Model to point at the fine-tuned weights",
        )
        models.wait_ready("base", timeout=120)
    finally:
        stop.set()
        watcher.join(timeout=5)

    assert progress_seen, "no progress was visible while training ran"
    last = jobs.get("tune")["status"]["progress"]
    assert last["totalSteps"] == 30 and last["step"] == 30 and last["percent"] == 100
    assert lowest["ready"] >= 2, f"ready replicas fell to {lowest['ready']} during the promotion"
    status = models.get("base")["status"]
    assert status["lineage"]["finetuneJob"] == "tune"
    assert status["lineage"]["baseRevision"] == model_hub.repos[repo].refs["main"]
    assert status["serving"]["activeRevision"] == status["resolvedRevision"]
    volume = _host_path(api, namespace, "base-weights")
    output = volume / "finetunes" / namespace / "tune"
    assert (output / "merged_model" / ".modelfleet-manifest.json").is_file()
    assert (output / "lora").is_dir() and (output / "finetune_meta.json").is_file()
    assert (volume / base_path.removeprefix("/models/") / "config.json").is_file(), "base kept"
    table = json.loads((output / "finetune_meta.json").read_text())
    assert table["steps"] == 30
    # kubectl shows the Model the run promoted, and where the Model's weights come from now.
    assert _column(models.kubectl("get", "ftj", "tune").stdout, "PROMOTED") == "base"
    wide = models.kubectl("get", "mfm", "base", "-o", "wide").stdout
    assert _column(wide, "SOURCE") == "finetuneJob:tune"
    assert _column(wide, "ENDPOINT") == status["serving"]["endpoint"]


def test_finetune_waits_for_its_base_then_reports_a_malformed_line(
    api: client.ApiClient,
    namespace: str,
    cluster: TestCluster,
    operator: OperatorProcess,
    model_hub: HubServer,
    tmp_path: Path,
) -> None:
    core = client.CoreV1Api(api)
    jobs = FinetuneJobs(api, namespace)
    rows = [json.dumps(r) for r in dataset_rows(10)]
    rows[2] = '{"instruction": "broken'
    _config_map(core, namespace, "\n".join(rows) + "\n")
    jobs.create(_finetune("bad", promote_to=None))
    waiting = wait_for(
        lambda: (c := jobs.condition("bad", "Running")).get("reason") == "BaseModelNotReady" and c,
        timeout=60,
        message="BaseModelNotReady",
    )
    assert waiting["status"] == "False"
    assert jobs.get("bad")["status"]["summary"]["status"] == "Pending"

    _cached_base(Models(api, namespace, cluster.kubeconfig), model_hub, tmp_path / "model")
    failed = wait_for(
        lambda: (c := jobs.condition("bad", "Failed")).get("status") == "True" and c,
        timeout=240,
        interval=1,
        message="the FinetuneJob to fail",
    )
    assert failed["reason"] == "DatasetInvalid"
    assert "line 3" in failed["message"]
    assert jobs.get("bad")["status"]["summary"]["status"] == "Failed"
    (job,) = (
        client.BatchV1Api(api)
        .list_namespaced_job(namespace, label_selector="modelfleet.io/finetunejob=bad")
        .items
    )
    assert job.status.failed == 1, "an invalid dataset is not retried"


def test_finetune_on_a_gated_hub_dataset_waits_for_its_token_and_reports_the_commit(
    api: client.ApiClient,
    namespace: str,
    cluster: TestCluster,
    operator: OperatorProcess,
    model_hub: HubServer,
    tmp_path: Path,
) -> None:
    core = client.CoreV1Api(api)
    jobs = FinetuneJobs(api, namespace)
    _cached_base(Models(api, namespace, cluster.kubeconfig), model_hub, tmp_path / "model")
    token = f"hf_{uuid.uuid4().hex}"
    dataset_repo = f"modelfleet-test/instructions-{uuid.uuid4().hex[:6]}"
    rows = "\n".join(json.dumps(r) for r in dataset_rows(16)) + "\n"
    sha = model_hub.add_repo(
        dataset_repo,
        {"data/train.jsonl": rows.encode(), "README.md": b"# instructions\n"},
        gated=True,
        token=token,
        repo_type="dataset",
    )
    tune = _finetune("hub", promote_to=None)
    tune["spec"]["hyperparameters"]["epochs"] = 1
    tune["spec"]["dataset"] = {
        "huggingface": {
            "repo": dataset_repo,
            "file": "data/train.jsonl",
            "endpoint": model_hub.endpoint,
            "tokenSecretRef": {"name": "hf", "key": "token"},
        }
    }
    jobs.create(tune)
    waiting = wait_for(
        lambda: (c := jobs.condition("hub", "Running")).get("reason") == "SecretNotFound" and c,
        timeout=120,
        message="SecretNotFound",
    )
    assert 'Secret "hf" not found' in waiting["message"]
    events = core.list_namespaced_event(namespace, field_selector="involvedObject.name=hub")
    assert any(e.type == "Warning" and e.reason == "SecretNotFound" for e in events.items)

    core.create_namespaced_secret(
        namespace, {"metadata": {"name": "hf"}, "stringData": {"token": token}}
    )
    _wait_finished(jobs, "hub", timeout=300)
    status = jobs.get("hub")["status"]
    assert jobs.condition("hub", "Succeeded")["status"] == "True", status
    assert status["datasetRevision"] == sha
    output = _host_path(api, namespace, "base-weights") / "finetunes" / namespace / "hub"
    meta = json.loads((output / "finetune_meta.json").read_text())
    assert meta["dataset"]["repo"] == dataset_repo
    assert meta["dataset"]["revision"] == sha
    assert meta["dataset"]["rows"] == 16
    fetched = [
        r for r in model_hub.requests if r.path.startswith(f"/datasets/{dataset_repo}/resolve/")
    ]
    assert fetched and all(r.authorized and r.status in (200, 206) for r in fetched)
    assert not any("README" in r.path for r in fetched), "only the named file is fetched"
    (job,) = (
        client.BatchV1Api(api)
        .list_namespaced_job(namespace, label_selector="modelfleet.io/finetunejob=hub")
        .items
    )
    assert token not in json.dumps(api.sanitize_for_serialization(job))
    assert token not in operator.logs()


def test_finetune_on_a_missing_hub_dataset_fails_at_once_with_its_reason(
    api: client.ApiClient,
    namespace: str,
    cluster: TestCluster,
    operator: OperatorProcess,
    model_hub: HubServer,
    tmp_path: Path,
) -> None:
    jobs = FinetuneJobs(api, namespace)
    _cached_base(Models(api, namespace, cluster.kubeconfig), model_hub, tmp_path / "model")
    tune = _finetune("absent", promote_to=None)
    tune["spec"]["dataset"] = {
        "huggingface": {
            "repo": "modelfleet-test/no-such-dataset",
            "file": "train.jsonl",
            "endpoint": model_hub.endpoint,
        }
    }
    jobs.create(tune)
    failed = wait_for(
        lambda: (c := jobs.condition("absent", "Failed")).get("status") == "True" and c,
        timeout=240,
        interval=1,
        message="the FinetuneJob to fail",
    )
    assert failed["reason"] == "RepoNotFound", failed
    (job,) = (
        client.BatchV1Api(api)
        .list_namespaced_job(namespace, label_selector="modelfleet.io/finetunejob=absent")
        .items
    )
    assert job.status.failed == 1, "a missing repository is not retried"
