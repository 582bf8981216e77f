"""Decide a Model's desired state from what was observed: the children to create, apply or
delete, the pod conditions to set, the status and Events, and when to look again. Pure: the
whole decision is in the returned :class:`Plan`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from modelfleet.api.v1alpha1 import Model
from modelfleet.api.v1alpha1.model import (
    Lineage,
    LoraAdapter,
    ServingStatus,
    SmokeTestStatus,
)
from modelfleet.builders.common import (
    MODEL_PATH_ANNOTATION,
    REVISION_ANNOTATION,
    SPEC_HASH_ANNOTATION,
)
from modelfleet.builders.download import build_download_job, build_resolve_job, build_verify_job
from modelfleet.builders.naming import (
    finetune_model_path,
    model_path,
    pvc_model_path,
    weights_claim_name,
)
from modelfleet.builders.serving import (
    INIT_CONTAINER_NAME,
    SMOKE_TEST_CONDITION,
    build_deployment,
    build_disruption_budget,
    build_ingress,
    build_service,
    external_url,
    serving_endpoint,
    wants_disruption_budget,
)
from modelfleet.builders.storage import (
    SPEC_SIZE,
    build_weights_claim,
    derive_claim_size,
    needs_weights_claim,
)
from modelfleet.conditions import (
    STALLED_REASONS,
    ConditionType,
    Reason,
    find_condition,
    set_condition,
)
from modelfleet.kube.client import DISRUPTION_BUDGET, INGRESS, Manifest, Resource
from modelfleet.kube.timestamps import seconds_between
from modelfleet.reconcile.common import (
    Verdict,
    annotation,
    base_claim_name,
    pod_condition,
    status_patch,
    without_none,
)
from modelfleet.reconcile.jobs import download_outcome
from modelfleet.reconcile.model.observe import (
    SMOKE_RETRY_SECONDS,
    Observed,
    current_job_name,
    current_resolve_job_name,
    hub_source,
    retry_token,
)
from modelfleet.reconcile.model.status import model_status, significant, transition_events
from modelfleet.reconcile.model.storage import storage_events, storage_state
from modelfleet.settings import OperatorSettings

CONFIG_ERROR_RETRY_SECONDS = 30.0
"""How often a Model waiting on something outside the cluster's control (a Secret) looks again."""

CRASH_LOOP_RESTARTS = 3
"""Engine restarts (each after a back-off) before a crash-looping pod stalls the Model."""


@dataclass
class Plan:
    """What a reconcile does."""

    create: list[Manifest] = field(default_factory=list)
    apply: list[Manifest] = field(default_factory=list)
    delete_jobs: list[str] = field(default_factory=list)
    delete: list[tuple[Resource, str]] = field(default_factory=list)
    """Other children to delete: a disruption budget or an Ingress no longer wanted."""
    status: dict[str, Any] = field(default_factory=dict)
    events: list[tuple[str, str, str]] = field(default_factory=list)
    """(type, reason, message) of each condition transition."""
    requeue_after: float | None = None
    progress_only: bool = False
    """The status differs from the stored one only in progress (see ``significant``)."""
    pod_conditions: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    """(pod name, condition) to set on serving pods: their smoke-test readiness gate."""


@dataclass(frozen=True)
class Weights:
    """Verified weights: where they are in the serving pods and which revision they are."""

    path: str
    revision: str
    lora_adapter_of: str | None = None
    """A FinetuneJob whose unmerged LoRA adapter is served on top of these (base) weights."""
    size_bytes: int | None = None
    """Bytes of the files, where the download Job said."""


@dataclass
class WeightsState:
    """What the reconcile concluded about the weights of the current spec."""

    downloaded: bool
    verdict: Verdict
    verified: Weights | None = None
    stalled: Verdict | None = None
    download_status: dict[str, Any] = field(default_factory=dict)
    create: list[Manifest] = field(default_factory=list)
    """The download (or verify) Job to create."""
    delete_jobs: list[str] = field(default_factory=list)
    """Jobs of earlier specs, done with once the current one verified its weights."""
    requeue_after: float | None = None


