"""The operator never turns a Job's or a hub's word into a path outside the model root.

The served path is ``<model_root>/<repo>/<resolvedRevision>``, the revision read from the
download Job's result line. A result naming ``../../other-org/other-model/<sha>`` or ``/abs``
is a failed Job (VerificationFailed), and no path helper returns such a path.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from modelfleet.api.v1alpha1 import Model
from modelfleet.builders.naming import (
    finetune_lora_path,
    finetune_model_path,
    finetune_output_dir,
    model_path,
    weights_claim_name,
)
from modelfleet.conditions import Reason
from modelfleet.reconcile.jobs import download_outcome
from modelfleet.reconcile.model.decide import decide
from modelfleet.reconcile.model.observe import Observed, current_job_name
from modelfleet.settings import OperatorSettings

pytestmark = pytest.mark.unit

SETTINGS = OperatorSettings(downloader_image="downloader:test", model_root="/models")
SHA = "0123456789abcdef0123456789abcdef01234567"
CREATED = "2026-01-01T00:00:00Z"
HOSTILE_REVISIONS = [
    f"../../other-org/other-model/{SHA}",
    "/abs/path",
    "/models/other-org/other-model/" + SHA,
    "..",
    ".",
    "",
    SHA.upper(),
    SHA + "\n",
    SHA[:39],
    f"{SHA}/..",
]


@pytest.mark.parametrize("revision", HOSTILE_REVISIONS)
def test_model_path_refuses_a_revision_that_is_not_a_commit_id(revision: str) -> None:
    with pytest.raises(ValueError, match="40 lowercase hex"):
        model_path(SETTINGS, "org/tiny", revision)


@pytest.mark.parametrize("repo", ["/etc", "../etc", "org/..", "org/../..", "org//x", "", "."])
def test_model_path_refuses_a_repo_that_leaves_the_root(repo: str) -> None:
    with pytest.raises(ValueError, match="refusing"):
        model_path(SETTINGS, repo, SHA)


def test_model_path_of_a_commit_stays_below_the_root() -> None:
    assert model_path(SETTINGS, "org/tiny", SHA) == f"/models/org/tiny/{SHA}"
    assert model_path(SETTINGS, "tiny", SHA) == f"/models/tiny/{SHA}"
    root = OperatorSettings(downloader_image="downloader:test", model_root="/")
    assert model_path(root, "org/tiny", SHA) == f"/org/tiny/{SHA}"


@pytest.mark.parametrize(("namespace", "job"), [("..", "x"), ("team", ".."), ("/etc", "x")])
def test_finetune_paths_refuse_names_that_leave_the_root(namespace: str, job: str) -> None:
    for path_of in (finetune_output_dir, finetune_model_path, finetune_lora_path):
        with pytest.raises(ValueError, match="refusing"):
            path_of(SETTINGS, namespace, job)


def _finished_job(name: str, result: dict[str, Any]) -> tuple[dict[str, Any], list[Any]]:
    job = {
        "metadata": {"name": name, "namespace": "team-a"},
        "status": {"conditions": [{"type": "Complete", "status": "True"}]},
    }
    message = json.dumps(result, separators=(",", ":"))
    pod = {
        "metadata": {"name": f"{name}-abcde", "creationTimestamp": CREATED},
        "status": {
            "phase": "Succeeded",
            "containerStatuses": [
                {"name": "download", "state": {"terminated": {"exitCode": 0, "message": message}}}
            ],
        },
    }
    return job, [pod]


def _succeeded(revision: str) -> dict[str, Any]:
    return {
        "result": "Succeeded",
        "reason": "Downloaded",
        "message": "downloaded and verified",
        "resolvedRevision": revision,
        "modelPath": None,
    }


@pytest.mark.parametrize("revision", HOSTILE_REVISIONS)
def test_a_result_with_a_hostile_revision_is_a_failed_job(revision: str) -> None:
    job, pods = _finished_job("tiny-dl-00000000", _succeeded(revision))

    outcome = download_outcome(job, pods)

    assert outcome.state == "Failed"
    assert outcome.reason is Reason.VERIFICATION_FAILED
    assert outcome.result is not None
    assert outcome.result.resolved_revision is None


def test_a_result_with_a_commit_id_succeeds() -> None:
    job, pods = _finished_job("tiny-dl-00000000", _succeeded(SHA))

    outcome = download_outcome(job, pods)

    assert outcome.state == "Succeeded"
    assert outcome.result is not None
    assert outcome.result.resolved_revision == SHA


def _model() -> Model:
    return Model.model_validate(
        {
            "apiVersion": "modelfleet.io/v1alpha1",
            "kind": "Model",
            "metadata": {"name": "tiny", "namespace": "team-a", "uid": "u1", "generation": 1},
            "spec": {
                "source": {"huggingface": {"repo": "org/tiny"}},
                "serving": {"replicas": 1},
            },
        }
    )


@pytest.mark.parametrize("revision", [f"../../other-org/other-model/{SHA}", "/abs/path"])
def test_a_hostile_revision_stalls_the_model_and_is_never_served(revision: str) -> None:
    model = _model()
    name = current_job_name(model)
    assert name is not None
    job, pods = _finished_job(name, _succeeded(revision))
    claim = {
        "metadata": {"name": weights_claim_name(model), "namespace": "team-a"},
        "status": {"phase": "Bound"},
    }

    plan = decide(model, Observed(claim=claim, job=job, job_pods=pods), SETTINGS, CREATED)

    stalled = next(c for c in plan.status["conditions"] if c["type"] == "Stalled")
    assert stalled["status"] == "True"
    assert stalled["reason"] == Reason.VERIFICATION_FAILED
    assert not plan.status.get("modelPath")
    assert plan.status.get("resolvedRevision") != revision
    assert plan.apply == [], "nothing may be served from a path the Job chose"
