"""Reconcile one Model: observe its children, decide the desired state, act, write status.

``decide`` is pure: observed state in, children to create or apply and the new status out. The
same reconcile runs for every trigger (create, update, child change, resume, timer), so a
reconcile with nothing to change writes nothing.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from modelfleet.api.v1alpha1 import Model
from modelfleet.api.v1alpha1.common import SecretKeyRef
from modelfleet.api.v1alpha1.model import HuggingFaceSource, LoraAdapter, ModelScopeSource
from modelfleet.builders.common import (
    COMPONENT_LABEL,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    MODEL_LABEL,
    MODEL_PATH_ANNOTATION,
    REVISION_ANNOTATION,
    SPEC_HASH_ANNOTATION,
)
from modelfleet.builders.download import build_download_job, build_verify_job
from modelfleet.builders.naming import (
    download_job_name,
    download_revision_key,
    finetune_model_path,
    model_path,
    pvc_model_path,
    serving_name,
    verify_job_name,
    verify_revision_key,
    weights_claim_name,
)
from modelfleet.builders.serving import (
    INIT_CONTAINER_NAME,
    SMOKE_TEST_CONDITION,
    build_deployment,
    build_service,
    serving_endpoint,
)
from modelfleet.builders.storage import build_weights_claim, needs_weights_claim
from modelfleet.conditions import (
    STALLED_REASONS,
    ConditionType,
    Reason,
    find_condition,
    set_condition,
)
from modelfleet.handlers.jobs import download_outcome
from modelfleet.kube.client import (
    DEPLOYMENT,
    FINETUNE_JOB,
    JOB,
    MODEL,
    POD,
    PVC,
    SECRET,
    SERVICE,
    STORAGE_CLASS,
    Kube,
    Manifest,
    describe_error,
    namespace_terminating,
    resource_of,
)
from modelfleet.kube.identity import JOB_IDENTITIES
from modelfleet.metrics import (
    DOWNLOAD_BYTES,
    DOWNLOAD_DURATION,
    DOWNLOAD_FAILURES,
    MODEL_CONDITIONS,
    ROLLOUT_DURATION,
)
from modelfleet.settings import OperatorSettings
from modelfleet.smoketest import SmokeResult, smoke_test

LOG = logging.getLogger(__name__)

RETRY_ANNOTATION = "modelfleet.io/retry"
DEFAULT_CLAIM_SIZE = "10Gi"
SELECTED_NODE_ANNOTATION = "volume.kubernetes.io/selected-node"


def now_text() -> str:
    """The current time as Kubernetes writes it."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Observed:
    """Everything a reconcile reads about one Model."""

    config_error: tuple[Reason, str] | None = None
    claim: Manifest | None = None
    claim_unbound: bool = False
    """The claim has no volume yet, and gets one without waiting for a pod (see
    ``claim_waits_for_volume``)."""
    job: Manifest | None = None
    job_pods: list[Manifest] = field(default_factory=list)
    other_jobs: list[Manifest] = field(default_factory=list)
    deployment: Manifest | None = None
    service: Manifest | None = None
    serving_pods: list[Manifest] = field(default_factory=list)
    finetune_job: Manifest | None = None
    finetune_base: Manifest | None = None
    smoke_results: dict[str, SmokeResult] = field(default_factory=dict)
    """Smoke completions asked of serving pods in this reconcile, by pod name."""
    conflicts: list[str] = field(default_factory=list)
    """Objects the Model would create or write that exist and are not modelfleet's."""
    shared_paths: list[str] = field(default_factory=list)
    """Revision directories other Models on the same claim serve, roll to or keep: a new
    download Job's pruning must leave them (read only when the plan starts such a Job)."""


@dataclass
class Plan:
    """What a reconcile does."""

    create: list[Manifest] = field(default_factory=list)
    apply: list[Manifest] = field(default_factory=list)
    delete_jobs: list[str] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)
    events: list[tuple[str, str, str]] = field(default_factory=list)
    """(type, reason, message) of each condition transition."""
    requeue_after: float | None = None
    progress_only: bool = False
    """The status differs from the stored one only in progress (see ``significant``)."""
    pod_conditions: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    """(pod name, condition) to set on serving pods: their smoke-test readiness gate."""


