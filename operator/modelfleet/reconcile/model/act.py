"""One Model reconcile, end to end: observe, decide, write the children, the pod conditions,
the status (calmly, when only progress changed) and the Events; and the metrics."""

from __future__ import annotations

import logging

from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from modelfleet.builders.common import COMPONENT_LABEL
from modelfleet.conditions import (
    STALLED_REASONS,
    ConditionType,
    Reason,
    event_type,
    set_condition,
)
from modelfleet.kube.client import (
    JOB,
    MODEL,
    Kube,
    Manifest,
    describe_error,
    namespace_terminating,
    resource_of,
)
from modelfleet.kube.timestamps import now_text, seconds_between
from modelfleet.metrics import (
    DOWNLOAD_BYTES,
    DOWNLOAD_DURATION,
    DOWNLOAD_FAILURES,
    MODEL_CONDITIONS,
    ROLLOUT_DURATION,
)
from modelfleet.reconcile.common import status_changed
from modelfleet.reconcile.context import Context, Emit
from modelfleet.reconcile.model.decide import Plan, decide
from modelfleet.reconcile.model.observe import (
    hub_source,
    observe,
    parse_model,
    paths_other_models_use,
)

LOG = logging.getLogger(__name__)


def record_metrics(body: Manifest, plan: Plan) -> None:
    """Update the Prometheus metrics from a reconcile's outcome and its transitions."""
    meta = body["metadata"]
    before = {c["type"]: c for c in (body.get("status") or {}).get("conditions", [])}
    after = {c["type"]: c for c in plan.status.get("conditions", [])}
    ready = after.get(ConditionType.READY, {})
    MODEL_CONDITIONS.set(
        f"{meta['namespace']}/{meta['name']}",
        ready.get("status", "Unknown"),
        ready.get("reason", ""),
    )
    downloaded_before = before.get(ConditionType.DOWNLOADED, {})
    downloaded = after.get(ConditionType.DOWNLOADED, {})
    if downloaded_before.get("reason") != downloaded.get("reason"):
        download = (body.get("status") or {}).get("download") or {}
        if downloaded.get("status") == "True":
            DOWNLOAD_BYTES.inc(download.get("bytesTotal") or 0)
            took = seconds_between(download.get("startTime"), download.get("completionTime"))
            if took is not None:
                DOWNLOAD_DURATION.observe(took)
        elif downloaded.get("reason") in STALLED_REASONS:
            DOWNLOAD_FAILURES.labels(downloaded["reason"]).inc()
    serving_before = before.get(ConditionType.SERVING, {})
    if serving_before.get("reason") == Reason.ROLLING_OUT and ready.get("status") == "True":
        took = seconds_between(
            downloaded.get("lastTransitionTime"), ready.get("lastTransitionTime")
        )
        if took is not None:
            ROLLOUT_DURATION.observe(took)


def _write_children(kube: Kube, namespace: str, plan: Plan) -> None:
    for manifest in plan.create:
        try:
            kube.create(resource_of(manifest), namespace, manifest)
        except ApiException as error:
            if error.status != 409:  # 409: it exists already, which is what we wanted
                raise
    for manifest in plan.apply:
        kube.apply(manifest)
    for job in plan.delete_jobs:
        kube.delete(JOB, namespace, job)
    for resource, name in plan.delete:
        kube.delete(resource, namespace, name)
    for pod, condition in plan.pod_conditions:
        try:
            kube.patch_pod_condition(namespace, pod, condition)
        except ApiException as error:
            if error.status != 404:  # 404: the pod went away meanwhile
                raise


def _show_write_failure(
    kube: Kube, body: Manifest, plan: Plan, error: ApiException, emit: Emit
) -> None:
    """Put a refused child write on the Model (Ready=False, ApplyFailed, the API's message)
    before the reconcile is retried, so that the Model never shows a stale reason."""
    if namespace_terminating(error):
        return
    meta = body["metadata"]
    message = f"writing a child failed: {describe_error(error)}"
    conditions = plan.status.get("conditions", [])
    for type_, value in ((ConditionType.READY, False), (ConditionType.RECONCILING, True)):
        conditions = set_condition(
            conditions,
            type_,
            value,
            Reason.APPLY_FAILED,
            message,
            generation=meta.get("generation"),
            now=now_text(),
        )
    status = {**plan.status, "conditions": conditions}
    try:
        if status_changed(body, status):
            kube.patch_status(MODEL, meta["namespace"], meta["name"], status)
            emit(body, event_type(Reason.APPLY_FAILED), Reason.APPLY_FAILED, message)
    except ApiException as second:
        LOG.debug("could not show the failure on %s: %s", meta["name"], describe_error(second))


def reconcile(ctx: Context, body: Manifest) -> float | None:
    """One level-based reconcile of the Model ``body``; returns a requeue delay, if any."""
    kube, settings, emit = ctx.kube, ctx.settings, ctx.emit
    meta = body["metadata"]
    try:
        model = parse_model(body)
    except ValidationError as error:
        message = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()[:5]
        )
        conditions = set_condition(
            list(body.get("status", {}).get("conditions", [])),
            ConditionType.STALLED,
            True,
            Reason.INVALID_SPEC,
            message,
            generation=meta.get("generation"),
            now=now_text(),
        )
        status = {"observedGeneration": meta.get("generation"), "conditions": conditions}
        if status_changed(body, status):
            kube.patch_status(MODEL, meta["namespace"], meta["name"], status)
            emit(body, event_type(Reason.INVALID_SPEC), Reason.INVALID_SPEC, message)
        return None
    observed = observe(kube, model)
    now = now_text()
    plan = decide(model, observed, settings, now)
    new_labels = [m["metadata"].get("labels") or {} for m in plan.create]
    if any(labels.get(COMPONENT_LABEL) == "download" for labels in new_labels) and hub_source(
        model
    ):
        # Only a new download Job prunes: what other Models on the claim use is read then
        # (one list of the namespace's Models), and the plan decided again with it.
        observed.shared_paths = paths_other_models_use(kube, model)
        if observed.shared_paths:
            plan = decide(model, observed, settings, now)
    record_metrics(body, plan)
    if any(m["kind"] == "Job" for m in plan.create):
        ctx.identities.ensure(kube, settings, meta["namespace"])
    try:
        _write_children(kube, meta["namespace"], plan)
    except ApiException as error:
        _show_write_failure(kube, body, plan, error, emit)
        raise
    requeue = plan.requeue_after
    if status_changed(body, plan.status):
        key = f"{meta['namespace']}/{meta['name']}"
        wait = ctx.status_clock.wait(key, settings.status_progress_seconds)
        if plan.progress_only and wait > 0:
            requeue = min(requeue or wait, wait)
        else:
            kube.patch_status(MODEL, meta["namespace"], meta["name"], plan.status)
            ctx.status_clock.written(key)
    for kind, reason, message in plan.events:
        emit(body, kind, reason, message)
    return requeue
