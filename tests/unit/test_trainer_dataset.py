"""The trainer's light parts, without torch: dataset validation, step plan, result, progress."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from modelfleet.conditions import Reason
from modelfleet.contracts.download import Source
from modelfleet.downloader.download import download_model
from modelfleet.trainer.dataset import (
    fetched_dataset,
    load_dataset,
    parse_dataset_text,
    plain_prompt,
)
from modelfleet.trainer.errors import TrainerError
from modelfleet.trainer.progress import StatusReporter, TrainingProgress
from modelfleet.trainer.result import TrainerResult
from modelfleet.trainer.training import format_lr, lr_factor, plan_steps
from tests.hubserver.fixtures import download_request, running_hub

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]
REPO_ROOT = Path(__file__).resolve().parents[2]

ALPACA = {"instruction": "name a colour", "input": "cat", "output": "red"}
CHAT = {
    "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "colour of the cat?"},
        {"role": "assistant", "content": "red"},
    ]
}


def _jsonl(*rows: object) -> str:
    return "\n".join(row if isinstance(row, str) else json.dumps(row) for row in rows) + "\n"


def _invalid(text: str) -> str:
    with pytest.raises(TrainerError) as caught:
        parse_dataset_text(text)
    assert caught.value.reason is Reason.DATASET_INVALID
    return caught.value.message


def test_jsonl_and_json_array_with_both_row_styles() -> None:
    from_lines = parse_dataset_text(_jsonl(ALPACA, "", CHAT))
    from_array = parse_dataset_text(json.dumps([ALPACA, CHAT], indent=2))
    for examples in (from_lines, from_array):
        assert [e.response for e in examples] == ["red", "red"]
        assert examples[0].instruction == "name a colour"
        assert examples[0].messages[0].content == "name a colour\n\ncat"
        assert [m.role for m in examples[1].messages] == ["system", "user", "assistant"]
    assert [e.line for e in from_lines] == [1, 3]  # the blank line still counts


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (_jsonl(ALPACA, ALPACA, "{not json", ALPACA), "line 3: not valid JSON"),
        (_jsonl(ALPACA, {"prompt": "x", "completion": "y"}), "line 2: needs instruction/output"),
        (_jsonl(ALPACA, ["a", "list"]), "line 2: not a JSON object"),
        (_jsonl(ALPACA, {"instruction": "x", "output": ""}), "line 2: output is empty"),
        (_jsonl({"instruction": 3, "output": "y"}), "line 1: instruction must be a string"),
        (
            _jsonl({"messages": [{"role": "user", "content": "hi"}]}),
            "line 1: the last message must be a non-empty assistant turn",
        ),
        (
            _jsonl(CHAT, {"messages": [{"role": "robot", "content": "hi"}]}),
            "line 2: messages[0] needs a role",
        ),
        (_jsonl({"messages": []}), "line 1: messages must be a non-empty list"),
        (json.dumps([ALPACA, {"input": "x"}]), "row 2: needs instruction/output or messages"),
        ('[\n{"instruction": "a",\n "output": }\n]', "line 3: not valid JSON"),
        ("\n\n  \n", "the dataset has no rows"),
        ("[]", "the dataset has no rows"),
    ],
)
def test_malformed_datasets_name_the_line(text: str, expected: str) -> None:
    assert _invalid(text).startswith(expected)


def test_load_dataset_hashes_the_file_and_refuses_missing_or_binary(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text(_jsonl(ALPACA, CHAT))
    dataset = load_dataset(path)
    assert dataset.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert len(dataset.examples) == 2
    for bad, message in ((tmp_path / "absent.jsonl", "does not exist"), (tmp_path, "directory")):
        with pytest.raises(TrainerError, match=message) as caught:
            load_dataset(bad)
        assert caught.value.reason is Reason.DATASET_INVALID
    (tmp_path / "binary.jsonl").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(TrainerError, match="not UTF-8"):
        load_dataset(tmp_path / "binary.jsonl")


def test_plain_prompt_format_for_tokenizers_without_a_chat_template() -> None:
    alpaca, chat = parse_dataset_text(_jsonl(ALPACA, CHAT))
    assert plain_prompt(alpaca) == (
        "### Instruction:\nname a colour\n\n### Input:\ncat\n\n### Response:\n"
    )
    no_input = parse_dataset_text(_jsonl({"instruction": "say hi", "output": "hi"}))[0]
    assert plain_prompt(no_input) == "### Instruction:\nsay hi\n\n### Response:\n"
    assert plain_prompt(chat) == (
        "### System:\nbe brief\n\n### User:\ncolour of the cat?\n\n### Assistant:\n"
    )


def test_step_plan_schedule_and_lr_format() -> None:
    assert plan_steps(40, 4, 1, 3).total_steps == 30
    plan = plan_steps(41, 4, 2, 1.5)  # 11 micro-batches -> 6 steps per epoch
    assert (plan.micro_batches_per_epoch, plan.steps_per_epoch, plan.total_steps) == (11, 6, 9)
    factors = [lr_factor(step, 2, 10) for step in range(10)]
    assert factors[:3] == [1 / 3, 2 / 3, 1.0]
    assert all(0 < f <= 1 for f in factors)
    assert factors[2:] == sorted(factors[2:], reverse=True)
    assert format_lr(1.9e-4) == "1.9e-4"
    assert format_lr(0.002) == "2.0e-3"


def test_result_line_and_exit_codes() -> None:
    ok = TrainerResult(
        result="Succeeded",
        reason=Reason.SUCCEEDED,
        message="done",
        output_path="/out",
        final_loss=1.23456789,
        steps=30,
    )
    assert json.loads(ok.line()) == {
        "result": "Succeeded",
        "reason": "Succeeded",
        "message": "done",
        "outputPath": "/out",
        "finalLoss": 1.234568,
        "steps": 30,
    }
    assert ok.exit_code == 0

    def failed(reason: Reason, message: str = "x") -> TrainerResult:
        return TrainerResult(result="Failed", reason=reason, message=message)

    assert failed(Reason.DATASET_INVALID).exit_code == 2
    assert failed(Reason.INVALID_SPEC).exit_code == 2
    assert failed(Reason.OUT_OF_MEMORY).exit_code == 1
    assert len(failed(Reason.INCOMPLETE, "x" * 5000).line()) < 1200


def _trainer(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelfleet.trainer"],
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO_ROOT / "operator"), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_bad_dataset_fails_before_torch_is_imported(tmp_path: Path) -> None:
    data = tmp_path / "data.jsonl"
    data.write_text(_jsonl(ALPACA, ALPACA, ALPACA, ALPACA, ALPACA, ALPACA, "{oops"))
    log = tmp_path / "termination-log"
    env = {
        "MODELFLEET_MODEL_PATH": str(tmp_path / "absent-model"),
        "MODELFLEET_OUTPUT_DIR": str(tmp_path / "out"),
        "MODELFLEET_DATASET_PATH": str(data),
        "MODELFLEET_TERMINATION_LOG": str(log),
    }
    done = _trainer(env)
    assert done.returncode == 2, done.stderr
    result = json.loads(log.read_text())
    assert result["result"] == "Failed"
    assert result["reason"] == "DatasetInvalid"
    assert result["message"].startswith("line 7: not valid JSON")
    assert json.loads(done.stdout.strip().splitlines()[-1]) == result
    assert not (tmp_path / "out").exists()


def test_invalid_settings_exit_2_with_invalid_spec(tmp_path: Path) -> None:
    log = tmp_path / "termination-log"
    env = {
        "MODELFLEET_MODEL_PATH": str(tmp_path),
        "MODELFLEET_OUTPUT_DIR": str(tmp_path / "out"),
        "MODELFLEET_DATASET_PATH": str(tmp_path / "d.jsonl"),
        "MODELFLEET_METHOD": "qlora",
        "MODELFLEET_TERMINATION_LOG": str(log),
    }
    done = _trainer(env)
    assert done.returncode == 2
    result = json.loads(log.read_text())
    assert result["reason"] == "InvalidSpec"
    assert "method" in result["message"]


def test_importing_the_trainer_does_not_import_torch() -> None:
    code = (
        "import sys, modelfleet.trainer.job, modelfleet.trainer.outputs;"
        "heavy = {'torch', 'transformers', 'peft'} & set(sys.modules);"
        "assert not heavy, heavy"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO_ROOT / "operator")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


class _RecordingApiServer(BaseHTTPRequestHandler):
    """Answers every PATCH like the API server's status subresource and records it."""

    requests: list[dict[str, Any]]

    def do_PATCH(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.requests.append(
            {"path": self.path, "type": self.headers["Content-Type"], "body": body}
        )
        payload = json.dumps({"apiVersion": "modelfleet.io/v1alpha1", **body}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def recording_api_server(directory: Path) -> Iterator[tuple[list[dict[str, Any]], Path]]:
    """A local HTTP server that records status patches, and a kubeconfig pointing at it."""
    requests: list[dict[str, Any]] = []
    handler = type("Handler", (_RecordingApiServer,), {"requests": requests})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    kubeconfig = directory / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "t", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}
                ],
                "users": [{"name": "t", "user": {"token": "t"}}],
                "contexts": [{"name": "t", "context": {"cluster": "t", "user": "t"}}],
                "current-context": "t",
            }
        )
    )
    try:
        yield requests, kubeconfig
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def api_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    with recording_api_server(tmp_path) as (requests, kubeconfig):
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        yield requests


