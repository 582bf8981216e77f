"""Configuration of the download Job: one pydantic-settings class read from the environment."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from modelfleet.downloader.listing import MAX_LISTING_ENTRIES


class Mode(StrEnum):
    """What the Job does: fetch weights, or check weights already on a volume."""

    DOWNLOAD = "download"
    VERIFY = "verify"


class Source(StrEnum):
    """Where the files come from: weights, or a FinetuneJob's dataset file."""

    HUGGINGFACE = "huggingface"
    HUGGINGFACE_DATASET = "huggingface-dataset"
    MODELSCOPE = "modelscope"
    PVC = "pvc"


class VerifyMode(StrEnum):
    """How thoroughly files are checked: content hash, size only, or not at all."""

    SHA256 = "sha256"
    SIZE = "size"
    NONE = "none"


class DownloaderSettings(BaseSettings):
    """Everything the downloader reads from its environment (prefix ``MODELFLEET_``)."""

    model_config = SettingsConfigDict(env_prefix="MODELFLEET_", extra="ignore")

    mode: Mode = Mode.DOWNLOAD
    source: Source = Source.HUGGINGFACE
    repo: str = ""
    revision: str = "main"
    model_root: Path = Path("/models")
    model_path: Path | None = None
    allow_patterns: list[str] | None = None
    ignore_patterns: list[str] | None = None
    verify: VerifyMode = VerifyMode.SHA256
    # Verify mode: refuse a directory without a valid manifest (the serving init container sets
    # this for everything the operator downloaded; a user's own pvc weights have none).
    require_manifest: bool = False
    # fsync each file before it is renamed into place; off only where durability does not
    # matter (an emptyDir, a benchmark of the network path).
    fsync: bool = True
    retries: int = Field(default=5, ge=1)
    backoff_initial_seconds: float = Field(default=1.0, ge=0)
    backoff_max_seconds: float = Field(default=300.0, ge=0)
    stall_timeout_seconds: float = Field(default=300.0, gt=0)
    keep_revisions: int = Field(default=2, ge=1)
    protected_paths: list[Path] = Field(default_factory=list)
    force: bool = False
    max_workers: int = Field(default=8, ge=1, le=64)
    # Files and folders a hub's listing may have; a longer one is refused while paged in.
    max_listing_entries: int = Field(default=MAX_LISTING_ENTRIES, ge=1)
    status_target: str | None = None
    progress_interval: float = Field(default=5.0, gt=0)
    termination_log: Path | None = None
    # Read without the prefix: these are the names every Hugging Face tool understands.
    endpoint: str | None = Field(default=None, validation_alias=AliasChoices("HF_ENDPOINT"))
    token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("HF_TOKEN", "MODELSCOPE_API_TOKEN")
    )