@dataclass
class ServingState:
    """What the reconcile concluded about serving."""

    ok: bool
    ready: bool
    verdict: Verdict
    status: ServingStatus | None = None
    stalled: Verdict | None = None
    apply: list[Manifest] = field(default_factory=list)
    """The Deployment, Service and disruption budget, where they differ from what runs."""
    delete: list[tuple[Resource, str]] = field(default_factory=list)
    """The disruption budget, once fewer than 2 replicas or a disabled budget leave it
    unwanted."""
    pod_conditions: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    requeue_after: float | None = None


def smoke_test_decisions(
    observed: Observed, now: str, previous: dict[str, Any] | None
) -> tuple[list[tuple[str, dict[str, Any]]], dict[str, Any] | None]:
    """The gate condition to set on each pod just asked, and ``status.serving.smokeTest``."""
    conditions: list[tuple[str, dict[str, Any]]] = []
    latest = previous
    pods = {pod["metadata"]["name"]: pod for pod in observed.serving_pods}
    for name, result in sorted(observed.smoke_results.items()):
        conditions.append(
            (
                name,
                {
                    "type": SMOKE_TEST_CONDITION,
                    "status": "True" if result.passed else "False",
                    "reason": "SmokeTestPassed" if result.passed else Reason.SMOKE_TEST_FAILED,
                    "message": result.message,
                    "lastProbeTime": now,
                    "lastTransitionTime": now,
                },
            )
        )
        annotations = pods.get(name, {}).get("metadata", {}).get("annotations") or {}
        latest = {
            "pod": name,
            "revision": annotations.get(REVISION_ANNOTATION),
            "passed": result.passed,
            "message": result.message,
            "timeToFirstTokenSeconds": result.time_to_first_token,
            "tokensPerSecond": result.tokens_per_second,
            "testedAt": now,
        }
    return conditions, latest


def _needs_apply(desired: Manifest, existing: Manifest | None) -> bool:
    return existing is None or annotation(existing, SPEC_HASH_ANNOTATION) != annotation(
        desired, SPEC_HASH_ANNOTATION
    )


def _serving_problem(observed: Observed) -> tuple[Reason, str] | None:
    """A reason the serving pods cannot become Ready, read from the pods and the Deployment."""
    for pod in observed.serving_pods:
        if pod["metadata"].get("deletionTimestamp"):
            continue
        status = pod.get("status", {})
        pod_name = pod["metadata"]["name"]
        if pod_name in observed.volume_problems:
            return Reason.VOLUME_MOUNT_FAILED, observed.volume_problems[pod_name]
        for container in status.get("initContainerStatuses", []):
            if container.get("name") != INIT_CONTAINER_NAME:
                continue
            state = container.get("state", {})
            failed = state.get("terminated", {}).get("exitCode", 0) != 0 or (
                state.get("waiting", {}).get("reason") == "CrashLoopBackOff"
            )
            if failed:
                last = container.get("lastState", {}).get("terminated") or state.get(
                    "terminated", {}
                )
                lines = (last.get("message") or "").strip().splitlines()
                detail = lines[-1] if lines else f"exit code {last.get('exitCode')}"
                return Reason.WEIGHTS_INVALID, (
                    f"pod {pod_name}: {INIT_CONTAINER_NAME} refused the weights, the engine"
                    f" was not started: {detail}"
                )
        result = observed.smoke_results.get(pod_name)
        gate = pod_condition(pod, SMOKE_TEST_CONDITION)
        if result is not None and not result.passed:
            return Reason.SMOKE_TEST_FAILED, f"pod {pod_name}: {result.message}"
        if result is None and gate and gate.get("reason") == Reason.SMOKE_TEST_FAILED:
            return Reason.SMOKE_TEST_FAILED, f"pod {pod_name}: {gate.get('message', '')}"
        for container in status.get("containerStatuses", []) + status.get(
            "initContainerStatuses", []
        ):
            waiting = container.get("state", {}).get("waiting", {})
            if (
                waiting.get("reason") == "CrashLoopBackOff"
                and int(container.get("restartCount") or 0) >= CRASH_LOOP_RESTARTS
            ):
                return Reason.CRASH_LOOP, (
                    f"pod {pod['metadata']['name']} container {container['name']} is crash-looping"
                )
            if waiting.get("reason") in ("ImagePullBackOff", "ErrImagePull", "InvalidImageName"):
                return Reason.IMAGE_PULL_FAILED, (
                    f"pod {pod['metadata']['name']} cannot pull {container.get('image')}: "
                    f"{waiting.get('message', waiting['reason'])}"
                )
        for condition in status.get("conditions", []):
            if (
                condition.get("type") == "PodScheduled"
                and condition.get("reason") == "Unschedulable"
            ):
                name = pod["metadata"]["name"]
                return Reason.UNSCHEDULABLE, (
                    f"pod {name} is unschedulable: {condition.get('message', '')}"
                )
    for condition in (observed.deployment or {}).get("status", {}).get("conditions", []):
        if (
            condition.get("type") == "Progressing"
            and condition.get("reason") == "ProgressDeadlineExceeded"
        ):
            return Reason.ROLLOUT_STALLED, (
                "new pods did not become Ready within the progress deadline; the previous"
                " revision keeps serving"
            )
    return None