# -- identity of the current attempt --------------------------------------------------------
def retry_token(model: Model) -> str:
    """The value of the retry annotation: a new value names a new Job, a fresh attempt."""
    return model.metadata.annotations.get(RETRY_ANNOTATION, "")


def hub_source(model: Model) -> HuggingFaceSource | ModelScopeSource | None:
    """The hub the weights are downloaded from, if they are downloaded at all."""
    return model.spec.source.huggingface or model.spec.source.modelscope


def current_job_name(model: Model) -> str | None:
    """Name of the download (or verify) Job for the spec as it is now; None for fine-tunes."""
    source = model.spec.source
    if source.pvc is not None:
        return verify_job_name(model, verify_revision_key(model), retry_token(model))
    hub = hub_source(model)
    if hub is None:
        return None
    return download_job_name(model, download_revision_key(model, hub.revision), retry_token(model))


# -- observe ---------------------------------------------------------------------------------
def _secret_problem(kube: Kube, model: Model) -> tuple[Reason, str] | None:
    hub = hub_source(model)
    ref = hub.token_secret_ref if hub else None
    return None if ref is None else secret_problem(kube, model.metadata.namespace or "", ref)


def secret_problem(kube: Kube, namespace: str, ref: SecretKeyRef) -> tuple[Reason, str] | None:
    """Why the token ``ref`` names cannot be used, or None when it can."""
    secret = kube.get(SECRET, namespace, ref.name)
    if secret is None:
        return Reason.SECRET_NOT_FOUND, f'Secret "{ref.name}" not found in namespace {namespace}'
    value = secret.get("data", {}).get(ref.key)
    if not value or not base64.b64decode(value).strip():
        return (
            Reason.SECRET_KEY_NOT_FOUND,
            f'Secret "{ref.name}" has no (non-empty) key "{ref.key}"',
        )
    return None


def observe(kube: Kube, model: Model) -> Observed:
    """Read the children and references of ``model``."""
    namespace = model.metadata.namespace
    name = model.metadata.name
    observed = Observed()
    observed.config_error = _secret_problem(kube, model)
    storage_class = model.spec.storage.storage_class_name
    if (
        observed.config_error is None
        and storage_class
        and kube.get(STORAGE_CLASS, None, storage_class) is None
    ):
        observed.config_error = (
            Reason.STORAGE_CLASS_NOT_FOUND,
            f'StorageClass "{storage_class}" not found',
        )
    observed.claim = kube.get(PVC, namespace, weights_claim_name(model))
    # A claim the Model does not create (pvc source, existingClaim) must exist; a fine-tune's
    # claim is its base Model's and is judged there.
    if (
        observed.config_error is None
        and observed.claim is None
        and not needs_weights_claim(model)
        and model.spec.source.finetune_job is None
    ):
        observed.config_error = (
            Reason.CLAIM_NOT_FOUND,
            f'PersistentVolumeClaim "{weights_claim_name(model)}" not found in {namespace}',
        )
    if model.spec.source.finetune_job is not None:
        observed.finetune_job = kube.get(
            FINETUNE_JOB, namespace, model.spec.source.finetune_job.name
        )
        base = ((observed.finetune_job or {}).get("spec") or {}).get("baseModel", {}).get("name")
        if base:
            observed.finetune_base = kube.get(MODEL, namespace, base)
    job_name = current_job_name(model)
    for job in kube.list(JOB, namespace, f"{MODEL_LABEL}={name}"):  # download and verify Jobs
        if job["metadata"]["name"] == job_name:
            observed.job = job
        else:
            observed.other_jobs.append(job)
    if observed.job is not None:
        observed.job_pods = kube.list(POD, namespace, f"job-name={job_name}")
    elif observed.claim is not None and model.spec.source.finetune_job is None:
        observed.claim_unbound = claim_waits_for_volume(kube, observed.claim)
    # The claim the Model creates: one of its name that is not modelfleet's is not written into.
    owns_claim = needs_weights_claim(model) and model.spec.source.finetune_job is None
    if owns_claim and observed.claim is not None and not is_ours(observed.claim, name):
        observed.conflicts.append(f"PersistentVolumeClaim {namespace}/{weights_claim_name(model)}")
    if model.spec.serving is not None:
        observed.deployment = kube.get(DEPLOYMENT, namespace, serving_name(model))
        observed.service = kube.get(SERVICE, namespace, serving_name(model))
        # The cache holds only objects labelled as modelfleet's: where it has none, an object
        # of that name may still exist, and must not be taken over.
        for resource, kind, cached in (
            (DEPLOYMENT, "Deployment", observed.deployment),
            (SERVICE, "Service", observed.service),
        ):
            if cached is None:
                live = kube.read_live(resource, namespace, serving_name(model))
                if live is not None and not is_ours(live, name):
                    observed.conflicts.append(f"{kind} {namespace}/{serving_name(model)}")
        if observed.deployment is not None:
            observed.serving_pods = kube.list(
                POD, namespace, f"{MODEL_LABEL}={name},{COMPONENT_LABEL}=serving"
            )
            serving = model.spec.serving
            observed.smoke_results = {
                pod["metadata"]["name"]: ask_for_smoke_completion(
                    pod, serving.service.port, serving.served_model_name or name
                )
                for pod in pods_awaiting_smoke_test(observed.serving_pods, time.time())
            }
    return observed


