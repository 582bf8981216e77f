"""One FinetuneJob reconcile, end to end: observe, decide, create the training Job, promote the
result, write the status when it changed, emit the Events, count finished runs."""

from __future__ import annotations

from collections.abc import Callable

from pydantic import ValidationError

from modelfleet.api.v1alpha1 import FinetuneJob
from modelfleet.kube.client import FINETUNE_JOB, JOB, MODEL, Kube, Manifest
from modelfleet.kube.identity import JOB_IDENTITIES
from modelfleet.kube.timestamps import now_text
from modelfleet.metrics import FINETUNE_RUNS
from modelfleet.reconcile.common import status_changed
from modelfleet.reconcile.finetune.decide import FinetunePlan, decide, decide_invalid
from modelfleet.reconcile.finetune.observe import observe
from modelfleet.settings import OperatorSettings

Emit = Callable[[Manifest, str, str, str], None]


def _act(kube: Kube, namespace: str, plan: FinetunePlan, settings: OperatorSettings) -> None:
    if plan.create_job is not None:
        JOB_IDENTITIES.ensure(kube, settings, namespace)
        kube.create(JOB, namespace, plan.create_job)
    promotion = plan.promotion
    if promotion is not None and promotion.create is not None:
        kube.create(MODEL, namespace, promotion.create)
    elif promotion is not None and promotion.patch is not None:
        kube.merge_patch(MODEL, namespace, promotion.model_name, promotion.patch)


def reconcile_finetune(
    kube: Kube, body: Manifest, settings: OperatorSettings, emit: Emit
) -> float | None:
    """One level-based reconcile of the FinetuneJob ``body``; returns a requeue delay."""
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    now = now_text()
    try:
        job = FinetuneJob.model_validate(body)
    except ValidationError as error:
        plan = decide_invalid(body, str(error.errors()[0]["msg"]), now)
    else:
        plan = decide(job, observe(kube, job), settings, now)
        _act(kube, namespace, plan, settings)
    if status_changed(body, plan.status):
        kube.patch_status(FINETUNE_JOB, namespace, name, plan.status)
    if plan.finished is not None:
        FINETUNE_RUNS.labels(plan.finished).inc()
    for event_type, reason, message in plan.events:
        emit(body, event_type, reason, message)
    return plan.requeue_after
