"""huggingface_hub's shared HTTP client as the downloader configures it: timeouts, where it may
connect and be redirected, where the token may go, and how large an answer may be.

- Every request passes :func:`destinations.check_resolved` (scheme, address literal, resolved
  addresses) before it is sent, redirects included; a redirect's target also
  :func:`destinations.check_redirect` (no https to http) before it is followed.
- ``Authorization`` goes only to the origins of the endpoints a HubClient was made for: httpx
  drops it on a redirect to another origin, and a next-page link the hub answers with, which
  huggingface_hub requests with the same headers, gets it dropped here.
- An answer larger than :data:`MAX_HUB_RESPONSE_BYTES` is refused while it is read.

Unlike the body fetcher, this client resolves a name again when it connects: a resolver that
answers differently between the check and the connection is not caught on this path.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx2
from huggingface_hub.utils._http import hf_request_event_hook, set_client_factory

from modelfleet.conditions import Reason
from modelfleet.downloader import destinations
from modelfleet.downloader.errors import DownloadError

MAX_HUB_RESPONSE_BYTES = 16 << 20
"""Bytes of one metadata answer (a listing page is ~0.3 MB per 1000 files): a hub that does not
page a huge listing is refused before it is held, parsed, in memory."""
DEFAULT_TIMEOUT_SECONDS = 300.0
_DEFAULT_PORTS = {"http": 80, "https": 443}
_configured = threading.Event()
_token_origins: set[tuple[str, str, int]] = set()
_lock = threading.Lock()


def _origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or _DEFAULT_PORTS.get(scheme, 0)


def trust_token_origin(endpoint: str) -> None:
    """Let requests to ``endpoint``'s origin carry the token (a HubClient's own endpoint)."""
    with _lock:
        _token_origins.add(_origin(endpoint))


def _too_large(url: str) -> DownloadError:
    return DownloadError(
        Reason.VERIFICATION_FAILED,
        f"refusing the hub's answer to {str(url)[:120]!r}: more than "
        f"{MAX_HUB_RESPONSE_BYTES} bytes",
    )


class _CappedStream(httpx2.SyncByteStream):
    """A response body that fails once it has delivered more than ``limit`` bytes."""

    def __init__(self, stream: httpx2.SyncByteStream, limit: int, url: str) -> None:
        self._stream, self._limit, self._url = stream, limit, url

    def __iter__(self) -> Iterator[bytes]:
        received = 0
        for chunk in self._stream:
            received += len(chunk)
            if received > self._limit:
                raise _too_large(self._url)
            yield chunk

    def close(self) -> None:
        self._stream.close()


def guard_request(request: httpx2.Request) -> None:
    """Refuse a request to a forbidden place; drop the token on its way to a foreign origin."""
    url = str(request.url)
    destinations.check_resolved(url)
    with _lock:
        trusted = _origin(url) in _token_origins
    if not trusted and "authorization" in request.headers:
        del request.headers["authorization"]


def guard_response(response: httpx2.Response) -> None:
    """Check a redirect before it is followed; cap the body before it is read."""
    url = str(response.request.url)
    if response.has_redirect_location:
        destinations.check_redirect(url, response.headers["Location"])
    length = response.headers.get("Content-Length", "")
    if length.isdigit() and int(length) > MAX_HUB_RESPONSE_BYTES:
        raise _too_large(url)
    if isinstance(response.stream, httpx2.SyncByteStream):
        response.stream = _CappedStream(response.stream, MAX_HUB_RESPONSE_BYTES, url)


def configure_hub_session(timeout_seconds: float) -> None:
    """Give huggingface_hub's shared HTTP client a timeout (its default waits forever), the
    redirect bound and the guards above."""

    def factory() -> httpx2.Client:
        return httpx2.Client(
            event_hooks={
                "request": [hf_request_event_hook, guard_request],
                "response": [guard_response],
            },
            follow_redirects=True,
            max_redirects=destinations.MAX_REDIRECTS,
            timeout=httpx2.Timeout(timeout_seconds, connect=min(30.0, timeout_seconds)),
        )

    set_client_factory(factory)
    _configured.set()


def ensure_configured() -> None:
    """Configure the client with the default timeout unless that was done already."""
    if not _configured.is_set():
        configure_hub_session(DEFAULT_TIMEOUT_SECONDS)
