"""Where weights live on the volume: ``<root>/<org>/<name>/<sha>/``, leftovers, listing, pruning."""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import re
import time
from collections.abc import Collection, Iterable
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath

from modelfleet.conditions import Reason
from modelfleet.downloader import nofollow
from modelfleet.downloader.errors import DownloadError

LOG = logging.getLogger(__name__)

MANIFEST_NAME = ".modelfleet-manifest.json"
PARTIAL_DIR = ".modelfleet-partial"
PARTIAL_SUFFIX = ".part"
LAST_USED_NAME = ".modelfleet-last-used"
# Every name the downloader keeps beside the weights, and their temporary files, starts so.
RESERVED_PREFIX = ".modelfleet-"
# Leftovers of huggingface_hub or of another tool killed mid-download.
_STALE_GLOBS = ("*.lock", "*.incomplete")
# fullmatch, not ^...$: "$" also matches before a trailing newline.
COMMIT_ID = re.compile(r"[0-9a-f]{40}")
# What a hub may say, shown in a message: enough to recognise, not a wall of hostile text.
_SHOWN = 80
_INTERNAL_NAMES = frozenset({MANIFEST_NAME, PARTIAL_DIR, LAST_USED_NAME, ".cache"})


def validate_file_path(path: str) -> str:
    """Refuse a listed file path that would escape the model directory (VerificationFailed)."""
    parts = path.split("/")
    if (
        path.startswith("/")
        or any(p in ("", ".", "..") for p in parts)
        or "\\" in path
        or "\x00" in path
    ):
        raise DownloadError(Reason.VERIFICATION_FAILED, f"refusing unsafe path {path[:_SHOWN]!r}")
    return path


def validate_commit_id(commit: str) -> str:
    """Refuse a commit id that is not 40 lowercase hex digits (VerificationFailed): it becomes
    the name of a directory, so a hub answering ``../other/model`` must not choose where."""
    if not COMMIT_ID.fullmatch(commit):
        raise DownloadError(
            Reason.VERIFICATION_FAILED,
            f"refusing commit id {commit[:_SHOWN]!r}: expected 40 lowercase hex digits",
        )
    return commit


def ensure_inside(base: Path, path: Path) -> Path:
    """``path`` if it resolves (symlinks followed) strictly below ``base``; VerificationFailed
    otherwise, so no name and no link on the volume can send a write elsewhere."""
    resolved, resolved_base = path.resolve(), base.resolve()
    if resolved == resolved_base or not resolved.is_relative_to(resolved_base):
        raise DownloadError(
            Reason.VERIFICATION_FAILED, f"refusing {path}: it resolves outside {base}"
        )
    return path


def model_dir(root: Path, repo: str, revision: str) -> Path:
    """The directory one resolved revision of ``repo`` is written to: ``<root>/<repo>/<revision>``
    and nowhere else (VerificationFailed when a component or a link would put it elsewhere)."""
    parts = [*repo.split("/"), revision]
    if any(p in ("", ".", "..") or "/" in p or "\\" in p or "\x00" in p for p in parts):
        shown = f"{repo}/{revision}"[:_SHOWN]
        raise DownloadError(Reason.VERIFICATION_FAILED, f"refusing unsafe model path {shown!r}")
    return ensure_inside(root, root.joinpath(*parts))


def file_target(directory: Path, path: str) -> Path:
    """Where the listed file ``path`` is written in ``directory``, checked to stay inside it."""
    return ensure_inside(directory, directory / validate_file_path(path))


def partial_path(directory: Path, path: str) -> Path:
    """The stable partial file of ``path``: the same for every attempt at this commit."""
    return directory / PARTIAL_DIR / f"{path}{PARTIAL_SUFFIX}"


def is_internal(relative: str) -> bool:
    """True for files the downloader itself keeps beside the weights."""
    return relative.split("/", 1)[0] in _INTERNAL_NAMES


def is_reserved(relative: str) -> bool:
    """True for a name only the downloader may write at the top of a revision directory: its
    manifest, partials, marker and their temporary files (``.modelfleet-*``), and ``.cache``.
    A hub file named so is kept apart, never written over (or mistaken for) the downloader's."""
    return is_internal(relative) or relative.startswith(RESERVED_PREFIX)


def _is_stale(relative: str, expected: Collection[str] | None) -> bool:
    """Whether ``relative`` (below the revision directory) is a leftover no attempt resumes."""
    if relative.startswith(f"{PARTIAL_DIR}/"):
        name = relative.removeprefix(f"{PARTIAL_DIR}/")
        wanted = name.removesuffix(PARTIAL_SUFFIX)
        return expected is None or not name.endswith(PARTIAL_SUFFIX) or wanted not in expected
    # A hub file may itself end in .lock: one the download wants is not a leftover.
    wanted_here = expected is not None and relative in expected
    name = relative.rsplit("/", 1)[-1]
    return not wanted_here and any(fnmatch.fnmatchcase(name, g) for g in _STALE_GLOBS)


