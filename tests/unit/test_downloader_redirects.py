"""Redirects and header values a hostile hub answers with, on both HTTP paths: huggingface_hub's
client (metadata) and our own fetcher (file bodies).

Cross-host redirects work (the Hub sends large files to a CDN) and never carry the token to the
other host, nor does a next-page link. A redirect or a name that leads to a link-local,
unspecified or multicast address, a redirect from https to http, and lengths that contradict
the listing are refused (VerificationFailed) before any connection or write; a redirect loop
and an oversized header end as NetworkError. Every case ends quickly, with nothing outside the
Model's own directory changed. No connection ever leaves loopback: a test that tried would fail.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from modelfleet.conditions import Reason
from modelfleet.downloader.destinations import MAX_REDIRECTS
from modelfleet.downloader.download import download_model
from modelfleet.downloader.hub_session import MAX_HUB_RESPONSE_BYTES
from tests.hubserver import Fault, HubServer, tiny_model_files
from tests.hubserver.fixtures import download_request, running_hub
from tests.hubserver.tls import HubCertificate, make_certificate
from tests.hubserver.volume import Volume

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]
REPO = "org/model"
TOKEN = "hf_RedirectTestToken0123456789"
WEIGHTS = "model.safetensors"
FILES = tiny_model_files(seed=2)
CONTENT = FILES[WEIGHTS]
assert isinstance(CONTENT, bytes)
SIZE = len(CONTENT)
# Names the tests resolve (socket.getaddrinfo is patched): where a hostile DNS answer leads.
NAMES = {
    "cdn.test": "127.0.0.1",
    "metadata.test": "169.254.169.254",
    "zero.test": "0.0.0.0",
    "v6-link-local.test": "fe80::1",
}
# Well under the Job's stall timeout (5 s): nothing waited for a timeout.
QUICK = 4.0


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail loudly, without sending a packet, if anything connects beyond loopback."""
    real_connect = socket.socket.connect
    real_getaddrinfo = socket.getaddrinfo

    def connect(self: socket.socket, address: Any) -> None:
        host = str(address[0]).split("%", 1)[0]
        if not ipaddress.ip_address(host).is_loopback:
            raise AssertionError(f"a connection to {address} would have left loopback")
        real_connect(self, address)

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host in NAMES:
            address = NAMES[host]
            if ":" in address:
                return [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, int(port), 0, 0))]
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port)))]
        return real_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture
def hub() -> Iterator[HubServer]:
    """The Model's hub: its repo needs the token."""
    for server in running_hub():
        server.add_repo(REPO, FILES, token=TOKEN)
        yield server


@pytest.fixture
def other() -> Iterator[HubServer]:
    """Another host (another port): a CDN or mirror serving the same repo to anyone."""
    for server in running_hub():
        server.add_repo(REPO, FILES)
        yield server


@pytest.fixture
def volume(hub: HubServer, tmp_path: Path) -> Volume:
    """The volume, with another Model's download, before any fault is switched on."""
    return Volume(hub, tmp_path)


@pytest.fixture
def certificate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> HubCertificate:
    """A certificate for 127.0.0.1 that both HTTP paths trust (through SSL_CERT_FILE)."""
    pytest.importorskip("cryptography", reason="makes the test hub's certificate")
    made = make_certificate(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(made.cert_file))
    return made


def _port(server: HubServer) -> int:
    port = urlsplit(server.endpoint).port
    assert port is not None
    return port


def _download(hub: HubServer, root: Path) -> None:
    download_model(download_request(hub, root, REPO, token=TOKEN))


def _weights(root: Path) -> bytes:
    [path] = root.glob(f"{REPO}/*/{WEIGHTS}")
    return path.read_bytes()


@pytest.mark.parametrize("target", ["ip", "name"])
def test_a_file_redirect_to_another_host_works_without_the_token(
    hub: HubServer, other: HubServer, tmp_path: Path, target: str
) -> None:
    base = other.endpoint if target == "ip" else f"http://cdn.test:{_port(other)}"
    hub.add_fault(Fault(path=WEIGHTS, redirect_to=base))

    _download(hub, tmp_path)

    assert _weights(tmp_path) == CONTENT
    [redirect] = hub.gets(WEIGHTS)
    assert redirect.status == 302 and redirect.authorized
    assert [r.authorized for r in other.gets(WEIGHTS)] == [False]


