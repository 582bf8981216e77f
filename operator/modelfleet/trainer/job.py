"""The training Job's entrypoint: settings from the environment, one run, one result line."""

from __future__ import annotations

import errno
import logging
import time
import warnings
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modelfleet.conditions import Reason
from modelfleet.contracts.download import VerifyMode
from modelfleet.contracts.training import Method, TrainerSettings
from modelfleet.downloader.manifest import load_and_verify_manifest
from modelfleet.jobprogram import job_main
from modelfleet.trainer.dataset import fetched_dataset, load_dataset, tokenize_dataset
from modelfleet.trainer.errors import TrainerError
from modelfleet.trainer.meta import (
    BaseModelInfo,
    DatasetInfo,
    DeviceInfo,
    FinetuneMeta,
    HyperparametersInfo,
    Timings,
    sample_losses,
    write_meta,
)
from modelfleet.trainer.outputs import (
    LORA_DIR,
    MERGED_DIR,
    prepare_output_dir,
    save_adapter,
    save_model,
    write_output_manifest,
)
from modelfleet.trainer.progress import StatusReporter, TrainingProgress
from modelfleet.trainer.result import TrainerResult
from modelfleet.trainer.training import (
    DevicePlan,
    TrainingRun,
    attach_lora,
    is_out_of_memory,
    lazy,
    load_model,
    load_tokenizer,
    plan_device,
    train,
)

LOG = logging.getLogger("modelfleet.trainer")


def _check_base(path: Path) -> None:
    if not (path / "config.json").is_file():
        raise TrainerError(Reason.BASE_MODEL_NOT_READY, f"no config.json in base weights {path}")


def _quiet_libraries() -> None:
    # Deprecation notices of the libraries are for their callers' developers, not for the
    # user reading a training log.
    warnings.filterwarnings("ignore", category=FutureWarning)
    transformers = lazy("transformers")
    transformers.utils.logging.set_verbosity_warning()
    transformers.utils.logging.disable_progress_bar()


def _parameter_counts(model: Any) -> tuple[int, int]:
    trainable = total = 0
    for parameter in model.parameters():
        total += parameter.numel()
        if parameter.requires_grad:
            trainable += parameter.numel()
    return trainable, total


def _output_repo(settings: TrainerSettings) -> str:
    """The manifest's repo: the output's place under the model root, finetunes/<ns>/<name>."""
    if settings.status_target:
        return f"finetunes/{settings.status_target}"
    return f"finetunes/{settings.output_dir.name}"


def _hyperparameters(
    settings: TrainerSettings, targets: list[str] | str | None
) -> HyperparametersInfo:
    lora = settings.method is Method.LORA
    return HyperparametersInfo(
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        learning_rate=settings.learning_rate,
        max_seq_length=settings.max_seq_length,
        gradient_accumulation=settings.gradient_accumulation,
        warmup_ratio=settings.warmup_ratio,
        seed=settings.seed,
        lora_rank=settings.lora_rank if lora else None,
        lora_alpha=settings.lora_alpha if lora else None,
        lora_dropout=settings.lora_dropout if lora else None,
        lora_target_modules=targets,
    )


def _versions() -> dict[str, str]:
    return {name: str(lazy(name).__version__) for name in ("torch", "transformers", "peft")}


