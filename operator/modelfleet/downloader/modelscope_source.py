"""The ModelScope source: same layout, manifest and reasons, through the optional package.

Protocol through the ``modelscope`` package (1.40+, built on ``modelscope_hub``): the revision
is checked with ``modelscope.hub.api.HubApi.get_valid_revision`` and the files (with size and
sha256) listed with ``modelscope_hub.api.HubApi.list_repo_files``; the legacy
``get_model_files`` of the compatibility layer drops the hashes and the entry types, so it is
not used. Bytes then go through our own transfer from the URL the package itself downloads
from: ``{endpoint}/api/v1/models/{repo}/repo?Revision=...&FilePath=...``.

The endpoint is the explicit one, else ``MODELSCOPE_ENDPOINT``, else ``MODELSCOPE_DOMAIN``
(deprecated upstream, a host name or URL), else https://www.modelscope.cn. A token is sent as
the package sends it: ``Authorization: Bearer`` and the ``m_session_id`` cookie.

ModelScope's listing carries no commit id, so the directory name is a content address
instead: the sha1 of the sorted (path, size, sha256) listing. Same files, same directory; any
change, a new one.
"""

from __future__ import annotations

import hashlib
import importlib
import os
from typing import Any
from urllib.parse import quote_plus

from modelfleet.conditions import Reason
from modelfleet.contracts.download import MAX_LISTING_ENTRIES
from modelfleet.downloader.errors import DownloadError, clean_token, redact
from modelfleet.downloader.hub import RemoteFile, RemoteSnapshot, validate_repo_id
from modelfleet.downloader.layout import validate_file_path
from modelfleet.downloader.listing import bounded, declared_size

DEFAULT_MODELSCOPE_ENDPOINT = "https://www.modelscope.cn"
DEFAULT_BRANCH = "master"
INSTALL_HINT = (
    "the modelscope source needs the optional package: pip install 'modelfleet[modelscope]'"
)
# modelscope_hub's exception class names, by what they mean for a retry.
_UNAUTHORIZED = frozenset({"AuthenticationError", "PermissionDeniedError"})
_NOT_FOUND = frozenset({"NotExistError", "NotFoundError"})


def _import(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise DownloadError(Reason.INVALID_SPEC, INSTALL_HINT) from None


def modelscope_endpoint(explicit: str | None = None) -> str:
    """The endpoint the ``modelscope`` package itself would use, ``explicit`` first."""
    endpoint = (
        explicit
        or os.environ.get("MODELSCOPE_ENDPOINT", "").strip()
        or os.environ.get("MODELSCOPE_DOMAIN", "").strip()
        or DEFAULT_MODELSCOPE_ENDPOINT
    )
    if not endpoint.startswith(("http://", "https://")):
        endpoint = f"https://{endpoint}"
    return endpoint.rstrip("/")


def snapshot_id(files: list[RemoteFile]) -> str:
    """A 40-hex content address for a listing (stands in for a commit sha)."""
    digest = hashlib.sha1(usedforsecurity=False)
    for f in sorted(files, key=lambda f: f.path):
        digest.update(f"{f.path}\0{f.size}\0{f.sha256 or ''}\n".encode())
    return digest.hexdigest()


def map_modelscope_error(error: Exception, token: str | None = None) -> DownloadError:
    """A typed, redacted reason for an exception of the ``modelscope`` packages."""
    message = redact(str(error).strip().splitlines()[0] if str(error).strip() else "", [token])
    names = {cls.__name__ for cls in type(error).__mro__}
    if names & _UNAUTHORIZED:
        return DownloadError(Reason.UNAUTHORIZED, message)
    if names & _NOT_FOUND:
        # get_valid_revision's own check: "The model: org/name has no revision: v9".
        if "no revision" in message:
            return DownloadError(Reason.REVISION_NOT_FOUND, message)
        return DownloadError(Reason.REPO_NOT_FOUND, message)
    if "InvalidParameter" in names and "revision" in message.lower():
        return DownloadError(Reason.REVISION_NOT_FOUND, message)
    return DownloadError(Reason.NETWORK_ERROR, f"{type(error).__name__}: {message}")


def _remote_file(entry: Any) -> RemoteFile:
    path = validate_file_path(str(entry.path))
    return RemoteFile(
        path=path,
        size=declared_size(entry.size, path),
        sha256=str(entry.sha256).lower() if entry.sha256 else None,
    )


class ModelScopeClient:
    """Resolves and lists a ModelScope repo; files are then fetched by our own transfer."""

    def __init__(
        self,
        endpoint: str | None = None,
        token: str | None = None,
        *,
        max_entries: int = MAX_LISTING_ENTRIES,
    ) -> None:
        legacy_module = _import("modelscope.hub.api")
        hub_module = _import("modelscope_hub.api")
        self.endpoint = modelscope_endpoint(endpoint)
        self._token = clean_token(token)
        self._legacy: Any = legacy_module.HubApi(endpoint=self.endpoint, token=self._token)
        self._hub: Any = hub_module.HubApi(endpoint=self.endpoint, token=self._token)
        self._revisions: dict[str, str] = {}
        self.max_entries = max_entries
        """Files and folders a listing may have (see contracts.download.MAX_LISTING_ENTRIES)."""

    def snapshot(self, repo: str, revision: str) -> RemoteSnapshot:
        """Resolve ``revision`` (``main`` means the default branch, master) and list its files."""
        validate_repo_id(repo)
        requested = None if revision == "main" else revision
        try:
            resolved = str(self._legacy.get_valid_revision(repo, revision=requested))
            entries = self._hub.list_repo_files(repo, "model", revision=resolved, recursive=True)
        except Exception as error:  # noqa: BLE001 - the packages raise many unrelated types
            raise map_modelscope_error(error, self._token) from None
        files = [
            _remote_file(entry) for entry in bounded(entries, self.max_entries) if not entry.is_dir
        ]
        sha = snapshot_id(files)
        self._revisions[sha] = resolved
        return RemoteSnapshot(repo=repo, revision=revision, sha=sha, files=tuple(files))

    def file_url(self, repo: str, sha: str, path: str) -> str:
        """The URL the package itself downloads one file from, at the revision behind ``sha``."""
        revision = self._revisions.get(sha, DEFAULT_BRANCH)
        return (
            f"{self.endpoint}/api/v1/models/{repo}/repo"
            f"?Revision={quote_plus(revision)}&FilePath={quote_plus(path)}"
        )

    def headers(self) -> dict[str, str]:
        """The token as the package sends it; never log these."""
        headers = {"User-Agent": "modelfleet"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
            headers["Cookie"] = f"m_session_id={self._token}"
        return headers
