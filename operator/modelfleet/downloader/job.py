"""The download Job's entrypoint: settings from the environment, one run, one result line."""

from __future__ import annotations

import logging
from contextlib import ExitStack
from pathlib import Path

from modelfleet.conditions import Reason
from modelfleet.contracts.download import DownloaderSettings, Mode, Source, VerifyMode
from modelfleet.downloader.download import (
    DownloadRequest,
    download_model,
    make_source,
    resolve_selection,
)
from modelfleet.downloader.errors import DownloadError, redact
from modelfleet.downloader.hub import configure_hub_session, validate_repo_id
from modelfleet.downloader.layout import COMMIT_ID, MANIFEST_NAME, list_revisions, model_dir
from modelfleet.downloader.manifest import load_and_verify_manifest, manifest_path
from modelfleet.downloader.progress import DownloadProgress, StatusReporter
from modelfleet.downloader.result import DownloaderResult
from modelfleet.downloader.retry import BackoffPolicy
from modelfleet.downloader.verify import check_completeness
from modelfleet.jobprogram import job_main

LOG = logging.getLogger("modelfleet.downloader")


def request_from_settings(settings: DownloaderSettings) -> DownloadRequest:
    """The download the environment asks for."""
    return DownloadRequest(
        repo=settings.repo,
        root=settings.model_root,
        revision=settings.revision,
        source=settings.source,
        allow_patterns=settings.allow_patterns,
        ignore_patterns=settings.ignore_patterns,
        verify=settings.verify,
        force=settings.force,
        keep_revisions=settings.keep_revisions,
        protected_paths=settings.protected_paths,
        policy=BackoffPolicy(
            attempts=settings.retries,
            initial=settings.backoff_initial_seconds,
            maximum=settings.backoff_max_seconds,
        ),
        stall_timeout=settings.stall_timeout_seconds,
        max_workers=settings.max_workers,
        fsync=settings.fsync,
        max_listing_entries=settings.max_listing_entries,
        # HF_ENDPOINT is Hugging Face's; ModelScope reads MODELSCOPE_ENDPOINT itself.
        endpoint=settings.endpoint if settings.source is not Source.MODELSCOPE else None,
        token=settings.token.get_secret_value() if settings.token else None,
    )


def verify_directory(
    directory: Path, mode: VerifyMode, *, require_manifest: bool = False
) -> DownloaderResult:
    """Check weights in place, writing nothing: by manifest if one exists, else completeness.

    With ``require_manifest`` a directory without a valid manifest is refused (Incomplete when
    it or the directory is missing, VerificationFailed when it is unreadable or does not match
    the files): the download that should have written it never finished.
    """
    if require_manifest and not directory.is_dir():
        raise DownloadError(Reason.INCOMPLETE, f"refusing {directory}: it does not exist")
    if require_manifest and not manifest_path(directory).is_file():
        raise DownloadError(
            Reason.INCOMPLETE,
            f"refusing {directory}: no {MANIFEST_NAME}, so no download of it finished "
            "(the manifest is written last, after every file verified)",
        )
    if manifest_path(directory).is_file():
        manifest = load_and_verify_manifest(directory, mode)
        return DownloaderResult(
            result="Succeeded",
            reason=Reason.DOWNLOADED,
            message=f"{len(manifest.files)} files verified against the manifest ({mode})",
            resolved_revision=manifest.resolved_revision,
            model_path=str(directory),
            bytes_total=manifest.total_bytes,
            files=len(manifest.files),
        )
    if not directory.is_dir():
        raise DownloadError(Reason.INCOMPLETE, f"{directory} does not exist")
    check_completeness(directory)
    files = [p for p in directory.rglob("*") if p.is_file()]
    return DownloaderResult(
        result="Succeeded",
        reason=Reason.DOWNLOADED,
        message="no manifest: completeness and shard sizes verified",
        model_path=str(directory),
        bytes_total=sum(p.stat().st_size for p in files),
        files=len(files),
    )


