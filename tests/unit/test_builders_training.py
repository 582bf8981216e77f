"""The training Job of a FinetuneJob: the dataset mounted, or fetched from a hub first."""

from __future__ import annotations

import fnmatch
import json
from typing import Any

import pytest
import yaml

from modelfleet.api.v1alpha1 import FinetuneJob
from modelfleet.api.v1alpha1.common import SecretKeyRef
from modelfleet.builders.common import Manifest
from modelfleet.builders.training import build_training_job
from modelfleet.conditions import Reason
from modelfleet.contracts.results import TrainingResult
from modelfleet.reconcile.jobs import job_outcome
from tests.support.cluster import REPO_ROOT
from tests.unit.test_builders import NAMESPACE, SETTINGS, UID
from tests.unit.test_builders_pod_security import restricted_violations

pytestmark = pytest.mark.unit


def load_finetune(name: str) -> FinetuneJob:
    body = yaml.safe_load((REPO_ROOT / "examples" / f"{name}.yaml").read_text())
    body["metadata"].update(namespace=NAMESPACE, uid=UID)
    return FinetuneJob.model_validate(body)


def training_job(job: FinetuneJob) -> Manifest:
    return build_training_job(
        job,
        settings=SETTINGS,
        base_claim="tiny-weights",
        base_path="/models/modelfleet-test/tiny-llama/abc",
        base_repo="modelfleet-test/tiny-llama",
        base_revision="abc",
    )


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_a_hub_dataset_is_fetched_by_an_init_container_before_training() -> None:
    job = load_finetune("finetunejob-hf-dataset")
    assert job.spec.dataset.huggingface is not None
    job.spec.dataset.huggingface.token_secret_ref = SecretKeyRef(name="hf", key="token")

    pod = training_job(job)["spec"]["template"]["spec"]

    [fetch] = pod["initContainers"]
    assert fetch["name"] == "fetch-dataset"
    assert fetch["image"] == SETTINGS.downloader_image
    assert fetch["command"] == ["python", "-m", "modelfleet.downloader"]
    env = _env(fetch)
    assert env["MODELFLEET_SOURCE"] == "huggingface-dataset"
    assert env["MODELFLEET_REPO"] == "modelfleet-test/tiny-instructions"
    assert env["MODELFLEET_REVISION"] == "main"
    assert env["MODELFLEET_MODEL_ROOT"] == "/dataset"
    assert env["MODELFLEET_ALLOW_PATTERNS"] == '["data/train.jsonl"]'
    assert env["HF_ENDPOINT"] == "http://127.0.0.1:18765"
    # The token comes from the Secret at run time; it is never written into the Job.
    assert env["HF_TOKEN"] == {"secretKeyRef": {"name": "hf", "key": "token"}}
    assert {m["name"]: m.get("readOnly", False) for m in fetch["volumeMounts"]} == {
        "dataset": False,
        "tmp": False,
    }

    [train] = pod["containers"]
    train_env = _env(train)
    assert train_env["MODELFLEET_DATASET_PATH"] == "/dataset"
    assert train_env["MODELFLEET_DATASET_REPO"] == "modelfleet-test/tiny-instructions"
    assert train_env["MODELFLEET_DATASET_FILE"] == "data/train.jsonl"
    assert "HF_TOKEN" not in train_env
    assert {v["name"]: v for v in pod["volumes"]}["dataset"] == {
        "name": "dataset",
        "emptyDir": {"sizeLimit": "20Gi"},
    }
    assert restricted_violations(pod) == []

    rules = training_job(job)["spec"]["podFailurePolicy"]["rules"]
    fail_fast = {r["onExitCodes"]["containerName"] for r in rules if r["action"] == "FailJob"}
    assert fail_fast == {"fetch-dataset", "train"}


def test_a_configmap_dataset_is_mounted_and_nothing_is_fetched() -> None:
    pod = training_job(load_finetune("finetunejob-lora"))["spec"]["template"]["spec"]

    assert "initContainers" not in pod
    env = _env(pod["containers"][0])
    assert env["MODELFLEET_DATASET_PATH"] == "/dataset/train.jsonl"
    assert "MODELFLEET_DATASET_REPO" not in env
    assert {v["name"]: v for v in pod["volumes"]}["dataset"]["configMap"] == {
        "name": "tiny-dataset"
    }
    assert restricted_violations(pod) == []


def test_a_failed_fetch_gives_the_job_its_typed_reason() -> None:
    failed_job = {"status": {"conditions": [{"type": "Failed", "status": "True"}]}}
    pod = {
        "metadata": {"creationTimestamp": "2026-01-01T00:00:00Z"},
        "status": {
            "phase": "Failed",
            "initContainerStatuses": [
                {
                    "name": "fetch-dataset",
                    "state": {
                        "terminated": {
                            "exitCode": 2,
                            "message": '{"result":"Failed","reason":"RepoNotFound",'
                            '"message":"Repository not found"}\n',
                        }
                    },
                }
            ],
            "containerStatuses": [
                {"name": "train", "state": {"waiting": {"reason": "PodInitializing"}}}
            ],
        },
    }

    outcome = job_outcome(failed_job, [pod], TrainingResult)

    assert outcome.state == "Failed"
    assert outcome.reason is Reason.REPO_NOT_FOUND
    assert outcome.message == "Repository not found"


@pytest.mark.parametrize("file", ["/etc/passwd", "../secret.jsonl", "data/../../x.jsonl"])
def test_a_dataset_file_outside_the_repository_is_refused(file: str) -> None:
    body = yaml.safe_load((REPO_ROOT / "examples" / "finetunejob-hf-dataset.yaml").read_text())
    body["spec"]["dataset"]["huggingface"]["file"] = file
    with pytest.raises(ValueError, match="file"):
        FinetuneJob.model_validate(body)


@pytest.mark.parametrize("file", ["*", "data/*.jsonl", "train?.jsonl", "data/[a-z]*.jsonl"])
def test_a_dataset_file_with_glob_characters_is_refused(file: str) -> None:
    body = yaml.safe_load((REPO_ROOT / "examples" / "finetunejob-hf-dataset.yaml").read_text())
    body["spec"]["dataset"]["huggingface"]["file"] = file
    with pytest.raises(ValueError, match="file"):
        FinetuneJob.model_validate(body)


@pytest.mark.parametrize(
    ("file", "matches", "misses"),
    [
        ("*", "*", "config.json"),
        ("data/[a-z]*.jsonl", "data/[a-z]*.jsonl", "data/ab.jsonl"),
        ("train?.jsonl", "train?.jsonl", "train1.jsonl"),
        ("data/train.jsonl", "data/train.jsonl", "data/train.jsonl.bak"),
    ],
)
def test_the_dataset_file_is_fetched_by_its_literal_name(
    file: str, matches: str, misses: str
) -> None:
    """Should the schema ever let a glob character through, the fetch still takes one file: the
    hub client filters the listing with fnmatch, and every glob character is bracketed."""
    job = load_finetune("finetunejob-hf-dataset")
    assert job.spec.dataset.huggingface is not None
    job.spec.dataset.huggingface.file = file  # as if the API server had stored it

    [fetch] = training_job(job)["spec"]["template"]["spec"]["initContainers"]
    [pattern] = json.loads(_env(fetch)["MODELFLEET_ALLOW_PATTERNS"])

    assert fnmatch.fnmatchcase(matches, pattern)
    assert not fnmatch.fnmatchcase(misses, pattern)
