"""What a FinetuneJob's reconcile reads: its base Model, its training Job and pods, whether its
dataset can be read, and the Model it promotes into."""

from __future__ import annotations

from dataclasses import dataclass, field

from modelfleet.api.v1alpha1 import FinetuneJob
from modelfleet.builders.training import training_job_name
from modelfleet.conditions import Reason
from modelfleet.contracts.results import TrainingResult
from modelfleet.kube.client import CONFIG_MAP, JOB, MODEL, POD, PVC, Kube, Manifest
from modelfleet.reconcile.common import Verdict, secret_problem
from modelfleet.reconcile.jobs import job_outcome


@dataclass
class FinetuneObserved:
    """Everything a reconcile reads about one FinetuneJob."""

    base: Manifest | None = None
    """The base Model."""
    training: Manifest | None = None
    """The training Job of this FinetuneJob's name (maybe not its own)."""
    training_pods: list[Manifest] = field(default_factory=list)
    dataset_problem: Verdict | None = None
    """Why the dataset cannot be read yet (read only before the Job exists)."""
    promoted: Manifest | None = None
    """The Model named by ``promote.modelName``, if it exists."""


def dataset_problem(kube: Kube, job: FinetuneJob) -> Verdict | None:
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


def observe(kube: Kube, job: FinetuneJob) -> FinetuneObserved:
    """Read the base Model, the training Job (its pods once it exists, the dataset's readiness
    before) and the promoted Model."""
    namespace = job.metadata.namespace or ""
    observed = FinetuneObserved(
        base=kube.get(MODEL, namespace, job.spec.base_model.name),
        training=kube.get(JOB, namespace, training_job_name(job)),
    )
    if observed.training is None:
        observed.dataset_problem = dataset_problem(kube, job)
        return observed
    observed.training_pods = kube.list(POD, namespace, f"job-name={training_job_name(job)}")
    succeeded = job_outcome(observed.training, observed.training_pods, TrainingResult).state
    if job.spec.promote is not None and succeeded == "Succeeded":
        observed.promoted = kube.get(MODEL, namespace, job.spec.promote.model_name)
    return observed
