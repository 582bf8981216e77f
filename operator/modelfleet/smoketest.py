"""The smoke test a serving pod passes before it counts as Ready: one short completion.

The engine's ``/health`` answers as soon as the server is up, including when the weights load
but cannot generate (a broken tokenizer, a context too short for any request, NaNs). So each
new serving pod carries a readiness gate (``modelfleet.io/smoke-test``) that the operator sets
only after the pod itself (its own address, not the Service) streamed back a completion. A
pod that fails it never becomes Ready: the rollout does not take capacity from the previous
revision, and the Model shows ``SmokeTestFailed`` with the engine's own message.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

PROMPT = "Hello"
MAX_TOKENS = 8
TIMEOUT_SECONDS = 60.0
_MESSAGE_LIMIT = 300


@dataclass(frozen=True)
class SmokeResult:
    """What one smoke completion showed."""

    passed: bool
    message: str
    time_to_first_token: float | None = None
    """Seconds from the request to the first streamed token."""
    tokens_per_second: float | None = None
    """Completion tokens over the whole request's seconds."""
    tokens: int = 0


def _error_text(error: urllib.error.HTTPError) -> str:
    body = error.read().decode(errors="replace")
    try:
        parsed = json.loads(body)
        detail = parsed.get("error", parsed)
        text = detail.get("message") if isinstance(detail, dict) else str(detail)
    except (ValueError, AttributeError):
        text = body
    return f"HTTP {error.code}: {(text or error.reason)}"[:_MESSAGE_LIMIT]


def smoke_test(
    address: str, port: int, model: str, *, timeout: float = TIMEOUT_SECONDS
) -> SmokeResult:
    """Stream one completion of ``model`` from the engine at ``address:port``."""
    host = f"[{address}]" if ":" in address else address
    body = {
        "model": model,
        "prompt": PROMPT,
        "max_tokens": MAX_TOKENS,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    request = urllib.request.Request(
        f"http://{host}:{port}/v1/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    started = time.monotonic()
    first: float | None = None
    pieces = 0
    usage_tokens: int | None = None
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            for raw in response:
                line = raw.decode(errors="replace").strip()
                if not line.startswith("data:"):
                    continue
                data = line[len("data:") :].strip()
                if data == "[DONE]":
                    break
                chunk = json.loads(data)
                if "error" in chunk:
                    return SmokeResult(False, f"error in stream: {chunk['error']}"[:300])
                if chunk.get("usage"):
                    usage_tokens = int(chunk["usage"].get("completion_tokens") or 0)
                for choice in chunk.get("choices") or []:
                    if choice.get("text"):
                        pieces += 1
                        if first is None:
                            first = time.monotonic() - started
    except urllib.error.HTTPError as error:
        return SmokeResult(False, _error_text(error))
    except (urllib.error.URLError, OSError, ValueError) as error:
        return SmokeResult(False, f"no answer from {host}:{port}: {error}"[:_MESSAGE_LIMIT])
    elapsed = time.monotonic() - started
    tokens = usage_tokens if usage_tokens is not None else pieces
    if first is None or tokens == 0:
        return SmokeResult(False, "the completion returned no tokens")
    rate = tokens / elapsed if elapsed > 0 else None
    return SmokeResult(
        True,
        f"{tokens} tokens, first after {first:.3f}s, {rate or 0:.1f} tokens/s",
        time_to_first_token=round(first, 4),
        tokens_per_second=round(rate, 2) if rate else None,
        tokens=tokens,
    )
