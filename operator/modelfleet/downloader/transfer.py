"""The byte transfer: resumable, parallel, retried, watched for stalls, verified, then renamed.

Each file goes to a stable partial ``<dir>/.modelfleet-partial/<path>.part``; the next attempt
(in this process or after a kill) resumes it with ``Range: bytes=<len>-``. Only a file whose
size and hash match is renamed into place, so a file at its final path is always whole.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import threading
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelfleet.conditions import Reason
from modelfleet.contracts.download import VerifyMode
from modelfleet.downloader import nofollow
from modelfleet.downloader.errors import DownloadError, redact
from modelfleet.downloader.fetch import BodyResponse, FetchError, HttpFetcher
from modelfleet.downloader.hub import map_status
from modelfleet.downloader.layout import partial_path
from modelfleet.downloader.progress import DownloadProgress
from modelfleet.downloader.retry import BackoffPolicy, call_with_retries
from modelfleet.downloader.verify import HASH_CHUNK, check_file

LOG = logging.getLogger(__name__)
# Per read: large enough that per-chunk Python work vanishes, small enough for progress.
CHUNK = 4 << 20
# Dirty bytes per file before writeback is started, so fsync at the end has little to wait for.
WRITEBACK_STEP = 64 << 20
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


@dataclass(frozen=True)
class FileTask:
    """One file to put in place: where from, how big, and what it must hash to."""

    path: str
    url: str
    size: int
    sha256: str | None = None
    blob_id: str | None = None


@dataclass(frozen=True)
class FileOutcome:
    """A file in place, with its sha256 when verified and the bytes this run moved for it."""

    path: str
    size: int
    sha256: str | None
    bytes_transferred: int


@dataclass(frozen=True)
class TransferOptions:
    """Knobs of the transfer; defaults are the Job's."""

    verify: VerifyMode = VerifyMode.SHA256
    policy: BackoffPolicy = field(default_factory=BackoffPolicy)
    stall_timeout: float = 300.0
    max_workers: int = 8
    fsync: bool = True


class _Digests:
    """sha256 (and the git blob id for non-LFS files) computed while bytes stream past."""

    def __init__(self, task: FileTask, enabled: bool) -> None:
        self.enabled = enabled
        self.sha256 = hashlib.sha256()
        self.blob: Any = None
        if enabled and task.sha256 is None and task.blob_id:
            self.blob = hashlib.sha1(usedforsecurity=False)
            self.blob.update(f"blob {task.size}\0".encode())

    def update(self, data: bytes | memoryview) -> None:
        if self.enabled:
            self.sha256.update(data)
            if self.blob is not None:
                self.blob.update(data)

    def check(self, task: FileTask) -> str | None:
        """Raise VerificationFailed on a mismatch; return the sha256 when it was computed."""
        if not self.enabled:
            return None
        actual = self.sha256.hexdigest()
        if task.sha256 is not None and actual != task.sha256:
            raise DownloadError(Reason.VERIFICATION_FAILED, f"{task.path}: sha256 mismatch")
        if self.blob is not None and self.blob.hexdigest() != task.blob_id:
            raise DownloadError(Reason.VERIFICATION_FAILED, f"{task.path}: git blob id mismatch")
        return actual


def _storage_error(error: OSError, path: str) -> DownloadError:
    if error.errno in _NO_SPACE:
        return DownloadError(Reason.INSUFFICIENT_STORAGE, f"no space left writing {path}")
    return DownloadError(Reason.INCOMPLETE, f"writing {path}: {error.strerror or error}")


