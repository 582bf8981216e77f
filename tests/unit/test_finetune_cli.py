"""`modelfleet finetune list` finds fine-tuned outputs under a model root."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelfleet.cli.main import app
from modelfleet.trainer.meta import (
    BaseModelInfo,
    DatasetInfo,
    DeviceInfo,
    FinetuneMeta,
    HyperparametersInfo,
    Timings,
)

pytestmark = pytest.mark.unit


def _meta(final_loss: float, created: datetime) -> FinetuneMeta:
    return FinetuneMeta(
        finetune_job="team/tune",
        method="lora",
        merged=True,
        base_model=BaseModelInfo(repo="org/tiny", revision="0123456789abcdef", path="/models/x"),
        dataset=DatasetInfo(
            path="/d.jsonl",
            sha256="0" * 64,
            rows=40,
            trained_rows=40,
            dropped_rows=0,
            trained_tokens=400,
        ),
        hyperparameters=HyperparametersInfo(
            epochs=3,
            batch_size=4,
            learning_rate=2e-4,
            max_seq_length=64,
            gradient_accumulation=1,
            warmup_ratio=0.03,
            seed=42,
        ),
        steps=30,
        total_steps=30,
        epochs_completed=3,
        first_loss=5.9,
        final_loss=final_loss,
        best_loss=final_loss,
        trainable_parameters=1,
        total_parameters=2,
        timings=Timings(
            started_at=created,
            finished_at=created,
            load_seconds=1,
            train_seconds=12.0,
            save_seconds=1,
            total_seconds=14,
            steps_per_second=2.5,
        ),
        device=DeviceInfo(type="cpu", name="cpu", dtype="float32"),
        outputs={"lora": "lora", "mergedModel": "merged_model"},
        versions={},
        created_at=created,
    )


def test_list_shows_every_finetune_newest_first(tmp_path: Path) -> None:
    for name, loss, day in (("old", 5.1, 1), ("new", 4.2, 2)):
        directory = tmp_path / "finetunes" / "team" / name
        directory.mkdir(parents=True)
        meta = _meta(loss, datetime(2026, 11, day, tzinfo=UTC))
        (directory / "finetune_meta.json").write_text(meta.to_json())
    (tmp_path / "finetunes" / "team" / "running").mkdir()  # no meta yet: not listed

    result = CliRunner().invoke(app, ["finetune", "list", "--root", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["name"] for r in rows] == ["team/new", "team/old"]
    assert rows[0]["base"] == "org/tiny@0123456"
    assert rows[0]["finalLoss"] == 4.2 and rows[0]["steps"] == 30

    wide = {"COLUMNS": "200"}
    table = CliRunner().invoke(app, ["finetune", "list", "--root", str(tmp_path)], env=wide)
    assert table.exit_code == 0 and "team/new" in table.output and "5.900 -> 4.200" in table.output
