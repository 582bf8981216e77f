"""The ``Model`` resource: where weights come from, where they are kept, how they are served."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import ConfigDict, Field
from pydantic.config import JsonDict

from modelfleet.api.v1alpha1.common import (
    CONDITIONS_LIST_SCHEMA,
    EXTENDED_RESOURCE_PATTERN,
    REPO_ID_PATTERN,
    REVISION_PATTERN,
    SAFE_PATH_PATTERN,
    STORAGE_CLASS_PATTERN,
    TOKEN_OVER_PLAIN_HTTP_RULE,
    ApiModel,
    Condition,
    Endpoint,
    EnvVar,
    ObjectMeta,
    ObjectName,
    Quantity,
    ResourceRequirements,
    SecretKeyRef,
    Toleration,
    default_object,
)

# The Model's name becomes a label value and the stem of its Deployment, Service and Job names
# ("<name>-dl-<hash>"), which must stay DNS-1035 labels of at most 63 characters.
MODEL_NAME_MAX_LENGTH = 48


def name_rule(names: str) -> JsonDict:
    """The CEL rule on ``metadata.name`` of a kind whose name becomes ``names``."""
    return {
        "rule": f"self.metadata.name.size() <= {MODEL_NAME_MAX_LENGTH} &&"
        " self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",
        "message": f"metadata.name must be a DNS-1035 label of at most {MODEL_NAME_MAX_LENGTH}"
        f" characters (lowercase letters, digits and '-', starting with a letter): it names"
        f" {names}",
    }


# The largest weights claim the schema accepts: far above any model, far below the quantities
# (exabytes) that overflow a volume provider's arithmetic.
MAX_CLAIM_SIZE = "1Pi"


class HuggingFaceSource(ApiModel):
    """Weights from a Hugging Face Hub repository or a mirror of one."""

    model_config = ConfigDict(
        json_schema_extra={"x-kubernetes-validations": [TOKEN_OVER_PLAIN_HTTP_RULE]}
    )

    repo: str = Field(pattern=REPO_ID_PATTERN, max_length=193)
    """Repository id, e.g. "Qwen/Qwen2.5-0.5B-Instruct"."""
    revision: str = Field(default="main", pattern=REVISION_PATTERN, max_length=255)
    """Branch, tag or commit sha; resolved to a commit sha, shown in status.resolvedRevision."""
    allow_patterns: list[str] | None = Field(default=None, max_length=64)
    """Glob patterns of files to download; all files when empty."""
    ignore_patterns: list[str] | None = Field(default=None, max_length=64)
    """Glob patterns of files to skip."""
    endpoint: Endpoint | None = None
    """Hub endpoint, e.g. a mirror (the HF_ENDPOINT of huggingface_hub). Default: the public hub."""
    token_secret_ref: SecretKeyRef | None = None
    """Secret holding an access token for gated or private repositories."""


class ModelScopeSource(ApiModel):
    """Weights from a ModelScope repository."""

    repo: str = Field(pattern=REPO_ID_PATTERN, max_length=193)
    """Repository id, e.g. "qwen/Qwen2.5-0.5B-Instruct"."""
    revision: str = Field(default="master", pattern=REVISION_PATTERN, max_length=255)
    """Branch, tag or commit."""
    token_secret_ref: SecretKeyRef | None = None
    """Secret holding a ModelScope access token."""


class PvcSource(ApiModel):
    """Weights already present on a PersistentVolumeClaim (air-gapped); verified, never written."""

    claim_name: ObjectName
    """Name of the PersistentVolumeClaim in the Model's namespace."""
    path: str = Field(default="/", pattern=SAFE_PATH_PATTERN, max_length=4096)
    """Directory within the volume that holds config.json and the weights."""


class FinetuneJobSource(ApiModel):
    """The output of a FinetuneJob in the same namespace."""

    name: ObjectName
    """Name of the FinetuneJob."""


