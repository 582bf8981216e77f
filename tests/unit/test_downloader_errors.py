"""Permanent failures fail fast with their typed reason and exit code 2; tokens never leak."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelfleet.conditions import Reason
from modelfleet.downloader.download import download_model
from modelfleet.downloader.errors import DownloadError
from modelfleet.downloader.job import main
from tests.hubserver import HubServer, tiny_model_files
from tests.hubserver.fixtures import (
    download_request,
    job_env,
    run_downloader_job,
    running_hub,
)

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]
REPO_ROOT = Path(__file__).resolve().parents[2]
TOKEN = "hf_PlantedSecretToken0123456789"


@pytest.fixture
def hub() -> Iterator[HubServer]:
    yield from running_hub()


def _fails_fast(hub: HubServer, tmp_path: Path, repo: str, reason: Reason, **kw: object) -> None:
    with pytest.raises(DownloadError) as failure:
        download_model(download_request(hub, tmp_path, repo, **kw))
    assert failure.value.reason is reason
    assert not failure.value.retryable
    assert len(hub.repo_requests()) == 1, "a permanent failure must not be retried"
    assert hub.gets() == []


def test_missing_repo(hub: HubServer, tmp_path: Path) -> None:
    _fails_fast(hub, tmp_path, "org/absent", Reason.REPO_NOT_FOUND)


def test_missing_revision(hub: HubServer, tmp_path: Path) -> None:
    hub.add_repo("org/tiny", tiny_model_files())
    _fails_fast(hub, tmp_path, "org/tiny", Reason.REVISION_NOT_FOUND, revision="nope")


def test_gated_repo_without_access(hub: HubServer, tmp_path: Path) -> None:
    hub.add_repo("org/gated", tiny_model_files(), gated=True, token=TOKEN)
    _fails_fast(hub, tmp_path, "org/gated", Reason.GATED)


def test_gated_repo_with_access_downloads(hub: HubServer, tmp_path: Path) -> None:
    hub.add_repo("org/gated", tiny_model_files(), gated=True, token=TOKEN)
    report = download_model(download_request(hub, tmp_path, "org/gated", token=TOKEN))
    assert (report.path / "config.json").is_file()
    assert all(r.authorized for r in hub.repo_requests())


def test_bad_token(hub: HubServer, tmp_path: Path) -> None:
    hub.add_repo("org/tiny", tiny_model_files())
    _fails_fast(hub, tmp_path, "org/tiny", Reason.UNAUTHORIZED, token="hf_WrongToken000000000")


def test_invalid_repo_id_is_refused_without_a_request(hub: HubServer, tmp_path: Path) -> None:
    with pytest.raises(DownloadError) as failure:
        download_model(download_request(hub, tmp_path, "../etc/passwd"))
    assert failure.value.reason is Reason.INVALID_SPEC
    assert hub.repo_requests() == []


def test_job_exit_code_and_termination_log_for_a_permanent_failure(
    hub: HubServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in job_env(hub, tmp_path, "org/absent").items():
        monkeypatch.setenv(name, value)

    assert main() == 2

    line = (tmp_path / "termination-log").read_text().strip()
    result = json.loads(line)
    assert result["result"] == "Failed"
    assert result["reason"] == "RepoNotFound"
    assert line in capsys.readouterr().out


def test_token_never_appears_in_any_output(hub: HubServer, tmp_path: Path) -> None:
    hub.add_repo("org/private", tiny_model_files(), token=TOKEN)
    ok = run_downloader_job({**job_env(hub, tmp_path / "ok", "org/private"), "HF_TOKEN": TOKEN})
    # Also a failing run that carries the token in its request: errors must not echo it.
    hub.add_repo("org/gated", tiny_model_files(), gated=True, token="hf_OtherOwnerToken99999")
    failed = run_downloader_job(
        {**job_env(hub, tmp_path / "failed", "org/gated"), "HF_TOKEN": TOKEN}
    )

    assert ok.returncode == 0, ok.stderr
    assert failed.returncode == 2, failed.stderr
    assert json.loads(failed.stdout.strip().splitlines()[-1])["reason"] == "Gated"
    assert all(r.authorized for r in hub.repo_requests())
    outputs = [ok.stdout, ok.stderr, failed.stdout, failed.stderr]
    outputs += [p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file()]
    assert any(".modelfleet-manifest.json" in str(p) for p in tmp_path.rglob("*"))
    for text in outputs:
        assert TOKEN not in text
