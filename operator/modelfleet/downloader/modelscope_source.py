"""The ModelScope source: same layout, manifest and reasons, through the optional package.

ModelScope revisions are branch or tag names without a stable commit id in its file API, so
the directory name is a content address instead: the sha1 of the sorted (path, size, sha256)
listing. Same files, same directory; any change, a new one.
"""

from __future__ import annotations

import hashlib
import importlib
from typing import Any
from urllib.parse import quote

from modelfleet.conditions import Reason
from modelfleet.downloader.errors import DownloadError, redact
from modelfleet.downloader.hub import (
    RemoteFile,
    RemoteSnapshot,
    validate_file_path,
    validate_repo_id,
)

DEFAULT_MODELSCOPE_ENDPOINT = "https://www.modelscope.cn"
INSTALL_HINT = (
    "the modelscope source needs the optional package: pip install 'modelfleet[modelscope]'"
)


def _import(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise DownloadError(Reason.INVALID_SPEC, INSTALL_HINT) from None


def snapshot_id(files: list[RemoteFile]) -> str:
    """A 40-hex content address for a listing (stands in for a commit sha)."""
    digest = hashlib.sha1(usedforsecurity=False)
    for f in sorted(files, key=lambda f: f.path):
        digest.update(f"{f.path}\0{f.size}\0{f.sha256 or ''}\n".encode())
    return digest.hexdigest()


class ModelScopeClient:
    """Resolves and lists a ModelScope repo; files are then fetched by our own transfer."""

    def __init__(self, endpoint: str | None = None, token: str | None = None) -> None:
        api_module = _import("modelscope.hub.api")
        self.endpoint = (endpoint or DEFAULT_MODELSCOPE_ENDPOINT).rstrip("/")
        self._token = token
        self._api: Any = api_module.HubApi(endpoint=self.endpoint)
        self._cookies: Any = None
        self._revisions: dict[str, str] = {}
        if token:
            try:
                login = self._api.login(token)
            except Exception as error:  # noqa: BLE001 - any login failure means the token is bad
                raise DownloadError(
                    Reason.UNAUTHORIZED, f"ModelScope login failed: {redact(str(error), [token])}"
                ) from None
            self._cookies = login[1] if isinstance(login, tuple) else None

    def _map(self, error: Exception) -> DownloadError:
        message = redact(str(error), [self._token])
        name = type(error).__name__
        status = getattr(getattr(error, "response", None), "status_code", None)
        if status in (401, 403):
            return DownloadError(Reason.UNAUTHORIZED, message)
        if name == "NotExistError" or status == 404:
            if "revision" in message.lower():
                return DownloadError(Reason.REVISION_NOT_FOUND, message)
            return DownloadError(Reason.REPO_NOT_FOUND, message)
        if name == "InvalidParameter" and "revision" in message.lower():
            return DownloadError(Reason.REVISION_NOT_FOUND, message)
        return DownloadError(Reason.NETWORK_ERROR, f"{name}: {message}")

    def snapshot(self, repo: str, revision: str) -> RemoteSnapshot:
        """Resolve ``revision`` (``main`` means the repo's default) and list its files."""
        validate_repo_id(repo)
        requested = None if revision == "main" else revision
        try:
            resolved = self._api.get_valid_revision(repo, revision=requested, cookies=self._cookies)
            entries = self._api.get_model_files(
                repo, revision=resolved, recursive=True, use_cookies=self._cookies or False
            )
        except Exception as error:  # noqa: BLE001 - the package raises many unrelated types
            raise self._map(error) from None
        files = [
            RemoteFile(
                path=validate_file_path(str(e["Path"])),
                size=int(e.get("Size", 0)),
                sha256=str(e["Sha256"]).lower() if e.get("Sha256") else None,
            )
            for e in entries
            if e.get("Type") != "tree"
        ]
        sha = snapshot_id(files)
        self._revisions[sha] = str(resolved)
        return RemoteSnapshot(repo=repo, revision=revision, sha=sha, files=tuple(files))

    def file_url(self, repo: str, sha: str, path: str) -> str:
        """The ModelScope file URL at the resolved revision behind ``sha``."""
        revision = self._revisions.get(sha, "master")
        return (
            f"{self.endpoint}/api/v1/models/{repo}/repo"
            f"?Revision={quote(revision, safe='')}&FilePath={quote(path, safe='')}"
        )

    def headers(self) -> dict[str, str]:
        """Cookies from the login, when a token was given; never log them."""
        headers = {"User-Agent": "modelfleet"}
        if self._cookies is not None:
            cookie = "; ".join(f"{c.name}={c.value}" for c in self._cookies)
            if cookie:
                headers["Cookie"] = cookie
        return headers