class ModelSource(ApiModel):
    """Where the weights come from: exactly one of huggingface, modelscope, pvc, finetuneJob."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "[has(self.huggingface), has(self.modelscope), has(self.pvc),"
                    " has(self.finetuneJob)].exists_one(x, x)",
                    "message": "exactly one of huggingface, modelscope, pvc or finetuneJob"
                    " must be set",
                }
            ]
        }
    )

    huggingface: HuggingFaceSource | None = None
    """A Hugging Face Hub repository."""
    modelscope: ModelScopeSource | None = None
    """A ModelScope repository."""
    pvc: PvcSource | None = None
    """Weights already on a volume."""
    finetune_job: FinetuneJobSource | None = None
    """The result of a FinetuneJob."""


AccessMode = Literal["ReadWriteOnce", "ReadWriteMany", "ReadOnlyMany", "ReadWriteOncePod"]


class Storage(ApiModel):
    """The PersistentVolumeClaim that keeps the weights."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.existingClaim) || (!has(self.size) &&"
                    " !has(self.storageClassName))",
                    "message": "existingClaim cannot be combined with size or storageClassName",
                },
                {
                    "rule": "!has(self.size) || (isQuantity(string(self.size)) &&"
                    " quantity(string(self.size)).isGreaterThan(quantity('0')) &&"
                    f" quantity(string(self.size)).isLessThan(quantity('{MAX_CLAIM_SIZE}')))",
                    "message": f"size must be above 0 and below {MAX_CLAIM_SIZE}",
                    "fieldPath": ".size",
                },
                {
                    # A transition rule (oldSelf): a claim can grow, never shrink.
                    "rule": "!has(self.size) || !has(oldSelf.size)"
                    " || !isQuantity(string(self.size)) || !isQuantity(string(oldSelf.size))"
                    " || quantity(string(self.size)).compareTo(quantity(string(oldSelf.size)))"
                    " >= 0",
                    "message": "size cannot shrink: a claim can only grow",
                    "fieldPath": ".size",
                },
            ]
        }
    )

    size: Quantity | None = None
    """Claim size, e.g. "40Gi"; when omitted, the repository's file sizes times keepRevisions
    plus 20 % headroom, read from the hub before the claim is created. Raising it expands the
    claim where its StorageClass allows expansion; it cannot shrink."""
    storage_class_name: str | None = Field(
        default=None, max_length=253, pattern=STORAGE_CLASS_PATTERN
    )
    """StorageClass of the claim; the cluster default when omitted."""
    access_modes: list[AccessMode] = Field(default=["ReadWriteOnce"], min_length=1, max_length=4)
    """Access modes. Replicas spread over several nodes need ReadWriteMany."""
    existing_claim: ObjectName | None = None
    """Use this existing claim instead of creating one."""
    retain_on_delete: bool = False
    """Keep the claim (and the weights) when the Model is deleted."""
    keep_revisions: int = Field(default=2, ge=1, le=100)
    """How many downloaded revisions to keep on the volume, the serving one included."""


class Backoff(ApiModel):
    """Exponential backoff between download attempts."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.initialSeconds <= self.maxSeconds",
                    "message": "initialSeconds must not exceed maxSeconds",
                }
            ]
        }
    )

    initial_seconds: int = Field(default=1, ge=1, le=3600)
    """Delay before the first retry; doubled each time (1s, 2s, 4s...)."""
    max_seconds: int = Field(default=300, ge=1, le=86400)
    """Upper bound of the delay."""


class Download(ApiModel):
    """How the download Job runs."""

    retries: int = Field(default=5, ge=0, le=100)
    """Attempts after the first, for failures that may heal; the Job's backoffLimit."""
    backoff: Backoff = Field(default_factory=Backoff, json_schema_extra=default_object(Backoff))
    """Backoff between attempts inside the downloader."""
    active_deadline_seconds: int | None = Field(default=None, ge=1)
    """Deadline for the whole download Job."""
    stall_timeout_seconds: int = Field(default=300, ge=5, le=86400)
    """An attempt that receives no bytes for this long is aborted and retried."""
    verify: Literal["sha256", "size", "none"] = "sha256"
    """Integrity check of the files: sha256 against the hub's hashes, size only, or none."""
    image: str | None = Field(default=None, min_length=1, max_length=1024)
    """Downloader image; the operator's default when omitted."""
    resources: ResourceRequirements | None = None
    """Resources of the download container."""


class Gpu(ApiModel):
    """GPUs each serving replica requests."""

    count: int = Field(default=1, ge=0, le=64)
    """GPUs per replica; 0 runs without an accelerator."""
    resource_name: str = Field(default="nvidia.com/gpu", pattern=EXTENDED_RESOURCE_PATTERN)
    """Extended resource name of the GPU."""


class Rollout(ApiModel):
    """Rolling update of the serving Deployment."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.maxSurge > 0 || self.maxUnavailable > 0",
                    "message": "maxSurge and maxUnavailable cannot both be 0",
                }
            ]
        }
    )

    max_surge: int = Field(default=1, ge=0, le=1000)
    """Extra pods during a rollout (needs spare GPUs for them)."""
    max_unavailable: int = Field(default=0, ge=0, le=1000)
    """Pods that may be down during a rollout; on a full cluster, trades capacity for progress."""
    progress_deadline_seconds: int = Field(default=900, ge=30, le=86400)
    """How long new pods may take to become Ready before the Model reports RolloutStalled."""


class LoraAdapter(ApiModel):
    """A LoRA adapter served beside the base weights (vLLM --lora-modules)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.path) != has(self.finetuneJob)",
                    "message": "exactly one of path or finetuneJob must be set",
                }
            ]
        }
    )

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
    """Name clients use in the "model" field of a request."""
    path: str | None = Field(default=None, pattern=SAFE_PATH_PATTERN, max_length=4096)
    """Adapter directory on the Model's volume."""
    finetune_job: ObjectName | None = None
    """A FinetuneJob whose lora/ output is the adapter."""