def _job_to_create(model: Model, observed: Observed, settings: OperatorSettings) -> Manifest:
    """The download (or verify) Job for the spec as it is now."""
    token = retry_token(model)
    if model.spec.source.pvc is not None:
        return build_verify_job(model, settings=settings, retry_token=token)
    # The served revision, the last verified one, and whatever other Models on the same claim
    # serve or keep must survive the new Job's pruning.
    served = annotation(observed.deployment, MODEL_PATH_ANNOTATION)
    protected = sorted({p for p in (served, model.status.model_path, *observed.shared_paths) if p})
    hub = hub_source(model)
    return build_download_job(
        model,
        settings=settings,
        revision=hub.revision if hub else "",
        retry_token=token,
        protected_paths=protected,
    )


def _finetune_weights(model: Model, observed: Observed, settings: OperatorSettings) -> WeightsState:
    """The weights of a FinetuneJob: merged_model/, or the base weights plus its lora/."""
    assert model.spec.source.finetune_job is not None
    name = model.spec.source.finetune_job.name
    job = observed.finetune_job
    if job is None:
        verdict = (Reason.FINETUNE_JOB_NOT_FOUND, f'FinetuneJob "{name}" not found')
        return WeightsState(False, verdict, stalled=verdict)
    conditions = job.get("status", {}).get("conditions", [])
    failed = find_condition(conditions, ConditionType.FAILED) or {}
    if failed.get("status") == "True":
        verdict = (
            Reason.FINETUNE_NOT_SUCCEEDED,
            f"FinetuneJob {name} failed ({failed.get('reason')}): {failed.get('message', '')}",
        )
        return WeightsState(False, verdict, stalled=verdict)
    if (find_condition(conditions, ConditionType.SUCCEEDED) or {}).get("status") != "True":
        return WeightsState(
            False, (Reason.FINETUNE_NOT_SUCCEEDED, f"waiting for FinetuneJob {name} to succeed")
        )
    # A training run is identified by its object: a re-created FinetuneJob is a new revision.
    revision = str(job["metadata"]["uid"]).replace("-", "")
    namespace = model.metadata.namespace or ""
    if job.get("spec", {}).get("merge", True):
        path = finetune_model_path(settings, namespace, name)
        return WeightsState(
            True, (Reason.DOWNLOADED, f"fine-tuned weights at {path}"), Weights(path, revision)
        )
    base_path = ((observed.finetune_base or {}).get("status") or {}).get("modelPath")
    if not base_path:
        return WeightsState(
            False, (Reason.BASE_MODEL_NOT_READY, "waiting for the base Model's weights")
        )
    return WeightsState(
        True,
        (Reason.DOWNLOADED, f"base weights at {base_path} with the LoRA adapter of {name}"),
        Weights(base_path, revision, lora_adapter_of=name),
    )


@dataclass(frozen=True)
class ClaimWait:
    """Why the download Job waits for its claim, and when to look again."""

    verdict: Verdict
    requeue_after: float | None = None


