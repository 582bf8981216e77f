"""The download Job's settings: what the operator asks of the downloader (download a revision,
or verify weights in place), written by the builders as env and read back by the Job."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import ClassVar

from pydantic import Field, SecretStr

from modelfleet.contracts.jobenv import JobEnv

MAX_LISTING_ENTRIES = 20_000
"""Entries (files and folders) one repo's listing may have; the largest model repos list a few
thousand. A longer listing is refused while it is paged in, so it is never held whole.
``MODELFLEET_MAX_LISTING_ENTRIES`` overrides it."""


class Mode(StrEnum):
    """What the Job does: fetch weights, check weights already on a volume, or only resolve a
    revision to its commit and the size of its selected files (no volume: the claim is sized
    from it)."""

    DOWNLOAD = "download"
    VERIFY = "verify"
    RESOLVE = "resolve"


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


class DownloaderSettings(JobEnv):
    """Everything the downloader reads from its environment (prefix ``MODELFLEET_``)."""

    # Read without the prefix: these are the names every Hugging Face tool understands.
    ENV_NAMES: ClassVar[dict[str, tuple[str, ...]]] = {
        "endpoint": ("HF_ENDPOINT",),
        "token": ("HF_TOKEN", "MODELSCOPE_API_TOKEN"),
    }

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
    endpoint: str | None = None
    token: SecretStr | None = None
