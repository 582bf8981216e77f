"""What a Model's reconcile reads: its references (Secret, StorageClass, claim, FinetuneJob),
its children from the watch cache, and a smoke completion from each new serving pod."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from pydantic import ValidationError

from modelfleet.api.v1alpha1 import Model
from modelfleet.api.v1alpha1.model import HuggingFaceSource, ModelScopeSource
from modelfleet.builders.common import (
    COMPONENT_LABEL,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    MODEL_LABEL,
    MODEL_PATH_ANNOTATION,
)
from modelfleet.builders.naming import (
    download_job_name,
    download_revision_key,
    resolve_job_name,
    serving_name,
    verify_job_name,
    verify_revision_key,
    weights_claim_name,
)
from modelfleet.builders.serving import SMOKE_TEST_CONDITION, wants_disruption_budget
from modelfleet.builders.storage import claim_request, needs_weights_claim, quantity_above
from modelfleet.conditions import Reason
from modelfleet.kube.client import (
    DEPLOYMENT,
    DISRUPTION_BUDGET,
    FINETUNE_JOB,
    INGRESS,
    JOB,
    MODEL,
    POD,
    PVC,
    SERVICE,
    STORAGE_CLASS,
    Kube,
    Manifest,
)
from modelfleet.kube.timestamps import parse_time
from modelfleet.reconcile.common import annotation, pod_condition, secret_problem
from modelfleet.smoketest import SmokeResult, smoke_test

LOG = logging.getLogger(__name__)

RETRY_ANNOTATION = "modelfleet.io/retry"

SELECTED_NODE_ANNOTATION = "volume.kubernetes.io/selected-node"

SMOKE_RETRY_SECONDS = 30.0

VOLUME_CHECK_SECONDS = 20.0
"""How long a scheduled pod may wait for its containers before its Events are read for a
volume that cannot be attached or mounted."""

VOLUME_EVENT_REASONS = ("FailedAttachVolume", "FailedMount")


@dataclass
class Observed:
    """Everything a reconcile reads about one Model."""

    config_error: tuple[Reason, str] | None = None
    claim: Manifest | None = None
    claim_unbound: bool = False
    """The claim has no volume yet, and gets one without waiting for a pod (see
    ``claim_waits_for_volume``)."""
    claim_class: Manifest | None = None
    """The claim's StorageClass, read only when spec.storage.size asks the claim to grow."""
    resolve_job: Manifest | None = None
    """The Job that sizes a claim not made yet from the repository's file list."""
    resolve_job_pods: list[Manifest] = field(default_factory=list)
    job: Manifest | None = None
    job_pods: list[Manifest] = field(default_factory=list)
    other_jobs: list[Manifest] = field(default_factory=list)
    deployment: Manifest | None = None
    service: Manifest | None = None
    disruption_budget: Manifest | None = None
    ingress: Manifest | None = None
    """The serving pods' PodDisruptionBudget, when the operator made one."""
    serving_pods: list[Manifest] = field(default_factory=list)
    finetune_job: Manifest | None = None
    finetune_base: Manifest | None = None
    smoke_results: dict[str, SmokeResult] = field(default_factory=dict)
    """Smoke completions asked of serving pods in this reconcile, by pod name."""
    conflicts: list[str] = field(default_factory=list)
    """Objects the Model would create or write that exist and are not modelfleet's."""
    volume_problems: dict[str, str] = field(default_factory=dict)
    """Pod name -> the latest FailedAttachVolume or FailedMount Event about it, of pods held
    in ContainerCreating for VOLUME_CHECK_SECONDS."""
    volume_check_after: float | None = None
    """Seconds until a pod now starting is due for that check."""
    shared_paths: list[str] = field(default_factory=list)
    """Revision directories other Models on the same claim serve, roll to or keep: a new
    download Job's pruning must leave them (read only when the plan starts such a Job)."""


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


def current_resolve_job_name(model: Model) -> str | None:
    """Name of the Job that sizes the claim from the hub; None where nothing is downloaded."""
    hub = hub_source(model)
    if hub is None or model.spec.source.pvc is not None:
        return None
    return resolve_job_name(model, download_revision_key(model, hub.revision), retry_token(model))