# -- the smoke test of new serving pods -------------------------------------------------------
SMOKE_RETRY_SECONDS = 30.0
CRASH_LOOP_RESTARTS = 3
"""Engine restarts (each after a back-off) before a crash-looping pod stalls the Model."""


def _pod_condition(pod: Manifest, type_: str) -> dict[str, Any] | None:
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == type_:
            return dict(condition)
    return None


def _parse_time(text: str | None) -> float | None:
    """Seconds since the epoch of a time as Kubernetes writes it (``now_text``)."""
    if not text:
        return None
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


def pods_awaiting_smoke_test(pods: list[Manifest], now: float) -> list[Manifest]:
    """Serving pods whose engine is ready (containers ready, an address) but that are held back
    by the smoke-test readiness gate; a pod that failed it is asked again after
    SMOKE_RETRY_SECONDS. (A pod without the gate is Ready as soon as its containers are.)"""
    waiting = []
    for pod in pods:
        if pod["metadata"].get("deletionTimestamp") or not (pod.get("status") or {}).get("podIP"):
            continue
        containers = _pod_condition(pod, "ContainersReady")
        ready = _pod_condition(pod, "Ready")
        if (containers or {}).get("status") != "True" or (ready or {}).get("status") == "True":
            continue
        gate = _pod_condition(pod, SMOKE_TEST_CONDITION)
        if gate is not None and gate.get("status") == "True":
            continue
        asked = _parse_time((gate or {}).get("lastProbeTime"))
        if asked is not None and now - asked < SMOKE_RETRY_SECONDS:
            continue
        waiting.append(pod)
    return waiting


def ask_for_smoke_completion(pod: Manifest, port: int, served_name: str) -> SmokeResult:
    """One short completion from the pod itself, at its own address."""
    result = smoke_test(pod["status"]["podIP"], port, served_name)
    LOG.info("smoke test of pod %s: %s", pod["metadata"]["name"], result.message)
    return result


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