def test_progress_is_merge_patched_into_the_status_subresource(
    api_server: list[dict[str, Any]],
) -> None:
    progress = TrainingProgress()
    with StatusReporter("team-a/tune", progress, interval=3600):
        progress.start(total_steps=4)
        for step in range(1, 5):
            snapshot = progress.record_step(step, step / 2, 3.0 - step / 2)
        assert api_server == []  # the interval bounds the rate: nothing before it elapses
    assert snapshot.eta_seconds == 0
    (patch,) = api_server  # once at the end
    assert patch["path"] == (
        "/apis/modelfleet.io/v1alpha1/namespaces/team-a/finetunejobs/tune/status"
    )
    assert patch["type"] == "application/merge-patch+json"
    assert patch["body"] == {
        "status": {
            "progress": {
                "epoch": 2.0,
                "step": 4,
                "totalSteps": 4,
                "loss": 1.0,
                "percent": 100,
                "etaSeconds": 0,
            }
        }
    }


def test_status_patch_failure_is_not_fatal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "clusters": [{"name": "t", "cluster": {"server": "http://127.0.0.1:9"}}],
                "users": [{"name": "t", "user": {}}],
                "contexts": [{"name": "t", "context": {"cluster": "t", "user": "t"}}],
                "current-context": "t",
            }
        )
    )
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    progress = TrainingProgress()
    reporter = StatusReporter("ns/name", progress, interval=3600)
    with reporter:
        progress.start(total_steps=1)
        progress.record_step(1, 1.0, 0.5)
    assert reporter.patches_sent == 0
    with pytest.raises(ValueError, match="<namespace>/<name>"):
        StatusReporter("just-a-name", progress)


def test_a_fetched_hub_dataset_is_found_checked_and_named_by_its_commit(tmp_path: Path) -> None:
    rows = b'{"instruction": "say hi", "output": "hi"}\n'
    with pytest.raises(TrainerError) as nothing:
        fetched_dataset(tmp_path, "org/data", "data/train.jsonl")
    assert nothing.value.reason is Reason.DATASET_INVALID
    for hub in running_hub():
        sha = hub.add_repo("org/data", {"data/train.jsonl": rows}, repo_type="dataset")
        download_model(
            download_request(hub, tmp_path, "org/data", source=Source.HUGGINGFACE_DATASET)
        )

    path, revision = fetched_dataset(tmp_path, "org/data", "data/train.jsonl")

    assert (path, revision) == (tmp_path / "org" / "data" / sha / "data" / "train.jsonl", sha)
    assert load_dataset(path, revision).revision == sha
    path.write_bytes(b"{}")  # not the size the manifest lists
    with pytest.raises(TrainerError) as changed:
        fetched_dataset(tmp_path, "org/data", "data/train.jsonl")
    assert changed.value.reason is Reason.DATASET_INVALID
