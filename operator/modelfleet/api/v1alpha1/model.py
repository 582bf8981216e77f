"""The ``Model`` resource: where weights come from, where they are kept, how they are served."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Field
from pydantic.config import JsonDict

from modelfleet.api.v1alpha1.common import (
    CONDITIONS_LIST_SCHEMA,
    ENV_NAME_PATTERN,
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
    JobPodSettings,
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


class Download(JobPodSettings):
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


# A label or annotation key (a "qualified name"): an optional DNS-1123 subdomain prefix and "/",
# then a name of letters, digits, "-", "_" and "." that starts and ends alphanumeric. The
# second pattern bounds the lengths (prefix 253, name 63); RE2 has no lookahead to do both.
METADATA_KEY_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
METADATA_KEY_LENGTHS_PATTERN = r"^([^/]{1,253}/)?[^/]{1,63}$"
# A label value: empty, or at most 63 letters, digits, "-", "_" and "." starting and ending
# alphanumeric.
LABEL_VALUE_PATTERN = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
# Keys of the operator's own: its prefix, and the labels and annotations it sets on serving
# pods (builders/common.py labels(), builders/serving.py). A user's key cannot replace them:
# the selector labels pick the pods of the Deployment, Service and disruption budget.
OPERATOR_PREFIX = "modelfleet.io/"
OPERATOR_POD_LABELS = (
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
)
OPERATOR_POD_ANNOTATIONS = ("kubectl.kubernetes.io/default-container",)
MAX_METADATA_ENTRIES = 64
# 64 annotations of 4 KiB stay within the API server's 256 KiB for all of an object's.
MAX_ANNOTATION_VALUE_LENGTH = 4096


def _map_schema(field: str, reserved: tuple[str, ...]) -> JsonDict:
    """Schema of a map of labels or annotations: bounded, every key well-formed, none of the
    operator's (CEL rules)."""
    quoted = ", ".join(f"'{key}'" for key in reserved)
    return {
        "maxProperties": MAX_METADATA_ENTRIES,
        "x-kubernetes-validations": [
            {
                "rule": f"self.all(k, k.matches(r'{METADATA_KEY_PATTERN}')"
                f" && k.matches(r'{METADATA_KEY_LENGTHS_PATTERN}'))",
                "message": f"every key of {field} must be a qualified name, as label and"
                " annotation keys are: an optional DNS subdomain prefix (at most 253"
                " characters) and '/', then a name of at most 63 letters, digits, '-', '_' or"
                " '.', starting and ending with a letter or digit",
            },
            {
                "rule": f"self.all(k, !k.startsWith('{OPERATOR_PREFIX}')"
                + (f" && !(k in [{quoted}])" if reserved else "")
                + ")",
                "message": f"{field} cannot set the operator's own keys ({OPERATOR_PREFIX}*"
                + "".join(f", {key}" for key in reserved)
                + ")",
            },
        ],
    }


def _keys_checked(
    field: str, reserved: tuple[str, ...]
) -> Callable[[dict[str, str]], dict[str, str]]:
    """The operator's own parse of what :func:`_map_schema` has the API server refuse."""

    def check(value: dict[str, str]) -> dict[str, str]:
        if len(value) > MAX_METADATA_ENTRIES:
            raise ValueError(f"{field} has more than {MAX_METADATA_ENTRIES} entries")
        for key in value:
            if not (
                re.fullmatch(METADATA_KEY_PATTERN, key)
                and re.fullmatch(METADATA_KEY_LENGTHS_PATTERN, key)
            ):
                raise ValueError(f"{field}: {key!r} is not a qualified name (a label key)")
            if key.startswith(OPERATOR_PREFIX) or key in reserved:
                raise ValueError(f"{field}: {key!r} is one of the operator's own keys")
        return value

    return check


