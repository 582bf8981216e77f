"""Writes on the weights volume that no symbolic link planted in it can send anywhere else.

Whoever else mounts the volume (another Model's pods share the claim) can leave a link where
the downloader will write: at a partial, a final file, the manifest, a directory on the way.
So every path below the model root is walked one component at a time, each opened with
``O_NOFOLLOW`` relative to its parent's descriptor: a link is refused (VerificationFailed)
rather than followed, and nothing checked can be swapped for a link between check and use. The
root itself is the mount, chosen by the operator, and trusted. Files are opened non-blocking
and must be regular, so a FIFO left in place of a partial cannot hang the download either.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from modelfleet.conditions import Reason
from modelfleet.downloader.errors import DownloadError

_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
# What opening a link with O_NOFOLLOW (or a file as a directory) fails with.
_IN_THE_WAY = frozenset({errno.ELOOP, errno.ENOTDIR})


def refused(path: Path) -> DownloadError:
    """The error for a link, or something other than a directory or file, in the way."""
    return DownloadError(
        Reason.VERIFICATION_FAILED,
        f"refusing {path}: a symbolic link or a special file is in the way (nothing is "
        "written through it; remove it from the volume)",
    )


def _enter(parent: int, name: str, where: Path, *, create: bool) -> int:
    if create:
        with suppress(FileExistsError):
            os.mkdir(name, dir_fd=parent)
    try:
        return os.open(name, _DIRECTORY, dir_fd=parent)
    except OSError as error:
        if error.errno in _IN_THE_WAY:
            raise refused(where) from None
        raise


@contextmanager
def open_directory(root: Path, path: Path, *, create: bool = False) -> Iterator[int]:
    """A descriptor of ``path`` (``root`` or below it) reached without following a link below
    ``root``; missing directories (the root too) are made on the way when ``create``."""
    if create:
        root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        where = root
        for name in path.relative_to(root).parts:
            where = where / name
            child = _enter(fd, name, where, create=create)
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)


def make_directories(root: Path, path: Path) -> None:
    """``mkdir -p path`` below ``root``, refusing a link on the way."""
    with open_directory(root, path, create=True):
        pass


def _open_in(parent: int, path: Path, flags: int, mode: int) -> int:
    try:
        fd = os.open(path.name, flags | _FILE, mode, dir_fd=parent)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise refused(path) from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise refused(path)
    return fd


def open_fd(
    root: Path, path: Path, flags: int, *, create_parents: bool = False, mode: int = 0o644
) -> int:
    """A descriptor (the caller closes it) of the regular file ``path``, opened with ``flags``
    and never through a link, at the file or on the way to it."""
    with open_directory(root, path.parent, create=create_parents) as parent:
        return _open_in(parent, path, flags, mode)


@contextmanager
def open_file(root: Path, path: Path, flags: int) -> Iterator[int]:
    """:func:`open_fd` as a context that closes the descriptor."""
    fd = open_fd(root, path, flags)
    try:
        yield fd
    finally:
        os.close(fd)


def status(root: Path, path: Path) -> os.stat_result | None:
    """What is at ``path`` (not followed), None when nothing is; a link there is refused."""
    try:
        with open_directory(root, path.parent) as parent:
            found = os.stat(path.name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(found.st_mode):
        raise refused(path)
    return found


def regular_size(root: Path, path: Path) -> int | None:
    """Size of the regular file at ``path``, None when nothing is there; anything else there
    (a link, a FIFO, a directory) is refused."""
    found = status(root, path)
    if found is None:
        return None
    if not stat.S_ISREG(found.st_mode):
        raise refused(path)
    return found.st_size


def unlink(root: Path, path: Path) -> None:
    """Remove the entry ``path`` itself (a link, never what it points to); missing is fine."""
    try:
        with open_directory(root, path.parent) as parent:
            os.unlink(path.name, dir_fd=parent)
    except FileNotFoundError:
        pass


def replace(root: Path, source: Path, target: Path) -> None:
    """Rename ``source`` to ``target`` (a link at ``target`` is replaced, not written through)."""
    with (
        open_directory(root, source.parent) as source_dir,
        open_directory(root, target.parent, create=True) as target_dir,
    ):
        os.replace(source.name, target.name, src_dir_fd=source_dir, dst_dir_fd=target_dir)


def remove_tree(root: Path, path: Path) -> None:
    """Remove the directory ``path`` and all in it; links inside are removed, never followed,
    and a link at ``path`` itself is refused. FileNotFoundError when it is not there."""
    with open_directory(root, path.parent) as parent:
        if stat.S_ISLNK(os.stat(path.name, dir_fd=parent, follow_symlinks=False).st_mode):
            raise refused(path)
        shutil.rmtree(path.name, dir_fd=parent)


def fsync_directory(root: Path, path: Path) -> None:
    """Make the entries of ``path`` durable."""
    with open_directory(root, path) as fd:
        os.fsync(fd)


def write_new_file(root: Path, path: Path, data: bytes, *, fsync: bool = True) -> None:
    """Write ``data`` to ``path`` atomically: a fresh temp file beside it, fsync, rename. A link
    found at ``path`` is refused (one planted later is replaced, never written through)."""
    temp = path.with_name(f"{path.name}.{secrets.token_hex(6)}.tmp")
    with open_directory(root, path.parent) as parent:
        with suppress(FileNotFoundError):
            if stat.S_ISLNK(os.stat(path.name, dir_fd=parent, follow_symlinks=False).st_mode):
                raise refused(path)
        fd = _open_in(parent, temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb", closefd=False) as handle:
                handle.write(data)
            if fsync:
                os.fsync(fd)
            os.replace(temp.name, path.name, src_dir_fd=parent, dst_dir_fd=parent)
        except BaseException:
            with suppress(FileNotFoundError):
                os.unlink(temp.name, dir_fd=parent)
            raise
        finally:
            os.close(fd)
        if fsync:
            os.fsync(parent)
