"""Configuration of the training Job: one pydantic-settings class read from the environment."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from modelfleet.api.v1alpha1.finetunejob import (
    BatchSize,
    Epochs,
    GradientAccumulation,
    LearningRate,
    LoraAlpha,
    LoraDropout,
    LoraRank,
    MaxSeqLength,
)


class Method(StrEnum):
    """LoRA adapters on a frozen base, or every weight trained."""

    LORA = "lora"
    FULL = "full"


class TrainerSettings(BaseSettings):
    """Everything the trainer reads from its environment (prefix ``MODELFLEET_``).

    Defaults match ``FinetuneJob.spec.hyperparameters``; the operator sets every field it knows.
    """

    model_config = SettingsConfigDict(env_prefix="MODELFLEET_", extra="ignore")

    model_path: Path
    """Base weights directory (mounted read-only)."""
    output_dir: Path
    """Where lora/, merged_model/ and finetune_meta.json go: <root>/finetunes/<ns>/<name>."""
    dataset_path: Path
    """A JSON array or JSONL file of rows; with ``dataset_repo``, the directory the Job's
    fetch-dataset container downloaded that repository's file into."""
    dataset_repo: str = ""
    """A huggingface dataset repository, fetched before training; empty for a mounted file."""
    dataset_file: str = ""
    """With ``dataset_repo``: the file's path in the repository."""
    method: Method = Method.LORA
    # Bounds as the API refuses them; the defaults only matter to a Job started by hand.
    epochs: Epochs = 3
    batch_size: BatchSize = 4
    learning_rate: LearningRate = 2e-4
    max_seq_length: MaxSeqLength = 1024
    lora_rank: LoraRank = 16
    lora_alpha: LoraAlpha = 32
    lora_dropout: LoraDropout = 0.05
    gradient_accumulation: GradientAccumulation = 1
    warmup_ratio: float = Field(default=0.03, ge=0, lt=1)
    """Share of the optimizer steps over which the learning rate ramps up linearly."""
    merge: bool = True
    """Merge LoRA weights into merged_model/ (always written for full fine-tuning)."""
    base_repo: str = ""
    """Repository of the base weights, recorded as lineage."""
    base_revision: str = ""
    """Commit sha of the base weights, recorded as lineage."""
    status_target: str | None = None
    """``<namespace>/<finetunejob name>`` whose status.progress is patched; unset: no patches."""
    progress_interval: float = Field(default=5.0, gt=0)
    """Least seconds between two status patches."""
    logging_steps: int = Field(default=1, ge=1)
    """A log line every this many optimizer steps (and at the last one)."""
    termination_log: Path | None = None
    """Where the result line goes; /dev/termination-log when writable and unset."""
    seed: int = 42
    """Seeds weight init of adapters, dropout and the data order."""
    device: str | None = None
    """Force a torch device (``cpu``, ``cuda``); by default cuda when present."""
