"""The typed error every downloader failure becomes, and how secrets are kept out of it: tokens
are cleaned before use, and every form of one is redacted from messages."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

from modelfleet.conditions import PERMANENT_DOWNLOAD_REASONS, Reason

# Query parameters and headers that may carry a credential in a URL or a logged request.
_CREDENTIAL_PATTERNS = (
    re.compile(r"(?i)(authorization:?\s*(?:bearer|basic)?\s*)[^\s,'\"}]+"),
    re.compile(r"(?i)(\bbearer\s+)[^\s,'\"}]+"),
    re.compile(r"(?i)(m_session_id=)[^;\s,'\"}]+"),
    re.compile(r"(?i)([?&](?:token|access_token|api_key|sig|signature)=)[^&\s'\"]+"),
    # The HTTP clients quote the whole refused value, whatever its shape: drop the rest of the line.
    re.compile(r"(?i)(illegal header value\s*)[^\n]+"),
    re.compile(r"\bhf_[A-Za-z0-9]{8,}\b"),
)
_REDACTED = "***"
# An HTTP header cannot carry these; a token holding one was mangled on its way into the Secret.
_UNSENDABLE = re.compile(r"[\s\x00-\x1f\x7f]")
# A piece of a token split on whitespace this long is still a secret, shorter ones are words.
_MIN_SECRET_PIECE = 8
# Escapes applied on top of each other: a repr inside a JSON line is two deep.
_ESCAPE_DEPTH = 2
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


def clean_token(token: str | None) -> str | None:
    """``token`` without surrounding whitespace, None when nothing is left.

    Unauthorized when whitespace, control or non-ASCII characters remain: no HTTP header can
    carry them, and the client's error would quote the token. The message never contains it.
    """
    if token is None or not token.strip():
        return None
    cleaned = token.strip()
    if _UNSENDABLE.search(cleaned) or not cleaned.isascii():
        raise DownloadError(
            Reason.UNAUTHORIZED,
            "the access token contains whitespace, control or non-ASCII characters: "
            "check the value stored in its Secret",
        )
    return cleaned


def _escaped(value: str) -> set[str]:
    return {
        value,
        repr(value)[1:-1],
        repr(value.encode())[2:-1],
        value.encode("unicode_escape").decode("ascii"),
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        quote(value, safe=""),
        quote_plus(value),
    }


def secret_forms(secret: str) -> set[str]:
    """Every way ``secret`` may show up in text: raw and stripped, its pieces around whitespace,
    and those escaped as repr, bytes repr, JSON and URL encoding do (also one inside another)."""
    stripped = secret.strip()
    if not stripped:
        return set()  # blank: no token at all, and redacting whitespace would mangle the text
    forms = {secret, stripped}
    forms |= {piece for piece in stripped.split() if len(piece) >= _MIN_SECRET_PIECE}
    for _ in range(_ESCAPE_DEPTH):
        forms |= {escaped for form in forms for escaped in _escaped(form)}
    return {form for form in forms if form}


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Remove known secrets, in any escaped form, and anything shaped like a credential."""
    forms = {form for secret in secrets if secret for form in secret_forms(secret)}
    # Longest first, so an escaped form is not left half-replaced by a shorter one inside it.
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, _REDACTED)
    for pattern in _CREDENTIAL_PATTERNS:
        if pattern.groups:
            text = pattern.sub(lambda m: m.group(1) + _REDACTED, text)
        else:
            text = pattern.sub(_REDACTED, text)
    return text
