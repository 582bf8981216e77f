"""The one-line JSON result of a training Job (see ``modelfleet.jobresult``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from modelfleet.conditions import Reason
from modelfleet.jobresult import exit_code, publish, shorten
from modelfleet.trainer.errors import PERMANENT_REASONS


@dataclass(frozen=True)
class TrainerResult:
    """How the run ended; the operator reads it from the pod's termination message."""

    result: Literal["Succeeded", "Failed"]
    reason: Reason
    message: str
    output_path: str | None = None
    final_loss: float | None = None
    steps: int = 0
    dataset_revision: str | None = None
    """Commit sha of a huggingface dataset."""

    @property
    def exit_code(self) -> int:
        """0 on success, 2 when no retry can help (bad dataset or settings), 1 otherwise."""
        return exit_code(self.result == "Succeeded", self.reason, PERMANENT_REASONS)

    def to_json(self) -> str:
        """One line of JSON with camelCase keys (``datasetRevision`` only for a hub dataset)."""
        line: dict[str, object] = {
            "result": self.result,
            "reason": str(self.reason),
            "message": shorten(self.message),
            "outputPath": self.output_path,
            "finalLoss": None if self.final_loss is None else round(self.final_loss, 6),
            "steps": self.steps,
        }
        if self.dataset_revision is not None:
            line["datasetRevision"] = self.dataset_revision
        return json.dumps(line, separators=(",", ":"))


def write_result(result: TrainerResult, termination_log: Path | None) -> str:
    """Print the result line to stdout and write it to the termination log; return the line."""
    return publish(result.to_json(), termination_log)
