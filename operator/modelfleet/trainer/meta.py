"""``finetune_meta.json``: lineage, data, hyperparameters, loss and timings of one run.

Written beside ``lora/`` and ``merged_model/`` before their manifests; read by
``modelfleet finetune list`` and by whoever wants to know where a fine-tuned model came from.
"""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

META_NAME = "finetune_meta.json"
META_API_VERSION = "modelfleet.io/v1alpha1"


class _CamelModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class BaseModelInfo(_CamelModel):
    """The weights that were fine-tuned."""

    repo: str
    revision: str
    path: str


class DatasetInfo(_CamelModel):
    """The data that was trained on."""

    path: str
    repo: str | None = None
    """The huggingface dataset repository it was fetched from."""
    revision: str | None = None
    """That repository's commit sha."""
    sha256: str
    rows: int
    trained_rows: int
    dropped_rows: int
    """Rows with no response token left after truncation to maxSeqLength."""
    trained_tokens: int
    """Response tokens seen by the loss over the whole run."""


class HyperparametersInfo(_CamelModel):
    """The hyperparameters in effect."""

    epochs: float
    batch_size: int
    learning_rate: float
    max_seq_length: int
    gradient_accumulation: int
    warmup_ratio: float
    seed: int
    lora_rank: int | None = None
    lora_alpha: int | None = None
    lora_dropout: float | None = None
    lora_target_modules: list[str] | str | None = None


class Timings(_CamelModel):
    """Wall-clock time of each phase, in seconds."""

    started_at: datetime
    finished_at: datetime
    load_seconds: float
    train_seconds: float
    save_seconds: float
    total_seconds: float
    steps_per_second: float


class DeviceInfo(_CamelModel):
    """Where training ran."""

    type: str
    name: str
    dtype: str
    """dtype of the loaded base weights."""
    autocast_dtype: str | None = None


class FinetuneMeta(_CamelModel):
    """The record of a finished fine-tuning run."""

    api_version: str = META_API_VERSION
    kind: str = "FinetuneMeta"
    finetune_job: str | None = None
    """``<namespace>/<name>`` of the FinetuneJob, when run by one."""
    method: str
    merged: bool
    base_model: BaseModelInfo
    dataset: DatasetInfo
    hyperparameters: HyperparametersInfo
    steps: int
    total_steps: int
    epochs_completed: float
    first_loss: float
    final_loss: float
    best_loss: float
    loss_history: list[float] = Field(default_factory=list)
    """Loss of every optimizer step (evenly sampled down to 1000 points for long runs)."""
    trainable_parameters: int
    total_parameters: int
    timings: Timings
    device: DeviceInfo
    outputs: dict[str, str]
    """Output kind (``lora``, ``mergedModel``) to its directory name."""
    versions: dict[str, str]
    """Versions of torch, transformers and peft."""
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    def to_json(self) -> str:
        """The record as written to disk (camelCase keys)."""
        return self.model_dump_json(by_alias=True, indent=2) + "\n"


def sample_losses(losses: list[float], limit: int = 1000) -> list[float]:
    """At most ``limit`` losses, evenly spaced, always keeping the first and the last."""
    if len(losses) <= limit:
        return [round(loss, 6) for loss in losses]
    last = len(losses) - 1
    return [round(losses[round(i * last / (limit - 1))], 6) for i in range(limit)]


def write_meta(directory: Path, meta: FinetuneMeta) -> Path:
    """Write ``finetune_meta.json`` atomically (temp file, fsync, rename)."""
    target = directory / META_NAME
    fd, temp_name = tempfile.mkstemp(dir=directory, prefix=".finetune_meta.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(meta.to_json())
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp_name, 0o644)  # mkstemp creates 0600; readers may run as another user
        os.replace(temp_name, target)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return target


def load_meta(directory: Path) -> FinetuneMeta:
    """Parse the ``finetune_meta.json`` of an output directory."""
    return FinetuneMeta.model_validate_json((directory / META_NAME).read_text())