def _secret_problem(kube: Kube, model: Model) -> tuple[Reason, str] | None:
    hub = hub_source(model)
    ref = hub.token_secret_ref if hub else None
    return None if ref is None else secret_problem(kube, model.metadata.namespace or "", ref)


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
    resolve_name = current_resolve_job_name(model)
    for job in kube.list(JOB, namespace, f"{MODEL_LABEL}={name}"):  # download and verify Jobs
        if job["metadata"]["name"] == job_name:
            observed.job = job
        else:
            observed.other_jobs.append(job)
            if job["metadata"]["name"] == resolve_name:
                observed.resolve_job = job
    if observed.job is None and observed.claim is None and observed.resolve_job is not None:
        observed.resolve_job_pods = kube.list(POD, namespace, f"job-name={resolve_name}")
    if observed.job is not None:
        observed.job_pods = kube.list(POD, namespace, f"job-name={job_name}")
    elif observed.claim is not None and model.spec.source.finetune_job is None:
        observed.claim_unbound = claim_waits_for_volume(kube, observed.claim)
    # The claim the Model creates: one of its name that is not modelfleet's is not written into.
    owns_claim = needs_weights_claim(model) and model.spec.source.finetune_job is None
    if owns_claim and observed.claim is not None and not is_ours(observed.claim, name):
        observed.conflicts.append(f"PersistentVolumeClaim {namespace}/{weights_claim_name(model)}")
    elif owns_claim and observed.claim is not None:
        class_name = (observed.claim.get("spec") or {}).get("storageClassName")
        if class_name and quantity_above(model.spec.storage.size, claim_request(observed.claim)):
            observed.claim_class = kube.get(STORAGE_CLASS, None, class_name)
    # Read whether or not the Model serves: one left from 2 replicas or more is deleted.
    budget = kube.get(DISRUPTION_BUDGET, namespace, serving_name(model))
    observed.disruption_budget = budget if budget is not None and is_ours(budget, name) else None
    ingress = kube.get(INGRESS, namespace, serving_name(model))
    observed.ingress = ingress if ingress is not None and is_ours(ingress, name) else None
    if model.spec.serving is not None:
        observed.deployment = kube.get(DEPLOYMENT, namespace, serving_name(model))
        observed.service = kube.get(SERVICE, namespace, serving_name(model))
        # The cache holds only objects labelled as modelfleet's: where it has none, an object
        # of that name may still exist, and must not be taken over.
        children = [
            (DEPLOYMENT, "Deployment", observed.deployment),
            (SERVICE, "Service", observed.service),
        ]
        if wants_disruption_budget(model.spec.serving):
            children.append((DISRUPTION_BUDGET, "PodDisruptionBudget", observed.disruption_budget))
        if model.spec.serving.service.ingress is not None:
            children.append((INGRESS, "Ingress", observed.ingress))
        for resource, kind, cached in children:
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
    check_volumes(kube, observed, [*observed.job_pods, *observed.serving_pods], time.time())
    return observed


def check_volumes(kube: Kube, observed: Observed, pods: list[Manifest], now: float) -> None:
    """Read the Events of pods held before their containers start: a volume that cannot be
    attached (Multi-Attach on ReadWriteOnce storage) or mounted shows there, and nowhere in
    the pod's status."""
    for pod in pods:
        waited = seconds_creating(pod, now)
        if waited is None:
            continue
        if waited < VOLUME_CHECK_SECONDS:
            due = VOLUME_CHECK_SECONDS - waited
            observed.volume_check_after = min(observed.volume_check_after or due, due)
            continue
        name = pod["metadata"]["name"]
        events = [
            e
            for e in kube.pod_events(pod["metadata"]["namespace"], name)
            if e.get("reason") in VOLUME_EVENT_REASONS
        ]
        if events:
            latest = max(events, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
            observed.volume_problems[name] = (
                f"pod {name}: {latest['reason']}: {latest.get('message', '')}"
            )


def seconds_creating(pod: Manifest, now: float) -> float | None:
    """Seconds a scheduled pod has waited without any container started; None when it is not
    waiting so (not scheduled, started, finished or going away)."""
    status = pod.get("status") or {}
    if pod["metadata"].get("deletionTimestamp") or status.get("phase") != "Pending":
        return None
    scheduled = pod_condition(pod, "PodScheduled") or {}
    since = parse_time(scheduled.get("lastTransitionTime"))
    if scheduled.get("status") != "True" or since is None:
        return None
    containers = status.get("initContainerStatuses", []) + status.get("containerStatuses", [])
    for container in containers:
        state = container.get("state") or {}
        if "running" in state or "terminated" in state or container.get("lastState"):
            return None
    return max(0.0, now - since)


def pods_awaiting_smoke_test(pods: list[Manifest], now: float) -> list[Manifest]:
    """Serving pods whose engine is ready (containers ready, an address) but that are held back
    by the smoke-test readiness gate; a pod that failed it is asked again after
    SMOKE_RETRY_SECONDS. (A pod without the gate is Ready as soon as its containers are.)"""
    waiting = []
    for pod in pods:
        if pod["metadata"].get("deletionTimestamp") or not (pod.get("status") or {}).get("podIP"):
            continue
        containers = pod_condition(pod, "ContainersReady")
        ready = pod_condition(pod, "Ready")
        if (containers or {}).get("status") != "True" or (ready or {}).get("status") == "True":
            continue
        gate = pod_condition(pod, SMOKE_TEST_CONDITION)
        if gate is not None and gate.get("status") == "True":
            continue
        asked = parse_time((gate or {}).get("lastProbeTime"))
        if asked is not None and now - asked < SMOKE_RETRY_SECONDS:
            continue
        waiting.append(pod)
    return waiting


def ask_for_smoke_completion(pod: Manifest, port: int, served_name: str) -> SmokeResult:
    """One short completion from the pod itself, at its own address."""
    result = smoke_test(pod["status"]["podIP"], port, served_name)
    LOG.info("smoke test of pod %s: %s", pod["metadata"]["name"], result.message)
    return result


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
        served = annotation(
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


def parse_model(body: Manifest) -> Model:
    """The typed Model, or InvalidSpec."""
    return Model.model_validate(body)
