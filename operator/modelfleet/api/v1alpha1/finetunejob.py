"""The ``FinetuneJob`` resource: fine-tune a Model on a dataset and promote the result."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from modelfleet.api.v1alpha1.common import (
    CONDITIONS_LIST_SCHEMA,
    DATA_KEY_PATTERN,
    REPO_ID_PATTERN,
    REVISION_PATTERN,
    SAFE_PATH_PATTERN,
    TOKEN_OVER_PLAIN_HTTP_RULE,
    ApiModel,
    Condition,
    Endpoint,
    JobPodSettings,
    ObjectMeta,
    ObjectName,
    ResourceRequirements,
    SecretKeyRef,
    default_object,
)
from modelfleet.api.v1alpha1.model import Gpu, Serving, name_rule


class BaseModelRef(ApiModel):
    """The Model to fine-tune, in the same namespace."""

    name: ObjectName
    """Name of the Model."""


# A file in a repository: relative, no "." or ".." segment, no glob character (the file is
# fetched by name: "*" would fetch the whole repository).
DATASET_FILE_PATTERN = r"^[^/*?\[\]]([^.*?\[\]]|\.[^./*?\[\]])*$"


class PvcDataset(ApiModel):
    """A dataset file on a PersistentVolumeClaim."""

    claim_name: ObjectName
    """Name of the claim."""
    path: str = Field(pattern=SAFE_PATH_PATTERN, max_length=4096)
    """Path of the JSON or JSONL file within the volume."""


class ConfigMapDataset(ApiModel):
    """A dataset stored in a ConfigMap key."""

    name: ObjectName
    """Name of the ConfigMap."""
    key: str = Field(min_length=1, max_length=253, pattern=DATA_KEY_PATTERN)
    """Key holding the JSON or JSONL text."""


class HuggingFaceDataset(ApiModel):
    """A dataset file in a Hugging Face dataset repository."""

    model_config = ConfigDict(
        json_schema_extra={"x-kubernetes-validations": [TOKEN_OVER_PLAIN_HTTP_RULE]}
    )

    repo: str = Field(pattern=REPO_ID_PATTERN, max_length=193)
    """Dataset repository id."""
    revision: str = Field(default="main", pattern=REVISION_PATTERN, max_length=255)
    """Branch, tag or commit."""
    file: str = Field(min_length=1, max_length=1024, pattern=DATASET_FILE_PATTERN)
    """Path of the JSON or JSONL file in the repository (one file: no glob characters)."""
    endpoint: Endpoint | None = None
    """Hub endpoint, e.g. a mirror (the HF_ENDPOINT of huggingface_hub). Default: the public hub."""
    token_secret_ref: SecretKeyRef | None = None
    """Secret holding an access token for gated or private dataset repositories."""


class Dataset(ApiModel):
    """Training data: exactly one of pvc, configMap, huggingface. Rows are JSON objects with
    instruction/input/output, or chat messages."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "[has(self.pvc), has(self.configMap), has(self.huggingface)]"
                    ".exists_one(x, x)",
                    "message": "exactly one of pvc, configMap or huggingface must be set",
                }
            ]
        }
    )

    pvc: PvcDataset | None = None
    """A file on a volume."""
    config_map: ConfigMapDataset | None = None
    """A ConfigMap key."""
    huggingface: HuggingFaceDataset | None = None
    """A file in a Hugging Face dataset repository."""


# The bounds of each hyperparameter, shared with the trainer's settings.
Epochs = Annotated[float, Field(gt=0, le=1000)]
BatchSize = Annotated[int, Field(ge=1, le=4096)]
LearningRate = Annotated[float, Field(gt=0, le=1)]
MaxSeqLength = Annotated[int, Field(ge=8, le=1048576)]
LoraRank = Annotated[int, Field(ge=1, le=1024)]
LoraAlpha = Annotated[int, Field(ge=1, le=4096)]
LoraDropout = Annotated[float, Field(ge=0, lt=1)]
GradientAccumulation = Annotated[int, Field(ge=1, le=1024)]


