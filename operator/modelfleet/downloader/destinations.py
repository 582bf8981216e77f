"""Where the downloader may connect: what every URL, redirect and resolved address passes first.

A hub, a redirect or a name in DNS can point a client anywhere. Refused before any connection
is made (VerificationFailed), on both HTTP paths (huggingface_hub's client for metadata, our
own fetcher for bodies):

- a link-local address (169.254.0.0/16, where cloud metadata services answer; fe80::/10), an
  unspecified one (0.0.0.0, ::) or a multicast one, written as a literal in the URL or among the
  addresses its host name resolves to;
- a redirect from https to http (it would drop TLS, and the token's and the bytes' protection);
- a scheme other than http and https.

Loopback and private addresses stay allowed: a mirror in the cluster, the test hub. Behind a
proxy the proxy resolves the name, so only a literal is checked there.
"""

from __future__ import annotations

import ipaddress
import socket
import urllib.request
from collections.abc import Sequence
from typing import Any
from urllib.parse import urljoin, urlsplit

from modelfleet.conditions import Reason
from modelfleet.downloader.errors import DownloadError

MAX_REDIRECTS = 10
"""Redirects followed for one request, on both paths; one more is a NetworkError."""
_SCHEMES = frozenset({"http", "https"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
# What a hub may say, shown in a message: enough to recognise, not a wall of hostile text.
_SHOWN = 120
AddressInfo = tuple[socket.AddressFamily, socket.SocketKind, int, str, tuple[Any, ...]]


def _refuse(message: str) -> DownloadError:
    return DownloadError(Reason.VERIFICATION_FAILED, message)


def why_forbidden(address: str) -> str | None:
    """Why the downloader never connects to IP ``address``, or None when it may."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # fe80::1%eth0: drop the zone
    except ValueError:
        return None  # a name, not an address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_multicast:
        return "a multicast address"
    return None


def check_url(url: str) -> None:
    """Refuse ``url`` for its scheme or for an IP literal that is no place to connect to."""
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not one
    except ValueError:
        raise _refuse(f"refusing to connect to {url[:_SHOWN]!r}: invalid port") from None
    if parts.scheme not in _SCHEMES or not parts.hostname:
        raise _refuse(f"refusing to connect to {url[:_SHOWN]!r}: not an http(s) URL")
    why = why_forbidden(parts.hostname)
    if why is not None:
        raise _refuse(f"refusing to connect to {parts.hostname}: {why}")


def check_redirect(source: str, location: str) -> str:
    """The absolute target of a redirect from ``source``; refused when it leaves https or
    names a forbidden address."""
    target = urljoin(source, location)
    if urlsplit(source).scheme == "https" and urlsplit(target).scheme != "https":
        raise _refuse(f"refusing a redirect from https to {target[:_SHOWN]!r}")
    check_url(target)
    return target


def proxied(url: str) -> bool:
    """Whether a proxy from the environment carries requests to ``url`` (it resolves the name)."""
    parts = urlsplit(url)
    proxy = urllib.request.getproxies().get(parts.scheme)
    return bool(proxy) and not urllib.request.proxy_bypass(parts.hostname or "")


def resolve(host: str, port: int) -> Sequence[AddressInfo]:
    """The addresses ``host`` resolves to; refused when any of them is forbidden, so no answer
    of a resolver can send a connection to a metadata service."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    for *_, sockaddr in infos:
        why = why_forbidden(str(sockaddr[0]))
        if why is not None:
            raise _refuse(f"refusing to connect to {host}: it resolves to {why}")
    return infos


def check_resolved(url: str) -> None:
    """:func:`check_url`, then the addresses its host resolves to (unless a proxy resolves)."""
    check_url(url)
    if proxied(url):
        return
    parts = urlsplit(url)
    resolve(parts.hostname or "", parts.port or _DEFAULT_PORTS[parts.scheme])


def connect(
    address: tuple[str, int],
    timeout: float | None = None,
    source_address: tuple[str, int] | None = None,
) -> socket.socket:
    """``socket.create_connection`` to checked addresses only: what was resolved and checked
    is what is connected to, so no second lookup can answer differently (DNS rebinding)."""
    host, port = address
    failure: OSError | None = None
    for family, kind, proto, _name, sockaddr in resolve(host, port):
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            if source_address is not None:
                sock.bind(source_address)
            sock.connect(sockaddr)
        except OSError as error:
            sock.close()
            failure = error
            continue
        return sock
    raise failure or OSError(f"{host} resolves to no address")
