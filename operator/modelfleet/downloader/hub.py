"""The Hugging Face Hub protocol: revision to commit, file listing, URLs, auth, typed errors.

Everything protocol goes through huggingface_hub; only the byte transfer is ours (transfer.py).
The endpoint is always passed explicitly: huggingface_hub reads ``HF_ENDPOINT`` once, at import.
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import httpx2
from huggingface_hub import HfApi, hf_hub_url
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.hf_api import DatasetInfo, ModelInfo, RepoFile
from huggingface_hub.utils._headers import build_hf_headers

from modelfleet.conditions import Reason
from modelfleet.contracts.download import MAX_LISTING_ENTRIES
from modelfleet.downloader import hub_session
from modelfleet.downloader.destinations import MAX_REDIRECTS
from modelfleet.downloader.errors import DownloadError, clean_token, redact
from modelfleet.downloader.layout import validate_commit_id, validate_file_path
from modelfleet.downloader.listing import bounded, declared_size

DEFAULT_ENDPOINT = "https://huggingface.co"
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")
T = TypeVar("T")
# Where the Job and the CLI have always found it.
configure_hub_session = hub_session.configure_hub_session


@dataclass(frozen=True)
class RemoteFile:
    """One file of a commit, as the tree listing describes it."""

    path: str
    size: int
    blob_id: str | None = None  # git object id; the hub lists it for every file
    sha256: str | None = None  # known for LFS files only


@dataclass(frozen=True)
class RemoteSnapshot:
    """A repo at one resolved commit."""

    repo: str
    revision: str
    sha: str
    files: tuple[RemoteFile, ...]

    @property
    def total_bytes(self) -> int:
        """Sum of the sizes of all files."""
        return sum(f.size for f in self.files)


def validate_repo_id(repo: str) -> str:
    """Refuse repo ids that are not ``name`` or ``org/name`` (they also become paths)."""
    if not _REPO_ID.match(repo) or ".." in repo:
        raise DownloadError(Reason.INVALID_SPEC, f"invalid repo id {repo!r}: expected org/name")
    return repo


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def map_hub_error(error: Exception, secrets: Sequence[str | None] = ()) -> DownloadError:
    """Turn a huggingface_hub or HTTP error into a typed, redacted :class:`DownloadError`."""
    message = redact(
        str(error).strip().splitlines()[0] if str(error).strip() else repr(error), secrets
    )
    if isinstance(error, DownloadError):
        return error
    # GatedRepoError subclasses RepositoryNotFoundError: test it first.
    if isinstance(error, GatedRepoError):
        return DownloadError(
            Reason.GATED, f"repository is gated and this token has no access: {message}"
        )
    if isinstance(error, RevisionNotFoundError):
        return DownloadError(Reason.REVISION_NOT_FOUND, message)
    if isinstance(error, RepositoryNotFoundError):
        return DownloadError(Reason.REPO_NOT_FOUND, message)
    if isinstance(error, EntryNotFoundError):
        return DownloadError(Reason.INCOMPLETE, f"file listed by the hub is missing: {message}")
    if isinstance(error, HfHubHTTPError) and error.response is not None:
        return map_status(error.response.status_code, error.response.headers, message)
    if isinstance(error, httpx2.TooManyRedirects):
        return DownloadError(
            Reason.NETWORK_ERROR, f"more than {MAX_REDIRECTS} redirects: {message}"
        )
    if isinstance(error, httpx2.TimeoutException):
        return DownloadError(Reason.DOWNLOAD_STALLED, f"no response: {message}")
    if isinstance(error, httpx2.TransportError):
        return DownloadError(Reason.NETWORK_ERROR, message)
    return DownloadError(Reason.NETWORK_ERROR, f"{type(error).__name__}: {message}")


def map_status(status: int, headers: Mapping[str, str], message: str) -> DownloadError:
    """Map an HTTP error status (with its hub headers, any case) to a typed reason."""
    lowered = {name.lower(): value for name, value in headers.items()}
    code = lowered.get("x-error-code")
    if code == "GatedRepo":
        return DownloadError(Reason.GATED, message)
    if code == "RepoNotFound":
        return DownloadError(Reason.REPO_NOT_FOUND, message)
    if code == "RevisionNotFound":
        return DownloadError(Reason.REVISION_NOT_FOUND, message)
    if code == "EntryNotFound":
        return DownloadError(Reason.INCOMPLETE, message)
    if status in (401, 403):
        return DownloadError(Reason.UNAUTHORIZED, f"HTTP {status}: token missing or not allowed")
    if status == 404:
        return DownloadError(Reason.REPO_NOT_FOUND, message)
    retry_after = parse_retry_after(lowered.get("retry-after"))
    return DownloadError(Reason.NETWORK_ERROR, f"HTTP {status}: {message}", retry_after=retry_after)


def _remote_file(entry: RepoFile) -> RemoteFile:
    path = validate_file_path(entry.path)
    return RemoteFile(
        path=path,
        size=declared_size(entry.size, path),
        blob_id=entry.blob_id,
        sha256=entry.lfs.sha256 if entry.lfs is not None else None,
    )


class HubClient:
    """Talks to one Hugging Face endpoint (the Hub or a mirror) with one optional token."""

    def __init__(
        self,
        endpoint: str | None = None,
        token: str | None = None,
        repo_type: str = "model",
        *,
        max_entries: int = MAX_LISTING_ENTRIES,
    ) -> None:
        self.endpoint = (endpoint or DEFAULT_ENDPOINT).rstrip("/")
        self.repo_type = repo_type
        """``model``, or ``dataset`` for a FinetuneJob's data."""
        self.max_entries = max_entries
        """Files and folders a listing may have (see contracts.download.MAX_LISTING_ENTRIES)."""
        token = clean_token(token)
        self._token = token
        hub_session.ensure_configured()
        hub_session.trust_token_origin(self.endpoint)
        # token=False stops huggingface_hub from reading a cached login behind our back.
        self._api = HfApi(endpoint=self.endpoint, token=token if token else False)

    @contextmanager
    def _mapped_errors(self) -> Iterator[None]:
        try:
            yield
        except (HfHubHTTPError, httpx2.HTTPError, OSError, ValueError) as error:
            raise map_hub_error(error, [self._token]) from None

    def _call(self, fn: Callable[[], T]) -> T:
        with self._mapped_errors():
            return fn()

    def _info(self, repo: str, revision: str) -> ModelInfo | DatasetInfo:
        # Only the sha: without expand the answer also lists every file of the repo.
        if self.repo_type == "dataset":
            return self._api.dataset_info(repo, revision=revision, timeout=60, expand=["sha"])
        return self._api.model_info(repo, revision=revision, timeout=60, expand=["sha"])

    def resolve_revision(self, repo: str, revision: str) -> str:
        """The commit sha a branch, tag or sha points at now; VerificationFailed unless it is
        40 lowercase hex digits (it becomes a directory name)."""
        info = self._call(lambda: self._info(repo, revision))
        if not info.sha:
            raise DownloadError(Reason.REVISION_NOT_FOUND, f"hub returned no commit for {revision}")
        return validate_commit_id(info.sha)

    def list_files(self, repo: str, sha: str) -> list[RemoteFile]:
        """Every file at commit ``sha`` with its size, and sha256 for LFS files; refused
        (VerificationFailed) past ``max_entries`` entries, before the next page is asked for."""

        def listing() -> list[RemoteFile]:
            entries = self._api.list_repo_tree(
                repo, revision=sha, recursive=True, repo_type=self.repo_type
            )
            try:
                return [
                    _remote_file(e)
                    for e in bounded(entries, self.max_entries)
                    if isinstance(e, RepoFile)
                ]
            except (KeyError, TypeError, AttributeError) as error:
                raise DownloadError(
                    Reason.VERIFICATION_FAILED,
                    f"the hub's listing is malformed ({type(error).__name__})",
                ) from None

        return self._call(listing)

    def snapshot(self, repo: str, revision: str) -> RemoteSnapshot:
        """Resolve ``revision`` and list the files at the resulting commit."""
        validate_repo_id(repo)
        sha = self.resolve_revision(repo, revision)
        files = self.list_files(repo, sha)
        return RemoteSnapshot(repo=repo, revision=revision, sha=sha, files=tuple(files))

    def file_url(self, repo: str, sha: str, path: str) -> str:
        """The resolve URL of one file at one commit."""
        return hf_hub_url(
            repo, path, revision=sha, endpoint=self.endpoint, repo_type=self.repo_type
        )

    def headers(self) -> dict[str, str]:
        """Request headers with auth; never log them."""
        return build_hf_headers(
            token=self._token if self._token else False, library_name="modelfleet"
        )