class Transfer:
    """Puts a set of files into one revision directory."""

    def __init__(
        self,
        directory: Path,
        headers: dict[str, str],
        options: TransferOptions,
        progress: DownloadProgress,
        secrets: Sequence[str | None] = (),
        *,
        root: Path,
    ) -> None:
        self.directory = directory
        self.root = root
        """The model root: below it no link is followed (see nofollow)."""
        self._headers = {**headers, "Accept-Encoding": "identity"}
        self.options = options
        self.progress = progress
        self._secrets = secrets
        self._cancelled = threading.Event()
        self._bytes_lock = threading.Lock()
        self.bytes_transferred = 0
        self._local = threading.local()
        # The read timeout is the stall watchdog: no byte for this long aborts the attempt.
        self._fetcher = HttpFetcher(
            read_timeout=options.stall_timeout, connect_timeout=min(30.0, options.stall_timeout)
        )

    def close(self) -> None:
        """Release connections."""
        self._fetcher.close()

    def remaining_bytes(self, tasks: Sequence[FileTask]) -> int:
        """Bytes still to fetch: files not yet in place, less what partials already hold."""
        remaining = 0
        for task in tasks:
            # Also the first look at every path the transfer writes: a planted link fails here.
            if nofollow.regular_size(self.root, self.directory / task.path) == task.size:
                continue
            part = partial_path(self.directory, task.path)
            have = nofollow.regular_size(self.root, part) or 0
            remaining += max(0, task.size - have) if have <= task.size else task.size
        return remaining

    def run(self, tasks: Sequence[FileTask]) -> list[FileOutcome]:
        """Fetch every task in parallel (largest first); the first permanent failure stops all."""
        ordered = sorted(tasks, key=lambda t: t.size, reverse=True)
        outcomes: list[FileOutcome] = []
        with ThreadPoolExecutor(self.options.max_workers, thread_name_prefix="fetch") as pool:
            futures: list[Future[FileOutcome]] = [pool.submit(self.fetch, t) for t in ordered]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            if any(f.exception() is not None for f in done):
                self._cancelled.set()
                self._fetcher.abort()
                wait(futures)
            errors = [e for f in futures if (e := f.exception()) is not None]
            if errors:
                # A permanent failure explains the outcome better than the cancellations it caused.
                errors.sort(key=lambda e: not isinstance(e, DownloadError) or e.retryable)
                raise errors[0]
            outcomes = [f.result() for f in futures]
        return outcomes

    def fetch(self, task: FileTask) -> FileOutcome:
        """One file, retried with backoff; a complete verified file is never fetched again."""
        final = self.directory / task.path
        if nofollow.regular_size(self.root, final) is not None:
            present = self._check_present(task, final)
            if present is not None:
                return present

        def on_retry(attempt: int, error: DownloadError, delay: float) -> None:
            message = redact(str(error), self._secrets)
            LOG.warning(
                "%s: attempt %d failed (%s); retrying in %.1fs", task.path, attempt, message, delay
            )
            self.progress.record_error(message)

        def attempt(number: int) -> FileOutcome:
            self.progress.record_attempt(number)
            if self._cancelled.is_set():
                raise DownloadError(Reason.INCOMPLETE, "cancelled after another file failed")
            return self._attempt(task, final)

        return call_with_retries(
            attempt, self.options.policy, on_retry=on_retry, cancelled=self._cancelled
        )

    def _check_present(self, task: FileTask, final: Path) -> FileOutcome | None:
        try:
            digest = check_file(
                final,
                size=task.size,
                sha256=task.sha256,
                blob_id=task.blob_id,
                # Even with verify=none a wrong size means a broken file: check it for free.
                mode=VerifyMode.SIZE
                if self.options.verify is VerifyMode.NONE
                else self.options.verify,
            )
        except DownloadError as error:
            LOG.warning(
                "%s is on disk but fails verification (%s): fetching again", task.path, error
            )
            nofollow.unlink(self.root, final)
            return None
        self.progress.add_bytes(task.size)
        self.progress.file_done()
        return FileOutcome(task.path, task.size, digest, 0)

    def _attempt(self, task: FileTask, final: Path) -> FileOutcome:
        part = partial_path(self.directory, task.path)
        state = _AttemptState(task, part, self.options.verify is VerifyMode.SHA256, self.progress)
        try:
            offset = nofollow.regular_size(self.root, part) or 0
            if offset > task.size:
                nofollow.unlink(self.root, part)
                offset = 0
            if offset and state.digests.enabled:
                self._hash_prefix(part, offset, state.digests)
            state.count(offset)
            state.offset = offset
            if offset < task.size:
                self._stream(state)
            size = nofollow.regular_size(self.root, part) or 0
            if size != task.size:
                raise DownloadError(
                    Reason.NETWORK_ERROR, f"{task.path}: got {size} of {task.size} bytes"
                )
            try:
                sha256 = state.digests.check(task)
            except DownloadError:
                # A corrupt partial is useless: the next attempt starts from byte 0.
                nofollow.unlink(self.root, part)
                raise
            if self.options.fsync:
                with nofollow.open_file(self.root, part, os.O_RDONLY) as fd:
                    os.fsync(fd)
            nofollow.replace(self.root, part, final)
        except _StorageError as error:
            state.uncount()
            raise _storage_error(error.error, task.path) from None
        except OSError as error:
            state.uncount()
            raise _storage_error(error, task.path) from None
        except BaseException:
            state.uncount()
            raise
        self.progress.file_done()
        return FileOutcome(task.path, task.size, sha256, state.received)

    def _stream(self, state: _AttemptState) -> None:
        """GET from ``state.offset`` into the partial file."""
        task = state.task
        headers = dict(self._headers)
        if state.offset:
            headers["Range"] = f"bytes={state.offset}-"
        try:
            with self._fetcher.get(task.url, headers) as response:
                status = response.status
                if status == 416:
                    nofollow.unlink(self.root, state.part)
                    raise DownloadError(Reason.NETWORK_ERROR, f"{task.path}: range not satisfiable")
                if status >= 400:
                    raise map_status(status, response.headers, task.path)
                append = True
                if state.offset and (status != 206 or not _range_starts_at(response, state.offset)):
                    # The server ignored Range: start the file over rather than append garbage.
                    LOG.info("%s: server ignored Range; restarting from byte 0", task.path)
                    state.restart()
                    append = False
                _check_declared_lengths(response, task, task.size - state.offset)
                self._write_body(state, append, response)
        except TimeoutError:
            raise DownloadError(
                Reason.DOWNLOAD_STALLED,
                f"{task.path}: no bytes for {self.options.stall_timeout:g}s",
            ) from None
        except FetchError as error:
            if self._cancelled.is_set():
                raise DownloadError(
                    Reason.INCOMPLETE, "cancelled after another file failed"
                ) from None
            raise DownloadError(
                Reason.NETWORK_ERROR,
                f"{task.path}: {redact(str(error) or type(error).__name__, self._secrets)}",
            ) from None

    def _write_body(self, state: _AttemptState, append: bool, response: BodyResponse) -> None:
        """Socket to buffer to file, hashing the same buffer: no copy beyond the kernel's."""
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
        try:
            fd = nofollow.open_fd(self.root, state.part, flags, create_parents=True)
        except OSError as error:
            raise _StorageError(error) from None
        try:
            self._copy_body(state, append, response, fd)
        finally:
            os.close(fd)

    def _copy_body(
        self, state: _AttemptState, append: bool, response: BodyResponse, fd: int
    ) -> None:
        """Read the body into this thread's buffer, write it to ``fd`` and hash it."""
        task, limit = state.task, state.task.size - state.offset
        buffer = self._buffer()
        try:
            written_back = position = state.offset if append else 0
            while True:
                if self._cancelled.is_set():
                    raise DownloadError(Reason.INCOMPLETE, "cancelled after another file failed")
                # One byte more than is left: a server sending too much is caught, not trusted.
                want = min(len(buffer), limit - state.received + 1)
                n = response.readinto(buffer[:want])
                if not n:
                    break
                if state.received + n > limit:
                    raise DownloadError(
                        Reason.VERIFICATION_FAILED,
                        f"{task.path}: server sent more than {task.size} bytes",
                    )
                chunk = buffer[:n]
                try:
                    _write_all(fd, chunk)
                except OSError as error:
                    raise _StorageError(error) from None
                state.digests.update(chunk)
                state.received += n
                position += n
                state.count(n)
                with self._bytes_lock:
                    self.bytes_transferred += n
                if self.options.fsync and position - written_back >= WRITEBACK_STEP:
                    _start_writeback(fd, written_back, position - written_back)
                    written_back = position
        except DownloadError as error:
            if error.reason is Reason.VERIFICATION_FAILED:
                nofollow.unlink(self.root, state.part)
            raise

    def _hash_prefix(self, part: Path, length: int, digests: _Digests) -> None:
        """Hash what a partial already holds, so a resumed file is verified whole."""
        with nofollow.open_file(self.root, part, os.O_RDONLY) as fd:
            remaining = length
            while remaining > 0:
                chunk = os.read(fd, min(HASH_CHUNK, remaining))
                if not chunk:
                    break
                digests.update(chunk)
                remaining -= len(chunk)

    def _buffer(self) -> memoryview:
        """This worker thread's read buffer, allocated once."""
        buffer: memoryview | None = getattr(self._local, "buffer", None)
        if buffer is None:
            buffer = self._local.buffer = memoryview(bytearray(CHUNK))
        return buffer


