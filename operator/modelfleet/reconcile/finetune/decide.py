"""Decide a FinetuneJob's next step from what was observed: wait, create the training Job,
report it, promote the result. Pure: the whole decision is in the returned plan.

The spec is immutable (the CRD refuses changes), so one FinetuneJob has one training Job for
its whole life; delete and re-create the FinetuneJob to train again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ValidationError

from modelfleet.api.v1alpha1 import API_VERSION, FinetuneJob
from modelfleet.api.v1alpha1.finetunejob import FinetuneJobStatus, FinetuneSummary
from modelfleet.builders.naming import finetune_output_dir
from modelfleet.builders.training import FINETUNE_LABEL, build_training_job, training_job_name
from modelfleet.conditions import (
    ConditionType,
    Reason,
    event_type,
    find_condition,
    set_condition,
)
from modelfleet.contracts.results import TrainingResult
from modelfleet.kube.client import Manifest
from modelfleet.reconcile.common import Verdict, base_claim_name, status_patch
from modelfleet.reconcile.finetune.observe import FinetuneObserved
from modelfleet.reconcile.jobs import job_outcome
from modelfleet.settings import OperatorSettings

WAIT_SECONDS = 10.0
"""How often a FinetuneJob waiting for its base Model looks again (three times that for a
dataset it cannot read)."""

Phase = Literal["Pending", "Running", "Succeeded", "Failed"]


@dataclass(frozen=True)
class Promotion:
    """The write that points a Model at the fine-tuned weights: a new Model, or a merge patch
    of an existing one."""

    model_name: str
    create: Manifest | None = None
    patch: dict[str, Any] | None = None


@dataclass
class FinetunePlan:
    """What one FinetuneJob reconcile does."""

    phase: Phase
    verdict: Verdict
    create_job: Manifest | None = None
    promotion: Promotion | None = None
    status: dict[str, Any] = field(default_factory=dict)
    """The merge patch of the status subresource."""
    events: list[tuple[str, str, str]] = field(default_factory=list)
    requeue_after: float | None = None
    finished: Literal["succeeded", "failed"] | None = None
    """Set when the run ends in this reconcile (for the run counter)."""


@dataclass
class _Step:
    phase: Phase
    verdict: Verdict
    create_job: Manifest | None = None
    promotion: Promotion | None = None
    requeue_after: float | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    """Status fields this step sets, as they are stored (camelCase)."""
    finishes: bool = False
    """The run ended: the status gets its completion time."""
    promoted: str | None = None
    """The Model that serves the result (written in this reconcile, or already)."""


def promotion(job: FinetuneJob, base: Manifest, promoted: Manifest | None) -> Promotion | None:
    """The Model write that serves this job's result: create the Model, point an existing one
    at this job (a merge patch whose nulls remove its previous source), or nothing."""
    assert job.spec.promote is not None
    namespace = job.metadata.namespace or ""
    name = job.spec.promote.model_name
    claim = base_claim_name(base)
    if promoted is None:
        spec: dict[str, Any] = {
            "source": {"finetuneJob": {"name": job.metadata.name}},
            "storage": {"existingClaim": claim},
        }
        if job.spec.promote.serving is not None:
            spec["serving"] = job.spec.promote.serving.to_wire()
        manifest = {
            "apiVersion": API_VERSION,
            "kind": "Model",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {FINETUNE_LABEL: job.metadata.name},
            },
            "spec": spec,
        }
        return Promotion(name, create=manifest)
    current = promoted.get("spec", {}).get("source", {}).get("finetuneJob", {}).get("name")
    if current == job.metadata.name:
        return None
    patch = {
        "spec": {
            "source": {
                "finetuneJob": {"name": job.metadata.name},
                "huggingface": None,
                "modelscope": None,
                "pvc": None,
            },
            "storage": {"existingClaim": claim, "size": None, "storageClassName": None},
        }
    }
    return Promotion(name, patch=patch)


def _promotion_text(step: Promotion | None, name: str) -> str:
    if step is None:
        return f"Model {name} already serves this job"
    if step.create is not None:
        return f"created Model {name} serving the fine-tuned weights"
    return f"Model {name} now rolls to the fine-tuned weights"


def _downloaded(base: Manifest | None) -> bool:
    conditions = (base or {}).get("status", {}).get("conditions", [])
    return (find_condition(conditions, ConditionType.DOWNLOADED) or {}).get("status") == "True"


def _owned(job: FinetuneJob, training: Manifest) -> bool:
    owners = (training.get("metadata") or {}).get("ownerReferences") or []
    return job.metadata.uid in [ref.get("uid") for ref in owners]


def _before_training(
    job: FinetuneJob, observed: FinetuneObserved, settings: OperatorSettings, now: str
) -> _Step:
    """No training Job yet: wait for the base Model and the dataset, then create it."""
    base = observed.base
    if base is None or not _downloaded(base):
        message = f"waiting for Model {job.spec.base_model.name} to have verified weights"
        return _Step("Pending", (Reason.BASE_MODEL_NOT_READY, message), requeue_after=WAIT_SECONDS)
    if observed.dataset_problem is not None:
        return _Step("Pending", observed.dataset_problem, requeue_after=WAIT_SECONDS * 3)
    base_status = base.get("status", {})
    source = base.get("spec", {}).get("source", {})
    repo = (source.get("huggingface") or source.get("modelscope") or {}).get("repo", "")
    training = build_training_job(
        job,
        settings=settings,
        base_claim=base_claim_name(base),
        base_path=base_status.get("modelPath", ""),
        base_repo=repo,
        base_revision=base_status.get("resolvedRevision", ""),
    )
    return _Step(
        "Running",
        (Reason.PENDING, "training Job created"),
        create_job=training,
        fields={"baseRevision": base_status.get("resolvedRevision"), "startTime": now},
    )


def _training(job: FinetuneJob, observed: FinetuneObserved, settings: OperatorSettings) -> _Step:
    """The training Job exists: report it, and promote its result once it succeeded."""
    assert observed.training is not None
    if not _owned(job, observed.training):
        # Another object's Job of this name (a FinetuneJob deleted and created again, or
        # anything else): never read its result or promote it.
        return _Step(
            "Failed",
            (
                Reason.CHILD_CONFLICT,
                f"Job {job.metadata.namespace}/{training_job_name(job)} exists and is not this"
                " FinetuneJob's: it is left as it is; delete it or rename the FinetuneJob",
            ),
        )
    outcome = job_outcome(observed.training, observed.training_pods, TrainingResult)
    if outcome.state == "Running":
        return _Step("Running", (Reason.TRAINING, "training"))
    if outcome.state == "Failed":
        verdict = (outcome.reason or Reason.TRAINING_FAILED, outcome.message)
        return _Step("Failed", verdict, finishes=True)
    result = outcome.result or TrainingResult(result="Succeeded", reason=Reason.SUCCEEDED)
    namespace = job.metadata.namespace or ""
    message = f"trained; final loss {result.final_loss}"
    promote, promoted = None, None
    if job.spec.promote is not None and observed.base is not None:
        promote = promotion(job, observed.base, observed.promoted)
        promoted = job.spec.promote.model_name
        message += "; " + _promotion_text(promote, promoted)
    fields: dict[str, Any] = {
        "outputPath": finetune_output_dir(settings, namespace, job.metadata.name)
    }
    if result.dataset_revision:
        fields["datasetRevision"] = result.dataset_revision
    return _Step(
        "Succeeded",
        (Reason.SUCCEEDED, message),
        promotion=promote,
        fields=fields,
        finishes=True,
        promoted=promoted,
    )


def _conditions(
    previous: FinetuneJobStatus, generation: int | None, phase: Phase, verdict: Verdict, now: str
) -> list[dict[str, Any]]:
    conditions = [c.to_wire() for c in previous.conditions]
    done, failed = phase == "Succeeded", phase == "Failed"
    reason, message = verdict
    for type_, value, text in (
        (ConditionType.RUNNING, phase == "Running", message),
        (ConditionType.SUCCEEDED, done, message if done else ""),
        (ConditionType.FAILED, failed, message if failed else ""),
        (ConditionType.READY, done, message),
        (ConditionType.STALLED, failed, message if failed else ""),
        (ConditionType.RECONCILING, not (done or failed), message),
    ):
        conditions = set_condition(
            conditions, type_, value, reason, text, generation=generation, now=now
        )
    return conditions


def _event(
    previous: FinetuneJobStatus, phase: Phase, verdict: Verdict
) -> list[tuple[str, str, str]]:
    """The Event of a phase or reason change; none when nothing changed."""
    ready = find_condition([c.to_wire() for c in previous.conditions], ConditionType.READY)
    previous_phase = previous.summary.status if previous.summary else None
    if previous_phase == phase and (ready or {}).get("reason") == verdict[0]:
        return []
    kind = event_type(verdict[0], failed=phase == "Failed")
    return [(kind, verdict[0], f"{phase}: {verdict[1]}")]


def _finished(previous: FinetuneJobStatus, phase: Phase) -> Literal["succeeded", "failed"] | None:
    if phase not in ("Succeeded", "Failed"):
        return None
    type_ = ConditionType.SUCCEEDED if phase == "Succeeded" else ConditionType.FAILED
    before = find_condition([c.to_wire() for c in previous.conditions], type_) or {}
    if before.get("status") == "True":
        return None
    return "succeeded" if phase == "Succeeded" else "failed"


def _plan(
    previous: FinetuneJobStatus, generation: int | None, step: _Step, now: str
) -> FinetunePlan:
    """The plan of ``step``, with the status built typed and serialised once."""
    wire = previous.to_wire()
    if step.finishes:
        wire["completionTime"] = wire.get("completionTime") or now
    status = FinetuneJobStatus.model_validate(
        wire
        | step.fields
        | {
            "observedGeneration": generation,
            "conditions": _conditions(previous, generation, step.phase, step.verdict, now),
            "summary": FinetuneSummary(
                status=step.phase,
                promoted=step.promoted or (previous.summary.promoted if previous.summary else None),
            ).to_wire(),
        }
    )
    return FinetunePlan(
        phase=step.phase,
        verdict=step.verdict,
        create_job=step.create_job,
        promotion=step.promotion,
        status=status_patch(status, previous.to_wire(), not_owned=("progress",)),
        events=_event(previous, step.phase, step.verdict),
        requeue_after=step.requeue_after,
        finished=_finished(previous, step.phase),
    )


def decide(
    job: FinetuneJob, observed: FinetuneObserved, settings: OperatorSettings, now: str
) -> FinetunePlan:
    """Everything one FinetuneJob reconcile does, from the observed state alone."""
    if observed.training is None:
        step = _before_training(job, observed, settings, now)
    else:
        step = _training(job, observed, settings)
    return _plan(job.status, job.metadata.generation, step, now)


def decide_invalid(body: Manifest, message: str, now: str) -> FinetunePlan:
    """The plan for a FinetuneJob whose spec does not parse: Failed, InvalidSpec."""
    try:
        previous = FinetuneJobStatus.model_validate(body.get("status") or {})
    except ValidationError:
        previous = FinetuneJobStatus()
    generation = (body.get("metadata") or {}).get("generation")
    return _plan(previous, generation, _Step("Failed", (Reason.INVALID_SPEC, message)), now)