def paths_other_models_use(kube: Kube, model: Model) -> list[str]:
    """Every revision directory another Model of the namespace on the same claim serves, rolls
    to or keeps (its Deployment's model path, its modelPath, its kept revisions)."""
    claim = model.spec.storage.existing_claim or weights_claim_name(model)
    paths: set[str] = set()
    for other in kube.list(MODEL, model.metadata.namespace):
        name = other["metadata"]["name"]
        if name == model.metadata.name:
            continue
        try:
            if weights_claim_name(parse_model(other)) != claim:
                continue
        except ValidationError:
            continue  # a Model that does not parse serves nothing
        status = other.get("status") or {}
        paths.update(r["path"] for r in status.get("revisions") or [] if r.get("path"))
        if status.get("modelPath"):
            paths.add(status["modelPath"])
        served = _annotation(
            kube.get(DEPLOYMENT, model.metadata.namespace, name), MODEL_PATH_ANNOTATION
        )
        if served:
            paths.add(served)
    return sorted(paths)


def is_ours(obj: Manifest, model_name: str) -> bool:
    """Whether ``obj`` carries modelfleet's labels for this Model (a child it may write)."""
    labels = obj.get("metadata", {}).get("labels") or {}
    return labels.get(MANAGED_BY_LABEL) == MANAGED_BY and labels.get(MODEL_LABEL) == model_name


def claim_waits_for_volume(kube: Kube, claim: Manifest) -> bool:
    """Whether ``claim`` is not bound yet but will be without a pod: its StorageClass binds
    at once (``Immediate``, or no class: a static volume). A pod that mounts such a claim
    before it is bound cannot be scheduled; the scheduler retries it on every volume event in
    the cluster and posts a FailedScheduling Warning each time, so the Job waits instead."""
    if (claim.get("status") or {}).get("phase") == "Bound":
        return False
    if SELECTED_NODE_ANNOTATION in (claim["metadata"].get("annotations") or {}):
        return False  # bound for a pod that was scheduled already
    class_name = (claim.get("spec") or {}).get("storageClassName")
    storage_class = kube.get(STORAGE_CLASS, None, class_name) if class_name else None
    return (storage_class or {}).get("volumeBindingMode") != "WaitForFirstConsumer"


# -- decide ----------------------------------------------------------------------------------
def base_claim_name(base: Manifest) -> str:
    """The claim that holds a Model's weights, read from its manifest."""
    spec = base.get("spec", {})
    if "pvc" in spec.get("source", {}):
        return str(spec["source"]["pvc"]["claimName"])
    return str(
        spec.get("storage", {}).get("existingClaim") or f"{base['metadata']['name']}-weights"
    )


def _annotation(obj: Manifest | None, key: str) -> str | None:
    if obj is None:
        return None
    value = obj.get("metadata", {}).get("annotations", {}).get(key)
    return str(value) if value is not None else None


def _needs_apply(desired: Manifest, existing: Manifest | None) -> bool:
    return existing is None or _annotation(existing, SPEC_HASH_ANNOTATION) != _annotation(
        desired, SPEC_HASH_ANNOTATION
    )


def _serving_problem(observed: Observed) -> tuple[Reason, str] | None:
    """A reason the serving pods cannot become Ready, read from the pods and the Deployment."""
    for pod in observed.serving_pods:
        if pod["metadata"].get("deletionTimestamp"):
            continue
        status = pod.get("status", {})
        pod_name = pod["metadata"]["name"]
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
        gate = _pod_condition(pod, SMOKE_TEST_CONDITION)
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


@dataclass(frozen=True)
class Weights:
    """Verified weights: where they are in the serving pods and which revision they are."""

    path: str
    revision: str
    lora_adapter_of: str | None = None
    """A FinetuneJob whose unmerged LoRA adapter is served on top of these (base) weights."""


Verdict = tuple[Reason, str]


@dataclass
class WeightsState:
    """What the reconcile concluded about the weights of the current spec."""

    downloaded: bool
    verdict: Verdict
    verified: Weights | None = None
    stalled: Verdict | None = None
    download_status: dict[str, Any] = field(default_factory=dict)


@dataclass
class ServingState:
    """What the reconcile concluded about serving."""

    ok: bool
    ready: bool
    verdict: Verdict
    status: dict[str, Any] | None = None
    stalled: Verdict | None = None


def _short(revision: str | None) -> str | None:
    return revision[:7] if revision else None


