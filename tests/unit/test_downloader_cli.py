"""``modelfleet model download/list/verify/delete`` through typer's CliRunner, with --json."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelfleet.cli.model import model_app
from tests.hubserver import HubServer, tiny_model_files
from tests.hubserver.fixtures import running_hub

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]


@pytest.fixture
def hub() -> Iterator[HubServer]:
    yield from running_hub()


def test_download_list_verify_delete(hub: HubServer, tmp_path: Path) -> None:
    files = tiny_model_files()
    sha = hub.add_repo("org/tiny", files)
    runner = CliRunner()
    env = {"HF_ENDPOINT": hub.endpoint, "MODELFLEET_MODEL_ROOT": str(tmp_path)}

    downloaded = runner.invoke(model_app, ["download", "org/tiny", "--json"], env=env)
    assert downloaded.exit_code == 0, downloaded.output
    result = json.loads(downloaded.stdout)
    assert result["resolvedRevision"] == sha
    path = Path(result["modelPath"])
    assert path == tmp_path / "org" / "tiny" / sha
    assert (path / "config.json").read_bytes() == files["config.json"]

    listed = runner.invoke(model_app, ["list", "--json", "--root", str(tmp_path)])
    assert listed.exit_code == 0, listed.output
    [row] = json.loads(listed.stdout)
    assert row["repo"] == "org/tiny"
    assert row["revision"] == sha
    assert row["complete"] is True
    assert row["sizeBytes"] > 0
    assert row["lastUsed"]

    verified = runner.invoke(model_app, ["verify", "org/tiny", "--json"], env=env)
    assert verified.exit_code == 0, verified.output
    assert json.loads(verified.stdout)["result"] == "Succeeded"

    (path / "model.safetensors").write_bytes(b"tampered")
    broken = runner.invoke(model_app, ["verify", str(path), "--json"], env=env)
    assert broken.exit_code == 1
    assert json.loads(broken.stdout)["reason"] == "VerificationFailed"

    refused = runner.invoke(model_app, ["delete", "org/tiny"], env=env)
    assert refused.exit_code == 1
    assert path.is_dir()

    deleted = runner.invoke(model_app, ["delete", "org/tiny", "--yes", "--json"], env=env)
    assert deleted.exit_code == 0, deleted.output
    assert json.loads(deleted.stdout)["deleted"] == [str(path)]
    assert not path.exists()


def test_download_of_a_missing_repo_exits_2_with_reason(hub: HubServer, tmp_path: Path) -> None:
    env = {"HF_ENDPOINT": hub.endpoint, "MODELFLEET_MODEL_ROOT": str(tmp_path)}

    failed = CliRunner().invoke(model_app, ["download", "org/absent", "--json"], env=env)

    assert failed.exit_code == 2
    assert json.loads(failed.stdout)["reason"] == "RepoNotFound"


def test_include_and_plain_progress(hub: HubServer, tmp_path: Path) -> None:
    hub.add_repo("org/tiny", tiny_model_files())
    env = {"HF_ENDPOINT": hub.endpoint}

    run = CliRunner().invoke(
        model_app,
        [
            "download",
            "org/tiny",
            "--root",
            str(tmp_path),
            "--include",
            "*.json",
            "--include",
            "*.safetensors",
            "--exclude",
            "tokenizer*",
        ],
        env=env,
    )

    assert run.exit_code == 0, run.output
    assert "downloaded and verified" in run.stdout
    names = {p.name for p in tmp_path.rglob("*") if p.is_file() and not p.name.startswith(".")}
    assert names == {
        "config.json",
        "generation_config.json",
        "special_tokens_map.json",
        "model.safetensors",
    }
