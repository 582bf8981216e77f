"""Time as Kubernetes writes it in objects ("2026-01-01T00:00:00Z"): now, and back to seconds."""

from __future__ import annotations

import time
from datetime import UTC, datetime

FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def now_text() -> str:
    """The current time as the API server and a kubelet write it."""
    return time.strftime(FORMAT, time.gmtime())


def parse_time(text: str | None) -> float | None:
    """Seconds since the epoch of a time written by :func:`now_text`; None for none."""
    if not text:
        return None
    return datetime.strptime(text, FORMAT).replace(tzinfo=UTC).timestamp()


def seconds_between(start: str | None, end: str | None) -> float | None:
    """Seconds from ``start`` to ``end``; None when either is unknown."""
    began, ended = parse_time(start), parse_time(end)
    return None if began is None or ended is None else ended - began