def _progress_text(download: dict[str, Any] | None, downloaded: bool) -> str | None:
    if downloaded:
        return "100%"
    if not download:
        return None
    total, done = download.get("bytesTotal") or 0, download.get("bytesDone") or 0
    return f"{min(100, int(done * 100 / total))}%" if total else None


def _job_to_create(model: Model, observed: Observed, settings: OperatorSettings) -> Manifest:
    """The download (or verify) Job for the spec as it is now."""
    token = retry_token(model)
    if model.spec.source.pvc is not None:
        return build_verify_job(model, settings=settings, retry_token=token)
    # The served revision, the last verified one, and whatever other Models on the same claim
    # serve or keep must survive the new Job's pruning.
    served = _annotation(observed.deployment, MODEL_PATH_ANNOTATION)
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


def _claim_wait(
    model: Model, observed: Observed, settings: OperatorSettings, plan: Plan, now: str
) -> Verdict | None:
    """Why the download Job is not created yet, if its claim is made in this reconcile or
    has no volume yet. Until ``claim_bind_grace_seconds`` the verdict is the one the Job shows
    while its pod starts, so that a claim that binds in time costs no status write of its own;
    after that it is ``ClaimPending``."""
    name = weights_claim_name(model)
    pending = (Reason.PENDING, f"Job {current_job_name(model)}: Pending")
    if observed.claim is None:
        # Made in this reconcile: look again once its reply is in the cache (a claim that
        # waits for its first pod is never updated, so no watch event would come).
        plan.requeue_after = 1.0
        return pending
    if not observed.claim_unbound:
        return None
    waited = _seconds_between(observed.claim["metadata"].get("creationTimestamp"), now) or 0.0
    if waited < settings.claim_bind_grace_seconds:
        plan.requeue_after = settings.claim_bind_grace_seconds - waited
        return pending
    class_name = (observed.claim.get("spec") or {}).get("storageClassName")
    return (
        Reason.CLAIM_PENDING,
        f'PersistentVolumeClaim "{name}" has had no volume for {waited:.0f}s'
        f" (StorageClass {class_name or 'none'}): see its events",
    )


def _weights_state(
    model: Model, observed: Observed, settings: OperatorSettings, plan: Plan, now: str
) -> WeightsState:
    """Judge the current Job (creating it when missing) and find the verified weights."""
    download_status = dict(model.status.to_wire().get("download") or {})
    if model.spec.source.finetune_job is not None:
        return _finetune_weights(model, observed, settings)
    if observed.config_error is not None:
        return WeightsState(False, observed.config_error, stalled=observed.config_error)
    if observed.job is None:
        waiting = _claim_wait(model, observed, settings, plan, now)
        if waiting is not None:
            return WeightsState(False, waiting)
        job = _job_to_create(model, observed, settings)
        plan.create.append(job)
        # What the Job will show while its pod starts, so that its start is no status change.
        return WeightsState(False, (Reason.PENDING, f"Job {job['metadata']['name']}: Pending"))
    outcome = download_outcome(observed.job, observed.job_pods)
    job_name = observed.job["metadata"]["name"]
    if outcome.state == "Running":
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
    plan.delete_jobs = [j["metadata"]["name"] for j in observed.other_jobs]
    return WeightsState(
        True,
        (Reason.DOWNLOADED, f"revision {revision} verified at {path}"),
        Weights(path, revision),
    )


