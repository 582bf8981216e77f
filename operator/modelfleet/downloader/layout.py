"""Where weights live on the volume: ``<root>/<org>/<name>/<sha>/``, leftovers, listing, pruning."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from modelfleet.conditions import Reason
from modelfleet.downloader.errors import DownloadError

MANIFEST_NAME = ".modelfleet-manifest.json"
PARTIAL_DIR = ".modelfleet-partial"
PARTIAL_SUFFIX = ".part"
LAST_USED_NAME = ".modelfleet-last-used"
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


def clear_stale(directory: Path, expected: Collection[str] | None = None) -> list[Path]:
    """Remove ``*.lock``/``*.incomplete`` files and partials no expected file can resume.

    Partials of files in ``expected`` are kept: they are what the next attempt resumes from.
    """
    removed: list[Path] = []
    if not directory.is_dir():
        return removed
    for pattern in _STALE_GLOBS:
        for stale in directory.rglob(pattern):
            if stale.is_file() or stale.is_symlink():
                stale.unlink(missing_ok=True)
                removed.append(stale)
    partials = directory / PARTIAL_DIR
    if partials.is_dir():
        for part in sorted(partials.rglob("*"), reverse=True):
            relative = part.relative_to(partials).as_posix()
            if part.is_dir():
                if not any(part.iterdir()):
                    part.rmdir()
                continue
            name = relative.removesuffix(PARTIAL_SUFFIX)
            if expected is None or not relative.endswith(PARTIAL_SUFFIX) or name not in expected:
                part.unlink(missing_ok=True)
                removed.append(part)
    return removed


def remove_partials(directory: Path) -> None:
    """Drop the partial directory once every file is in place."""
    shutil.rmtree(directory / PARTIAL_DIR, ignore_errors=True)


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


def touch_last_used(directory: Path) -> None:
    """Record a use of this revision (atime is unreliable on ``noatime`` mounts)."""
    (directory / LAST_USED_NAME).touch()


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
        shutil.rmtree(revision.path, ignore_errors=True)
        removed.append(revision.path)
    return removed


def now() -> float:
    """Wall-clock time, in one place so manifests and listings agree."""
    return time.time()
