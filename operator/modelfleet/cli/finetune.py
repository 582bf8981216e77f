"""`modelfleet finetune`: fine-tuned outputs under a model root."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from modelfleet.trainer.meta import FinetuneMeta

finetune_app = typer.Typer(help="Fine-tuned models under a model root.", no_args_is_help=True)


def find_finetunes(root: Path) -> list[tuple[Path, FinetuneMeta]]:
    """Every ``finetunes/<namespace>/<name>/finetune_meta.json`` under ``root``, newest first."""
    found = []
    for meta_path in sorted((root / "finetunes").glob("*/*/finetune_meta.json")):
        try:
            meta = FinetuneMeta.model_validate_json(meta_path.read_text())
        except (OSError, ValidationError):
            continue  # a run still writing, or not ours
        found.append((meta_path.parent, meta))
    found.sort(key=lambda item: item[1].created_at, reverse=True)
    return found


@finetune_app.command("list")
def list_finetunes(
    root: Annotated[
        Path | None, typer.Option(help="Model root; default MODELFLEET_MODEL_ROOT or /models.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List fine-tuned outputs with their base model, method, loss and time."""
    directory = root or Path(os.environ.get("MODELFLEET_MODEL_ROOT", "/models"))
    rows = [
        {
            "name": f"{path.parent.name}/{path.name}",
            "path": str(path),
            "base": f"{meta.base_model.repo}@{meta.base_model.revision[:7]}",
            "method": meta.method,
            "merged": meta.merged,
            "steps": meta.steps,
            "firstLoss": meta.first_loss,
            "finalLoss": meta.final_loss,
            "trainSeconds": meta.timings.train_seconds,
            "created": meta.created_at.isoformat(),
        }
        for path, meta in find_finetunes(directory)
    ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table("NAME", "BASE", "METHOD", "STEPS", "LOSS", "TRAIN", "CREATED")
    for row in rows:
        table.add_row(
            str(row["name"]),
            str(row["base"]),
            f"{row['method']}{' (merged)' if row['merged'] else ''}",
            str(row["steps"]),
            f"{row['firstLoss']:.3f} -> {row['finalLoss']:.3f}",
            f"{row['trainSeconds']:.0f}s",
            str(row["created"])[:19],
        )
    Console().print(table)
