"""One download from start to manifest: resolve, plan, clear leftovers, transfer, verify, prune."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from huggingface_hub.utils._paths import filter_repo_objects

from modelfleet.conditions import Reason
from modelfleet.contracts.download import MAX_LISTING_ENTRIES, Source, VerifyMode
from modelfleet.downloader import nofollow
from modelfleet.downloader.errors import DownloadError, redact
from modelfleet.downloader.hub import HubClient, RemoteFile, RemoteSnapshot, validate_repo_id
from modelfleet.downloader.layout import (
    clear_stale,
    ensure_inside,
    file_target,
    is_reserved,
    model_dir,
    partial_path,
    prune_revisions,
    remove_partials,
    touch_last_used,
    validate_commit_id,
)
from modelfleet.downloader.listing import check_listing
from modelfleet.downloader.manifest import (
    Manifest,
    ManifestFile,
    load_and_verify_manifest,
    manifest_path,
    write_manifest,
)
from modelfleet.downloader.progress import DownloadProgress
from modelfleet.downloader.retry import BackoffPolicy, call_with_retries
from modelfleet.downloader.transfer import FileTask, Transfer, TransferOptions
from modelfleet.downloader.verify import check_completeness

LOG = logging.getLogger(__name__)


class SnapshotSource(Protocol):
    """A place weights come from: Hugging Face (or a mirror), or ModelScope."""

    def snapshot(self, repo: str, revision: str) -> RemoteSnapshot:
        """Resolve ``revision`` and list its files."""
        ...

    def file_url(self, repo: str, sha: str, path: str) -> str:
        """Where to GET one file of the snapshot."""
        ...

    def headers(self) -> dict[str, str]:
        """Request headers, auth included."""
        ...


@dataclass(frozen=True)
class DownloadRequest:
    """What to download and how; the Job and the CLI both build one."""

    repo: str
    root: Path
    revision: str = "main"
    source: Source = Source.HUGGINGFACE
    allow_patterns: Sequence[str] | None = None
    ignore_patterns: Sequence[str] | None = None
    verify: VerifyMode = VerifyMode.SHA256
    force: bool = False
    keep_revisions: int = 2
    protected_paths: Sequence[Path] = ()
    policy: BackoffPolicy = field(default_factory=BackoffPolicy)
    stall_timeout: float = 300.0
    max_workers: int = 8
    fsync: bool = True
    max_listing_entries: int = MAX_LISTING_ENTRIES
    endpoint: str | None = None
    token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class DownloadReport:
    """What a finished download left on disk."""

    repo: str
    revision: str
    sha: str
    path: Path
    bytes_total: int
    bytes_transferred: int
    files: int
    already_present: bool = False
    pruned: tuple[Path, ...] = ()


def make_source(request: DownloadRequest) -> SnapshotSource:
    """The client for ``request.source``."""
    limit = request.max_listing_entries
    if request.source is Source.HUGGINGFACE:
        return HubClient(request.endpoint, request.token, max_entries=limit)
    if request.source is Source.HUGGINGFACE_DATASET:
        return HubClient(request.endpoint, request.token, repo_type="dataset", max_entries=limit)
    if request.source is Source.MODELSCOPE:
        # Imported here because it pulls in the optional modelscope package on use.
        from modelfleet.downloader.modelscope_source import ModelScopeClient  # noqa: PLC0415

        return ModelScopeClient(request.endpoint, request.token, max_entries=limit)
    raise DownloadError(Reason.INVALID_SPEC, f"source {request.source} is verified, not downloaded")


def select_files(
    files: Sequence[RemoteFile], allow: Sequence[str] | None, ignore: Sequence[str] | None
) -> list[RemoteFile]:
    """Files matching the allow patterns and none of the ignore patterns (fnmatch, like hf),
    less those named like the downloader's own (kept apart: see layout.is_reserved)."""
    selected = filter_repo_objects(
        files,
        allow_patterns=list(allow) if allow else None,
        ignore_patterns=list(ignore) if ignore else None,
        key=lambda f: f.path,
    )
    kept: list[RemoteFile] = []
    for f in selected:
        if is_reserved(f.path):
            LOG.warning("not downloading %r: the name is reserved for the downloader", f.path)
        else:
            kept.append(f)
    return kept


def _existing_manifest(
    root: Path, directory: Path, paths: set[str], verify: VerifyMode
) -> Manifest | None:
    # status() refuses a link at the manifest or on the way to it (the revision directory).
    if nofollow.regular_size(root, manifest_path(directory)) is None:
        return None
    try:
        manifest = load_and_verify_manifest(directory, verify)
    except DownloadError as error:
        LOG.warning(
            "existing manifest in %s does not verify (%s): downloading again", directory, error
        )
        nofollow.unlink(root, manifest_path(directory))
        return None
    if not paths <= {f.path for f in manifest.files}:
        nofollow.unlink(root, manifest_path(directory))
        return None
    return manifest


def _check_free_space(directory: Path, needed: int) -> None:
    free = shutil.disk_usage(directory).free
    if needed > free:
        raise DownloadError(
            Reason.INSUFFICIENT_STORAGE,
            f"need {needed} more bytes in {directory}, only {free} free",
        )


