"""The Job result lines: what a Job's program dumps is what the operator parses, both ways."""

from __future__ import annotations

import json

import pytest

from modelfleet.conditions import Reason
from modelfleet.contracts.results import DownloadResult, TrainingResult, read_result
from modelfleet.downloader.result import JobResult
from modelfleet.trainer.result import TrainerResult

pytestmark = pytest.mark.unit

SHA = "a" * 40


def test_a_download_result_reads_back_as_it_was_written() -> None:
    written = DownloadResult(
        result="Succeeded",
        reason=Reason.DOWNLOADED,
        message="ok",
        resolved_revision=SHA,
        bytes_total=10,
        bytes_transferred=4,
        files=2,
    )
    line = written.line()

    assert json.loads(line)["resolvedRevision"] == SHA
    assert read_result(f"some log\n{line}\n", DownloadResult) == written


def test_the_downloaders_own_line_is_the_contracts() -> None:
    line = JobResult(
        "Failed", Reason.REPO_NOT_FOUND, "Repository not found", resolved_revision=None
    ).to_json()

    parsed = read_result(line, DownloadResult)

    assert parsed is not None
    assert (parsed.result, parsed.reason, parsed.message) == (
        "Failed",
        "RepoNotFound",
        "Repository not found",
    )


def test_the_trainers_line_is_the_contracts_and_omits_an_absent_dataset_revision() -> None:
    written = TrainerResult(
        result="Succeeded", reason=Reason.SUCCEEDED, final_loss=0.5, steps=3, output_path="/o"
    )

    assert "datasetRevision" not in json.loads(written.line())
    parsed = read_result(written.line(), TrainingResult)
    assert parsed is not None
    assert (parsed.final_loss, parsed.steps, parsed.dataset_revision) == (0.5, 3, None)


def test_keys_a_newer_job_adds_are_ignored_and_garbage_is_no_result() -> None:
    newer = json.dumps({"result": "Succeeded", "reason": "Downloaded", "shards": 3})

    assert read_result(newer, DownloadResult) is not None
    assert read_result("Traceback (most recent call last):\n  boom", DownloadResult) is None
    assert read_result('{"result": "Maybe", "reason": "x"}', DownloadResult) is None
    assert (
        read_result('{"result": "Failed", "reason": "x", "bytesTotal": -1}', DownloadResult) is None
    )


def test_a_long_message_is_cut_to_fit_the_termination_message() -> None:
    line = TrainingResult(result="Failed", reason=Reason.INCOMPLETE, message="x" * 5000).line()

    assert len(line) < 1200
    assert json.loads(line)["message"].endswith("...")
