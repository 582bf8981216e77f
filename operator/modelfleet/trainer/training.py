"""The training loop: load the base, attach LoRA (or train every weight), run the optimizer.

torch, transformers and peft are imported here, and only when a function runs: importing
``modelfleet.trainer`` stays light. They are reached through ``Any`` so type checking does not
walk into them. A plain PyTorch loop (not HF ``Trainer``) keeps every optimizer step visible:
one progress record and, every ``logging_steps``, one log line per step.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import math
import random
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelfleet.conditions import Reason
from modelfleet.contracts.training import Method, TrainerSettings
from modelfleet.trainer.dataset import IGNORE_INDEX, TokenizedExample
from modelfleet.trainer.errors import TrainerError
from modelfleet.trainer.progress import TrainingProgress

LOG = logging.getLogger("modelfleet.trainer")

# Attention projections per architecture (config.model_type); anything else gets every linear
# layer. These are the modules the LoRA papers and peft's own defaults adapt.
LORA_TARGETS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(
        (
            "llama",
            "mistral",
            "mixtral",
            "qwen2",
            "qwen2_moe",
            "qwen3",
            "qwen3_moe",
            "gemma",
            "gemma2",
            "gemma3_text",
            "olmo",
            "olmo2",
            "granite",
            "starcoder2",
        ),
        ("q_proj", "k_proj", "v_proj", "o_proj"),
    ),
    "phi": ("q_proj", "k_proj", "v_proj", "dense"),
    "phi3": ("qkv_proj", "o_proj"),
    "gpt2": ("c_attn",),
    "gpt_neox": ("query_key_value",),
    "falcon": ("query_key_value",),
    "bloom": ("query_key_value",),
    "opt": ("q_proj", "k_proj", "v_proj", "out_proj"),
    "gptj": ("q_proj", "k_proj", "v_proj", "out_proj"),
}
ALL_LINEAR = "all-linear"


def lazy(module: str) -> Any:
    """Import a heavy module at the moment it is needed, typed as ``Any``."""
    return importlib.import_module(module)


@dataclass(frozen=True)
class DevicePlan:
    """Where training runs and in which precision."""

    device: str
    """torch device: ``cuda`` or ``cpu``."""
    name: str
    """Human-readable accelerator name."""
    load_dtype: str
    """dtype the base weights are loaded in."""
    autocast_dtype: str | None
    """dtype of autocast regions, None for plain float32."""


def plan_device(method: Method, requested: str | None = None) -> DevicePlan:
    """CUDA with bf16 autocast when present (bf16-capable), else CPU in float32.

    LoRA loads the frozen base in bf16 on such a GPU (its adapters stay float32); full
    fine-tuning keeps float32 master weights so AdamW updates are not lost to bf16 rounding.
    """
    torch = lazy("torch")
    device = requested or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        name = str(torch.cuda.get_device_name(0))
        if torch.cuda.is_bf16_supported():
            load = "bfloat16" if method is Method.LORA else "float32"
            return DevicePlan(device, name, load, "bfloat16")
        return DevicePlan(device, name, "float32", None)
    return DevicePlan(device, "cpu", "float32", None)


def _dtype_kwargs(dtype: Any) -> dict[str, Any]:
    transformers = lazy("transformers")
    major, minor = (int(part) for part in transformers.__version__.split(".")[:2])
    # transformers 4.56 renamed torch_dtype to dtype; the old name warns from then on.
    return {"dtype": dtype} if (major, minor) >= (4, 56) else {"torch_dtype": dtype}


def load_tokenizer(model_path: Path) -> Any:
    """The base model's tokenizer; a pad token is borrowed from EOS when it has none."""
    transformers = lazy("transformers")
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(model_path))
    if tokenizer.pad_token_id is None and tokenizer.eos_token_id is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(model_path: Path, plan: DevicePlan) -> Any:
    """The base causal LM on ``plan.device`` in ``plan.load_dtype``."""
    torch = lazy("torch")
    transformers = lazy("transformers")
    # Straight onto the GPU (through accelerate) rather than a full copy in host memory first.
    placement = {"device_map": plan.device} if plan.device != "cpu" else {}
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(model_path), **_dtype_kwargs(getattr(torch, plan.load_dtype)), **placement
    )
    model.config.use_cache = False
    return model.to(plan.device)


def lora_target_modules(model: Any) -> list[str] | str:
    """The per-architecture attention projections present in ``model``, else all-linear."""
    wanted = LORA_TARGETS.get(str(getattr(model.config, "model_type", "")), ())
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    targets = [name for name in wanted if name in present]
    return targets or ALL_LINEAR


def attach_lora(model: Any, settings: TrainerSettings) -> tuple[Any, list[str] | str]:
    """Wrap ``model`` with fresh LoRA adapters; only they are trainable afterwards."""
    peft = lazy("peft")
    targets = lora_target_modules(model)
    config = peft.LoraConfig(
        r=settings.lora_rank,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=targets,
        bias="none",
        task_type="CAUSAL_LM",
    )
    return peft.get_peft_model(model, config), targets


@dataclass(frozen=True)
class StepPlan:
    """How many micro-batches and optimizer steps the run takes."""

    micro_batches_per_epoch: int
    steps_per_epoch: int
    total_steps: int