def _serving_state(
    model: Model,
    observed: Observed,
    settings: OperatorSettings,
    verified: Weights | None,
    plan: Plan,
    *,
    now: str,
) -> ServingState:
    """Apply the Deployment for the verified weights (else keep what it serves) and judge it."""
    serving = model.spec.serving
    if serving is None:
        return ServingState(False, True, (Reason.CACHE_ONLY, "no serving: weights cached only"))
    served_path = _annotation(observed.deployment, MODEL_PATH_ANNOTATION)
    served_revision = _annotation(observed.deployment, REVISION_ANNOTATION) or ""
    # Prepare, then swap: until the new revision verifies, the Deployment keeps its path.
    target = verified or (Weights(served_path, served_revision) if served_path else None)
    if target is None:
        return ServingState(False, False, (Reason.PENDING, "waiting for verified weights"))
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
    for desired, existing in ((deployment, observed.deployment), (service, observed.service)):
        if _needs_apply(desired, existing):
            plan.apply.append(desired)
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
    previous_smoke = (
        previous_serving.smoke_test.to_wire()
        if previous_serving and previous_serving.smoke_test
        else None
    )
    plan.pod_conditions, smoke = smoke_test_decisions(observed, now, previous_smoke)
    if any(not result.passed for result in observed.smoke_results.values()):
        plan.requeue_after = SMOKE_RETRY_SECONDS
    status = {
        "replicas": total,
        "readyReplicas": ready,
        "updatedReplicas": updated,
        "endpoint": serving_endpoint(model),
        "activeRevision": served_revision if rolled_out else previous_active or served_revision,
        "smokeTest": smoke,
    }
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


# Which transition names the Event of a reconcile: a problem first, then what became true.
_HEADLINE_ORDER = {
    ConditionType.DOWNLOADED: 1,
    ConditionType.SERVING: 2,
    ConditionType.READY: 3,
}


def _transition_events(
    before: list[dict[str, Any]], after: list[dict[str, Any]]
) -> list[tuple[str, str, str]]:
    """(type, reason, message) of the one Event that announces a reconcile's condition
    transitions (those that changed status or reason), or none. Its reason is the headline's
    (a problem first, then Ready turning True, then Downloaded, Serving, Ready); its note names
    every transition with its reason and message, grouped by reason."""
    previous = {c["type"]: (c.get("status"), c.get("reason")) for c in before}
    grouped: dict[str, list[dict[str, Any]]] = {}
    for c in after:
        # Reconciling mirrors Ready, and a Stalled=False needs no announcement.
        if c["type"] == ConditionType.RECONCILING or (
            c["type"] == ConditionType.STALLED and c["status"] == "False"
        ):
            continue
        if previous.get(c["type"]) != (c["status"], c["reason"]):
            grouped.setdefault(c["reason"], []).append(c)
    if not grouped:
        return []

    def warning(reason: str) -> bool:
        return reason in STALLED_REASONS or reason in (Reason.UNSCHEDULABLE, Reason.CLAIM_PENDING)

    def rank(reason: str) -> tuple[int, int]:
        changed = grouped[reason]
        became_ready = any(
            c["type"] == ConditionType.READY and c["status"] == "True" for c in changed
        )
        order = min(_HEADLINE_ORDER.get(c["type"], 9) for c in changed)
        return (0 if warning(reason) else 1, 0 if became_ready else order)

    headline = min(grouped, key=rank)
    parts = []
    for reason in sorted(grouped, key=rank):
        changed = grouped[reason]
        states = ", ".join(f"{c['type']}={c['status']}" for c in changed)
        message = next((c["message"] for c in changed if c["message"]), "")
        label = states if reason == headline else f"{states} ({reason})"
        parts.append(f"{label}: {message}" if message else label)
    return [("Warning" if warning(headline) else "Normal", headline, "; ".join(parts))]


