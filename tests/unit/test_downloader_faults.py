"""Every fault the test hub can inject: the download completes with correct bytes or fails typed."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelfleet.conditions import Reason
from modelfleet.downloader.download import download_model
from modelfleet.downloader.errors import DownloadError
from modelfleet.downloader.layout import MANIFEST_NAME
from modelfleet.downloader.progress import DownloadProgress
from modelfleet.downloader.retry import BackoffPolicy
from tests.hubserver import Fault, HubServer, LazyBlob, tiny_model_files
from tests.hubserver.fixtures import download_request, running_hub

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]
SIZE = 6 << 20


@pytest.fixture
def hub() -> Iterator[HubServer]:
    yield from running_hub()


@pytest.fixture
def blob(hub: HubServer) -> LazyBlob:
    """A repo ``org/big`` whose model.safetensors is a 6 MiB synthetic blob."""
    content = LazyBlob(SIZE, seed=7)
    hub.add_repo("org/big", {**tiny_model_files(), "model.safetensors": content})
    return content


def _weights(root: Path) -> bytes:
    [path] = root.glob("org/big/*/model.safetensors")
    return path.read_bytes()


def test_cut_connection_resumes_with_range(hub: HubServer, blob: LazyBlob, tmp_path: Path) -> None:
    hub.add_fault(Fault(path="model.safetensors", cut_after=SIZE // 2, times=1))

    download_model(download_request(hub, tmp_path, "org/big"))

    assert _weights(tmp_path) == blob.materialize()
    first, second = hub.gets("model.safetensors")
    assert first.range is None
    assert second.range is not None and second.range.startswith("bytes=")
    assert 0 < second.bytes_sent < SIZE


def test_429_retry_after_is_honoured(hub: HubServer, blob: LazyBlob, tmp_path: Path) -> None:
    hub.add_fault(Fault(path="model.safetensors", status=429, retry_after=0.8, times=1))
    started = time.monotonic()

    download_model(download_request(hub, tmp_path, "org/big", policy=BackoffPolicy(3, 0.02, 5)))

    assert time.monotonic() - started >= 0.8
    assert [r.status for r in hub.gets("model.safetensors")] == [429, 200]
    assert _weights(tmp_path) == blob.materialize()


def test_503_is_retried_with_backoff(hub: HubServer, blob: LazyBlob, tmp_path: Path) -> None:
    hub.add_fault(Fault(path="model.safetensors", status=503, times=2))

    download_model(download_request(hub, tmp_path, "org/big"))

    assert [r.status for r in hub.gets("model.safetensors")] == [503, 503, 200]
    assert _weights(tmp_path) == blob.materialize()


def test_api_503_is_retried(hub: HubServer, blob: LazyBlob, tmp_path: Path) -> None:
    hub.add_fault(Fault(path="api", status=503, times=1))

    report = download_model(download_request(hub, tmp_path, "org/big"))

    assert report.files == len(tiny_model_files())
    assert hub.api_requests()[0].status == 503


def test_stall_is_aborted_by_the_watchdog_and_resumed(
    hub: HubServer, blob: LazyBlob, tmp_path: Path
) -> None:
    hub.add_fault(Fault(path="model.safetensors", stall_after=SIZE // 3, stall_seconds=20, times=1))
    progress = DownloadProgress()
    started = time.monotonic()

    download_model(download_request(hub, tmp_path, "org/big", stall_timeout=0.5), progress)

    assert time.monotonic() - started < 10
    assert _weights(tmp_path) == blob.materialize()
    assert [r.range is not None for r in hub.gets("model.safetensors")] == [False, True]
    last_error = progress.snapshot().last_error
    assert last_error is not None
    assert str(Reason.DOWNLOAD_STALLED) in last_error


def test_endless_stall_fails_as_download_stalled(
    hub: HubServer, blob: LazyBlob, tmp_path: Path
) -> None:
    hub.add_fault(Fault(path="model.safetensors", stall_after=1 << 20, stall_seconds=20))
    request = download_request(
        hub, tmp_path, "org/big", stall_timeout=0.3, policy=BackoffPolicy(2, 0.01, 0.05)
    )

    with pytest.raises(DownloadError) as failure:
        download_model(request)

    assert failure.value.reason is Reason.DOWNLOAD_STALLED
    assert failure.value.retryable
    assert not list(tmp_path.rglob(MANIFEST_NAME))


def test_corrupt_body_fails_verification_after_retries(
    hub: HubServer, blob: LazyBlob, tmp_path: Path
) -> None:
    hub.add_fault(Fault(path="model.safetensors", corrupt=True))

    with pytest.raises(DownloadError) as failure:
        download_model(download_request(hub, tmp_path, "org/big"))

    assert failure.value.reason is Reason.VERIFICATION_FAILED
    assert len(hub.gets("model.safetensors")) == 4  # every attempt, each from byte 0
    assert all(r.range is None for r in hub.gets("model.safetensors"))
    assert not list(tmp_path.rglob("model.safetensors"))
    assert not list(tmp_path.rglob(MANIFEST_NAME))


def test_corrupted_file_on_disk_is_detected_and_fetched_again(
    hub: HubServer, blob: LazyBlob, tmp_path: Path
) -> None:
    report = download_model(download_request(hub, tmp_path, "org/big"))
    weights = report.path / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[12345] ^= 0xFF
    weights.write_bytes(bytes(data))
    (report.path / MANIFEST_NAME).unlink()  # an earlier attempt that never finished
    hub.reset_counters()

    download_model(download_request(hub, tmp_path, "org/big"))

    assert hashlib.sha256(weights.read_bytes()).hexdigest() == blob.sha256
    assert {r.file for r in hub.gets()} == {"model.safetensors"}


def test_corrupted_file_under_a_manifest_is_fetched_again(
    hub: HubServer, blob: LazyBlob, tmp_path: Path
) -> None:
    report = download_model(download_request(hub, tmp_path, "org/big"))
    weights = report.path / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    hub.reset_counters()

    again = download_model(download_request(hub, tmp_path, "org/big"))

    assert not again.already_present
    assert weights.read_bytes() == blob.materialize()
    assert {r.file for r in hub.gets()} == {"model.safetensors"}


def test_server_ignoring_range_still_gives_correct_bytes(
    hub: HubServer, blob: LazyBlob, tmp_path: Path
) -> None:
    hub.add_fault(Fault(path="model.safetensors", cut_after=SIZE // 2, times=1))
    hub.add_fault(Fault(path="model.safetensors", ignore_range=True))

    download_model(download_request(hub, tmp_path, "org/big"))

    assert _weights(tmp_path) == blob.materialize()
    _, second = hub.gets("model.safetensors")
    assert second.range is not None
    assert second.status == 200
    assert second.bytes_sent == SIZE