class Hyperparameters(ApiModel):
    """Training hyperparameters."""

    epochs: Epochs = 3
    """Passes over the dataset."""
    batch_size: BatchSize = 4
    """Rows per device per step."""
    learning_rate: LearningRate = 2e-4
    """Peak learning rate."""
    max_seq_length: MaxSeqLength = 1024
    """Longer rows are truncated."""
    lora_rank: LoraRank = 16
    """LoRA rank r."""
    lora_alpha: LoraAlpha = 32
    """LoRA scaling alpha."""
    lora_dropout: LoraDropout = 0.05
    """Dropout on the LoRA layers."""
    gradient_accumulation: GradientAccumulation = 1
    """Steps whose gradients are summed before an optimizer step."""


class Promote(ApiModel):
    """On success, create or update this Model with source.finetuneJob."""

    model_name: str = Field(min_length=1, max_length=48, pattern=r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
    """Name of the Model to create or update."""
    serving: Serving | None = None
    """Serving settings of a Model that does not exist yet; an existing Model keeps its own."""


class FinetuneJobSpec(JobPodSettings):
    """Desired fine-tuning run. Immutable once created: delete and re-create to retrain."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self == oldSelf",
                    "message": "spec is immutable once created; delete and re-create the"
                    " FinetuneJob to train again",
                }
            ]
        }
    )

    base_model: BaseModelRef
    """The Model whose weights are fine-tuned; it must be Downloaded."""
    dataset: Dataset
    """Training data."""
    method: Literal["lora", "full"] = "lora"
    """LoRA adapters or full fine-tuning."""
    hyperparameters: Hyperparameters = Field(
        default_factory=Hyperparameters, json_schema_extra=default_object(Hyperparameters)
    )
    """Training hyperparameters."""
    merge: bool = True
    """Merge LoRA weights into merged_model/ (what serving prefers)."""
    gpu: Gpu = Field(default_factory=Gpu, json_schema_extra=default_object(Gpu))
    """GPUs for the training pod."""
    resources: ResourceRequirements | None = None
    """CPU and memory of the training container."""
    image: str | None = Field(default=None, min_length=1, max_length=1024)
    """Trainer image; the operator's default when omitted."""
    retries: int = Field(default=1, ge=0, le=20)
    """Retries of a failed training pod (the Job's backoffLimit)."""
    active_deadline_seconds: int | None = Field(default=None, ge=1)
    """Deadline of the training Job."""
    promote: Promote | None = None
    """Serve the result through a Model when training succeeds."""


class TrainingProgress(ApiModel):
    """Live progress, written by the training Job."""

    epoch: float | None = None
    """Current epoch (fractional)."""
    step: int | None = None
    """Optimizer steps done."""
    total_steps: int | None = None
    """Optimizer steps in the run."""
    loss: float | None = None
    """Training loss at the last logging step."""
    percent: int | None = None
    """step / totalSteps, in percent."""
    eta_seconds: int | None = None
    """Estimated seconds to completion."""


class FinetuneSummary(ApiModel):
    """Short strings for `kubectl get` columns."""

    status: str | None = None
    """Pending, Running, Succeeded or Failed."""
    promoted: str | None = None
    """The Model that serves the result, once promoted."""


class FinetuneJobStatus(ApiModel):
    """Observed state of a FinetuneJob."""

    observed_generation: int | None = None
    """The metadata.generation the status reflects."""
    conditions: list[Condition] = Field(
        default_factory=list, json_schema_extra=CONDITIONS_LIST_SCHEMA
    )
    """Running, Succeeded, Failed, Ready, Reconciling, Stalled."""
    progress: TrainingProgress | None = None
    """Live training progress."""
    output_path: str | None = None
    """Directory of the result: merged_model/, lora/ and finetune_meta.json."""
    base_revision: str | None = None
    """Commit sha of the base weights."""
    dataset_revision: str | None = None
    """Commit sha of a huggingface dataset, once the training Job fetched it."""
    start_time: datetime | None = None
    """When training started."""
    completion_time: datetime | None = None
    """When training finished."""
    summary: FinetuneSummary | None = None
    """Display strings for kubectl get."""


class FinetuneJob(ApiModel):
    """A fine-tuning run of a Model on a dataset, optionally promoted into serving."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "x-kubernetes-validations": [name_rule("the training Job and a label value")]
        },
    )

    api_version: str = "modelfleet.io/v1alpha1"
    kind: str = "FinetuneJob"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: FinetuneJobSpec
    status: FinetuneJobStatus = Field(default_factory=FinetuneJobStatus)
