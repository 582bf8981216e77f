"""A token of any shape never reaches the result line, the logs or an error message.

Tokens come from a Secret, often with a trailing newline (``echo`` into ``kubectl create
secret``) and not always with the ``hf_`` prefix. Surrounding whitespace is stripped before use;
a token still holding whitespace or control characters is refused without being quoted; and
redaction removes every token in its raw and escaped forms (repr, bytes repr, JSON, URL).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from modelfleet.conditions import Reason
from modelfleet.downloader.errors import DownloadError, clean_token, redact
from modelfleet.downloader.result import DownloaderResult
from tests.hubserver import HubServer, tiny_model_files
from tests.hubserver.fixtures import job_env, run_downloader_job, running_hub

pytestmark = [pytest.mark.unit, pytest.mark.timeout(120)]
REPO_ROOT = Path(__file__).resolve().parents[2]

# Shapes a token takes on its way through a Secret: each must stay out of every output.
TOKENS = {
    "plain-newline": "mysecretvalue0123456789\n",
    "hf-newline": "hf_PlantedSecretToken0123456789\n",
    "crlf-and-spaces": "  crlfSecretValue0123456789\r\n",
    "inner-space": "inner secret value 0123456789",
    "inner-newline": "innerSecret\nValue0123456789",
    "control": "ctrl\x01Secret0123456789",
    "quote-backslash": 'quote"back\\slashSecret0123456789',
    "non-ascii": "nonAsciiSecr\u00e9t0123456789",
}
# Tokens a header can carry once stripped: they are used, and the download succeeds.
USABLE = {"plain-newline", "hf-newline", "crlf-and-spaces", "quote-backslash"}


def leaked_forms(token: str) -> set[str]:
    """The token as text may show it: raw, stripped, and as repr and JSON escape it."""
    forms: set[str] = set()
    for value in {token, token.strip()}:
        forms |= {
            value,
            repr(value),
            repr(value)[1:-1],
            repr(value.encode())[2:-1],
            json.dumps(value),
            json.dumps(value)[1:-1],
            json.dumps(repr(value))[1:-1],
            quote(value, safe=""),
        }
    return forms


def assert_no_token(text: str, token: str) -> None:
    for form in leaked_forms(token):
        assert form not in text, f"token leaked as {form!r}"


@pytest.mark.parametrize("token", TOKENS.values(), ids=TOKENS)
def test_redaction_removes_every_form_of_a_token(token: str) -> None:
    stripped = token.strip()
    text = " | ".join(
        [
            f"Illegal header value b'Bearer {token}'",
            f"Illegal header value {token.encode()!r}",
            f"headers={{'authorization': {('Bearer ' + token)!r}}}",
            f"json {json.dumps({'token': token})}",
            f"json of repr {json.dumps(repr(token))}",
            f"url https://hub/x?token={quote(token, safe='')}",
            f"cookie m_session_id={stripped}",
            f"plain {stripped} and {token}",
        ]
    )

    redacted = redact(text, [token])

    assert_no_token(redacted, token)
    assert "***" in redacted


@pytest.mark.parametrize("token", TOKENS.values(), ids=TOKENS)
def test_the_result_line_never_carries_a_token(token: str) -> None:
    result = DownloaderResult(
        result="Failed",
        reason=Reason.NETWORK_ERROR,
        message=f"Illegal header value b'Bearer {token}': {token!r} {json.dumps(token)}",
    )

    line = result.redacted([token]).line()

    assert_no_token(line, token)
    assert_no_token(json.loads(line)["message"], token)


def test_surrounding_whitespace_is_stripped() -> None:
    assert clean_token("  hf_abc0123456789\r\n") == "hf_abc0123456789"
    assert clean_token("secret-without-prefix\n") == "secret-without-prefix"
    assert clean_token(" \n") is None
    assert clean_token(None) is None


@pytest.mark.parametrize(
    "token", [t for name, t in TOKENS.items() if name not in USABLE], ids=lambda t: repr(t)[:12]
)
def test_a_token_with_whitespace_or_control_characters_inside_is_refused_unquoted(
    token: str,
) -> None:
    with pytest.raises(DownloadError) as refused:
        clean_token(token)

    assert refused.value.reason is Reason.UNAUTHORIZED
    for text in (str(refused.value), repr(refused.value), refused.value.message):
        assert_no_token(text, token)


@pytest.fixture(scope="module")
def hub() -> Iterator[HubServer]:
    yield from running_hub()


@pytest.mark.parametrize(("name", "token"), TOKENS.items(), ids=TOKENS)
def test_the_job_never_echoes_a_token(
    hub: HubServer, tmp_path: Path, name: str, token: str
) -> None:
    repo = f"org/private-{name}"
    # The hub knows the token as it was meant to be: without the whitespace around it.
    hub.add_repo(repo, tiny_model_files(), token=token.strip())

    run = run_downloader_job({**job_env(hub, tmp_path, repo), "HF_TOKEN": token})

    result = json.loads((tmp_path / "termination-log").read_text())
    if name in USABLE:
        assert run.returncode == 0, run.stderr
        assert result["result"] == "Succeeded"
    else:
        assert run.returncode == 2, run.stderr
        assert result["reason"] == Reason.UNAUTHORIZED
        assert "whitespace, control or non-ASCII" in result["message"]
    for text in (run.stdout, run.stderr, (tmp_path / "termination-log").read_text()):
        assert_no_token(text, token)