LabelValue = Annotated[str, Field(max_length=63, pattern=LABEL_VALUE_PATTERN)]
AnnotationValue = Annotated[str, Field(max_length=MAX_ANNOTATION_VALUE_LENGTH)]
PodLabels = Annotated[
    dict[str, LabelValue],
    AfterValidator(_keys_checked("podLabels", OPERATOR_POD_LABELS)),
    Field(json_schema_extra=_map_schema("podLabels", OPERATOR_POD_LABELS)),
]
PodAnnotations = Annotated[
    dict[str, AnnotationValue],
    AfterValidator(_keys_checked("podAnnotations", OPERATOR_POD_ANNOTATIONS)),
    Field(json_schema_extra=_map_schema("podAnnotations", OPERATOR_POD_ANNOTATIONS)),
]
ServiceAnnotations = Annotated[
    dict[str, AnnotationValue],
    AfterValidator(_keys_checked("service.annotations", ())),
    Field(json_schema_extra=_map_schema("service.annotations", ())),
]


def _size_rule(field: str) -> JsonDict:
    """The CEL rule of a size: a quantity above 0 and below MAX_CLAIM_SIZE."""
    return {
        "x-kubernetes-validations": [
            {
                "rule": "isQuantity(string(self)) &&"
                " quantity(string(self)).isGreaterThan(quantity('0')) &&"
                f" quantity(string(self)).isLessThan(quantity('{MAX_CLAIM_SIZE}'))",
                "message": f"{field} must be above 0 and below {MAX_CLAIM_SIZE}",
            }
        ]
    }


IngressAnnotations = Annotated[
    dict[str, AnnotationValue],
    AfterValidator(_keys_checked("service.ingress.annotations", ())),
    Field(json_schema_extra=_map_schema("service.ingress.annotations", ())),
]


INGRESS_HOST_PATTERN = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


class IngressSpec(ApiModel):
    """An Ingress that exposes the OpenAI-compatible API outside the cluster, on ``host``."""

    host: str = Field(max_length=253, pattern=INGRESS_HOST_PATTERN)
    """Host name clients use, e.g. "llama.models.example.com"."""
    class_name: ObjectName | None = None
    """IngressClass; the cluster's default class when omitted."""
    tls_secret_name: ObjectName | None = None
    """A TLS Secret in the Model's namespace for ``host``: the Ingress terminates https."""
    annotations: IngressAnnotations | None = None
    """Annotations of the Ingress, e.g. an ingress controller's timeouts
    ("nginx.ingress.kubernetes.io/proxy-read-timeout": "600"); keys under modelfleet.io/ are
    the operator's."""


class ServiceSpec(ApiModel):
    """The Service in front of the serving pods."""

    type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = "ClusterIP"
    """Service type."""
    port: int = Field(default=8000, ge=1, le=65535)
    """Port of the OpenAI-compatible API."""
    annotations: ServiceAnnotations | None = None
    """Annotations of the Service, e.g. a cloud load balancer's
    ("service.beta.kubernetes.io/aws-load-balancer-internal": "true"); keys under
    modelfleet.io/ are the operator's."""
    ingress: IngressSpec | None = None
    """An Ingress to the Service for clients outside the cluster; none when omitted."""


class DisruptionBudget(ApiModel):
    """The PodDisruptionBudget of the serving pods: how many a drain or another voluntary
    eviction may take at once. Made only for 2 replicas or more (a budget over one pod either
    blocks every drain or allows everything), and deleted below that."""

    enabled: bool = True
    """Make the budget; false deletes it."""
    max_unavailable: int = Field(default=1, ge=1, le=1000)
    """Serving pods an eviction may leave unavailable, as rollout.maxUnavailable counts them
    for a rollout; at least 1, so a drain always progresses (disable the budget instead of 0).
    A pod that is not Ready (loading, crash-looping) can always be evicted."""


class ProbeTiming(ApiModel):
    """Timing of one probe of the engine's /health endpoint; an omitted field keeps the
    operator's default for that probe."""

    period_seconds: int | None = Field(default=None, ge=1, le=3600)
    """Seconds between probes."""
    failure_threshold: int | None = Field(default=None, ge=1, le=10000)
    """Failed probes in a row before the probe fails."""
    timeout_seconds: int | None = Field(default=None, ge=1, le=3600)
    """Seconds a probe waits for an answer."""


class Probes(ApiModel):
    """Timing of the engine's startup, readiness and liveness probes."""

    startup: ProbeTiming | None = None
    """Until it passes, the other probes wait. Default periodSeconds 10, failureThreshold 180,
    timeoutSeconds 5: 30 minutes to load a large model and compile its CUDA graphs; raise
    failureThreshold for larger models or slow volumes."""
    readiness: ProbeTiming | None = None
    """While it fails the pod receives no requests. Default periodSeconds 10, failureThreshold
    3, timeoutSeconds 5."""
    liveness: ProbeTiming | None = None
    """When it fails the engine is restarted, which costs a full model load. Default
    periodSeconds 15, failureThreshold 6, timeoutSeconds 10: /health answers slowly while the
    engine is saturated."""


