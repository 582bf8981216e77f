"""Reconcile one FinetuneJob: wait for the base Model, run the training Job, report, promote.

The spec is immutable (the CRD refuses changes), so one FinetuneJob has one training Job for
its whole life; delete and re-create the FinetuneJob to train again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from modelfleet.api.v1alpha1 import FinetuneJob
from modelfleet.builders.training import (
    FINETUNE_LABEL,
    build_training_job,
    training_job_name,
)
from modelfleet.conditions import ConditionType, Reason, find_condition, set_condition
from modelfleet.contracts.results import TrainingResult
from modelfleet.kube.client import CONFIG_MAP, FINETUNE_JOB, JOB, MODEL, POD, PVC, Kube, Manifest
from modelfleet.kube.identity import JOB_IDENTITIES
from modelfleet.kube.timestamps import now_text
from modelfleet.metrics import FINETUNE_RUNS
from modelfleet.reconcile.common import base_claim_name, secret_problem, status_changed
from modelfleet.reconcile.jobs import job_outcome
from modelfleet.settings import OperatorSettings

LOG = logging.getLogger(__name__)

Emit = Callable[[Manifest, str, str, str], None]
WAIT_SECONDS = 10.0


def _condition_true(body: Manifest | None, type_: ConditionType) -> bool:
    conditions = (body or {}).get("status", {}).get("conditions", [])
    return (find_condition(conditions, type_) or {}).get("status") == "True"


def _dataset_problem(kube: Kube, job: FinetuneJob) -> tuple[Reason, str] | None:
    """Why the dataset cannot be read yet, or None: the Job is created only when it can."""
    dataset = job.spec.dataset
    namespace = job.metadata.namespace or ""
    if dataset.huggingface is not None and dataset.huggingface.token_secret_ref is not None:
        return secret_problem(kube, namespace, dataset.huggingface.token_secret_ref)
    if dataset.pvc is not None and kube.get(PVC, namespace, dataset.pvc.claim_name) is None:
        return Reason.DATASET_INVALID, f'PersistentVolumeClaim "{dataset.pvc.claim_name}" not found'
    if dataset.config_map is not None:
        config_map = kube.get(CONFIG_MAP, namespace, dataset.config_map.name)
        if config_map is None:
            return Reason.DATASET_INVALID, f'ConfigMap "{dataset.config_map.name}" not found'
        if dataset.config_map.key not in (config_map.get("data") or {}):
            return (
                Reason.DATASET_INVALID,
                f'ConfigMap "{dataset.config_map.name}" has no key "{dataset.config_map.key}"',
            )
    return None


def promote(kube: Kube, job: FinetuneJob, base: Manifest) -> str:
    """Create the promoted Model, or point an existing one at this job; return what was done."""
    assert job.spec.promote is not None
    namespace = job.metadata.namespace or ""
    name = job.spec.promote.model_name
    claim = base_claim_name(base)
    existing = kube.get(MODEL, namespace, name)
    if existing is None:
        spec: dict[str, Any] = {
            "source": {"finetuneJob": {"name": job.metadata.name}},
            "storage": {"existingClaim": claim},
        }
        if job.spec.promote.serving is not None:
            spec["serving"] = job.spec.promote.serving.to_wire()
        kube.create(
            MODEL,
            namespace,
            {
                "apiVersion": "modelfleet.io/v1alpha1",
                "kind": "Model",
                "metadata": {
                    "name": name,
                    "namespace": namespace,
                    "labels": {FINETUNE_LABEL: job.metadata.name},
                },
                "spec": spec,
            },
        )
        return f"created Model {name} serving the fine-tuned weights"
    current = existing.get("spec", {}).get("source", {}).get("finetuneJob", {}).get("name")
    if current == job.metadata.name:
        return f"Model {name} already serves this job"
    # A JSON merge patch: null removes the previous source and storage fields.
    kube.request(
        "PATCH",
        MODEL.path(namespace, name),
        body={
            "spec": {
                "source": {
                    "finetuneJob": {"name": job.metadata.name},
                    "huggingface": None,
                    "modelscope": None,
                    "pvc": None,
                },
                "storage": {"existingClaim": claim, "size": None, "storageClassName": None},
            }
        },
        content_type="application/merge-patch+json",
    )
    return f"Model {name} now rolls to the fine-tuned weights"


def reconcile_finetune(
    kube: Kube, body: Manifest, settings: OperatorSettings, emit: Emit
) -> float | None:
    """One level-based reconcile of the FinetuneJob ``body``; returns a requeue delay."""
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    now = now_text()
    previous = body.get("status") or {}
    conditions: list[dict[str, Any]] = [dict(c) for c in previous.get("conditions", [])]
    events: list[tuple[str, str, str]] = []
    status: dict[str, Any] = {"observedGeneration": meta.get("generation")}
    requeue: float | None = None

    def put(type_: ConditionType, ok: bool, reason: Reason, message: str) -> None:
        nonlocal conditions
        conditions = set_condition(
            conditions, type_, ok, reason, message, generation=meta.get("generation"), now=now
        )

    def state(phase: str, reason: Reason, message: str) -> None:
        done, failed = phase == "Succeeded", phase == "Failed"
        put(ConditionType.RUNNING, phase == "Running", reason, message)
        put(ConditionType.SUCCEEDED, done, reason, message if done else "")
        put(ConditionType.FAILED, failed, reason, message if failed else "")
        put(ConditionType.READY, done, reason, message)
        put(ConditionType.STALLED, failed, reason, message if failed else "")
        put(ConditionType.RECONCILING, not (done or failed), reason, message)
        status["summary"] = {"status": phase}
        before = find_condition(previous.get("conditions", []), ConditionType.READY) or {}
        if (previous.get("summary") or {}).get("status") != phase or before.get("reason") != reason:
            warning = failed or reason in (
                Reason.BASE_MODEL_NOT_READY,
                Reason.DATASET_INVALID,
                Reason.SECRET_NOT_FOUND,
                Reason.SECRET_KEY_NOT_FOUND,
            )
            events.append(("Warning" if warning else "Normal", reason, f"{phase}: {message}"))

    try:
        job = FinetuneJob.model_validate(body)
    except ValidationError as error:
        state("Failed", Reason.INVALID_SPEC, str(error.errors()[0]["msg"]))
        job = None
    if job is not None:
        base = kube.get(MODEL, namespace, job.spec.base_model.name)
        training = kube.get(JOB, namespace, training_job_name(job))
        owners = [
            ref.get("uid")
            for ref in ((training or {}).get("metadata") or {}).get("ownerReferences") or []
        ]
        if training is not None and meta.get("uid") not in owners:
            # Another object's Job of this name (a FinetuneJob deleted and created again, or
            # anything else): never read its result or promote it.
            state(
                "Failed",
                Reason.CHILD_CONFLICT,
                f"Job {namespace}/{training_job_name(job)} exists and is not this FinetuneJob's:"
                " it is left as it is; delete it or rename the FinetuneJob",
            )
        elif training is None:
            problem = _dataset_problem(kube, job)
            if base is None or not _condition_true(base, ConditionType.DOWNLOADED):
                state(
                    "Pending",
                    Reason.BASE_MODEL_NOT_READY,
                    f"waiting for Model {job.spec.base_model.name} to have verified weights",
                )
                requeue = WAIT_SECONDS
            elif problem is not None:
                state("Pending", *problem)
                requeue = WAIT_SECONDS * 3
            else:
                base_status = base.get("status", {})
                hub = base.get("spec", {}).get("source", {})
                repo = (hub.get("huggingface") or hub.get("modelscope") or {}).get("repo", "")
                JOB_IDENTITIES.ensure(kube, settings, namespace)
                kube.create(
                    JOB,
                    namespace,
                    build_training_job(
                        job,
                        settings=settings,
                        base_claim=base_claim_name(base),
                        base_path=base_status.get("modelPath", ""),
                        base_repo=repo,
                        base_revision=base_status.get("resolvedRevision", ""),
                    ),
                )
                status["baseRevision"] = base_status.get("resolvedRevision")
                status["startTime"] = now
                state("Running", Reason.PENDING, "training Job created")
        else:
            pods = kube.list(POD, namespace, f"job-name={training_job_name(job)}")
            outcome = job_outcome(training, pods, TrainingResult)
            if outcome.state == "Running":
                state("Running", Reason.TRAINING, "training")
            elif outcome.state == "Failed":
                reason = outcome.reason or Reason.TRAINING_FAILED
                state("Failed", reason, outcome.message)
                status["completionTime"] = previous.get("completionTime") or now
                if not _condition_true(body, ConditionType.FAILED):
                    FINETUNE_RUNS.labels("failed").inc()
            else:
                status["outputPath"] = f"{settings.model_root}/finetunes/{namespace}/{name}"
                result = outcome.result or TrainingResult(result="Succeeded", reason="Succeeded")
                if result.dataset_revision:
                    status["datasetRevision"] = result.dataset_revision
                status["completionTime"] = previous.get("completionTime") or now
                message = f"trained; final loss {result.final_loss}"
                if job.spec.promote is not None and base is not None:
                    message += "; " + promote(kube, job, base)
                state("Succeeded", Reason.SUCCEEDED, message)
                if not _condition_true(body, ConditionType.SUCCEEDED):
                    FINETUNE_RUNS.labels("succeeded").inc()
    status["conditions"] = conditions
    if status_changed(body, status):
        kube.patch_status(FINETUNE_JOB, namespace, name, status)
    for event_type, event_reason, event_message in events:
        emit(body, event_type, event_reason, event_message)
    return requeue