def _claim_wait(
    model: Model, observed: Observed, settings: OperatorSettings, now: str
) -> ClaimWait | None:
    """Why the download Job is not created yet, if its claim is made in this reconcile or
    has no volume yet. Until ``claim_bind_grace_seconds`` the verdict is the one the Job shows
    while its pod starts, so that a claim that binds in time costs no status write of its own;
    after that it is ``ClaimPending``."""
    name = weights_claim_name(model)
    pending = (Reason.PENDING, f"Job {current_job_name(model)}: Pending")
    if observed.claim is None:
        # Made in this reconcile: look again once its reply is in the cache (a claim that
        # waits for its first pod is never updated, so no watch event would come).
        return ClaimWait(pending, requeue_after=1.0)
    if not observed.claim_unbound:
        return None
    waited = seconds_between(observed.claim["metadata"].get("creationTimestamp"), now) or 0.0
    if waited < settings.claim_bind_grace_seconds:
        return ClaimWait(pending, requeue_after=settings.claim_bind_grace_seconds - waited)
    class_name = (observed.claim.get("spec") or {}).get("storageClassName")
    return ClaimWait(
        (
            Reason.CLAIM_PENDING,
            f'PersistentVolumeClaim "{name}" has had no volume for {waited:.0f}s'
            f" (StorageClass {class_name or 'none'}): see its events",
        )
    )


def _weights_state(
    model: Model, observed: Observed, settings: OperatorSettings, now: str
) -> WeightsState:
    """Judge the current Job (creating it when missing) and find the verified weights."""
    download_status = dict(model.status.to_wire().get("download") or {})
    if model.spec.source.finetune_job is not None:
        return _finetune_weights(model, observed, settings)
    if observed.config_error is not None:
        return WeightsState(False, observed.config_error, stalled=observed.config_error)
    if observed.job is None and _needs_sizing(model, observed):
        sizing = _sizing_state(model, observed, settings)
        if sizing is not None:
            return sizing
    if observed.job is None:
        waiting = _claim_wait(model, observed, settings, now)
        if waiting is not None:
            return WeightsState(False, waiting.verdict, requeue_after=waiting.requeue_after)
        job = _job_to_create(model, observed, settings)
        # What the Job will show while its pod starts, so that its start is no status change.
        pending = (Reason.PENDING, f"Job {job['metadata']['name']}: Pending")
        return WeightsState(False, pending, create=[job])
    outcome = download_outcome(observed.job, observed.job_pods)
    job_name = observed.job["metadata"]["name"]
    if outcome.state == "Running":
        mounting = [
            observed.volume_problems[p["metadata"]["name"]]
            for p in observed.job_pods
            if p["metadata"]["name"] in observed.volume_problems
        ]
        if mounting:
            return WeightsState(False, (Reason.VOLUME_MOUNT_FAILED, mounting[0]))
        phase = download_status.get("phase") or "Pending"
        reason = {"Downloading": Reason.DOWNLOADING, "Verifying": Reason.VERIFYING}.get(
            phase, Reason.VERIFYING if model.spec.source.pvc else Reason.PENDING
        )
        return WeightsState(False, (reason, f"Job {job_name}: {phase}"))
    if outcome.state == "Failed":
        stalled = (outcome.reason or Reason.BACKOFF_LIMIT_EXCEEDED, outcome.message)
        if download_status.get("phase") != "Failed":
            download_status |= {"phase": "Failed", "lastError": f"{stalled[0]}: {stalled[1]}"}
        return WeightsState(False, stalled, stalled=stalled, download_status=download_status)
    revision = (outcome.result.resolved_revision if outcome.result else None) or ""
    hub = hub_source(model)
    if model.spec.source.pvc is not None:
        path = pvc_model_path(settings, model)
        revision = revision or "verified"
    else:
        # The path is content-addressed: derived from the commit, never taken from the Job.
        try:
            path = model_path(settings, hub.repo, revision) if hub and revision else ""
        except ValueError as error:
            failure = (Reason.VERIFICATION_FAILED, f"Job {job_name}: {error}")
            return WeightsState(False, failure, stalled=failure)
    if not path:
        failure = (Reason.VERIFICATION_FAILED, f"Job {job_name} succeeded but reported no revision")
        return WeightsState(False, failure, stalled=failure)
    size = outcome.result.bytes_total if outcome.result else None
    return WeightsState(
        True,
        (Reason.DOWNLOADED, f"revision {revision} verified at {path}"),
        Weights(path, revision, size_bytes=size),
        delete_jobs=[j["metadata"]["name"] for j in observed.other_jobs],
    )