def test_a_metadata_redirect_to_another_host_drops_the_token(
    hub: HubServer, other: HubServer, tmp_path: Path
) -> None:
    hub.add_fault(Fault(path="api", redirect_to=other.endpoint))

    _download(hub, tmp_path)

    assert other.api_requests(), "the metadata was answered by the other host"
    assert not any(r.authorized for r in other.requests)
    assert all(r.authorized for r in hub.gets())


def test_a_next_page_link_to_another_host_gets_no_token(tmp_path: Path) -> None:
    for hub in running_hub(tree_page_size=3):
        for other in running_hub(tree_page_size=3):
            sha = hub.add_repo(REPO, FILES, token=TOKEN)
            other.add_repo(REPO, FILES)
            page = f"{other.endpoint}/api/models/{REPO}/tree/{sha}?recursive=True&cursor=3"
            hub.add_fault(Fault(path="api", headers={"Link": f'<{page}>; rel="next"'}))

            _download(hub, tmp_path)

            assert any("/tree/" in r.path for r in other.requests)
            assert not any(r.authorized for r in other.requests)
            assert _weights(tmp_path) == CONTENT


def test_https_redirect_to_another_https_host_works(
    certificate: HubCertificate, tmp_path: Path
) -> None:
    for hub in running_hub(tls=certificate.server_context):
        for other in running_hub(tls=certificate.server_context):
            hub.add_repo(REPO, FILES, token=TOKEN)
            other.add_repo(REPO, FILES)
            hub.add_fault(Fault(path=WEIGHTS, redirect_to=other.endpoint))

            _download(hub, tmp_path)

            assert hub.endpoint.startswith("https://")
            assert _weights(tmp_path) == CONTENT
            assert [r.authorized for r in other.gets(WEIGHTS)] == [False]


def _refused_job(
    volume: Volume, monkeypatch: pytest.MonkeyPatch, **env: str
) -> tuple[dict[str, object], float]:
    """Run the Job of REPO; assert nothing outside its directory changed; result and seconds."""
    before = volume.snapshot(exclude=volume.root / "org")
    started = time.monotonic()
    result = volume.run_job(monkeypatch, REPO, HF_TOKEN=TOKEN, **env)
    elapsed = time.monotonic() - started
    assert volume.snapshot(exclude=volume.root / "org") == before
    assert TOKEN not in str(result)
    return result, elapsed


FORBIDDEN = {
    "metadata-ip": "http://169.254.169.254",
    "link-local-v6": "http://[fe80::1]",
    "mapped-v4": "http://[::ffff:169.254.169.254]",
    "unspecified": "http://0.0.0.0:{port}",
    "name-to-metadata": "http://metadata.test:{port}",
    "name-to-unspecified": "http://zero.test:{port}",
    "name-to-v6-link-local": "http://v6-link-local.test:{port}",
    "not-http": "ftp://127.0.0.1:{port}",
    "bad-port": "http://127.0.0.1:99999",
}


@pytest.mark.parametrize("base", FORBIDDEN.values(), ids=FORBIDDEN)
@pytest.mark.parametrize("where", [WEIGHTS, "api"])
def test_a_redirect_to_a_forbidden_place_is_refused_before_connecting(
    hub: HubServer, volume: Volume, monkeypatch: pytest.MonkeyPatch, base: str, where: str
) -> None:
    hub.add_fault(Fault(path=where, redirect_to=base.format(port=_port(hub))))

    result, elapsed = _refused_job(volume, monkeypatch)

    assert result["reason"] == Reason.VERIFICATION_FAILED
    assert "refusing" in str(result["message"])
    assert elapsed < QUICK