def _verify_target(settings: DownloaderSettings) -> Path:
    if settings.model_path is not None:
        return settings.model_path
    if settings.source is Source.PVC or not settings.repo:
        raise DownloadError(Reason.INVALID_SPEC, "verify mode needs MODELFLEET_MODEL_PATH")
    validate_repo_id(settings.repo)
    if COMMIT_ID.fullmatch(settings.revision):
        return model_dir(settings.model_root, settings.repo, settings.revision)
    complete = [r for r in list_revisions(settings.model_root, settings.repo) if r.complete]
    if not complete:
        raise DownloadError(Reason.INCOMPLETE, f"no complete revision of {settings.repo} on disk")
    return complete[0].path


def resolve(settings: DownloaderSettings, progress: DownloadProgress) -> DownloaderResult:
    """The commit the revision resolves to and the size of the files the Model selects."""
    request = request_from_settings(settings)
    selection = resolve_selection(request, make_source(request), progress)
    return DownloaderResult(
        result="Succeeded",
        reason=Reason.RESOLVED,
        message=(
            f"{settings.repo}@{selection.snapshot.sha}: {len(selection.files)} files,"
            f" {selection.bytes_total} bytes"
        ),
        resolved_revision=selection.snapshot.sha,
        bytes_total=selection.bytes_total,
        files=len(selection.files),
    )


def run(settings: DownloaderSettings, progress: DownloadProgress) -> DownloaderResult:
    """Do what ``settings.mode`` says and describe the outcome; raises DownloadError."""
    if settings.mode is Mode.VERIFY:
        progress.set_phase("Verifying")
        return verify_directory(
            _verify_target(settings), settings.verify, require_manifest=settings.require_manifest
        )
    if not settings.repo:
        raise DownloadError(Reason.INVALID_SPEC, "MODELFLEET_REPO is required to download")
    configure_hub_session(settings.stall_timeout_seconds)
    if settings.mode is Mode.RESOLVE:
        return resolve(settings, progress)
    report = download_model(request_from_settings(settings), progress)
    return DownloaderResult(
        result="Succeeded",
        reason=Reason.DOWNLOADED,
        message=(
            f"{report.repo}@{report.sha} already complete"
            if report.already_present
            else f"{report.files} files of {report.repo}@{report.sha} downloaded and verified"
        ),
        resolved_revision=report.sha,
        model_path=str(report.path),
        bytes_total=report.bytes_total,
        bytes_transferred=report.bytes_transferred,
        files=report.files,
    )


def _failure(
    progress: DownloadProgress, reason: Reason, message: str, secrets: list[str | None]
) -> DownloaderResult:
    message = redact(message, secrets)
    LOG.error("failed: %s: %s", reason, message)
    progress.record_error(f"{reason}: {message}")
    progress.set_phase("Failed")
    snapshot = progress.snapshot()
    return DownloaderResult(
        result="Failed",
        reason=reason,
        message=message,
        resolved_revision=snapshot.revision,
        bytes_total=snapshot.bytes_total,
        files=snapshot.files_done,
    )


def _run_reporting(
    settings: DownloaderSettings, progress: DownloadProgress, secrets: list[str | None]
) -> DownloaderResult:
    try:
        result = run(settings, progress)
    except DownloadError as error:
        return _failure(progress, error.reason, error.message, secrets)
    except Exception as error:  # noqa: BLE001 - a bug must still leave a typed result behind
        LOG.error("unexpected error: %s", redact(repr(error), secrets))
        return _failure(progress, Reason.INCOMPLETE, f"unexpected {type(error).__name__}", secrets)
    progress.set_phase("Succeeded")
    return result


def _program(settings: DownloaderSettings) -> DownloaderResult:
    secrets = [settings.token.get_secret_value() if settings.token else None]
    progress = DownloadProgress()
    with ExitStack() as stack:
        if settings.status_target:
            stack.enter_context(
                StatusReporter(settings.status_target, progress, settings.progress_interval)
            )
        result = _run_reporting(settings, progress, secrets)
    return result.redacted(secrets)


def main() -> int:
    """Run the Job; return its exit code (0 ok, 1 retryable failure, 2 permanent failure)."""
    return job_main(DownloaderSettings, _program)