@dataclass(frozen=True)
class Selection:
    """A revision resolved to its commit, and the files of it the request selects."""

    snapshot: RemoteSnapshot
    files: list[RemoteFile]

    @property
    def bytes_total(self) -> int:
        """What the selected files add up to."""
        return sum(f.size for f in self.files)


def resolve_selection(
    request: DownloadRequest, source: SnapshotSource, progress: DownloadProgress
) -> Selection:
    """List the revision (retrying as the request's policy says), check the listing and keep
    the files the allow and ignore patterns select; writes nothing."""
    secrets = [request.token]
    validate_repo_id(request.repo)

    def on_retry(attempt: int, error: DownloadError, delay: float) -> None:
        message = redact(str(error), secrets)
        LOG.warning(
            "listing %s failed (%s); retry %d in %.1fs", request.repo, message, attempt, delay
        )
        progress.record_error(message)

    def resolve(attempt: int) -> RemoteSnapshot:
        progress.record_attempt(attempt)
        return source.snapshot(request.repo, request.revision)

    snapshot = call_with_retries(resolve, request.policy, on_retry=on_retry)
    check_listing(snapshot.files)
    validate_commit_id(snapshot.sha)
    selected = select_files(snapshot.files, request.allow_patterns, request.ignore_patterns)
    if not selected:
        raise DownloadError(
            Reason.INCOMPLETE, "no file of the repo matches the allow/ignore patterns"
        )
    return Selection(snapshot, selected)


def download_model(
    request: DownloadRequest, progress: DownloadProgress | None = None
) -> DownloadReport:
    """Put one revision of a repo under ``<root>/<org>/<name>/<sha>/`` and write its manifest."""
    progress = progress or DownloadProgress()
    secrets = [request.token]
    source = make_source(request)
    selection = resolve_selection(request, source, progress)
    snapshot, selected = selection.snapshot, selection.files
    # Whatever the source says, only a 40-hex id under our root and names inside it are written.
    directory = model_dir(request.root, request.repo, validate_commit_id(snapshot.sha))
    for f in selected:
        file_target(directory, f.path)
        ensure_inside(directory, partial_path(directory, f.path))
    total = selection.bytes_total
    progress.plan(revision=snapshot.sha, bytes_total=total, files_total=len(selected))
    root = request.root
    if request.force:
        with suppress(FileNotFoundError):
            nofollow.remove_tree(root, directory)

    paths = {f.path for f in selected}
    if _existing_manifest(root, directory, paths, request.verify) is not None:
        LOG.info("%s@%s is already complete in %s", request.repo, snapshot.sha, directory)
        progress.add_bytes(total)
        for _ in selected:
            progress.file_done()
        touch_last_used(root, directory)
        return DownloadReport(
            request.repo, request.revision, snapshot.sha, directory, total, 0, len(selected), True
        )

    nofollow.make_directories(root, directory)
    for stale in clear_stale(root, directory, expected=paths):
        LOG.info("removed leftover %s", stale)
    tasks = [
        FileTask(
            path=f.path,
            url=source.file_url(request.repo, snapshot.sha, f.path),
            size=f.size,
            sha256=f.sha256,
            blob_id=f.blob_id,
        )
        for f in selected
    ]
    options = TransferOptions(
        verify=request.verify,
        policy=request.policy,
        stall_timeout=request.stall_timeout,
        max_workers=request.max_workers,
        fsync=request.fsync,
    )
    transfer = Transfer(directory, source.headers(), options, progress, secrets, root=root)
    try:
        try:
            _check_free_space(directory, transfer.remaining_bytes(tasks))
        except OSError as error:
            raise DownloadError(
                Reason.INSUFFICIENT_STORAGE, f"cannot stat {directory}: {error}"
            ) from None
        progress.set_phase("Downloading")
        outcomes = transfer.run(tasks)
    finally:
        transfer.close()

    progress.set_phase("Verifying")
    if request.source is not Source.HUGGINGFACE_DATASET:  # a dataset file is not a model
        check_completeness(directory, {f.path: f.size for f in selected})
    remove_partials(root, directory)
    manifest = Manifest(
        repo=request.repo,
        source=request.source.value,
        revision=request.revision,
        resolved_revision=snapshot.sha,
        verify=request.verify,
        files=[
            ManifestFile(path=o.path, size=o.size, sha256=o.sha256)
            for o in sorted(outcomes, key=lambda o: o.path)
        ],
        total_bytes=total,
    )
    touch_last_used(root, directory)
    write_manifest(directory, manifest, root=root)
    # The new revision is the newest complete one, so it is always among those kept.
    pruned = prune_revisions(
        request.root, request.repo, request.keep_revisions, request.protected_paths
    )
    for path in pruned:
        LOG.info("removed old revision %s", path)
    return DownloadReport(
        repo=request.repo,
        revision=request.revision,
        sha=snapshot.sha,
        path=directory,
        bytes_total=total,
        bytes_transferred=transfer.bytes_transferred,
        files=len(selected),
        pruned=tuple(pruned),
    )