def run(settings: TrainerSettings, progress: TrainingProgress) -> TrainerResult:
    """Validate, train, save and describe the outcome; raises TrainerError."""
    started_at, started = datetime.now(UTC), time.monotonic()
    # Cheap checks first: a bad dataset fails before torch is even imported.
    if settings.dataset_repo:
        dataset = load_dataset(
            *fetched_dataset(settings.dataset_path, settings.dataset_repo, settings.dataset_file)
        )
    else:
        dataset = load_dataset(settings.dataset_path)
    _check_base(settings.model_path)
    _quiet_libraries()
    lazy("transformers").set_seed(settings.seed)
    plan: DevicePlan = plan_device(settings.method, settings.device)
    LOG.info(
        "%s fine-tuning of %s on %s (%s, %s): %d rows",
        settings.method,
        settings.model_path,
        plan.device,
        plan.name,
        plan.load_dtype,
        len(dataset.examples),
    )
    tokenizer = load_tokenizer(settings.model_path)
    examples, dropped = tokenize_dataset(dataset, tokenizer, settings.max_seq_length)
    if dropped:
        LOG.warning("%d rows have no response token within maxSeqLength: skipped", dropped)
    prepare_output_dir(settings.output_dir)
    model = load_model(settings.model_path, plan)
    targets: list[str] | str | None = None
    if settings.method is Method.LORA:
        model, targets = attach_lora(model, settings)
        LOG.info("LoRA r=%d on %s", settings.lora_rank, targets)
    trainable, total = _parameter_counts(model)
    load_seconds = time.monotonic() - started

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    result: TrainingRun = train(
        model, examples, settings=settings, plan=plan, pad_id=int(pad_id), progress=progress
    )

    saving = time.monotonic()
    outputs: dict[str, str] = {}
    if settings.method is Method.LORA:
        save_adapter(model, settings.output_dir / LORA_DIR)
        outputs["lora"] = LORA_DIR
    if settings.method is Method.FULL or settings.merge:
        merged = model.merge_and_unload() if settings.method is Method.LORA else model
        save_model(merged, tokenizer, settings.model_path, settings.output_dir / MERGED_DIR)
        outputs["mergedModel"] = MERGED_DIR
    save_seconds = time.monotonic() - saving

    write_meta(
        settings.output_dir,
        FinetuneMeta(
            finetune_job=settings.status_target,
            method=settings.method.value,
            merged=MERGED_DIR in outputs.values(),
            base_model=BaseModelInfo(
                repo=settings.base_repo,
                revision=settings.base_revision,
                path=str(settings.model_path),
            ),
            dataset=DatasetInfo(
                path=str(dataset.path),
                repo=settings.dataset_repo or None,
                revision=dataset.revision,
                sha256=dataset.sha256,
                rows=len(dataset.examples),
                trained_rows=len(examples),
                dropped_rows=dropped,
                trained_tokens=result.trained_tokens,
            ),
            hyperparameters=_hyperparameters(settings, targets),
            steps=result.steps,
            total_steps=result.total_steps,
            epochs_completed=round(result.epoch, 4),
            first_loss=result.losses[0],
            final_loss=result.losses[-1],
            best_loss=min(result.losses),
            loss_history=sample_losses(result.losses),
            trainable_parameters=trainable,
            total_parameters=total,
            timings=Timings(
                started_at=started_at,
                finished_at=datetime.now(UTC),
                load_seconds=round(load_seconds, 3),
                train_seconds=round(result.train_seconds, 3),
                save_seconds=round(save_seconds, 3),
                total_seconds=round(time.monotonic() - started, 3),
                steps_per_second=round(result.steps / max(result.train_seconds, 1e-9), 3),
            ),
            device=DeviceInfo(
                type=plan.device,
                name=plan.name,
                dtype=plan.load_dtype,
                autocast_dtype=plan.autocast_dtype,
            ),
            outputs=outputs,
            versions=_versions(),
        ),
    )
    # Manifests last: once merged_model/ has one, serving may pick it up.
    repo = _output_repo(settings)
    if LORA_DIR in outputs.values():
        write_output_manifest(settings.output_dir / LORA_DIR, repo=repo, revision=LORA_DIR)
    if MERGED_DIR in outputs.values():
        merged_dir = settings.output_dir / MERGED_DIR
        write_output_manifest(merged_dir, repo=repo, revision=MERGED_DIR)
        load_and_verify_manifest(merged_dir, VerifyMode.SIZE)
    first, final = result.losses[0], result.losses[-1]
    return TrainerResult(
        result="Succeeded",
        reason=Reason.SUCCEEDED,
        message=(
            f"{settings.method} fine-tuning: {result.steps} steps in "
            f"{result.train_seconds:.0f}s, loss {first:.4f} -> {final:.4f}"
        ),
        output_path=str(settings.output_dir),
        final_loss=final,
        steps=result.steps,
        dataset_revision=dataset.revision,
    )


def _failure(reason: Reason, message: str, progress: TrainingProgress) -> TrainerResult:
    LOG.error("failed: %s: %s", reason, message)
    snapshot = progress.snapshot()
    return TrainerResult(
        result="Failed",
        reason=reason,
        message=message,
        final_loss=snapshot.loss,
        steps=snapshot.step,
    )


def run_reporting(settings: TrainerSettings, progress: TrainingProgress) -> TrainerResult:
    """:func:`run`, with every failure turned into a typed result."""
    try:
        return run(settings, progress)
    except TrainerError as error:
        return _failure(error.reason, error.message, progress)
    except Exception as error:  # a crash must still leave a typed result behind
        if is_out_of_memory(error):
            return _failure(
                Reason.OUT_OF_MEMORY,
                f"out of memory on {settings.device or 'the device'}: lower batchSize or "
                "maxSeqLength, use method lora, or request a larger GPU",
                progress,
            )
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            return _failure(Reason.INSUFFICIENT_STORAGE, f"no space left: {error}", progress)
        LOG.exception("unexpected error")
        return _failure(
            Reason.TRAINING_FAILED, f"unexpected {type(error).__name__}: {error}"[:500], progress
        )


def _program(settings: TrainerSettings) -> TrainerResult:
    progress = TrainingProgress()
    with ExitStack() as stack:
        if settings.status_target:
            stack.enter_context(
                StatusReporter(settings.status_target, progress, settings.progress_interval)
            )
        return run_reporting(settings, progress)


def main() -> int:
    """Run the Job; return its exit code (0 ok, 1 retryable failure, 2 permanent failure)."""
    return job_main(TrainerSettings, _program)