class ServiceSpec(ApiModel):
    """The Service in front of the serving pods."""

    type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = "ClusterIP"
    """Service type."""
    port: int = Field(default=8000, ge=1, le=65535)
    """Port of the OpenAI-compatible API."""


class Serving(ApiModel):
    """How the weights are served. Leave out to only cache the weights."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.tensorParallelSize) || self.gpu.count == 0 ||"
                    " self.gpu.count % self.tensorParallelSize == 0",
                    "message": "tensorParallelSize must divide gpu.count",
                    "fieldPath": ".tensorParallelSize",
                },
                {
                    "rule": "!has(self.tensorParallelSize) || self.tensorParallelSize <= 1 ||"
                    " self.gpu.count > 0",
                    "message": "tensorParallelSize above 1 needs gpu.count above 0",
                    "fieldPath": ".tensorParallelSize",
                },
            ]
        }
    )

    engine: Literal["vllm"] = "vllm"
    """Serving engine."""
    image: str | None = Field(default=None, min_length=1, max_length=1024)
    """Engine image; the operator's pinned vLLM image when omitted."""
    replicas: int = Field(default=1, ge=0, le=1000)
    """Serving replicas; 0 stops serving and keeps the weights."""
    gpu: Gpu = Field(default_factory=Gpu, json_schema_extra=default_object(Gpu))
    """GPUs per replica."""
    tensor_parallel_size: int | None = Field(default=None, ge=1, le=64)
    """vLLM --tensor-parallel-size; defaults to gpu.count."""
    max_model_len: int | None = Field(default=None, ge=1)
    """vLLM --max-model-len."""
    dtype: Literal["auto", "half", "float16", "bfloat16", "float", "float32"] = "auto"
    """vLLM --dtype."""
    served_model_name: str | None = Field(default=None, min_length=1, max_length=253)
    """Name clients use in the "model" field; defaults to the Model's name."""
    gpu_memory_utilization: float | None = Field(default=None, gt=0, le=1)
    """vLLM --gpu-memory-utilization, a fraction in (0, 1]."""
    args: list[str] = Field(default_factory=list, max_length=128)
    """Extra engine arguments appended to the command line."""
    env: list[EnvVar] = Field(default_factory=list, max_length=128)
    """Extra environment variables of the engine container."""
    resources: ResourceRequirements | None = None
    """CPU and memory of the engine container; the GPU request comes from gpu."""
    node_selector: dict[str, str] | None = None
    """Node labels the serving pods require."""
    tolerations: list[Toleration] | None = Field(default=None, max_length=64)
    """Tolerations of the serving pods."""
    affinity: dict[str, Any] | None = Field(
        default=None,
        json_schema_extra={"type": "object", "x-kubernetes-preserve-unknown-fields": True},
    )
    """Affinity of the serving pods, as in a Pod spec; combined with schedulingStrategy."""
    scheduling_strategy: Literal["spread", "binpack"] | None = None
    """spread puts replicas on different nodes; binpack packs them onto as few nodes as possible."""
    rollout: Rollout = Field(default_factory=Rollout, json_schema_extra=default_object(Rollout))
    """Rolling update settings."""
    lora_adapters: list[LoraAdapter] = Field(default_factory=list, max_length=32)
    """LoRA adapters served beside the base model."""
    service: ServiceSpec = Field(
        default_factory=ServiceSpec, json_schema_extra=default_object(ServiceSpec)
    )
    """The Service in front of the pods."""


class ModelSpec(ApiModel):
    """Desired state of a Model."""

    source: ModelSource
    """Where the weights come from."""
    storage: Storage = Field(default_factory=Storage, json_schema_extra=default_object(Storage))
    """The volume that keeps the weights."""
    download: Download = Field(default_factory=Download, json_schema_extra=default_object(Download))
    """How weights are downloaded."""
    serving: Serving | None = None
    """How the weights are served; leave out to only cache them."""


DownloadPhase = Literal["Pending", "Downloading", "Verifying", "Succeeded", "Failed"]