def decide(model: Model, observed: Observed, settings: OperatorSettings, now: str) -> Plan:
    """The children to create or apply and the status to write, from observed state alone."""
    plan = Plan()
    previous: dict[str, Any] = model.status.to_wire()
    base = observed.finetune_base
    if (
        model.spec.source.finetune_job is not None
        and base
        and not model.spec.storage.existing_claim
    ):
        # Fine-tuned weights live on the base Model's claim.
        model = model.model_copy(deep=True)
        model.spec.storage.existing_claim = base_claim_name(base)
    if (
        needs_weights_claim(model)
        and model.spec.source.finetune_job is None
        and observed.claim is None
        and observed.config_error is None
    ):
        plan.create.append(
            build_weights_claim(model, model.spec.storage.size or DEFAULT_CLAIM_SIZE)
        )
    if observed.conflicts:
        # Nothing is created, applied or deleted: the objects are someone else's.
        conflict = (
            Reason.CHILD_CONFLICT,
            f"{', '.join(observed.conflicts)} exists and is not modelfleet's: it is left as it"
            " is; rename the Model, or delete that object",
        )
        plan.create.clear()
        previous_serving = previous.get("serving")
        weights = WeightsState(False, conflict, stalled=conflict)
        serving = ServingState(False, False, conflict, previous_serving, stalled=conflict)
    else:
        weights = _weights_state(model, observed, settings, plan, now)
        serving = _serving_state(model, observed, settings, weights.verified, plan, now=now)
    stalled = weights.stalled or serving.stalled
    ready = weights.downloaded and serving.ready and stalled is None

    conditions: list[dict[str, Any]] = [dict(c) for c in previous.get("conditions", [])]

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

    revisions = [dict(r) for r in previous.get("revisions", [])]
    if weights.verified and all(r.get("path") != weights.verified.path for r in revisions):
        revisions.insert(
            0,
            {
                "revision": weights.verified.revision,
                "path": weights.verified.path,
                "downloadedAt": now,
            },
        )
    download = weights.download_status or dict(previous.get("download") or {})
    resolved = (
        (weights.verified.revision if weights.verified else None)
        or download.get("revision")
        or previous.get("resolvedRevision")
    )
    desired_replicas = model.spec.serving.replicas if model.spec.serving else None
    status: dict[str, Any] = {
        "observedGeneration": model.metadata.generation,
        "conditions": conditions,
        "resolvedRevision": resolved,
        "modelPath": weights.verified.path if weights.verified else previous.get("modelPath"),
        "revisions": revisions[: model.spec.storage.keep_revisions],
        "serving": serving.status,
        "summary": {
            key: value
            for key, value in {
                "revision": _short(resolved),
                "progress": _progress_text(download, weights.downloaded),
                "replicas": f"{serving.status['readyReplicas']}/{desired_replicas}"
                if serving.status is not None
                else None,
            }.items()
            # A None would be written as a deletion and never compare equal to what is stored.
            if value is not None
        },
    }
    if weights.download_status:
        status["download"] = weights.download_status
    if observed.finetune_job is not None:
        status["lineage"] = {
            "finetuneJob": observed.finetune_job["metadata"]["name"],
            "baseModel": observed.finetune_job["spec"]["baseModel"]["name"],
            "baseRevision": (observed.finetune_job.get("status") or {}).get("baseRevision"),
        }
    plan.status = {k: v for k, v in status.items() if v is not None or k in previous}
    plan.progress_only = significant(previous) == significant(_without_none(plan.status))
    plan.events = _transition_events(previous.get("conditions", []), conditions)
    if observed.config_error is not None:
        plan.requeue_after = 30.0
    return plan


def _without_none(value: Any) -> Any:
    """What a JSON merge patch of ``value`` leaves stored: keys set to None are deleted."""
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(item) for item in value]
    return value


def significant(status: dict[str, Any]) -> dict[str, Any]:
    """What in a status is more than progress: each condition's status and reason, the
    generation, the revisions and paths; not replica counts, messages or percentages."""
    serving = status.get("serving") or {}
    return {
        "conditions": sorted(
            (c.get("type"), c.get("status"), c.get("reason"), c.get("observedGeneration"))
            for c in status.get("conditions") or []
        ),
        "observedGeneration": status.get("observedGeneration"),
        "resolvedRevision": status.get("resolvedRevision"),
        "modelPath": status.get("modelPath"),
        "revisions": status.get("revisions"),
        "activeRevision": serving.get("activeRevision"),
        "endpoint": serving.get("endpoint"),
        "lineage": status.get("lineage"),
        "downloadPhase": (status.get("download") or {}).get("phase"),
    }