@pytest.mark.parametrize("name", ["metadata.test", "zero.test", "v6-link-local.test"])
def test_an_endpoint_whose_name_resolves_to_a_forbidden_address_is_refused(
    hub: HubServer, volume: Volume, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    endpoint = f"http://{name}:{_port(hub)}"

    result, _ = _refused_job(volume, monkeypatch, HF_ENDPOINT=endpoint)

    assert result["reason"] == Reason.VERIFICATION_FAILED
    assert f"refusing to connect to {name}" in str(result["message"])
    assert hub.requests == []


@pytest.mark.parametrize("where", [WEIGHTS, "api"])
def test_a_redirect_from_https_to_http_is_refused(
    certificate: HubCertificate,
    other: HubServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    for hub in running_hub(tls=certificate.server_context):
        hub.add_repo(REPO, FILES, token=TOKEN)
        volume = Volume(hub, tmp_path)
        other.reset_counters()
        hub.add_fault(Fault(path=where, redirect_to=other.endpoint))

        result, elapsed = _refused_job(volume, monkeypatch)

        assert result["reason"] == Reason.VERIFICATION_FAILED
        assert "from https" in str(result["message"])
        assert other.requests == []
        assert elapsed < QUICK


@pytest.mark.parametrize("where", [WEIGHTS, "api"])
def test_a_redirect_loop_is_bounded(
    hub: HubServer, volume: Volume, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    hub.add_fault(Fault(path=where, redirect_to=hub.endpoint))

    result, elapsed = _refused_job(volume, monkeypatch)

    assert result["reason"] == Reason.NETWORK_ERROR
    assert "redirects" in str(result["message"])
    attempts = 3  # MODELFLEET_RETRIES of the test Job
    looped = hub.gets(WEIGHTS) if where == WEIGHTS else hub.api_requests()
    assert len(looped) <= attempts * (MAX_REDIRECTS + 1)
    assert elapsed < QUICK


HOSTILE_LENGTHS = {
    "content-length-not-a-number": {"Content-Length": "abc"},
    "content-length-negative": {"Content-Length": "-5"},
    "content-length-short": {"Content-Length": str(SIZE - 10)},
    "content-length-long": {"Content-Length": str(SIZE + 10)},
    "linked-size-negative": {"X-Linked-Size": "-1"},
    "linked-size-not-a-number": {"X-Linked-Size": "12abc"},
    "linked-size-wrong": {"X-Linked-Size": str(SIZE + 1)},
}


@pytest.mark.parametrize("headers", HOSTILE_LENGTHS.values(), ids=HOSTILE_LENGTHS)
def test_a_length_that_contradicts_the_listing_is_refused_before_writing(
    hub: HubServer, volume: Volume, monkeypatch: pytest.MonkeyPatch, headers: dict[str, str]
) -> None:
    hub.add_fault(Fault(path=WEIGHTS, headers=headers))

    result, elapsed = _refused_job(volume, monkeypatch)

    assert result["reason"] == Reason.VERIFICATION_FAILED
    assert "disagrees" in str(result["message"])
    assert elapsed < QUICK


@pytest.mark.parametrize("where", [WEIGHTS, "api"])
def test_a_huge_header_fails_as_a_network_error(
    hub: HubServer, volume: Volume, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    hub.add_fault(Fault(path=where, headers={"X-Padding": "a" * 200_000}))

    result, elapsed = _refused_job(volume, monkeypatch)

    assert result["reason"] == Reason.NETWORK_ERROR
    assert elapsed < QUICK


def test_a_metadata_answer_announcing_a_huge_body_is_refused_at_once(
    hub: HubServer, volume: Volume, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.add_fault(Fault(path="api", headers={"Content-Length": str(MAX_HUB_RESPONSE_BYTES + 1)}))

    result, elapsed = _refused_job(volume, monkeypatch)

    assert result["reason"] == Reason.VERIFICATION_FAILED
    assert f"more than {MAX_HUB_RESPONSE_BYTES} bytes" in str(result["message"])
    assert elapsed < QUICK


def test_a_malformed_metadata_length_is_a_network_error(
    hub: HubServer, volume: Volume, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.add_fault(Fault(path="api", headers={"Content-Length": "-1"}))

    result, elapsed = _refused_job(volume, monkeypatch)

    assert result["reason"] == Reason.NETWORK_ERROR
    assert elapsed < QUICK


def test_hostile_values_of_headers_the_downloader_does_not_use_change_nothing(
    hub: HubServer, volume: Volume
) -> None:
    hostile = {
        "X-Repo-Commit": "../../other-org/other-model",
        "ETag": '"../../../etc/passwd"',
        "X-Linked-Etag": "not-a-hash",
    }
    hub.add_fault(Fault(headers=hostile))
    hub.add_fault(Fault(path="api", headers=hostile))
    before = volume.snapshot(exclude=volume.root / "org")

    _download(hub, volume.root)

    assert _weights(volume.root) == CONTENT
    assert volume.snapshot(exclude=volume.root / "org") == before