class DownloadStatus(ApiModel):
    """Progress of the current or last download, written live by the download Job."""

    phase: DownloadPhase | None = None
    """Pending, Downloading, Verifying, Succeeded or Failed."""
    revision: str | None = None
    """The commit sha this download is for."""
    bytes_done: int | None = None
    """Bytes present and verified so far."""
    bytes_total: int | None = None
    """Bytes of all files selected for download."""
    files_done: int | None = None
    """Files complete."""
    files_total: int | None = None
    """Files selected for download."""
    attempts: int | None = None
    """Attempts made, this one included."""
    last_error: str | None = None
    """The last error, with its typed reason."""
    start_time: datetime | None = None
    """When the download Job started."""
    completion_time: datetime | None = None
    """When it finished."""


class SmokeTestStatus(ApiModel):
    """The latest smoke completion the operator asked of a new serving pod."""

    pod: str | None = None
    """The pod that was asked."""
    revision: str | None = None
    """The revision that pod serves."""
    passed: bool | None = None
    """Whether it answered with tokens."""
    message: str | None = None
    """What it answered, or the engine's error."""
    time_to_first_token_seconds: float | None = None
    """Seconds from the request to the first streamed token."""
    tokens_per_second: float | None = None
    """Completion tokens per second of the request."""
    tested_at: datetime | None = None
    """When it was asked."""


class ServingStatus(ApiModel):
    """Observed state of the serving Deployment."""

    replicas: int | None = None
    """Pods of the Deployment."""
    ready_replicas: int | None = None
    """Pods passing the readiness probe."""
    updated_replicas: int | None = None
    """Pods on the current revision."""
    endpoint: str | None = None
    """In-cluster URL of the OpenAI-compatible API."""
    active_revision: str | None = None
    """Commit sha the Deployment serves: it moves once every replica runs the new revision and
    answered its smoke completion."""
    smoke_test: SmokeTestStatus | None = None
    """The latest smoke completion (each new serving pod must answer one before it is Ready)."""


class RevisionStatus(ApiModel):
    """A revision kept on the volume."""

    revision: str
    """Commit sha (or content hash for pvc and finetuneJob sources)."""
    path: str
    """Directory of the weights in the serving pods."""
    downloaded_at: datetime | None = None
    """When its manifest was written."""


class StorageStatus(ApiModel):
    """The weights claim as it is: its size, where that size comes from, and any resize."""

    claim_name: str | None = None
    """The PersistentVolumeClaim that holds the weights."""
    size: str | None = None
    """The size the claim requests."""
    capacity: str | None = None
    """The size of the volume bound to it."""
    sized_from: str | None = None
    """Why the claim has its size: spec.storage.size, or the repository's file list."""
    reason: str | None = None
    """StorageExpanding or StorageNotExpandable while spec.storage.size is above the claim."""
    message: str | None = None
    """What the reason means for this claim."""


class Lineage(ApiModel):
    """Where a fine-tuned Model comes from."""

    finetune_job: str | None = None
    """The FinetuneJob that produced the weights."""
    base_model: str | None = None
    """The Model that was fine-tuned."""
    base_revision: str | None = None
    """Commit sha of the base weights."""


class ModelSummary(ApiModel):
    """Short strings for `kubectl get` columns."""

    revision: str | None = None
    """Short commit sha."""
    progress: str | None = None
    """Download progress, e.g. "42%"."""
    replicas: str | None = None
    """Ready over desired replicas, e.g. "2/3"."""
    source: str | None = None
    """Where the weights come from: "org/name@revision", "pvc:claim/path" or "finetuneJob:name"."""


class ModelStatus(ApiModel):
    """Observed state of a Model; written by the operator (download progress by the Job)."""

    observed_generation: int | None = None
    """The metadata.generation the status reflects."""
    conditions: list[Condition] = Field(
        default_factory=list, json_schema_extra=CONDITIONS_LIST_SCHEMA
    )
    """Ready, Reconciling, Stalled, Downloaded, Serving."""
    resolved_revision: str | None = None
    """Commit sha the requested revision resolved to."""
    model_path: str | None = None
    """Content-addressed path of the weights: /models/<repo>/<sha>."""
    download: DownloadStatus | None = None
    """Progress of the current or last download."""
    serving: ServingStatus | None = None
    """Observed serving state."""
    storage: StorageStatus | None = None
    """The weights claim the Model creates: size, capacity and why."""
    revisions: list[RevisionStatus] = Field(default_factory=list)
    """Revisions kept on the volume, newest first."""
    lineage: Lineage | None = None
    """For a fine-tuned Model: its base and job."""
    summary: ModelSummary | None = None
    """Display strings for kubectl get."""


class Model(ApiModel):
    """A large language model: weights verified into a volume, optionally served by vLLM."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "x-kubernetes-validations": [name_rule("the Deployment, Service and Jobs")]
        },
    )

    api_version: str = "modelfleet.io/v1alpha1"
    kind: str = "Model"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: ModelSpec
    status: ModelStatus = Field(default_factory=ModelStatus)