def _serving_state(
    model: Model,
    observed: Observed,
    settings: OperatorSettings,
    verified: Weights | None,
    *,
    now: str,
) -> ServingState:
    """Apply the Deployment for the verified weights (else keep what it serves) and judge it."""
    serving = model.spec.serving
    unwanted_budget = (
        [(DISRUPTION_BUDGET, observed.disruption_budget["metadata"]["name"])]
        if observed.disruption_budget is not None and not wants_disruption_budget(serving)
        else []
    )
    if observed.ingress is not None and (serving is None or serving.service.ingress is None):
        unwanted_budget.append((INGRESS, observed.ingress["metadata"]["name"]))
    if serving is None:
        return ServingState(
            False,
            True,
            (Reason.CACHE_ONLY, "no serving: weights cached only"),
            delete=unwanted_budget,
        )
    served_path = annotation(observed.deployment, MODEL_PATH_ANNOTATION)
    served_revision = annotation(observed.deployment, REVISION_ANNOTATION) or ""
    # Prepare, then swap: until the new revision verifies, the Deployment keeps its path.
    target = verified or (Weights(served_path, served_revision) if served_path else None)
    if target is None:
        return ServingState(
            False, False, (Reason.PENDING, "waiting for verified weights"), delete=unwanted_budget
        )
    if target.lora_adapter_of is not None:
        model = model.model_copy(deep=True)
        assert model.spec.serving is not None
        model.spec.serving.lora_adapters.append(
            LoraAdapter(name=target.lora_adapter_of, finetune_job=target.lora_adapter_of)
        )
    deployment = build_deployment(
        model,
        settings=settings,
        model_path=target.path,
        revision=target.revision,
        claim_name=weights_claim_name(model),
    )
    service = build_service(model)
    children = [(deployment, observed.deployment), (service, observed.service)]
    if wants_disruption_budget(serving):
        children.append((build_disruption_budget(model), observed.disruption_budget))
    if serving.service.ingress is not None:
        children.append((build_ingress(model), observed.ingress))
    apply = [desired for desired, existing in children if _needs_apply(desired, existing)]
    previous_serving = model.status.serving
    previous_smoke = (
        previous_serving.smoke_test.to_wire()
        if previous_serving and previous_serving.smoke_test
        else None
    )
    pod_conditions, smoke_wire = smoke_test_decisions(observed, now, previous_smoke)
    smoke = SmokeTestStatus.model_validate(smoke_wire) if smoke_wire else None
    failed_smoke = any(not result.passed for result in observed.smoke_results.values())
    state = _judge_serving(model, observed, deployment, verified, smoke)
    return dataclasses.replace(
        state,
        apply=apply,
        delete=unwanted_budget,
        pod_conditions=pod_conditions,
        requeue_after=SMOKE_RETRY_SECONDS if failed_smoke else None,
    )


def _judge_serving(
    model: Model,
    observed: Observed,
    deployment: Manifest,
    verified: Weights | None,
    smoke: SmokeTestStatus | None,
) -> ServingState:
    """Serving's verdict and status, from the Deployment as it runs against ``deployment``."""
    serving = model.spec.serving
    assert serving is not None
    served_path = annotation(observed.deployment, MODEL_PATH_ANNOTATION)
    served_revision = annotation(observed.deployment, REVISION_ANNOTATION) or ""
    live = observed.deployment or {}
    live_status = live.get("status", {})
    current = not _needs_apply(deployment, observed.deployment) and live_status.get(
        "observedGeneration", 0
    ) >= live.get("metadata", {}).get("generation", 1)
    ready = int(live_status.get("readyReplicas") or 0)
    updated = int(live_status.get("updatedReplicas") or 0)
    total = int(live_status.get("replicas") or 0)
    rolled_out = current and updated == serving.replicas == total and ready >= serving.replicas
    previous_serving = model.status.serving
    previous_active = previous_serving.active_revision if previous_serving else None
    status = ServingStatus(
        replicas=total,
        ready_replicas=ready,
        updated_replicas=updated,
        endpoint=serving_endpoint(model),
        external_url=external_url(model),
        active_revision=served_revision if rolled_out else previous_active or served_revision,
        smoke_test=smoke,
    )
    if serving.replicas == 0:
        return ServingState(
            False, True, (Reason.STOPPED, "replicas is 0: serving is stopped"), status
        )
    if rolled_out:
        return ServingState(True, True, (Reason.SERVING, f"{ready}/{total} replicas ready"), status)
    problem = _serving_problem(observed)
    if problem is None and verified is not None and served_path and served_path != verified.path:
        problem = (
            Reason.ROLLING_OUT,
            f"rolling out revision {verified.revision}: {updated}/{serving.replicas} updated,"
            f" {ready} ready",
        )
    verdict = problem or (Reason.WAITING_FOR_REPLICAS, f"{ready}/{serving.replicas} replicas ready")
    stalled = verdict if verdict[0] in STALLED_REASONS else None
    # During a rollout the old pods still serve: Serving says whether any pod does.
    return ServingState(ready > 0, False, verdict, status, stalled)


