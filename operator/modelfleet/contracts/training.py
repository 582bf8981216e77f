"""The training Job's settings: what the operator asks of the trainer, written by the builders
as env and read back by the Job."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import Field

from modelfleet.api.v1alpha1.finetunejob import (
    BatchSize,
    Epochs,
    GradientAccumulation,
    Hyperparameters,
    LearningRate,
    LoraAlpha,
    LoraDropout,
    LoraRank,
    MaxSeqLength,
)
from modelfleet.contracts.jobenv import JobEnv

_API_DEFAULTS = Hyperparameters()


class Method(StrEnum):
    """LoRA adapters on a frozen base, or every weight trained."""

    LORA = "lora"
    FULL = "full"


class TrainerSettings(JobEnv):
    """Everything the trainer reads from its environment (prefix ``MODELFLEET_``).

    Defaults match ``FinetuneJob.spec.hyperparameters``; the operator sets every field it knows.
    """

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
    # Bounds and defaults as the API has them; the defaults only matter to a Job started by hand.
    epochs: Epochs = _API_DEFAULTS.epochs
    batch_size: BatchSize = _API_DEFAULTS.batch_size
    learning_rate: LearningRate = _API_DEFAULTS.learning_rate
    max_seq_length: MaxSeqLength = _API_DEFAULTS.max_seq_length
    lora_rank: LoraRank = _API_DEFAULTS.lora_rank
    lora_alpha: LoraAlpha = _API_DEFAULTS.lora_alpha
    lora_dropout: LoraDropout = _API_DEFAULTS.lora_dropout
    gradient_accumulation: GradientAccumulation = _API_DEFAULTS.gradient_accumulation
    warmup_ratio: float = Field(default=0.03, ge=0, lt=1)
    """Share of the optimizer steps over which the learning rate ramps up linearly."""
    merge: bool = True
    """Merge LoRA weights into merged_model/ (always written for full fine-tuning)."""
    base_repo: str = ""
    """Repository of the base weights, recorded as lineage."""
    base_revision: str = ""
    """Commit sha of the base weights, recorded as lineage."""
    logging_steps: int = Field(default=1, ge=1)
    """A log line every this many optimizer steps (and at the last one)."""
    seed: int = 42
    """Seeds weight init of adapters, dropout and the data order."""
    device: str | None = None
    """Force a torch device (``cpu``, ``cuda``); by default cuda when present."""
