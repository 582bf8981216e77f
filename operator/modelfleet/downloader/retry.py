"""Exponential backoff with jitter, honouring a server's ``Retry-After``."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from modelfleet.downloader.errors import DownloadError

T = TypeVar("T")


@dataclass(frozen=True)
class BackoffPolicy:
    """Attempts and delays: ``initial``, ``2*initial``, ``4*initial``… capped at ``maximum``."""

    attempts: int = 5
    initial: float = 1.0
    maximum: float = 300.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        base = min(self.maximum, self.initial * 2 ** max(0, attempt - 1))
        # Up to +10 % jitter so parallel workers (and Jobs) do not retry in lockstep.
        delay: float = min(self.maximum, base * (1 + random.uniform(0, 0.1)))
        if retry_after is not None:
            # The server knows better than our schedule, but never wait past the cap.
            delay = min(self.maximum, max(delay, retry_after))
        return delay


def call_with_retries(
    action: Callable[[int], T],
    policy: BackoffPolicy,
    *,
    on_retry: Callable[[int, DownloadError, float], None] | None = None,
    cancelled: threading.Event | None = None,
) -> T:
    """Run ``action(attempt)`` until it succeeds, fails permanently, or attempts run out.

    Only :class:`DownloadError` is retried, and only when it is ``retryable``.
    """
    attempt = 1
    while True:
        try:
            return action(attempt)
        except DownloadError as error:
            if not error.retryable or attempt >= policy.attempts:
                raise
            delay = policy.delay(attempt, error.retry_after)
            if on_retry is not None:
                on_retry(attempt, error, delay)
            if cancelled is not None:
                if cancelled.wait(delay):
                    raise
            else:
                threading.Event().wait(delay)
            attempt += 1
