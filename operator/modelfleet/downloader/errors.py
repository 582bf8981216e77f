"""The typed error every downloader failure becomes, and redaction of secrets in messages."""

from __future__ import annotations

import re
from collections.abc import Iterable

from modelfleet.conditions import PERMANENT_DOWNLOAD_REASONS, Reason

# Query parameters and headers that may carry a credential in a URL or a logged request.
_CREDENTIAL_PATTERNS = (
    re.compile(r"(?i)(authorization:?\s*(?:bearer|basic)?\s*)[^\s,'\"}]+"),
    re.compile(r"(?i)([?&](?:token|access_token|api_key|sig|signature)=)[^&\s'\"]+"),
    re.compile(r"\bhf_[A-Za-z0-9]{8,}\b"),
)
_REDACTED = "***"
# A bad repo id or a missing optional package will not heal either.
PERMANENT_REASONS: frozenset[Reason] = PERMANENT_DOWNLOAD_REASONS | {Reason.INVALID_SPEC}


class DownloadError(Exception):
    """A failure with a typed reason; ``retryable`` says whether another attempt can help."""

    def __init__(self, reason: Reason, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        """False for reasons no retry can fix (missing repo, gated, no access, no disk)."""
        return self.reason not in PERMANENT_REASONS

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Remove known secrets and anything shaped like a credential from ``text``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, _REDACTED)
    for pattern in _CREDENTIAL_PATTERNS:
        if pattern.groups:
            text = pattern.sub(lambda m: m.group(1) + _REDACTED, text)
        else:
            text = pattern.sub(_REDACTED, text)
    return text
