"""A ModelScope stand-in on 127.0.0.1: the subset of its HTTP API the ``modelscope`` package and
our downloader use.

``GET /api/v1/models/{repo}/revisions`` (branches and tags), ``GET
/api/v1/models/{repo}/repo/files?Revision=&Recursive=`` (listing with ``Sha256``) and ``GET
/api/v1/models/{repo}/repo?Revision=&FilePath=`` (the file, with Range). Responses use
ModelScope's envelope ``{"Code": 200, "Data": ..., "Success": true}``; a token, when a repo
has one, comes as ``Authorization: Bearer`` or the ``m_session_id`` cookie.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from tests.hubserver.repos import LazyBlob

Content = bytes | LazyBlob


@dataclass
class MsRepo:
    """A repo: revision name (branch or tag) to files."""

    revisions: dict[str, dict[str, Content]] = field(default_factory=dict)
    tags: set[str] = field(default_factory=set)
    token: str | None = None


@dataclass
class MsRequest:
    """One request the server answered."""

    method: str
    path: str
    status: int
    range: str | None
    bytes_sent: int = 0


def _size(content: Content) -> int:
    return content.size if isinstance(content, LazyBlob) else len(content)


def _sha256(content: Content) -> str:
    if isinstance(content, LazyBlob):
        return content.sha256
    return hashlib.sha256(content).hexdigest()


def _read(content: Content, start: int, end: int) -> bytes:
    if isinstance(content, LazyBlob):
        return content.read(start, end - start)
    return content[start:end]


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        """Silence per-request logging."""

    def do_GET(self) -> None:
        try:
            self.server.hub.handle(self)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    hub: ModelScopeServer


class ModelScopeServer:
    """Serve repos added with :meth:`add_repo`; ``endpoint`` is the base URL."""

    def __init__(self) -> None:
        self.repos: dict[str, MsRepo] = {}
        self.requests: list[MsRequest] = []
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> ModelScopeServer:
        """Bind 127.0.0.1 on an ephemeral port and serve in a thread."""
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.hub = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def endpoint(self) -> str:
        """Base URL, for ``MODELSCOPE_ENDPOINT`` or the Model's endpoint."""
        assert self._server is not None, "start() first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def add_repo(
        self,
        repo_id: str,
        files: dict[str, Content],
        *,
        revision: str = "master",
        tag: bool = False,
        token: str | None = None,
    ) -> None:
        """Add (or extend) a repo with ``files`` at branch or tag ``revision``."""
        repo = self.repos.setdefault(repo_id, MsRepo(token=token))
        repo.revisions[revision] = dict(files)
        if tag:
            repo.tags.add(revision)

    def file_gets(self) -> list[MsRequest]:
        """File downloads answered, in order."""
        with self._lock:
            return [r for r in self.requests if "FilePath=" in r.path]

    # -- handling --------------------------------------------------------------------------
    def _record(self, handler: _Handler, status: int) -> MsRequest:
        record = MsRequest(handler.command, handler.path, status, handler.headers.get("Range"))
        with self._lock:
            self.requests.append(record)
        return record

    def _json(self, handler: _Handler, status: int, data: object, message: str = "") -> None:
        envelope = {
            "Code": 200 if status == 200 else status,
            "Data": data,
            "Message": message or ("success" if status == 200 else "error"),
            "RequestId": "test",
            "Success": status == 200,
        }
        body = json.dumps(envelope).encode()
        self._record(handler, status)
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def _authorized(self, handler: _Handler, repo: MsRepo) -> bool:
        if repo.token is None:
            return True
        bearer = handler.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        cookie = re.search(r"m_session_id=([^;]+)", handler.headers.get("Cookie", ""))
        return repo.token in (bearer, cookie.group(1) if cookie else None)

    def handle(self, handler: _Handler) -> None:
        url = urlsplit(handler.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        match = re.fullmatch(r"/api/v1/models/(.+?)/(revisions|repo/files|repo)", url.path)
        if match is None:
            self._json(handler, 404, None, "Not Found")
            return
        repo_id, action = unquote(match.group(1)), match.group(2)
        repo = self.repos.get(repo_id)
        if repo is None:
            self._json(handler, 404, None, f"model {repo_id} not found")
            return
        if not self._authorized(handler, repo):
            self._json(handler, 401, None, "authentication required")
            return
        if action == "revisions":
            details = [
                {"Revision": name, "CreatedAt": 1700000000 + i, "Message": ""}
                for i, name in enumerate(sorted(repo.revisions))
            ]
            revision_map = {
                "Branches": [d for d in details if d["Revision"] not in repo.tags],
                "Tags": [d for d in details if d["Revision"] in repo.tags],
            }
            self._json(handler, 200, {"RevisionMap": revision_map})
            return
        files = repo.revisions.get(query.get("Revision", "master"))
        if files is None:
            self._json(handler, 404, None, f"revision {query.get('Revision')} not found")
            return
        if action == "repo/files":
            self._json(handler, 200, {"Files": self._listing(files)})
            return
        content = files.get(query.get("FilePath", ""))
        if content is None:
            self._json(handler, 404, None, "file not found")
            return
        self._send_file(handler, content)

    @staticmethod
    def _listing(files: dict[str, Content]) -> list[dict[str, object]]:
        folders = {
            "/".join(path.split("/")[:depth])
            for path in files
            for depth in range(1, path.count("/") + 1)
        }
        entries: list[dict[str, object]] = [
            {"Name": f.rsplit("/", 1)[-1], "Path": f, "Type": "tree", "Size": 0}
            for f in sorted(folders)
        ]
        for path, content in sorted(files.items()):
            entries.append(
                {
                    "Name": path.rsplit("/", 1)[-1],
                    "Path": path,
                    "Type": "blob",
                    "Size": _size(content),
                    "Sha256": _sha256(content),
                    "IsLFS": _size(content) >= 1024,
                    "Revision": "0" * 40,
                }
            )
        return entries

    def _send_file(self, handler: _Handler, content: Content) -> None:
        size, start, end, status = _size(content), 0, _size(content), 200
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", handler.headers.get("Range") or "")
        if match:
            start = int(match.group(1))
            end = min(size, int(match.group(2)) + 1) if match.group(2) else size
            status = 206
        record = self._record(handler, status)
        handler.send_response(status)
        handler.send_header("Content-Type", "application/octet-stream")
        handler.send_header("Content-Length", str(end - start))
        if status == 206:
            handler.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        handler.end_headers()
        position = start
        while position < end:
            chunk = _read(content, position, min(end, position + (1 << 20)))
            record.bytes_sent += len(chunk)
            handler.wfile.write(chunk)
            position += len(chunk)