def plan_steps(rows: int, batch_size: int, accumulation: int, epochs: float) -> StepPlan:
    """Optimizer steps of a run; the last step of an epoch may accumulate fewer batches."""
    micro = math.ceil(rows / batch_size)
    per_epoch = math.ceil(micro / accumulation)
    return StepPlan(micro, per_epoch, max(1, math.ceil(epochs * per_epoch)))


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warmup to the peak over ``warmup`` steps, then linear decay towards zero.

    Shifted by one so that no step runs with a learning rate of exactly zero.
    """
    if step < warmup:
        return (step + 1) / (warmup + 1)
    return max(0.0, (total - step) / max(1, total - warmup))


def format_lr(value: float) -> str:
    """``1.9e-4`` rather than ``1.9e-04``."""
    return re.sub(r"e([+-])0*(\d)", r"e\1\2", f"{value:.1e}")


def is_out_of_memory(error: BaseException) -> bool:
    """True for CUDA (or host) allocation failures, whatever torch version raised them."""
    if isinstance(error, MemoryError):
        return True
    if any(cls.__name__ == "OutOfMemoryError" for cls in type(error).__mro__):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text
    )


def _collate(rows: Sequence[TokenizedExample], pad_id: int, device: str) -> dict[str, Any]:
    torch = lazy("torch")
    width = max(len(row.input_ids) for row in rows)
    ids, masks, labels = [], [], []
    for row in rows:
        pad = width - len(row.input_ids)
        ids.append(row.input_ids + [pad_id] * pad)
        masks.append([1] * len(row.input_ids) + [0] * pad)
        labels.append(row.labels + [IGNORE_INDEX] * pad)
    return {
        "input_ids": torch.tensor(ids, dtype=torch.long, device=device),
        "attention_mask": torch.tensor(masks, dtype=torch.long, device=device),
        "labels": torch.tensor(labels, dtype=torch.long, device=device),
    }


def _step_groups(
    rows: int, batch_size: int, accumulation: int, rng: random.Random
) -> Iterator[list[list[int]]]:
    """One epoch: shuffled row indices, in micro-batches grouped per optimizer step."""
    order = list(range(rows))
    rng.shuffle(order)
    micro = [order[i : i + batch_size] for i in range(0, rows, batch_size)]
    for start in range(0, len(micro), accumulation):
        yield micro[start : start + accumulation]


@dataclass
class TrainingRun:
    """What the loop did."""

    total_steps: int
    steps: int = 0
    epoch: float = 0.0
    losses: list[float] = field(default_factory=list)
    train_seconds: float = 0.0
    trained_tokens: int = 0


def train(
    model: Any,
    examples: Sequence[TokenizedExample],
    *,
    settings: TrainerSettings,
    plan: DevicePlan,
    pad_id: int,
    progress: TrainingProgress,
) -> TrainingRun:
    """Run the optimizer over ``examples``; records progress and logs after every step."""
    torch = lazy("torch")
    steps = plan_steps(
        len(examples), settings.batch_size, settings.gradient_accumulation, settings.epochs
    )
    warmup = math.ceil(settings.warmup_ratio * steps.total_steps)
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=settings.learning_rate, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, warmup, steps.total_steps)
    )
    autocast = (
        torch.autocast(device_type="cuda", dtype=getattr(torch, plan.autocast_dtype))
        if plan.autocast_dtype
        else contextlib.nullcontext()
    )
    rng = random.Random(settings.seed)
    run = TrainingRun(total_steps=steps.total_steps)
    progress.start(steps.total_steps)
    LOG.info(
        "training %d rows: %d steps (%d per epoch, batch %d x accumulation %d), warmup %d",
        len(examples),
        steps.total_steps,
        steps.steps_per_epoch,
        settings.batch_size,
        settings.gradient_accumulation,
        warmup,
    )
    model.train()
    started = time.monotonic()
    epoch_index = 0
    while run.steps < steps.total_steps:
        groups = _step_groups(
            len(examples), settings.batch_size, settings.gradient_accumulation, rng
        )
        for group_index, group in enumerate(groups):
            step_loss = 0.0
            for indices in group:
                batch = _collate([examples[i] for i in indices], pad_id, plan.device)
                with autocast:
                    loss = model(**batch).loss / len(group)
                loss.backward()
                step_loss += float(loss.detach())
                run.trained_tokens += int((batch["labels"] != IGNORE_INDEX).sum())
            torch.nn.utils.clip_grad_norm_(parameters, 1.0)
            lr = float(scheduler.get_last_lr()[0])
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            run.steps += 1
            run.epoch = epoch_index + (group_index + 1) / steps.steps_per_epoch
            if not math.isfinite(step_loss):
                raise TrainerError(
                    Reason.INVALID_SPEC,
                    f"the loss diverged at step {run.steps}: lower the learning rate",
                )
            run.losses.append(step_loss)
            progress.record_step(run.steps, run.epoch, step_loss)
            if run.steps % settings.logging_steps == 0 or run.steps == steps.total_steps:
                LOG.info(
                    "step %d/%d epoch %.2f loss %.4f lr %s",
                    run.steps,
                    steps.total_steps,
                    run.epoch,
                    step_loss,
                    format_lr(lr),
                )
            if run.steps >= steps.total_steps:
                break
        epoch_index += 1
    run.train_seconds = time.monotonic() - started
    model.eval()
    return run