class StatusClock:
    """When each object's status was last written, so that progress is written calmly."""

    def __init__(self) -> None:
        self._written: dict[str, float] = {}
        self._lock = threading.Lock()

    def wait(self, key: str, interval: float) -> float:
        """Seconds until a progress-only write of ``key`` is due (0: now)."""
        with self._lock:
            last = self._written.get(key)
        return 0.0 if last is None else max(0.0, last + interval - time.monotonic())

    def written(self, key: str) -> None:
        """Record a status write of ``key``."""
        with self._lock:
            self._written[key] = time.monotonic()

    def forget(self, key: str) -> None:
        """Drop a deleted object."""
        with self._lock:
            self._written.pop(key, None)


STATUS_CLOCK = StatusClock()


def status_changed(model_body: Manifest, status: dict[str, Any]) -> bool:
    """Whether merge-patching ``status`` would change what is stored."""
    current = model_body.get("status") or {}
    return any(current.get(k) != _without_none(v) for k, v in status.items())


# -- metrics ---------------------------------------------------------------------------------
def _seconds_between(start: str | None, end: str | None) -> float | None:
    began, ended = _parse_time(start), _parse_time(end)
    return None if began is None or ended is None else ended - began


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
            took = _seconds_between(download.get("startTime"), download.get("completionTime"))
            if took is not None:
                DOWNLOAD_DURATION.observe(took)
        elif downloaded.get("reason") in STALLED_REASONS:
            DOWNLOAD_FAILURES.labels(downloaded["reason"]).inc()
    serving_before = before.get(ConditionType.SERVING, {})
    if serving_before.get("reason") == Reason.ROLLING_OUT and ready.get("status") == "True":
        took = _seconds_between(
            downloaded.get("lastTransitionTime"), ready.get("lastTransitionTime")
        )
        if took is not None:
            ROLLOUT_DURATION.observe(took)


# -- act -------------------------------------------------------------------------------------
def parse_model(body: Manifest) -> Model:
    """The typed Model, or InvalidSpec."""
    return Model.model_validate(body)


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
    for pod, condition in plan.pod_conditions:
        try:
            kube.patch_pod_condition(namespace, pod, condition)
        except ApiException as error:
            if error.status != 404:  # 404: the pod went away meanwhile
                raise


def _show_write_failure(
    kube: Kube, body: Manifest, plan: Plan, error: ApiException, emit: Any
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
            emit(body, "Warning", Reason.APPLY_FAILED, message)
    except ApiException as second:
        LOG.debug("could not show the failure on %s: %s", meta["name"], describe_error(second))


def reconcile(kube: Kube, body: Manifest, settings: OperatorSettings, emit: Any) -> float | None:
    """One level-based reconcile of the Model ``body``; returns a requeue delay, if any."""
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
            emit(body, "Warning", Reason.INVALID_SPEC, message)
        return None
    observed = observe(kube, model)
    now = now_text()
    plan = decide(model, observed, settings, now)
    if any(m["kind"] == "Job" for m in plan.create) and hub_source(model) is not None:
        # Only a new download Job prunes: what other Models on the claim use is read then
        # (one list of the namespace's Models), and the plan decided again with it.
        observed.shared_paths = paths_other_models_use(kube, model)
        if observed.shared_paths:
            plan = decide(model, observed, settings, now)
    record_metrics(body, plan)
    if any(m["kind"] == "Job" for m in plan.create):
        JOB_IDENTITIES.ensure(kube, settings, meta["namespace"])
    try:
        _write_children(kube, meta["namespace"], plan)
    except ApiException as error:
        _show_write_failure(kube, body, plan, error, emit)
        raise
    requeue = plan.requeue_after
    if status_changed(body, plan.status):
        key = f"{meta['namespace']}/{meta['name']}"
        wait = STATUS_CLOCK.wait(key, settings.status_progress_seconds)
        if plan.progress_only and wait > 0:
            requeue = min(requeue or wait, wait)
        else:
            kube.patch_status(MODEL, meta["namespace"], meta["name"], plan.status)
            STATUS_CLOCK.written(key)
    for event_type, reason, message in plan.events:
        emit(body, event_type, reason, message)
    return requeue
