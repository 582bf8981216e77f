"""One FinetuneJob reconcile, end to end: observe, decide, create the training Job, promote the
result, write the status when it changed, emit the Events, count finished runs."""

from __future__ import annotations

from pydantic import ValidationError

from modelfleet.api.v1alpha1 import FinetuneJob
from modelfleet.kube.client import FINETUNE_JOB, JOB, MODEL, Manifest
from modelfleet.kube.timestamps import now_text
from modelfleet.metrics import FINETUNE_RUNS
from modelfleet.reconcile.common import status_changed
from modelfleet.reconcile.context import Context
from modelfleet.reconcile.finetune.decide import FinetunePlan, decide, decide_invalid
from modelfleet.reconcile.finetune.observe import observe


def _act(ctx: Context, namespace: str, plan: FinetunePlan) -> None:
    kube = ctx.kube
    if plan.create_job is not None:
        ctx.identities.ensure(kube, ctx.settings, namespace)
        kube.create(JOB, namespace, plan.create_job)
    promotion = plan.promotion
    if promotion is not None and promotion.create is not None:
        kube.create(MODEL, namespace, promotion.create)
    elif promotion is not None and promotion.patch is not None:
        kube.merge_patch(MODEL, namespace, promotion.model_name, promotion.patch)


def reconcile_finetune(ctx: Context, body: Manifest) -> float | None:
    """One level-based reconcile of the FinetuneJob ``body``; returns a requeue delay."""
    kube = ctx.kube
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    now = now_text()
    try:
        job = FinetuneJob.model_validate(body)
    except ValidationError as error:
        plan = decide_invalid(body, str(error.errors()[0]["msg"]), now)
    else:
        plan = decide(job, observe(kube, job), ctx.settings, now)
        _act(ctx, namespace, plan)
    if status_changed(body, plan.status):
        kube.patch_status(FINETUNE_JOB, namespace, name, plan.status)
    if plan.finished is not None:
        FINETUNE_RUNS.labels(plan.finished).inc()
    for kind, reason, message in plan.events:
        ctx.emit(body, kind, reason, message)
    return plan.requeue_after
