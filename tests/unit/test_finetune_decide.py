"""The FinetuneJob ``decide`` returns everything a reconcile does; one row per reason it can
reach, and a check that every reason ``decide.py`` names has its row."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from modelfleet.api.v1alpha1 import FinetuneJob
from modelfleet.builders.training import training_job_name
from modelfleet.conditions import ConditionType, Reason
from modelfleet.contracts.results import TrainingResult
from modelfleet.reconcile.finetune.decide import FinetunePlan, decide, decide_invalid
from modelfleet.reconcile.finetune.observe import FinetuneObserved
from modelfleet.settings import OperatorSettings
from tests.support.cluster import REPO_ROOT

pytestmark = pytest.mark.unit

SETTINGS = OperatorSettings(downloader_image="downloader:test", model_root="/models")
NOW = "2026-01-01T01:00:00Z"
UID = "ftj-uid"
SHA = "0123456789abcdef0123456789abcdef01234567"


def finetune() -> FinetuneJob:
    body = yaml.safe_load((REPO_ROOT / "examples/finetunejob-lora.yaml").read_text())
    body["metadata"].update(namespace="team-a", uid=UID, generation=1)
    return FinetuneJob.model_validate(body)


def base(downloaded: bool = True) -> dict[str, Any]:
    status = "True" if downloaded else "False"
    return {
        "metadata": {"name": "tiny"},
        "spec": {"source": {"huggingface": {"repo": "org/tiny"}}},
        "status": {
            "conditions": [{"type": "Downloaded", "status": status}],
            "modelPath": f"/models/org/tiny/{SHA}",
            "resolvedRevision": SHA,
        },
    }


def training(owner: str = UID, finished: str | None = None) -> dict[str, Any]:
    conditions = [] if finished is None else [{"type": finished, "status": "True"}]
    return {
        "metadata": {
            "name": training_job_name(finetune()),
            "ownerReferences": [{"uid": owner}],
        },
        "status": {"conditions": conditions},
    }


def pod(result: TrainingResult) -> dict[str, Any]:
    phase = "Succeeded" if result.succeeded else "Failed"
    terminated = {"exitCode": 0 if result.succeeded else 1, "message": result.line()}
    return {
        "metadata": {"name": "train-pod", "creationTimestamp": NOW},
        "status": {
            "phase": phase,
            "containerStatuses": [{"name": "train", "state": {"terminated": terminated}}],
        },
    }


def ended(result: TrainingResult, promoted: dict[str, Any] | None = None) -> FinetuneObserved:
    finished = "Complete" if result.succeeded else "Failed"
    return FinetuneObserved(
        base=base(),
        training=training(finished=finished),
        training_pods=[pod(result)],
        promoted=promoted,
    )


SUCCEEDED = TrainingResult(
    result="Succeeded", reason=Reason.SUCCEEDED, final_loss=0.25, dataset_revision=SHA
)


@dataclass
class Row:
    reason: Reason
    observed: FinetuneObserved
    phase: str
    requeues: bool = False
    creates_job: bool = False
    check: Callable[[FinetunePlan], None] | None = None


def _created_the_promoted_model(plan: FinetunePlan) -> None:
    assert plan.promotion is not None and plan.promotion.create is not None
    assert plan.promotion.create["apiVersion"] == "modelfleet.io/v1alpha1"
    assert plan.promotion.create["spec"]["source"] == {"finetuneJob": {"name": "tiny-lora"}}
    assert plan.status["datasetRevision"] == SHA
    assert plan.status["outputPath"] == "/models/finetunes/team-a/tiny-lora"
    assert plan.finished == "succeeded"


def _repointed_the_promoted_model(plan: FinetunePlan) -> None:
    assert plan.promotion is not None and plan.promotion.patch is not None
    assert plan.promotion.patch["spec"]["source"]["huggingface"] is None


def _left_the_foreign_job(plan: FinetunePlan) -> None:
    assert plan.promotion is None and plan.create_job is None


ROWS = [
    Row(Reason.BASE_MODEL_NOT_READY, FinetuneObserved(base=None), "Pending", requeues=True),
    Row(
        Reason.BASE_MODEL_NOT_READY,
        FinetuneObserved(base=base(downloaded=False)),
        "Pending",
        requeues=True,
    ),
    *(
        Row(reason, FinetuneObserved(base=base(), dataset_problem=(reason, "x")), "Pending", True)
        for reason in (Reason.DATASET_INVALID, Reason.SECRET_NOT_FOUND, Reason.SECRET_KEY_NOT_FOUND)
    ),
    Row(Reason.PENDING, FinetuneObserved(base=base()), "Running", creates_job=True),
    Row(
        Reason.CHILD_CONFLICT,
        FinetuneObserved(base=base(), training=training(owner="someone-else")),
        "Failed",
        check=_left_the_foreign_job,
    ),
    Row(Reason.TRAINING, FinetuneObserved(base=base(), training=training()), "Running"),
    Row(
        Reason.TRAINING_FAILED,
        ended(TrainingResult(result="Failed", reason=Reason.TRAINING_FAILED, message="boom")),
        "Failed",
    ),
    Row(
        Reason.OUT_OF_MEMORY,
        ended(TrainingResult(result="Failed", reason=Reason.OUT_OF_MEMORY, message="oom")),
        "Failed",
    ),
    Row(Reason.SUCCEEDED, ended(SUCCEEDED), "Succeeded", check=_created_the_promoted_model),
    Row(
        Reason.SUCCEEDED,
        ended(SUCCEEDED, promoted={"spec": {"source": {"huggingface": {"repo": "org/x"}}}}),
        "Succeeded",
        check=_repointed_the_promoted_model,
    ),
]


@pytest.mark.parametrize("row", ROWS, ids=lambda r: f"{r.reason}-{r.phase}")
def test_decide_reaches_the_reason(row: Row) -> None:
    plan = decide(finetune(), row.observed, SETTINGS, NOW)

    ready = next(c for c in plan.status["conditions"] if c["type"] == ConditionType.READY)
    assert (plan.phase, ready["reason"]) == (row.phase, row.reason)
    promoted = {"promoted": "tiny-chat"} if row.phase == "Succeeded" else {}
    assert plan.status["summary"] == {"status": row.phase, **promoted}  # the Promoted column
    assert (plan.requeue_after is not None) is row.requeues
    assert (plan.create_job is not None) is row.creates_job
    if row.creates_job:
        assert plan.status["baseRevision"] == SHA
        assert plan.status["startTime"] == NOW
    if row.check is not None:
        row.check(plan)


def test_an_invalid_spec_fails_the_job() -> None:
    plan = decide_invalid({"metadata": {"name": "x", "generation": 2}}, "bad lr", NOW)

    assert (plan.phase, plan.verdict) == ("Failed", (Reason.INVALID_SPEC, "bad lr"))
    assert plan.status["observedGeneration"] == 2
    assert plan.events[0][:2] == ("Warning", Reason.INVALID_SPEC)


def test_a_finished_run_is_counted_once_and_writes_nothing_more() -> None:
    job = finetune()
    first = decide(
        job,
        ended(SUCCEEDED, promoted={"spec": {"source": {"finetuneJob": {"name": "tiny-lora"}}}}),
        SETTINGS,
        NOW,
    )
    job.status = job.status.model_validate({k: v for k, v in first.status.items() if v is not None})

    again = decide(
        job,
        ended(SUCCEEDED, promoted={"spec": {"source": {"finetuneJob": {"name": "tiny-lora"}}}}),
        SETTINGS,
        "2026-01-01T02:00:00Z",
    )

    assert first.finished == "succeeded"
    assert again.finished is None
    assert again.events == []
    assert again.status["completionTime"] == first.status["completionTime"]


def test_every_reason_decide_names_has_a_row() -> None:
    source = (REPO_ROOT / "operator/modelfleet/reconcile/finetune/decide.py").read_text()
    named = {Reason[name] for name in re.findall(r"Reason\.([A-Z_]+)", source)}
    assert named - {row.reason for row in ROWS} - {Reason.INVALID_SPEC} == set()
