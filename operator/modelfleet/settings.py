"""Operator configuration in one place: environment variables prefixed ``MODELFLEET_``."""

from __future__ import annotations

import random
from functools import lru_cache

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from pydantic_settings import BaseSettings, SettingsConfigDict

from modelfleet.api.v1alpha1.common import EnvVar, Toleration


class JobDefaults(BaseModel):
    """What every download, verify, resolve and training Job gets unless its Model or
    FinetuneJob sets its own."""

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)

    env: list[EnvVar] = Field(default_factory=list)
    """Environment, e.g. HTTPS_PROXY and NO_PROXY; a Model's variable of the same name wins."""
    node_selector: dict[str, str] = Field(default_factory=dict)
    """Node labels of the Job pods."""
    tolerations: list[Toleration] = Field(default_factory=list)
    """Taints the Job pods tolerate."""


class ChildDefaults(BaseModel):
    """The installation's defaults for the pods the operator creates (the chart's
    ``defaults``), applied where a Model or FinetuneJob is silent."""

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)

    image_pull_secrets: list[str] = Field(default_factory=list)
    """Secrets of each namespace to pull every image with (a mirrored registry)."""
    jobs: JobDefaults = Field(default_factory=JobDefaults)
    """Download, verify, resolve and training Jobs."""
    huggingface_endpoint: str | None = Field(default=None, pattern=r"^https?://[^\s]+$")
    """A Hugging Face mirror used by Models that name no ``source.huggingface.endpoint``."""


class OperatorSettings(BaseSettings):
    """What an installation may tune; the Helm chart sets these from its values."""

    model_config = SettingsConfigDict(env_prefix="MODELFLEET_", extra="ignore")

    namespaces: list[str] = Field(default_factory=list)
    """Namespaces to watch; empty watches the whole cluster."""
    downloader_image: str = "ghcr.io/modelfleet/downloader:0.1.0"
    """Image of download and verify Jobs, unless a Model names its own."""
    trainer_image: str = "ghcr.io/modelfleet/trainer:0.1.0"
    """Image of training Jobs, unless a FinetuneJob names its own."""
    vllm_image: str = "vllm/vllm-openai:v0.32.0"
    """Serving image, unless a Model names its own."""
    model_root: str = "/models"
    """Where the weights volume is mounted in every pod."""
    job_service_account: str = "modelfleet-job"
    """ServiceAccount of download and training Jobs: may patch only models/status and
    finetunejobs/status."""
    resync_seconds: float = 300.0
    """Period of the drift-detecting timer."""
    status_progress_seconds: float = Field(default=5.0, ge=0)
    """A status change that is only progress (replica counts, messages, download percentage; no
    condition changing status or reason) is written at most this often per object."""
    claim_bind_grace_seconds: float = Field(default=300.0, ge=0)
    """How long a download Job may wait for its claim to be bound before the Model shows
    ``ClaimPending``."""
    watch_timeout_seconds: int = 300
    """Server-side timeout of each watch request; the watch is then re-established."""
    request_timeout_seconds: float = 30.0
    """Client-side timeout of each API request."""
    retry_max_seconds: float = 300.0
    """Cap of the exponential backoff of failed reconciles and download retries."""
    metrics_port: int = 8080
    """Port of the Prometheus metrics endpoint."""
    health_port: int = 8081
    """Port of the liveness endpoint."""
    peering_name: str = "modelfleet"
    """Peering object that makes exactly one of several replicas act."""
    priority: int = Field(default_factory=lambda: random.randint(1, 1_000_000))
    """Peering priority; the highest acts. Random by default so that replicas never tie (kopf
    pauses every operator of a tied priority)."""
    peering_lifetime_seconds: int = Field(default=60, ge=5)
    """How long a replica's peering record counts after its last heartbeat: a standby takes over
    this long after the active replica died."""
    standalone: bool = True
    """Run without peering (one replica); the chart turns peering on for several replicas."""
    max_workers: int = 8
    """Threads that run reconciles."""
    defaults: ChildDefaults = Field(default_factory=ChildDefaults)
    """MODELFLEET_DEFAULTS, JSON: the defaults of the pods the operator creates."""


@lru_cache(maxsize=1)
def get_settings() -> OperatorSettings:
    """The settings of this process, read once from the environment."""
    return OperatorSettings()
