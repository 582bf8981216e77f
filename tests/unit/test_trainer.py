"""The trainer really trains a tiny random Llama on CPU: LoRA and full, outputs that load.

Needs the ``trainer`` extra (torch, transformers, peft); the test command installs it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

from modelfleet.conditions import Reason  # noqa: E402
from modelfleet.contracts.download import VerifyMode  # noqa: E402
from modelfleet.contracts.training import TrainerSettings  # noqa: E402
from modelfleet.downloader.errors import DownloadError  # noqa: E402
from modelfleet.downloader.manifest import load_and_verify_manifest, load_manifest  # noqa: E402
from modelfleet.downloader.verify import check_file  # noqa: E402
from modelfleet.trainer import job  # noqa: E402
from modelfleet.trainer.dataset import (  # noqa: E402
    IGNORE_INDEX,
    load_dataset,
    parse_dataset_text,
    tokenize_dataset,
    tokenize_example,
)
from modelfleet.trainer.errors import TrainerError  # noqa: E402
from modelfleet.trainer.meta import load_meta  # noqa: E402
from modelfleet.trainer.progress import TrainingProgress  # noqa: E402
from modelfleet.trainer.training import is_out_of_memory, lora_target_modules  # noqa: E402
from tests.support.tinymodel import dataset_rows, write_dataset, write_tiny_llama  # noqa: E402
from tests.unit.test_trainer_dataset import recording_api_server  # noqa: E402

pytestmark = [pytest.mark.unit, pytest.mark.timeout(300)]
REPO_ROOT = Path(__file__).resolve().parents[2]
BASE_SHA = "0123456789abcdef0123456789abcdef01234567"
STEP_LINE = re.compile(r"step (\d+)/(\d+) epoch (\d+\.\d\d) loss (\d+\.\d{4}) lr \d\.\de-\d+$")


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_llama(tmp_path_factory.mktemp("base"))


@dataclass
class JobRun:
    output: Path
    dataset: Path
    returncode: int
    stderr: str
    termination: dict[str, Any]
    patches: list[dict[str, Any]]


@pytest.fixture(scope="module")
def lora_run(base: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[JobRun]:
    """``python -m modelfleet.trainer`` as the Job runs it: LoRA, 30 steps, merged."""
    root = tmp_path_factory.mktemp("lora")
    dataset = write_dataset(root / "data" / "train.jsonl", rows=40)
    output = root / "finetunes" / "team-a" / "tune"
    with recording_api_server(root) as (patches, kubeconfig):
        env = {
            "PATH": os.environ.get("PATH", ""),
            "PYTHONPATH": str(REPO_ROOT / "operator"),
            "KUBECONFIG": str(kubeconfig),
            "OMP_NUM_THREADS": "2",
            "MODELFLEET_MODEL_PATH": str(base),
            "MODELFLEET_OUTPUT_DIR": str(output),
            "MODELFLEET_DATASET_PATH": str(dataset),
            "MODELFLEET_METHOD": "lora",
            "MODELFLEET_EPOCHS": "3",
            "MODELFLEET_BATCH_SIZE": "4",
            "MODELFLEET_LEARNING_RATE": "3e-3",
            "MODELFLEET_MAX_SEQ_LENGTH": "64",
            "MODELFLEET_LORA_RANK": "8",
            "MODELFLEET_LORA_ALPHA": "16",
            "MODELFLEET_LORA_DROPOUT": "0.0",
            "MODELFLEET_MERGE": "true",
            "MODELFLEET_BASE_REPO": "test/tiny-llama",
            "MODELFLEET_BASE_REVISION": BASE_SHA,
            "MODELFLEET_STATUS_TARGET": "team-a/tune",
            # Far shorter than the 30 steps take, however fast the machine: patches mid-way.
            "MODELFLEET_PROGRESS_INTERVAL": "0.01",
            "MODELFLEET_TERMINATION_LOG": str(root / "termination-log"),
            "MODELFLEET_SEED": "0",
        }
        done = subprocess.run(
            [sys.executable, "-m", "modelfleet.trainer"],
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        termination = json.loads((root / "termination-log").read_text())
        yield JobRun(output, dataset, done.returncode, done.stderr, termination, list(patches))


def _step_losses(stderr: str) -> list[float]:
    return [float(m.group(4)) for m in map(STEP_LINE.search, stderr.splitlines()) if m]


def _logits(model_dir: Path, input_ids: Any) -> Any:
    model = transformers.AutoModelForCausalLM.from_pretrained(str(model_dir))
    with torch.no_grad():
        return model(input_ids=input_ids).logits


def test_lora_job_succeeds_logs_every_step_and_lowers_the_loss(lora_run: JobRun) -> None:
    assert lora_run.returncode == 0, lora_run.stderr[-3000:]
    assert lora_run.termination["result"] == "Succeeded"
    assert lora_run.termination["outputPath"] == str(lora_run.output)
    assert lora_run.termination["steps"] == 30
    losses = _step_losses(lora_run.stderr)
    assert len(losses) == 30
    assert statistics.mean(losses[-5:]) < losses[0]
    assert lora_run.termination["finalLoss"] == pytest.approx(losses[-1], abs=1e-4)


def test_progress_reaches_the_finetunejob_status_while_training(lora_run: JobRun) -> None:
    paths = {p["path"] for p in lora_run.patches}
    assert paths == {"/apis/modelfleet.io/v1alpha1/namespaces/team-a/finetunejobs/tune/status"}
    progress = [p["body"]["status"]["progress"] for p in lora_run.patches]
    steps = [p["step"] for p in progress]
    assert steps == sorted(steps)
    assert progress[-1]["step"] == progress[-1]["totalSteps"] == 30
    assert progress[-1]["percent"] == 100
    assert progress[-1]["epoch"] == 3.0
    assert progress[-1]["etaSeconds"] == 0
    midway = [p for p in progress if 0 < p["step"] < 30]
    assert midway, "expected patches during training, not only at the start and the end"
    assert all(p["etaSeconds"] is not None and 0 < p["percent"] < 100 for p in midway)


def test_merged_model_and_adapter_load_and_differ_from_the_base(
    lora_run: JobRun, base: Path
) -> None:
    merged_dir = lora_run.output / "merged_model"
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(merged_dir))
    input_ids = torch.tensor([tokenizer("what colour is the cat ? the cat is")["input_ids"]])
    base_logits = _logits(base, input_ids)
    merged_logits = _logits(merged_dir, input_ids)
    assert not torch.allclose(base_logits, merged_logits, atol=1e-3)

    adapted = peft.PeftModel.from_pretrained(
        transformers.AutoModelForCausalLM.from_pretrained(str(base)), str(lora_run.output / "lora")
    )
    with torch.no_grad():
        adapter_logits = adapted(input_ids=input_ids).logits
    # Merging is exact up to float rounding: serving merged_model/ equals base + adapter.
    assert torch.allclose(adapter_logits, merged_logits, atol=1e-4)
    # Config and tokenizer are the base's own files, byte for byte.
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        assert (merged_dir / name).read_bytes() == (base / name).read_bytes()


def test_finetune_meta_records_lineage_data_and_loss(lora_run: JobRun) -> None:
    meta = load_meta(lora_run.output)
    raw = json.loads((lora_run.output / "finetune_meta.json").read_text())
    assert raw["baseModel"] == {
        "repo": "test/tiny-llama",
        "revision": BASE_SHA,
        "path": meta.base_model.path,
    }
    assert meta.finetune_job == "team-a/tune"
    assert meta.method == "lora"
    assert meta.merged is True
    assert meta.dataset.sha256 == hashlib.sha256(lora_run.dataset.read_bytes()).hexdigest()
    assert (meta.dataset.rows, meta.dataset.trained_rows, meta.dataset.dropped_rows) == (40, 40, 0)
    assert raw["hyperparameters"]["loraRank"] == 8
    assert raw["hyperparameters"]["loraTargetModules"] == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert raw["hyperparameters"]["learningRate"] == 3e-3
    assert (meta.steps, meta.total_steps, meta.epochs_completed) == (30, 30, 3.0)
    assert len(meta.loss_history) == 30
    assert meta.first_loss == pytest.approx(meta.loss_history[0], abs=1e-5)
    assert meta.final_loss == pytest.approx(meta.loss_history[-1], abs=1e-5)
    assert meta.best_loss == pytest.approx(min(meta.loss_history), abs=1e-5)
    assert 0 < meta.trainable_parameters < meta.total_parameters
    assert meta.timings.train_seconds > 0 and meta.timings.steps_per_second > 0
    assert meta.device.type == "cpu" and meta.device.dtype == "float32"
    assert meta.outputs == {"lora": "lora", "mergedModel": "merged_model"}
    assert set(meta.versions) == {"torch", "transformers", "peft"}


def test_outputs_carry_the_downloaders_verified_manifest(lora_run: JobRun, tmp_path: Path) -> None:
    merged_dir = lora_run.output / "merged_model"
    manifest = load_and_verify_manifest(merged_dir, VerifyMode.SHA256)
    assert manifest.source == "finetune"
    assert manifest.repo == "finetunes/team-a/tune"
    assert re.fullmatch(r"[0-9a-f]{40}", manifest.resolved_revision)
    listed = {f.path for f in manifest.files}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= listed
    for path in merged_dir.iterdir():
        assert path.stat().st_mode & 0o444 == 0o444, f"{path.name} is not world-readable"

    adapter = load_manifest(lora_run.output / "lora")
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {f.path for f in adapter.files}
    for entry in adapter.files:
        check_file(
            lora_run.output / "lora" / entry.path,
            size=entry.size,
            sha256=entry.sha256,
            mode=VerifyMode.SHA256,
        )

    tampered = shutil.copytree(merged_dir, tmp_path / "tampered")
    weights = tampered / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(DownloadError) as caught:
        load_and_verify_manifest(tampered, VerifyMode.SHA256)
    assert caught.value.reason is Reason.VERIFICATION_FAILED


def _settings(base: Path, root: Path, dataset: Path, **overrides: Any) -> TrainerSettings:
    values: dict[str, Any] = {
        "model_path": base,
        "output_dir": root / "out",
        "dataset_path": dataset,
        "epochs": 1,
        "batch_size": 4,
        "max_seq_length": 64,
        "seed": 0,
        "device": "cpu",
    }
    return TrainerSettings(**(values | overrides))


def test_full_fine_tuning_on_chat_rows(base: Path, tmp_path: Path) -> None:
    dataset = write_dataset(tmp_path / "chat.jsonl", rows=40, chat=True)
    settings = _settings(base, tmp_path, dataset, method="full", learning_rate=2e-3)
    result = job.run_reporting(settings, TrainingProgress())
    assert result.result == "Succeeded", result.message
    assert result.exit_code == 0
    meta = load_meta(settings.output_dir)
    assert meta.steps >= 10
    assert statistics.mean(meta.loss_history[-3:]) < meta.first_loss
    assert meta.trainable_parameters == meta.total_parameters
    assert meta.outputs == {"mergedModel": "merged_model"}
    assert not (settings.output_dir / "lora").exists()
    merged_dir = settings.output_dir / "merged_model"
    load_and_verify_manifest(merged_dir, VerifyMode.SHA256)
    input_ids = torch.tensor([[2, 5, 14, 28, 13]])
    assert not torch.allclose(_logits(base, input_ids), _logits(merged_dir, input_ids), atol=1e-3)


def test_lora_without_merge_and_without_chat_template_replaces_stale_outputs(
    tmp_path: Path,
) -> None:
    plain_base = write_tiny_llama(tmp_path / "plain-base", seed=1, chat_template=False)
    dataset = write_dataset(tmp_path / "train.jsonl", rows=40)
    settings = _settings(
        plain_base, tmp_path, dataset, method="lora", merge=False, epochs=0.5, learning_rate=3e-3
    )
    # What a killed earlier attempt might have left: it must not survive, manifest least of all.
    stale = settings.output_dir / "merged_model"
    shutil.copytree(plain_base, stale)
    (stale / ".modelfleet-manifest.json").write_text("{}")
    result = job.run_reporting(settings, TrainingProgress())
    assert result.result == "Succeeded", result.message
    assert result.steps == 5
    assert not stale.exists()
    assert load_meta(settings.output_dir).outputs == {"lora": "lora"}
    assert (settings.output_dir / "lora" / "adapter_model.safetensors").is_file()
    assert load_manifest(settings.output_dir / "lora").files


def test_labels_train_only_the_response(base: Path) -> None:
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(base))
    alpaca, chat = parse_dataset_text(
        json.dumps([dataset_rows(1)[0], dataset_rows(1, chat=True)[0]])
    )

    def trained_text(example: Any) -> str:
        tokenized = tokenize_example(example, tokenizer, 64)
        assert tokenized is not None
        prompt = [
            i
            for i, label in zip(tokenized.input_ids, tokenized.labels, strict=True)
            if label == IGNORE_INDEX
        ]
        trained = [label for label in tokenized.labels if label != IGNORE_INDEX]
        assert tokenized.labels[: len(prompt)] == [IGNORE_INDEX] * len(prompt)
        return str(tokenizer.decode(trained))

    # With the chat template: the assistant turn and its end-of-turn token.
    assert trained_text(chat).split() == ["the", "cat", "is", "red", ".", "</s>"]
    assert trained_text(alpaca).split() == ["the", "cat", "is", "red", ".", "</s>"]
    full = tokenize_example(chat, tokenizer, 64)
    assert full is not None
    assert tokenizer.decode(full.input_ids).split()[:2] == ["<s>", "<|system|>"]

    # Without one: the documented plain format, response plus EOS.
    tokenizer.chat_template = None
    assert trained_text(alpaca).split() == ["the", "cat", "is", "red", ".", "</s>"]
    plain = tokenize_example(alpaca, tokenizer, 64)
    assert plain is not None
    assert tokenizer.decode(plain.input_ids).split()[:3] == ["#", "#", "#"]

    # Truncation that leaves no response token drops the row; none left is DatasetInvalid.
    assert tokenize_example(chat, tokenizer, 8) is None
    dataset = load_dataset(write_dataset(base.parent / "short.jsonl", rows=3))
    with pytest.raises(TrainerError, match="maxSeqLength 8") as caught:
        tokenize_dataset(dataset, tokenizer, 8)
    assert caught.value.reason is Reason.DATASET_INVALID


def test_lora_targets_and_out_of_memory_detection(base: Path) -> None:
    model = transformers.AutoModelForCausalLM.from_pretrained(str(base))
    assert lora_target_modules(model) == ["q_proj", "k_proj", "v_proj", "o_proj"]
    model.config.model_type = "something-new"
    assert lora_target_modules(model) == "all-linear"
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate"))
    assert is_out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate memory"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))


def test_out_of_memory_fails_with_its_reason_and_a_retryable_exit(
    base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def exhausted(*args: Any, **kwargs: Any) -> Any:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(job, "train", exhausted)
    dataset = write_dataset(tmp_path / "train.jsonl", rows=4)
    result = job.run_reporting(_settings(base, tmp_path, dataset), TrainingProgress())
    assert (result.result, result.reason, result.exit_code) == ("Failed", Reason.OUT_OF_MEMORY, 1)
    assert "batchSize" in result.message
