"""The test hub: ``ThreadingHTTPServer`` on 127.0.0.1 with switchable faults.

Endpoints (what huggingface_hub 2.4 calls): ``GET /api/models/{repo}[/revision/{rev}]``,
``GET /api/models/{repo}/tree/{rev}[/{path}]``, ``POST /api/models/{repo}/paths-info/{rev}``,
``HEAD``/``GET /{repo}/resolve/{rev}/{path}`` with Range; the same under ``/api/datasets/`` and
``/datasets/`` for dataset repositories. Errors carry the ``X-Error-Code``
values huggingface_hub maps to typed errors.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

from tests.hubserver.repos import BLOCK, LazyBlob

Content = bytes | LazyBlob
LFS_THRESHOLD = 1024  # files at least this large are "LFS" (listed with sha256)
_LFS_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".msgpack", ".h5")
INVALID_TOKEN_MESSAGE = "Invalid credentials in Authorization header"


@dataclass
class StoredFile:
    """One file of a commit, with the metadata the hub advertises for it."""

    path: str
    content: Content
    size: int
    sha256: str
    blob_id: str
    lfs: bool

    def read(self, offset: int, length: int) -> bytes:
        if isinstance(self.content, LazyBlob):
            return self.content.read(offset, length)
        return self.content[offset : offset + length]


def _git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def _stored(path: str, content: Content) -> StoredFile:
    if isinstance(content, LazyBlob):
        size, sha256 = content.size, content.sha256
    else:
        size, sha256 = len(content), hashlib.sha256(content).hexdigest()
    lfs = size >= LFS_THRESHOLD or path.endswith(_LFS_SUFFIXES)
    if lfs:
        pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n"
        blob_id = _git_blob_id(pointer.encode())
    else:
        assert isinstance(content, bytes)
        blob_id = _git_blob_id(content)
    return StoredFile(path, content, size, sha256, blob_id, lfs)


@dataclass
class Commit:
    """An immutable set of files; its sha is computed from its content and parent.

    A hostile or huge listing: ``listed_extra`` synthetic files (``filler/0000000.bin``...,
    made page by page, never stored, a GET of one is 404) and ``raw_entries`` (tree entries
    listed exactly as given: any size, any type, the same path twice) follow the real files.
    """

    sha: str
    files: dict[str, StoredFile]
    listed_extra: int = 0
    raw_entries: list[dict[str, object]] = field(default_factory=list)


@dataclass
class Repo:
    """A model repo: commits, branches and tags, and who may read it."""

    repo_id: str
    commits: dict[str, Commit] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)
    gated: bool = False
    token: str | None = None


@dataclass
class Fault:
    """A misbehaviour applied to matching requests, ``times`` times (None = forever).

    ``path`` is a glob on the file path of resolve requests; ``"api"`` matches API calls; None
    matches every resolve request.
    """

    path: str | None = None
    status: int | None = None  # e.g. 429 or 503
    retry_after: float | None = None
    cut_after: int | None = None  # body bytes sent before the connection is cut
    stall_after: int | None = None  # body bytes sent before the stall
    stall_seconds: float = 0.0
    corrupt: bool = False  # flip one byte of the body (sha256 no longer matches)
    ignore_range: bool = False  # answer Range requests with 200 and the full body
    throttle_bps: float | None = None  # bytes per second
    # Answer with a 302 to ``redirect_to`` + the request's path (a base such as
    # http://127.0.0.1:PORT, http://169.254.169.254 or the hub's own endpoint for a loop).
    redirect_to: str | None = None
    # Header values sent instead of the real ones (same name, any case) or added: a
    # Content-Length that disagrees with the body, a negative X-Linked-Size, a huge header.
    headers: dict[str, str] | None = None
    times: int | None = None
    hits: int = 0

    @property
    def kind(self) -> str:
        """What the fault replaces: the status, the answer (a redirect), headers or the body."""
        if self.status is not None:
            return "status"
        if self.redirect_to is not None:
            return "redirect"
        if self.headers is not None:
            return "headers"
        return "body"

    def matches(self, file_path: str | None) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        if self.path == "api":
            return file_path is None
        if file_path is None:
            return False
        return self.path is None or fnmatch.fnmatch(file_path, self.path)


@dataclass
class RequestRecord:
    """One request the hub answered; recorded before the response goes out, so no race."""

    method: str
    path: str
    file: str | None
    status: int
    range: str | None
    authorized: bool
    bytes_sent: int


class _Listing:
    """A commit's tree: its files and folders, then (the whole tree listed recursively) its raw
    entries and ``listed_extra`` synthetic files made by index, so a page of a listing of
    200,000 entries costs one page of memory."""

    def __init__(self, commit: Commit, stored: list[dict[str, object]], whole: bool) -> None:
        self._head = stored + commit.raw_entries if whole else stored
        self._extra = commit.listed_extra if whole else 0

    def __len__(self) -> int:
        return len(self._head) + self._extra

    def entries(self, start: int, stop: int) -> Iterator[dict[str, object]]:
        """Entries ``[start, stop)``."""
        yield from self._head[start:stop]
        for number in range(max(0, start - len(self._head)), max(0, stop - len(self._head))):
            yield {
                "type": "file",
                "oid": f"{number:040x}",
                "size": 1,
                "path": f"filler/{number:07d}.bin",
            }


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        """Silence per-request logging."""

    def do_HEAD(self) -> None:
        self.server.hub._handle(self, head=True)

    def do_GET(self) -> None:
        self.server.hub._handle(self, head=False)

    def do_POST(self) -> None:
        self.server.hub._handle_post(self)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    hub: HubServer


class HubServer:
    """A Hugging Face Hub stand-in for tests; see :meth:`add_repo` and :meth:`add_fault`."""

    def __init__(
        self, valid_tokens: tuple[str, ...] = (), *, tree_page_size: int | None = 1000
    ) -> None:
        self.repos: dict[str, Repo] = {}
        # Tree entries per page, with a Link to the next (the Hub pages by 1000); None answers
        # any listing in one response, as a hub that ignores paging would.
        self.tree_page_size = tree_page_size
        self.faults: list[Fault] = []
        self.requests: list[RequestRecord] = []
        self.valid_tokens: set[str] = set(valid_tokens)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._tls = False

    # -- lifecycle -------------------------------------------------------------------------
    def start(
        self, port: int = 0, host: str = "127.0.0.1", *, tls: ssl.SSLContext | None = None
    ) -> HubServer:
        """Bind ``host`` (127.0.0.1 unless it runs in a test's pod) on ``port`` (ephemeral by
        default) and serve in a thread; with ``tls`` (a server context) over https."""
        server = _Server((host, port), _Handler)
        server.hub = self
        if tls is not None:
            # The handshake happens in the handler's thread, on its first read.
            server.socket = tls.wrap_socket(
                server.socket, server_side=True, do_handshake_on_connect=False
            )
            self._tls = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True, name="hub")
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; stalled responses give up at once."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        """Base URL, for ``HF_ENDPOINT``."""
        assert self._server is not None, "start() the hub first"
        host, port = self._server.server_address[:2]
        return f"{'https' if self._tls else 'http'}://{host!s}:{port}"

    # -- content ---------------------------------------------------------------------------
    def add_repo(
        self,
        repo_id: str,
        files: dict[str, Content],
        *,
        branches: tuple[str, ...] = ("main",),
        gated: bool = False,
        token: str | None = None,
        repo_type: str = "model",
        commit_id: str | None = None,
        listed_extra: int = 0,
        raw_entries: list[dict[str, object]] | None = None,
    ) -> str:
        """Create a repo with one commit that ``branches`` point at; return its sha. A dataset
        repository is kept, and named to add_commit, as ``datasets/<repo_id>``. ``commit_id``,
        ``listed_extra`` and ``raw_entries`` play a hostile hub (see :meth:`add_commit` and
        :class:`Commit`)."""
        repo = Repo(repo_id, gated=gated, token=token)
        if token is not None:
            self.valid_tokens.add(token)
        key = repo_id if repo_type == "model" else f"{repo_type}s/{repo_id}"
        self.repos[key] = repo
        sha = self.add_commit(key, files, branches=branches, commit_id=commit_id)
        repo.commits[sha].listed_extra = listed_extra
        repo.commits[sha].raw_entries = list(raw_entries or [])
        return sha

    def add_commit(
        self,
        repo_id: str,
        files: dict[str, Content],
        *,
        branches: tuple[str, ...] = ("main",),
        tags: tuple[str, ...] = (),
        commit_id: str | None = None,
    ) -> str:
        """Add a commit (the full file set) and move ``branches``/``tags`` to it; return its sha.

        A hostile hub: ``commit_id`` replaces the computed sha as the commit id the hub reports
        and answers to (``../../other/model/<sha>``, ``/abs/path``), and ``files`` may carry any
        name (``../x``, ``/etc/x``); both are served as they are.
        """
        repo = self.repos[repo_id]
        stored = {path: _stored(path, content) for path, content in files.items()}
        digest = hashlib.sha1(usedforsecurity=False)
        digest.update(f"{repo_id}\n{len(repo.commits)}\n".encode())
        for path in sorted(stored):
            digest.update(f"{path}\0{stored[path].sha256}\n".encode())
        sha = digest.hexdigest() if commit_id is None else commit_id
        repo.commits[sha] = Commit(sha, stored)
        for ref in (*branches, *tags):
            repo.refs[ref] = sha
        return sha

    def add_fault(self, fault: Fault) -> Fault:
        """Switch a fault on; returns it so a test can read ``hits``."""
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        """Switch every fault off."""
        with self._lock:
            self.faults.clear()

    # -- observations ----------------------------------------------------------------------
    def gets(self, file_path: str | None = None) -> list[RequestRecord]:
        """GET resolve requests, for one file or all."""
        with self._lock:
            return [
                r
                for r in self.requests
                if r.method == "GET" and r.file is not None and file_path in (None, r.file)
            ]

    def bytes_sent(self, file_path: str | None = None) -> int:
        """Body bytes sent by resolve GETs, for one file or all."""
        return sum(r.bytes_sent for r in self.gets(file_path))

    def api_requests(self) -> list[RequestRecord]:
        """Requests to ``/api/models/...``."""
        with self._lock:
            return [r for r in self.requests if r.path.startswith("/api/models/")]

    def repo_requests(self) -> list[RequestRecord]:
        """Requests about repos (API and resolve), without huggingface_hub's other calls."""
        with self._lock:
            return [
                r for r in self.requests if r.file is not None or r.path.startswith("/api/models/")
            ]

    def reset_counters(self) -> None:
        """Forget the request log."""
        with self._lock:
            self.requests.clear()

    # -- request handling ------------------------------------------------------------------
    def _record(self, handler: _Handler, file: str | None, status: int) -> RequestRecord:
        record = RequestRecord(
            method=handler.command,
            path=handler.path,
            file=file,
            status=status,
            range=handler.headers.get("Range"),
            authorized="Authorization" in handler.headers,
            bytes_sent=0,
        )
        with self._lock:
            self.requests.append(record)
        return record

    def _take_fault(self, file: str | None, kind: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.kind == kind and fault.matches(file):
                    fault.hits += 1
                    return fault
        return None

    def _redirected(self, handler: _Handler, file: str | None) -> bool:
        """Answer with the redirect a fault asks for, if one does."""
        fault = self._take_fault(file, "redirect")
        if fault is None:
            return False
        assert fault.redirect_to is not None
        self._record(handler, file, 302)
        handler.send_response(302)
        handler.send_header("Location", fault.redirect_to + handler.path)
        handler.send_header("Content-Length", "0")
        handler.end_headers()
        return True

    def _send_headers(self, handler: _Handler, headers: dict[str, str], file: str | None) -> None:
        """``headers``, with what a headers fault replaces or adds, and the end of them."""
        fault = self._take_fault(file, "headers")
        if fault is not None and fault.headers is not None:
            lowered = {name.lower(): name for name in headers}
            for name, value in fault.headers.items():
                headers.pop(lowered.get(name.lower(), name), None)
                headers[name] = value
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.end_headers()

    def _send_error(
        self,
        handler: _Handler,
        status: int,
        code: str | None,
        message: str,
        file: str | None,
        *,
        extra: dict[str, str] | None = None,
    ) -> None:
        body = json.dumps({"error": message}).encode()
        self._record(handler, file, status)
        handler.send_response(status)
        if code:
            handler.send_header("X-Error-Code", code)
        handler.send_header("X-Error-Message", message)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        for name, value in (extra or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(body)

    def _send_json(self, handler: _Handler, payload: object, *, link: str | None = None) -> None:
        body = json.dumps(payload).encode()
        self._record(handler, None, 200)
        handler.send_response(200)
        headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
        if link is not None:
            headers["Link"] = f'<{link}>; rel="next"'
        self._send_headers(handler, headers, None)
        handler.wfile.write(body)

    def _send_json_stream(self, handler: _Handler, entries: Iterator[dict[str, object]]) -> None:
        """A JSON list sent chunked as it is made: a huge listing in little memory."""
        self._record(handler, None, 200)
        handler.send_response(200)
        self._send_headers(
            handler, {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}, None
        )

        def chunk(data: bytes) -> None:
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

        batch: list[bytes] = []
        first = True
        for entry in entries:
            batch.append((b"[" if first else b",") + json.dumps(entry).encode())
            first = False
            if len(batch) == 1000:
                chunk(b"".join(batch))
                batch.clear()
        batch.append(b"[]" if first else b"]")
        chunk(b"".join(batch))
        handler.wfile.write(b"0\r\n\r\n")

    def _token(self, handler: _Handler) -> str | None:
        auth = handler.headers.get("Authorization", "")
        return auth.removeprefix("Bearer ").strip() or None

    def _authorize(self, handler: _Handler, repo: Repo, file: str | None) -> bool:
        token = self._token(handler)
        if token is not None and token not in self.valid_tokens:
            self._send_error(handler, 401, None, INVALID_TOKEN_MESSAGE, file)
            return False
        if repo.gated and token != repo.token:
            self._send_error(
                handler,
                401 if token is None else 403,
                "GatedRepo",
                f"Access to model {repo.repo_id} is restricted.",
                file,
            )
            return False
        if repo.token is not None and not repo.gated and token != repo.token:
            self._send_error(handler, 401, "RepoNotFound", "Repository not found", file)
            return False
        return True

    def _resolve_ref(self, repo: Repo, revision: str) -> Commit | None:
        if revision in repo.commits:
            return repo.commits[revision]
        sha = repo.refs.get(revision)
        return repo.commits[sha] if sha else None

    def _handle(self, handler: _Handler, *, head: bool) -> None:
        url = urlsplit(handler.path)
        parts = [unquote(p) for p in url.path.split("/") if p]
        try:
            if parts[:2] == ["api", "models"]:
                self._handle_api(handler, parts[2:], parse_qs(url.query))
            elif parts[:2] == ["api", "datasets"]:
                self._handle_api(handler, ["datasets", *parts[2:]], parse_qs(url.query))
            elif "resolve" in parts[1:4]:
                self._handle_resolve(handler, parts, head=head)
            else:
                self._send_error(handler, 404, None, "Not Found", None)
        except (BrokenPipeError, ConnectionResetError):
            handler.close_connection = True

    def _handle_post(self, handler: _Handler) -> None:
        """``POST /api/models/{repo}/paths-info/{rev}`` (form ``paths=...``): mirrors use it."""
        url = urlsplit(handler.path)
        parts = [unquote(p) for p in url.path.split("/") if p]
        length = int(handler.headers.get("Content-Length") or 0)
        form = parse_qs(handler.rfile.read(length).decode(), keep_blank_values=True)
        try:
            if parts[:2] != ["api", "models"] or "paths-info" not in parts:
                self._send_error(handler, 404, None, "Not Found", None)
                return
            marker = parts.index("paths-info")
            repo = self.repos.get("/".join(parts[2:marker]))
            if repo is None or len(parts) != marker + 2:
                self._send_error(handler, 401, "RepoNotFound", "Repository not found", None)
                return
            if not self._authorize(handler, repo, None):
                return
            commit = self._resolve_ref(repo, parts[marker + 1])
            if commit is None:
                self._send_error(handler, 404, "RevisionNotFound", "Invalid rev id", None)
                return
            wanted = set(form.get("paths", []))
            folders = {
                "/".join(path.split("/")[:depth])
                for path in commit.files
                for depth in range(1, path.count("/") + 1)
            }
            entries: list[dict[str, object]] = [
                self._file_entry(commit.files[path]) for path in sorted(wanted & set(commit.files))
            ]
            entries += [
                {"type": "directory", "oid": "0" * 40, "size": 0, "path": folder}
                for folder in sorted(wanted & folders)
            ]
            self._send_json(handler, entries)
        except (BrokenPipeError, ConnectionResetError):
            handler.close_connection = True

    def _find_repo(self, parts: list[str]) -> tuple[Repo | None, list[str]]:
        for width in (3, 2, 1) if parts[:1] == ["datasets"] else (2, 1):
            repo = self.repos.get("/".join(parts[:width]))
            if repo is not None:
                return repo, parts[width:]
        return None, parts

    def _handle_api(self, handler: _Handler, parts: list[str], query: dict[str, list[str]]) -> None:
        fault = self._take_fault(None, "status")
        if fault is not None:
            self._status_fault(handler, fault, None)
            return
        if self._redirected(handler, None):
            return
        repo, rest = self._find_repo(parts)
        if repo is None:
            self._send_error(handler, 401, "RepoNotFound", "Repository not found", None)
            return
        if not self._authorize(handler, repo, None):
            return
        if not rest or rest[0] == "revision":
            revision = rest[1] if len(rest) > 1 else "main"
            commit = self._resolve_ref(repo, revision)
            if commit is None:
                self._send_error(
                    handler, 404, "RevisionNotFound", f"Invalid rev id: {revision}", None
                )
                return
            info = self._model_info(repo, commit)
            if "expand" in query:  # only what was asked for, as the Hub answers
                info = {k: v for k, v in info.items() if k in {"_id", "id", *query["expand"]}}
            self._send_json(handler, info)
        elif rest[0] == "tree" and len(rest) >= 2:
            commit = self._resolve_ref(repo, rest[1])
            if commit is None:
                self._send_error(
                    handler, 404, "RevisionNotFound", f"Invalid rev id: {rest[1]}", None
                )
                return
            recursive = query.get("recursive", ["false"])[0].lower() == "true"
            prefix = "/".join(rest[2:])
            listing = _Listing(
                commit, self._tree(commit, prefix, recursive), recursive and not prefix
            )
            self._send_tree(handler, listing, int(query.get("cursor", ["0"])[0]))
        else:
            self._send_error(handler, 404, None, "Not Found", None)

    def _model_info(self, repo: Repo, commit: Commit) -> dict[str, object]:
        return {
            "_id": hashlib.md5(repo.repo_id.encode(), usedforsecurity=False).hexdigest()[:24],
            "id": repo.repo_id,
            "modelId": repo.repo_id,
            "sha": commit.sha,
            "private": repo.token is not None,
            "gated": "manual" if repo.gated else False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "library_name": "transformers",
            "lastModified": "2024-01-01T00:00:00.000Z",
            "createdAt": "2024-01-01T00:00:00.000Z",
            "siblings": [{"rfilename": p} for p in sorted(commit.files)],
        }

    def _send_tree(self, handler: _Handler, listing: _Listing, cursor: int) -> None:
        """One page of ``listing`` from ``cursor`` with a Link to the next, or all of it."""
        if self.tree_page_size is None:
            self._send_json_stream(handler, listing.entries(0, len(listing)))
            return
        stop = min(len(listing), cursor + self.tree_page_size)
        link = None
        if stop < len(listing):
            url = urlsplit(handler.path)
            query = {k: v for k, v in parse_qs(url.query).items() if k != "cursor"}
            query["cursor"] = [str(stop)]
            link = f"{self.endpoint}{url.path}?{urlencode(query, doseq=True)}"
        self._send_json(handler, list(listing.entries(cursor, stop)), link=link)

    def _tree(self, commit: Commit, prefix: str, recursive: bool) -> list[dict[str, object]]:
        entries: dict[str, dict[str, object]] = {}
        base = f"{prefix}/" if prefix else ""
        for path, stored in sorted(commit.files.items()):
            if not path.startswith(base):
                continue
            rest = path[len(base) :].split("/")
            # Folders on the way, then the file itself (if within depth).
            for depth in range(1, len(rest)):
                folder = base + "/".join(rest[:depth])
                entries.setdefault(
                    folder, {"type": "directory", "oid": "0" * 40, "size": 0, "path": folder}
                )
                if not recursive:
                    break
            if len(rest) > 1 and not recursive:
                continue
            entries[path] = self._file_entry(stored)
        return list(entries.values())

    @staticmethod
    def _file_entry(stored: StoredFile) -> dict[str, object]:
        entry: dict[str, object] = {
            "type": "file",
            "oid": stored.blob_id,
            "size": stored.size,
            "path": stored.path,
        }
        if stored.lfs:
            entry["lfs"] = {"oid": stored.sha256, "size": stored.size, "pointerSize": 134}
        return entry

    def _status_fault(self, handler: _Handler, fault: Fault, file: str | None) -> None:
        extra = {}
        if fault.retry_after is not None:
            extra["Retry-After"] = f"{fault.retry_after:g}"
        assert fault.status is not None
        self._send_error(handler, fault.status, None, "injected fault", file, extra=extra)

    def _handle_resolve(self, handler: _Handler, parts: list[str], *, head: bool) -> None:
        index = parts.index("resolve", 1)
        repo = self.repos.get("/".join(parts[:index]))
        file = "/".join(parts[index + 2 :])
        if repo is None:
            self._send_error(handler, 401, "RepoNotFound", "Repository not found", file)
            return
        if not self._authorize(handler, repo, file):
            return
        commit = self._resolve_ref(repo, parts[index + 1])
        if commit is None:
            self._send_error(handler, 404, "RevisionNotFound", "Invalid rev id", file)
            return
        stored = commit.files.get(file)
        if stored is None:
            self._send_error(handler, 404, "EntryNotFound", "Entry not found", file)
            return
        fault = self._take_fault(file, "status")
        if fault is not None:
            self._status_fault(handler, fault, file)
            return
        if self._redirected(handler, file):
            return
        body_fault = None if head else self._take_fault(file, "body")
        start, end = 0, stored.size
        status = 200
        range_header = handler.headers.get("Range")
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", range_header or "")
        if match and not (body_fault and body_fault.ignore_range):
            start = int(match.group(1))
            if start >= stored.size:
                self._send_error(
                    handler,
                    416,
                    None,
                    "Range Not Satisfiable",
                    file,
                    extra={"Content-Range": f"bytes */{stored.size}"},
                )
                return
            if match.group(2):
                end = min(stored.size, int(match.group(2)) + 1)
            status = 206
        record = self._record(handler, file, status)
        handler.send_response(status)
        etag = stored.sha256 if stored.lfs else stored.blob_id
        headers = {"X-Repo-Commit": commit.sha, "ETag": f'"{etag}"'}
        if stored.lfs:
            headers["X-Linked-Etag"] = f'"{stored.sha256}"'
            headers["X-Linked-Size"] = str(stored.size)
        headers["Accept-Ranges"] = "bytes"
        headers["Content-Type"] = "application/octet-stream"
        headers["Content-Length"] = str(end - start)
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{stored.size}"
        self._send_headers(handler, headers, file)
        if not head:
            self._send_body(handler, record, stored, start=start, end=end, fault=body_fault)

    def _body_chunks(self, stored: StoredFile, start: int, end: int) -> Iterator[bytes]:
        position = start
        while position < end:
            # Align to blocks after the first chunk so lazy blobs slice cheaply.
            length = min(end - position, BLOCK - position % BLOCK)
            yield stored.read(position, length)
            position += length

    def _send_body(
        self,
        handler: _Handler,
        record: RequestRecord,
        stored: StoredFile,
        *,
        start: int,
        end: int,
        fault: Fault | None,
    ) -> None:
        def write(data: bytes) -> None:
            # Counted before the write: a client that has the bytes always sees them counted.
            record.bytes_sent += len(data)
            handler.wfile.write(data)

        started = time.monotonic()
        stalled = False
        corrupt_at = start + (end - start) // 2
        for raw in self._body_chunks(stored, start, end):
            chunk = raw
            sent = record.bytes_sent
            if self._stopping.is_set():
                break
            if fault is not None:
                if fault.corrupt and start + sent <= corrupt_at < start + sent + len(chunk):
                    i = corrupt_at - start - sent
                    chunk = chunk[:i] + bytes([chunk[i] ^ 0xFF]) + chunk[i + 1 :]
                if (
                    fault.stall_after is not None
                    and not stalled
                    and sent + len(chunk) > fault.stall_after
                ):
                    head = fault.stall_after - sent
                    write(chunk[:head])
                    chunk = chunk[head:]
                    stalled = True
                    self._stopping.wait(fault.stall_seconds)
                sent = record.bytes_sent
                if fault.cut_after is not None and sent + len(chunk) >= fault.cut_after:
                    write(chunk[: fault.cut_after - sent])
                    handler.close_connection = True
                    handler.connection.shutdown(socket.SHUT_RDWR)
                    return
            write(chunk)
            if fault is not None and fault.throttle_bps:
                ahead = record.bytes_sent / fault.throttle_bps - (time.monotonic() - started)
                if ahead > 0:
                    self._stopping.wait(ahead)
