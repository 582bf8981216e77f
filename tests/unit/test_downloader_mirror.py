"""The CLI against an independent Hugging Face mirror (olah, from PyPI) in front of the test hub.

olah is a caching proxy written by others against the real Hub; it makes its own upstream
calls (``paths-info``, HEAD probes) and serves files its own way. Same bytes and the same
manifest through it as straight from the hub show the downloader does not depend on quirks of
our own server.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelfleet.cli.model import model_app
from modelfleet.downloader.layout import MANIFEST_NAME
from tests.hubserver import HubServer, LazyBlob, tiny_model_files
from tests.hubserver.fixtures import running_hub

pytest.importorskip(
    "olah", reason="olah (the independent mirror) is not installed: pip install olah"
)
pytestmark = [pytest.mark.unit, pytest.mark.timeout(120)]
REPO = "org/mirrored"


@pytest.fixture
def hub() -> Iterator[HubServer]:
    yield from running_hub()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def olah(hub: HubServer, tmp_path: Path) -> Iterator[str]:
    """olah on 127.0.0.1 with the test hub as its upstream "huggingface.co"; yields its URL."""
    port = _free_port()
    upstream = hub.endpoint.removeprefix("http://")
    mirror = f"127.0.0.1:{port}"
    work = tmp_path / "olah"
    work.mkdir()
    command = [
        sys.executable, "-m", "olah.server",
        "--host", "127.0.0.1", "--port", str(port),
        "--hf-scheme", "http", "--hf-netloc", upstream, "--hf-lfs-netloc", upstream,
        "--mirror-netloc", mirror, "--mirror-lfs-netloc", mirror,
        "--repos-path", str(work / "repos"), "--log-path", str(work / "logs"),
    ]  # fmt: skip
    log = (work / "olah.log").open("wb")
    process = subprocess.Popen(command, cwd=work, stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://{mirror}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (work / "olah.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{endpoint}/api/models/probe/absent", timeout=2):
                    break
            except urllib.error.HTTPError:
                break  # it answers (the repo does not exist yet): it is up
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    raise AssertionError("olah did not start within 60s") from None
                time.sleep(0.3)
        yield endpoint
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()


def _download(endpoint: str, root: Path) -> dict[str, object]:
    result = CliRunner().invoke(
        model_app,
        ["download", REPO, "--root", str(root), "--json"],
        env={"HF_ENDPOINT": endpoint, "HF_TOKEN": ""},
    )
    assert result.exit_code == 0, result.output
    payload: dict[str, object] = json.loads(result.stdout)
    return payload


def _manifest(directory: Path) -> dict[str, object]:
    manifest: dict[str, object] = json.loads((directory / MANIFEST_NAME).read_text())
    manifest.pop("createdAt")
    return manifest


def test_download_through_olah_matches_the_direct_download(
    hub: HubServer, olah: str, tmp_path: Path
) -> None:
    shard = LazyBlob(3 << 20, seed=9)  # large enough to be an LFS file with a sha256
    files: dict[str, bytes | LazyBlob] = {**tiny_model_files(), "model.safetensors": shard}
    sha = hub.add_repo(REPO, files)

    via_mirror = _download(olah, tmp_path / "via-mirror")
    assert any(r.method == "POST" and "paths-info" in r.path for r in hub.requests), (
        "the request did not go through olah"
    )
    direct = _download(hub.endpoint, tmp_path / "direct")

    assert via_mirror["resolvedRevision"] == direct["resolvedRevision"] == sha
    mirror_dir = Path(str(via_mirror["modelPath"]))
    direct_dir = Path(str(direct["modelPath"]))
    assert mirror_dir == tmp_path / "via-mirror" / REPO / sha
    for path, content in files.items():
        expected = content.materialize() if isinstance(content, LazyBlob) else content
        assert (mirror_dir / path).read_bytes() == expected
        assert (direct_dir / path).read_bytes() == expected
    assert _manifest(mirror_dir) == _manifest(direct_dir)
