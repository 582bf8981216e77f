"""Verify mode as the serving pod's init container runs it: no valid manifest, no engine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelfleet.cli.model import model_app
from modelfleet.conditions import Reason
from modelfleet.contracts.download import VerifyMode
from modelfleet.downloader.download import download_model
from modelfleet.downloader.errors import DownloadError
from modelfleet.downloader.job import verify_directory
from modelfleet.downloader.layout import MANIFEST_NAME
from tests.hubserver import HubServer, tiny_model_files
from tests.hubserver.fixtures import download_request, running_hub

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def hub() -> Iterator[HubServer]:
    yield from running_hub()


@pytest.fixture
def downloaded(hub: HubServer, tmp_path: Path) -> Path:
    """A tiny model downloaded by the downloader: files plus a valid manifest."""
    hub.add_repo("org/tiny", tiny_model_files())
    return download_model(download_request(hub, tmp_path / "models", "org/tiny")).path


def _init_container(directory: Path, *, require_manifest: bool) -> tuple[int, dict[str, object]]:
    """Run ``python -m modelfleet.downloader`` with the env the serving builder sets."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(REPO_ROOT / "operator"),
        "MODELFLEET_MODE": "verify",
        "MODELFLEET_SOURCE": "pvc",
        "MODELFLEET_MODEL_PATH": str(directory),
        "MODELFLEET_VERIFY": "size",
        "MODELFLEET_REQUIRE_MANIFEST": "true" if require_manifest else "false",
        "HF_HUB_OFFLINE": "1",
    }
    run = subprocess.run(
        [sys.executable, "-m", "modelfleet.downloader"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return run.returncode, json.loads(run.stdout.strip().splitlines()[-1])


def _refused(directory: Path, reason: Reason) -> str:
    with pytest.raises(DownloadError) as failure:
        verify_directory(directory, VerifyMode.SIZE, require_manifest=True)
    assert failure.value.reason is reason
    return failure.value.message


def test_init_container_accepts_a_verified_download(downloaded: Path) -> None:
    code, result = _init_container(downloaded, require_manifest=True)

    assert code == 0
    assert result["result"] == "Succeeded"
    assert result["modelPath"] == str(downloaded)
    assert result["resolvedRevision"] == downloaded.name
    assert result["files"] == len(tiny_model_files())


def test_init_container_refuses_a_directory_without_manifest(downloaded: Path) -> None:
    (downloaded / MANIFEST_NAME).unlink()

    code, result = _init_container(downloaded, require_manifest=True)

    assert code == 1
    assert result["reason"] == "Incomplete"
    assert MANIFEST_NAME in str(result["message"])
    # The weights themselves are complete: only the manifest makes them servable.
    assert (downloaded / "model.safetensors").stat().st_size > 0


def test_init_container_refuses_a_file_whose_size_differs(downloaded: Path) -> None:
    weights = downloaded / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])

    code, result = _init_container(downloaded, require_manifest=True)

    assert code == 1
    assert result["reason"] == "VerificationFailed"
    assert "model.safetensors" in str(result["message"])


def test_without_require_manifest_completeness_is_enough(downloaded: Path) -> None:
    (downloaded / MANIFEST_NAME).unlink()

    code, result = _init_container(downloaded, require_manifest=False)

    assert code == 0
    assert result["result"] == "Succeeded"
    assert "no manifest" in str(result["message"])


def test_without_require_manifest_an_incomplete_directory_still_fails(downloaded: Path) -> None:
    (downloaded / MANIFEST_NAME).unlink()
    (downloaded / "config.json").unlink()

    code, result = _init_container(downloaded, require_manifest=False)

    assert code == 1
    assert result["reason"] == "Incomplete"


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"\xff\xfe\x00garbage", b'{"repo": "org/tiny"}', b"[]"],
    ids=["truncated-json", "binary", "missing-fields", "wrong-type"],
)
def test_an_unparsable_manifest_is_refused(downloaded: Path, content: bytes) -> None:
    (downloaded / MANIFEST_NAME).write_bytes(content)

    message = _refused(downloaded, Reason.VERIFICATION_FAILED)

    assert "not a valid manifest" in message


def test_a_manifest_listing_a_missing_file_is_refused(downloaded: Path) -> None:
    (downloaded / "tokenizer.json").unlink()

    message = _refused(downloaded, Reason.INCOMPLETE)

    assert "tokenizer.json" in message


def test_a_manifest_with_a_wrong_size_is_refused(downloaded: Path) -> None:
    manifest = json.loads((downloaded / MANIFEST_NAME).read_text())
    for entry in manifest["files"]:
        if entry["path"] == "config.json":
            entry["size"] += 1
    (downloaded / MANIFEST_NAME).write_text(json.dumps(manifest))

    message = _refused(downloaded, Reason.VERIFICATION_FAILED)

    assert "config.json" in message


def test_a_manifest_escaping_the_directory_is_refused(downloaded: Path) -> None:
    manifest = json.loads((downloaded / MANIFEST_NAME).read_text())
    manifest["files"].append({"path": "../../etc/passwd", "size": 1})
    (downloaded / MANIFEST_NAME).write_text(json.dumps(manifest))

    message = _refused(downloaded, Reason.VERIFICATION_FAILED)

    assert "unsafe path" in message


def test_a_missing_directory_is_refused(tmp_path: Path) -> None:
    message = _refused(tmp_path / "absent", Reason.INCOMPLETE)

    assert "does not exist" in message


def test_size_mode_does_not_read_the_weights(downloaded: Path) -> None:
    # Same size, different bytes: size mode passes (pod start stays fast), sha256 mode refuses.
    weights = downloaded / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))

    assert verify_directory(downloaded, VerifyMode.SIZE, require_manifest=True).result == (
        "Succeeded"
    )
    with pytest.raises(DownloadError) as failure:
        verify_directory(downloaded, VerifyMode.SHA256, require_manifest=True)
    assert failure.value.reason is Reason.VERIFICATION_FAILED


def test_cli_verify_require_manifest(downloaded: Path) -> None:
    (downloaded / MANIFEST_NAME).unlink()
    runner = CliRunner()

    lenient = runner.invoke(model_app, ["verify", str(downloaded), "--mode", "size", "--json"])
    strict = runner.invoke(
        model_app, ["verify", str(downloaded), "--mode", "size", "--require-manifest", "--json"]
    )

    assert lenient.exit_code == 0, lenient.output
    assert strict.exit_code == 1
    assert json.loads(strict.stdout)["reason"] == "Incomplete"