class EnvFromReference(ApiModel):
    """A ConfigMap or Secret in the Model's namespace."""

    name: ObjectName
    """Its name."""
    optional: bool | None = None
    """Start the pod even when it does not exist."""


class EnvFromSource(ApiModel):
    """Every key of a ConfigMap or Secret as an environment variable, as in a Pod spec."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.configMapRef) != has(self.secretRef)",
                    "message": "exactly one of configMapRef or secretRef must be set",
                }
            ]
        }
    )

    config_map_ref: EnvFromReference | None = None
    """A ConfigMap."""
    secret_ref: EnvFromReference | None = None
    """A Secret."""
    prefix: str | None = Field(default=None, max_length=253, pattern=ENV_NAME_PATTERN)
    """Prepended to each key."""


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
    image_pull_secrets: list[ObjectName] | None = Field(
        default=None, max_length=16, json_schema_extra={"x-kubernetes-list-type": "set"}
    )
    """Names of Secrets in the Model's namespace to pull the engine and downloader images with;
    the installation's default (the chart's defaults.imagePullSecrets) when omitted."""
    service_account_name: ObjectName | None = None
    """ServiceAccount of the serving pods, e.g. one a cloud identity (IRSA, workload identity)
    is bound to; the namespace's default when omitted. Its API token is never mounted: serving
    pods do not call the API server."""
    priority_class_name: ObjectName | None = None
    """PriorityClass of the serving pods."""
    runtime_class_name: ObjectName | None = None
    """RuntimeClass of the serving pods, e.g. "nvidia" where the GPU runtime is not the
    node's default."""
    pod_labels: PodLabels | None = None
    """Extra labels of the serving pods (not of their selector); the operator's own
    (modelfleet.io/*, app.kubernetes.io/managed-by, name, instance, component) are refused."""
    pod_annotations: PodAnnotations | None = None
    """Extra annotations of the serving pods; modelfleet.io/* and
    kubectl.kubernetes.io/default-container are the operator's and refused."""
    env_from: list[EnvFromSource] | None = Field(default=None, max_length=16)
    """ConfigMaps and Secrets whose every key becomes an environment variable of the engine;
    a variable of env (the user's or the operator's) of the same name wins."""
    topology_spread: Literal["zone"] | None = None
    """zone spreads the replicas evenly over topology.kubernetes.io/zone, as a preference
    (whenUnsatisfiable ScheduleAnyway); beside the spread over nodes of
    schedulingStrategy spread."""
    shm_size: Quantity = Field(default="8Gi", json_schema_extra=_size_rule("shmSize"))
    """Size limit of /dev/shm, a memory-backed emptyDir counted against the pod's memory:
    NCCL and PyTorch workers put tensors there, and a container's own 64Mi breaks tensor
    parallelism."""
    tmp_size: Quantity = Field(default="16Gi", json_schema_extra=_size_rule("tmpSize"))
    """Size limit of /tmp, the engine's writable scratch disk: torch.compile and Triton
    caches of a large model reach a few GiB. The container's ephemeral-storage limit grows
    with it."""
    probes: Probes | None = None
    """Timing of the engine's startup, readiness and liveness probes."""
    termination_grace_period_seconds: int = Field(default=60, ge=10, le=86400)
    """Seconds a deleted serving pod has to finish: for the first 5 it keeps serving while its
    endpoint leaves the Service, then vLLM gets SIGTERM and drains the requests in flight."""
    disruption_budget: DisruptionBudget = Field(
        default_factory=DisruptionBudget, json_schema_extra=default_object(DisruptionBudget)
    )
    """The PodDisruptionBudget of the serving pods (2 replicas or more)."""


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
    external_url: str | None = None
    """URL of the API through the Ingress (service.ingress), for clients outside the cluster."""
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
    size_bytes: int | None = None
    """Bytes of its files on the volume."""
    last_served_at: datetime | None = None
    """When serving last moved off it to another revision."""


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