class _StorageError(Exception):
    """An OSError of the local disk, kept apart from network errors (both are OSError)."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


class _AttemptState:
    """One attempt at one file: where it resumes, what it hashed, what it added to progress."""

    def __init__(
        self, task: FileTask, part: Path, verify: bool, progress: DownloadProgress
    ) -> None:
        self.task, self.part, self.progress = task, part, progress
        self.digests = _Digests(task, verify)
        self.offset = 0
        self.received = 0
        self._counted = 0

    def count(self, n: int) -> None:
        self._counted += n
        self.progress.add_bytes(n)

    def uncount(self) -> None:
        """Take back what this attempt reported: the next attempt counts its partial again."""
        self.progress.add_bytes(-self._counted)
        self._counted = 0

    def restart(self) -> None:
        self.count(-self.offset)
        self.digests = _Digests(self.task, self.digests.enabled)
        self.offset = 0


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        data = data[os.write(fd, data) :]


def _start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing a range to disk now, without waiting for it.

    Linux starts asynchronous writeback of dirty pages on ``POSIX_FADV_DONTNEED``, so the
    ``fsync`` at the end of the file waits only for the tail instead of the whole file.
    """
    if hasattr(os, "posix_fadvise"):
        with suppress(OSError):
            os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)


def _check_declared_lengths(response: BodyResponse, task: FileTask, expected: int) -> None:
    """Refuse an answer whose Content-Length (the body) or X-Linked-Size (the whole file) is
    not the number the listing implies, before a byte of it is written: a hub contradicting
    its own listing is not trusted with the partial, and a non-numeric length would leave
    http.client reading until the connection closes."""
    for header, wanted in (("Content-Length", expected), ("X-Linked-Size", task.size)):
        value = response.header(header)
        if value is not None and not (value.isascii() and value.isdigit() and int(value) == wanted):
            raise DownloadError(
                Reason.VERIFICATION_FAILED,
                f"{task.path}: the hub's {header} {value[:40]!r} disagrees with the "
                f"{wanted} bytes its listing implies",
            )


def _range_starts_at(response: BodyResponse, offset: int) -> bool:
    content_range = response.header("Content-Range") or ""
    return content_range.startswith(f"bytes {offset}-")