def clear_stale(root: Path, directory: Path, expected: Collection[str] | None = None) -> list[Path]:
    """Remove ``*.lock``/``*.incomplete`` files and partials no expected file can resume.

    Partials of files in ``expected`` are kept: they are what the next attempt resumes from.
    The directory is walked by descriptor below ``root``: links are removed, never followed.
    """
    removed: list[Path] = []
    if nofollow.status(root, directory) is None:
        return removed
    with nofollow.open_directory(root, directory) as top:
        for dirpath, dirnames, filenames, dir_fd in os.fwalk(".", topdown=False, dir_fd=top):
            here = PurePosixPath(dirpath)
            for name in filenames:
                relative = (here / name).as_posix()
                if _is_stale(relative, expected):
                    with suppress(FileNotFoundError):
                        os.unlink(name, dir_fd=dir_fd)
                    removed.append(directory / relative)
            for name in dirnames:
                _remove_empty_partial_dir(here / name, dir_fd)
    return removed


def _remove_empty_partial_dir(relative: PurePosixPath, dir_fd: int) -> None:
    """Remove an empty directory below the partial directory (which itself stays)."""
    if len(relative.parts) > 1 and relative.parts[0] == PARTIAL_DIR:
        with suppress(OSError):  # not empty, or a link: left as it is
            os.rmdir(relative.name, dir_fd=dir_fd)


def remove_partials(root: Path, directory: Path) -> None:
    """Drop the partial directory once every file is in place."""
    with suppress(FileNotFoundError):
        nofollow.remove_tree(root, directory / PARTIAL_DIR)


def disk_usage(path: Path) -> int:
    """Bytes allocated on disk under ``path`` (not apparent size: sparse partials count less)."""
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                stat = os.lstat(os.path.join(dirpath, name))
            except FileNotFoundError:
                continue
            total += stat.st_blocks * 512
    return total


def touch_last_used(root: Path, directory: Path) -> None:
    """Record a use of this revision (atime is unreliable on ``noatime`` mounts); the marker
    is opened below ``root`` without following a link."""
    with nofollow.open_file(root, directory / LAST_USED_NAME, os.O_WRONLY | os.O_CREAT) as fd:
        os.utime(fd)


def last_used(directory: Path) -> float:
    """When this revision was last used: the touch file, else its newest atime or mtime."""
    marker = directory / LAST_USED_NAME
    if marker.exists():
        return marker.stat().st_mtime
    newest = directory.stat().st_mtime
    for child in directory.iterdir():
        if child.is_file():
            stat = child.stat()
            newest = max(newest, stat.st_atime, stat.st_mtime)
    return newest


@dataclass(frozen=True)
class LocalRevision:
    """One revision directory found under the model root."""

    repo: str
    revision: str
    path: Path
    size_bytes: int
    last_used: float
    complete: bool
    created: float | None


def _is_revision_dir(path: Path) -> bool:
    return (path / MANIFEST_NAME).is_file() or (
        bool(COMMIT_ID.fullmatch(path.name)) and path.is_dir()
    )


def read_manifest_time(path: Path) -> float | None:
    """``createdAt`` of a manifest as a timestamp, or None when absent or unreadable."""
    try:
        data = json.loads(path.read_text())
        return datetime.fromisoformat(str(data["createdAt"])).timestamp()
    except (OSError, ValueError, KeyError, TypeError):
        return None


def list_revisions(root: Path, repo: str | None = None) -> list[LocalRevision]:
    """Every revision directory under ``root`` (optionally of one repo), newest first."""
    found: list[LocalRevision] = []
    if not root.is_dir():
        return found
    candidates: Iterable[Path]
    if repo is not None:
        base = root.joinpath(*repo.split("/"))
        candidates = base.iterdir() if base.is_dir() else []
    else:
        # <root>/<name>/<rev> or <root>/<org>/<name>/<rev>
        candidates = [p for p in root.glob("*/*") if p.is_dir()] + [
            p for p in root.glob("*/*/*") if p.is_dir()
        ]
    for path in candidates:
        if not path.is_dir() or not _is_revision_dir(path):
            continue
        created = read_manifest_time(path / MANIFEST_NAME)
        found.append(
            LocalRevision(
                repo=path.parent.relative_to(root).as_posix(),
                revision=path.name,
                path=path,
                size_bytes=disk_usage(path),
                last_used=last_used(path),
                complete=created is not None,
                created=created,
            )
        )
    found.sort(key=lambda r: (r.created or 0.0, r.path.stat().st_mtime), reverse=True)
    return found


def prune_revisions(
    root: Path,
    repo: str,
    keep: int,
    protected: Iterable[Path] = (),
    *,
    abandoned_after_seconds: float = 24 * 3600,
) -> list[Path]:
    """Remove complete revisions of ``repo`` beyond the newest ``keep``; return what went.

    A ``protected`` path (the one being served) is never removed and does not count towards
    ``keep``. Incomplete revisions may be in progress and are removed only once untouched for
    ``abandoned_after_seconds``.
    """
    safe = {p.resolve() for p in protected}
    kept = 0
    removed: list[Path] = []
    for revision in list_revisions(root, repo):
        if revision.path.resolve() in safe:
            continue
        if revision.complete:
            if kept < keep:
                kept += 1
                continue
        elif now() - revision.path.stat().st_mtime < abandoned_after_seconds:
            continue
        try:
            nofollow.remove_tree(root, revision.path)
        except (OSError, DownloadError) as error:
            # A link planted in place of a revision is not followed; pruning is best effort.
            LOG.warning("not pruning %s: %s", revision.path, error)
            continue
        removed.append(revision.path)
    return removed


def now() -> float:
    """Wall-clock time, in one place so manifests and listings agree."""
    return time.time()