def _makes_claim(model: Model) -> bool:
    """Whether the Model creates its weights claim (not a user's, not a base Model's)."""
    return needs_weights_claim(model) and model.spec.source.finetune_job is None


def _needs_sizing(model: Model, observed: Observed) -> bool:
    """Whether the claim is still to be made and its size must first be read from the hub."""
    return (
        _makes_claim(model)
        and observed.claim is None
        and model.spec.storage.size is None
        and current_resolve_job_name(model) is not None
    )


def _claim_size(model: Model, observed: Observed) -> tuple[str, str] | None:
    """The size of the claim to create and why; None while the resolve Job has not said."""
    if model.spec.storage.size is not None:
        return str(model.spec.storage.size), SPEC_SIZE
    if observed.resolve_job is None:
        return None
    outcome = download_outcome(observed.resolve_job, observed.resolve_job_pods)
    result = outcome.result
    if outcome.state != "Succeeded" or result is None or result.bytes_total is None:
        return None
    keep = model.spec.storage.keep_revisions
    commit = (result.resolved_revision or "")[:12]
    return derive_claim_size(result.bytes_total, keep), (
        f"{result.bytes_total} bytes at {commit} x {keep} revisions kept + 20%"
    )


def _sizing_state(
    model: Model, observed: Observed, settings: OperatorSettings
) -> WeightsState | None:
    """While the claim waits for its size: create or judge the resolve Job. None once it
    succeeded (the claim is created in this reconcile)."""
    job = observed.resolve_job
    if job is None:
        hub = hub_source(model)
        job = build_resolve_job(
            model,
            settings=settings,
            revision=hub.revision if hub else "",
            retry_token=retry_token(model),
        )
        verdict = (Reason.RESOLVING, f"Job {job['metadata']['name']}: sizing the weights claim")
        return WeightsState(False, verdict, create=[job])
    name = job["metadata"]["name"]
    outcome = download_outcome(job, observed.resolve_job_pods)
    if outcome.state == "Running":
        return WeightsState(False, (Reason.RESOLVING, f"Job {name}: sizing the weights claim"))
    if outcome.state == "Failed" or outcome.result is None or outcome.result.bytes_total is None:
        stalled = (
            outcome.reason or Reason.BACKOFF_LIMIT_EXCEEDED,
            f"sizing the weights claim: {outcome.message or f'Job {name} reported no size'}",
        )
        return WeightsState(False, stalled, stalled=stalled)
    return None


def _claim_to_create(model: Model, observed: Observed) -> list[Manifest]:
    """The weights claim, when the Model makes one, it does not exist yet and its size is
    known (spec.storage.size, or what the resolve Job read from the hub)."""
    if not _makes_claim(model) or observed.claim is not None or observed.config_error:
        return []
    size = _claim_size(model, observed)
    return [build_weights_claim(model, *size)] if size else []


def _placement_problem(model: Model, observed: Observed) -> Verdict | None:
    """Replicas spread over nodes that would all mount one ReadWriteOnce volume: refused
    before anything is created (a block volume attaches to one node at a time)."""
    serving = model.spec.serving
    if serving is None or serving.replicas < 2 or serving.scheduling_strategy != "spread":
        return None
    modes = (observed.claim or {}).get("spec", {}).get("accessModes") or list(
        model.spec.storage.access_modes
    )
    if "ReadWriteMany" in modes or "ReadOnlyMany" in modes:
        return None
    return (
        Reason.READ_WRITE_ONCE_MULTI_REPLICA,
        f"{serving.replicas} replicas spread over nodes cannot all attach the ReadWriteOnce"
        f" claim {weights_claim_name(model)}: set storage.accessModes to [ReadWriteMany] (on"
        " a StorageClass that offers it), schedulingStrategy binpack, or 1 replica",
    )


