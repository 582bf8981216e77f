"""File bodies over HTTP(S), read straight into the caller's buffer.

huggingface_hub's client (httpx) hands a body out in 64 KiB pieces through a pure-Python
HTTP/1.1 parser and re-chunks them with extra copies; on a fast link that Python work, not the
network, is the limit, and it leaves no CPU for hashing. Here a body goes from the socket into
one reused buffer with ``readinto`` (one copy), on stdlib ``http.client`` connections kept alive
per worker thread. Redirects (the Hub sends large files to a CDN), proxies from the usual
environment variables and TLS with the system's and certifi's roots are handled here too; every
URL, redirect and resolved address passes :mod:`destinations` before a connection is made.
"""

from __future__ import annotations

import base64
import http.client
import socket
import ssl
import threading
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from urllib.parse import SplitResult, unquote, urlsplit

from modelfleet.downloader import destinations
from modelfleet.downloader.destinations import MAX_REDIRECTS

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
# Never carried to another origin by a redirect (the CDN gets a signed URL instead).
_CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})
# A reused keep-alive connection the server closed while idle fails like this before any byte.
_STALE_CONNECTION = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)

FetchError = (OSError, http.client.HTTPException)
"""What a request or a body read may raise; ``TimeoutError`` among them means no bytes came."""


@dataclass(frozen=True)
class _Origin:
    scheme: str
    host: str
    port: int

    @classmethod
    def of(cls, url: SplitResult) -> _Origin:
        if url.scheme not in ("http", "https") or not url.hostname:
            raise http.client.InvalidURL(f"unsupported URL {url.geturl()!r}")
        port = url.port or (443 if url.scheme == "https" else 80)
        return cls(url.scheme, url.hostname, port)


def _tls_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    try:
        import certifi  # noqa: PLC0415 - optional: the roots httpx and requests trust

        context.load_verify_locations(certifi.where())
    except (ImportError, OSError):
        pass
    return context


