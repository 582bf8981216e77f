"""The downloader behind a forward proxy (HTTP_PROXY, as a platform's defaults set it for every
Job): every request to the hub goes through it, and NO_PROXY keeps a host off it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from modelfleet.downloader.download import download_model
from tests.hubserver import HubServer, tiny_model_files
from tests.hubserver.fixtures import download_request, running_hub
from tests.support.proxy import RecordingProxy

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]


@pytest.fixture
def hub() -> Iterator[HubServer]:
    yield from running_hub()


@pytest.fixture
def proxy() -> Iterator[RecordingProxy]:
    proxy = RecordingProxy().start()
    yield proxy
    proxy.stop()


def _without_proxy_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def test_every_hub_request_goes_through_the_proxy(
    hub: HubServer, proxy: RecordingProxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _without_proxy_settings(monkeypatch)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    files = tiny_model_files()
    sha = hub.add_repo("org/tiny", files)

    report = download_model(download_request(hub, tmp_path, "org/tiny"))

    assert report.sha == sha
    carried = proxy.targets()
    assert all(target.startswith(hub.endpoint) for target in carried), carried
    # The revision, the listing and every file: nothing reached the hub past the proxy.
    assert len(hub.gets()) >= len(files)
    fetched = {
        target.rsplit(f"/resolve/{sha}/", 1)[-1] for target in carried if "/resolve/" in target
    }
    assert fetched == set(files)
    assert len(carried) == len(hub.api_requests()) + len(hub.gets())


def test_no_proxy_keeps_a_host_off_the_proxy(
    hub: HubServer, proxy: RecordingProxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _without_proxy_settings(monkeypatch)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    hub.add_repo("org/tiny", tiny_model_files())

    download_model(download_request(hub, tmp_path, "org/tiny"))

    assert proxy.targets() == []
    assert hub.gets()