def _conflict_states(model: Model, observed: Observed) -> tuple[WeightsState, ServingState]:
    """Objects of the Model's children's names that are someone else's: nothing is created,
    applied or deleted, and both halves say why."""
    conflict = (
        Reason.CHILD_CONFLICT,
        f"{', '.join(observed.conflicts)} exists and is not modelfleet's: it is left as it"
        " is; rename the Model, or delete that object",
    )
    weights = WeightsState(False, conflict, stalled=conflict)
    serving = ServingState(False, False, conflict, model.status.serving, stalled=conflict)
    return weights, serving


def _conditions(
    model: Model, weights: WeightsState, serving: ServingState, now: str
) -> list[dict[str, Any]]:
    """Downloaded, Serving, Ready, Stalled and Reconciling, from the two halves' verdicts."""
    stalled = weights.stalled or serving.stalled
    ready = weights.downloaded and serving.ready and stalled is None
    conditions = [c.to_wire() for c in model.status.conditions]

    def put(type_: ConditionType, ok: bool, verdict: Verdict) -> None:
        nonlocal conditions
        conditions = set_condition(
            conditions, type_, ok, *verdict, generation=model.metadata.generation, now=now
        )

    put(ConditionType.DOWNLOADED, weights.downloaded, weights.verdict)
    put(ConditionType.SERVING, serving.ok, serving.verdict)
    blocking = stalled or (serving.verdict if weights.downloaded else weights.verdict)
    put(ConditionType.READY, ready, (Reason.READY, "weights verified") if ready else blocking)
    put(ConditionType.STALLED, stalled is not None, stalled or (Reason.READY, ""))
    put(
        ConditionType.RECONCILING,
        not ready and stalled is None,
        (Reason.READY, "") if ready or stalled else blocking,
    )
    return conditions


def _lineage(model: Model, observed: Observed) -> Lineage | None:
    """Where fine-tuned weights come from (kept when the FinetuneJob is gone)."""
    job = observed.finetune_job
    if job is None:
        return model.status.lineage
    return Lineage(
        finetune_job=job["metadata"]["name"],
        base_model=job["spec"]["baseModel"]["name"],
        base_revision=(job.get("status") or {}).get("baseRevision"),
    )


def decide(model: Model, observed: Observed, settings: OperatorSettings, now: str) -> Plan:
    """Everything one reconcile does, from the observed state alone: the children to create,
    apply or delete, the pod conditions, the status patch, the Events and when to look again."""
    base = observed.finetune_base
    if (
        model.spec.source.finetune_job is not None
        and base
        and not model.spec.storage.existing_claim
    ):
        # Fine-tuned weights live on the base Model's claim.
        model = model.model_copy(deep=True)
        model.spec.storage.existing_claim = base_claim_name(base)
    placement = _placement_problem(model, observed)
    if placement is not None:
        weights = WeightsState(False, placement, stalled=placement)
        serving = ServingState(False, False, placement, model.status.serving, stalled=placement)
        create: list[Manifest] = []
    elif observed.conflicts:
        weights, serving = _conflict_states(model, observed)
        create = []
    else:
        weights = _weights_state(model, observed, settings, now)
        serving = _serving_state(model, observed, settings, weights.verified, now=now)
        create = [*_claim_to_create(model, observed), *weights.create]
    storage, resize = storage_state(model, observed, makes_claim=_makes_claim(model))
    conditions = _conditions(model, weights, serving, now)
    status = model_status(
        model,
        conditions,
        verified=(weights.verified.path, weights.verified.revision) if weights.verified else None,
        verified_bytes=weights.verified.size_bytes if weights.verified else None,
        download=weights.download_status,
        serving=serving.status,
        storage=storage,
        lineage=_lineage(model, observed),
        now=now,
    )
    previous = model.status.to_wire()
    patch = status_patch(status, previous, not_owned=("download",))
    requeues = [weights.requeue_after, serving.requeue_after, observed.volume_check_after]
    if observed.config_error is not None:
        requeues.append(CONFIG_ERROR_RETRY_SECONDS)
    return Plan(
        create=create,
        apply=[*resize, *serving.apply],
        delete_jobs=weights.delete_jobs,
        delete=serving.delete,
        status=patch,
        events=[
            *transition_events(previous.get("conditions", []), conditions),
            *storage_events(model.status.storage, storage),
        ],
        requeue_after=min((r for r in requeues if r is not None), default=None),
        progress_only=significant(previous) == significant(without_none(patch)),
        pod_conditions=serving.pod_conditions,
    )