class _CheckedHTTPConnection(http.client.HTTPConnection):
    """Connects only to addresses :func:`destinations.connect` checked (http.client's own hook
    for how a connection is made; test_downloader_redirects fails loudly if it moves)."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._create_connection = destinations.connect


class _CheckedHTTPSConnection(http.client.HTTPSConnection):
    """:class:`_CheckedHTTPConnection` with TLS."""

    def __init__(self, host: str, port: int, timeout: float, context: ssl.SSLContext) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._create_connection = destinations.connect


class BodyResponse:
    """A response whose headers are read; ``readinto`` streams its body."""

    def __init__(self, url: str, response: http.client.HTTPResponse) -> None:
        self.url = url
        self.status = response.status
        self.headers: dict[str, str] = {k.lower(): v for k, v in response.getheaders()}
        self._response = response

    def header(self, name: str) -> str | None:
        """A header by case-insensitive name."""
        return self.headers.get(name.lower())

    def readinto(self, buffer: memoryview) -> int:
        """Read what has arrived, up to ``len(buffer)`` bytes, into ``buffer``; 0 at the end.

        Returns after one socket read rather than waiting for a full buffer, so progress,
        cancellation and the bytes before a stall are never held back.
        """
        response = self._response
        if response.chunked or response.fp is None:
            return response.readinto(buffer)
        if response.length is not None:
            buffer = buffer[: response.length]
        n = response.fp.readinto1(buffer) if buffer else 0
        if response.length is not None:
            response.length -= n
        if not n or response.length == 0:
            # What http.client does at the end of a body: the connection is free again.
            response.close()
        return n

    @property
    def complete(self) -> bool:
        """Whether the whole body was read (the connection can then be reused)."""
        response = self._response
        return response.isclosed() and not response.length  # a cut body leaves length > 0


class HttpFetcher:
    """GETs with kept-alive connections per thread; shared by a Transfer's workers."""

    def __init__(self, *, read_timeout: float, connect_timeout: float) -> None:
        self.read_timeout = read_timeout
        self.connect_timeout = connect_timeout
        self._proxies = urllib.request.getproxies()
        self._tls: ssl.SSLContext | None = None
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: set[http.client.HTTPConnection] = set()
        self._aborted = False

    # -- connections -----------------------------------------------------------------------
    def _proxy_for(self, origin: _Origin) -> SplitResult | None:
        proxy = self._proxies.get(origin.scheme)
        if not proxy or urllib.request.proxy_bypass(origin.host):
            return None
        return urlsplit(proxy if "://" in proxy else f"http://{proxy}")

    def _tls_context(self) -> ssl.SSLContext:
        with self._lock:
            if self._tls is None:
                self._tls = _tls_context()
            return self._tls

    def _new_connection(self, origin: _Origin) -> http.client.HTTPConnection:
        proxy = self._proxy_for(origin)
        host, port = origin.host, origin.port
        if proxy is not None:
            host, port = proxy.hostname or "", proxy.port or 80
        connection: http.client.HTTPConnection
        if origin.scheme == "https":
            connection = _CheckedHTTPSConnection(
                host, port, self.connect_timeout, self._tls_context()
            )
            if proxy is not None:
                connection.set_tunnel(origin.host, origin.port, headers=_proxy_auth(proxy))
        else:
            connection = _CheckedHTTPConnection(host, port, self.connect_timeout)
        connection.connect()
        assert connection.sock is not None
        # The read timeout is the stall watchdog: no byte for this long fails the read.
        connection.sock.settimeout(self.read_timeout)
        with self._lock:
            if self._aborted:
                connection.close()
                raise ConnectionAbortedError("transfer cancelled")
            self._open.add(connection)
        return connection

    def _pool(self) -> dict[_Origin, http.client.HTTPConnection]:
        pool: dict[_Origin, http.client.HTTPConnection] | None = getattr(self._local, "pool", None)
        if pool is None:
            pool = self._local.pool = {}
        return pool

    def _discard(self, origin: _Origin, connection: http.client.HTTPConnection) -> None:
        connection.close()
        pool = self._pool()
        if pool.get(origin) is connection:
            del pool[origin]
        with self._lock:
            self._open.discard(connection)

    def _target(self, url: SplitResult, origin: _Origin) -> str:
        if origin.scheme == "http" and self._proxy_for(origin) is not None:
            return url.geturl()  # a plain HTTP proxy takes the absolute URL
        return (url.path or "/") + (f"?{url.query}" if url.query else "")

    def _request(
        self, url: SplitResult, headers: Mapping[str, str]
    ) -> tuple[_Origin, http.client.HTTPConnection, http.client.HTTPResponse]:
        origin = _Origin.of(url)
        pool = self._pool()
        connection = pool.get(origin)
        if connection is not None and connection.sock is None:
            # Closed after a response that said so: a silent reconnect would lose our timeouts.
            self._discard(origin, connection)
            connection = None
        reused = connection is not None
        connection = connection or self._new_connection(origin)
        pool[origin] = connection
        sent = dict(headers)
        proxy = self._proxy_for(origin)
        if origin.scheme == "http" and proxy is not None:
            sent.update(_proxy_auth(proxy))
        try:
            connection.request("GET", self._target(url, origin), headers=sent)
            return origin, connection, connection.getresponse()
        except _STALE_CONNECTION:
            self._discard(origin, connection)
            if not reused:
                raise
        except BaseException:
            self._discard(origin, connection)
            raise
        # The server closed the idle connection: one fresh try, as every client does.
        return self._request(url, headers)

    # -- public ----------------------------------------------------------------------------
    @contextmanager
    def get(self, url: str, headers: Mapping[str, str]) -> Iterator[BodyResponse]:
        """GET ``url`` following redirects; yields the final response with its body unread.

        Every URL and redirect passes :mod:`destinations` first (VerificationFailed). A
        connection whose body was read to the end goes back to this thread's pool; any other
        is closed, so a half-read body never confuses the next request.
        """
        destinations.check_url(url)
        current, sent = urlsplit(url), dict(headers)
        for _ in range(MAX_REDIRECTS + 1):
            origin, connection, response = self._request(current, sent)
            location = response.getheader("Location")
            if response.status not in _REDIRECTS or not location:
                break
            response.read(64 << 10)  # a redirect's body is a line of text at most
            if not response.isclosed():
                self._discard(origin, connection)
            target = urlsplit(destinations.check_redirect(current.geturl(), location))
            if _Origin.of(target) != origin:
                sent = {k: v for k, v in sent.items() if k.lower() not in _CREDENTIAL_HEADERS}
            current = target
        else:
            raise http.client.HTTPException(f"more than {MAX_REDIRECTS} redirects")
        body = BodyResponse(current.geturl(), response)
        try:
            yield body
        finally:
            if not body.complete or response.will_close:
                self._discard(origin, connection)

    def abort(self) -> None:
        """Unblock every read in progress (they fail at once) and refuse new connections."""
        with self._lock:
            self._aborted = True
            connections = list(self._open)
        for connection in connections:
            if connection.sock is not None:
                with suppress(OSError):
                    connection.sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Close every connection any thread opened."""
        with self._lock:
            connections = list(self._open)
            self._open.clear()
        for connection in connections:
            with suppress(OSError):
                connection.close()


def _proxy_auth(proxy: SplitResult) -> dict[str, str]:
    if proxy.username is None:
        return {}
    credentials = f"{unquote(proxy.username)}:{unquote(proxy.password or '')}"
    return {"Proxy-Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}
