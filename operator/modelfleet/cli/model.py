"""``modelfleet model``: download, list, verify and delete weights on a workstation or volume."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from modelfleet.conditions import Reason
from modelfleet.contracts.download import VerifyMode
from modelfleet.contracts.results import EXIT_PERMANENT, EXIT_RETRYABLE
from modelfleet.downloader.download import DownloadRequest, download_model
from modelfleet.downloader.errors import DownloadError, redact
from modelfleet.downloader.hub import configure_hub_session, validate_repo_id
from modelfleet.downloader.job import verify_directory
from modelfleet.downloader.layout import list_revisions, model_dir
from modelfleet.downloader.progress import DownloadProgress, ProgressSnapshot

model_app = typer.Typer(
    help="Download, list, verify and delete model weights under a model root.",
    no_args_is_help=True,
)

RootOption = Annotated[
    Path,
    typer.Option("--root", envvar="MODELFLEET_MODEL_ROOT", help="Model root directory."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _token() -> str | None:
    return os.environ.get("HF_TOKEN") or None


def _fail(error: DownloadError, as_json: bool) -> NoReturn:
    message = redact(error.message, [_token()])
    if as_json:
        typer.echo(
            json.dumps({"result": "Failed", "reason": str(error.reason), "message": message})
        )
    else:
        typer.echo(f"error: {error.reason}: {message}", err=True)
    raise typer.Exit(EXIT_RETRYABLE if error.retryable else EXIT_PERMANENT)


@contextmanager
def _progress_display(progress: DownloadProgress, enabled: bool) -> Iterator[None]:
    """Rich bars on a terminal; a plain line per finished file otherwise."""
    if not enabled:
        yield
        return
    if sys.stderr.isatty():
        bars = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        task = bars.add_task("resolving", total=None)

        def show(state: ProgressSnapshot) -> None:
            bars.update(
                task,
                description=f"{state.phase.lower()} {state.files_done}/{state.files_total} files",
                completed=state.bytes_done,
                total=state.bytes_total or None,
            )

        progress.subscribe(show)
        with bars:
            yield
        return
    seen = {"files": -1}

    def line(state: ProgressSnapshot) -> None:
        if state.files_done != seen["files"] and state.files_total:
            seen["files"] = state.files_done
            typer.echo(
                f"{state.files_done}/{state.files_total} files, "
                f"{state.bytes_done}/{state.bytes_total} bytes",
                err=True,
            )

    progress.subscribe(line)
    yield


@model_app.command()
def download(  # noqa: PLR0917 - one parameter per CLI option
    repo: Annotated[str, typer.Argument(help="Repo id, org/name.")],
    root: RootOption = Path("/models"),
    revision: Annotated[str, typer.Option(help="Branch, tag or commit sha.")] = "main",
    force: Annotated[bool, typer.Option(help="Download again even if complete.")] = False,
    include: Annotated[
        list[str] | None, typer.Option("--include", help="Only files matching (glob).")
    ] = None,
    exclude: Annotated[
        list[str] | None, typer.Option("--exclude", help="Skip files matching (glob).")
    ] = None,
    verify: Annotated[VerifyMode, typer.Option(help="sha256, size or none.")] = VerifyMode.SHA256,
    as_json: JsonOption = False,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="No progress output.")] = False,
) -> None:
    """Download one revision of REPO into <root>/<org>/<name>/<sha>/, resumably and verified."""
    configure_hub_session(300)
    request = DownloadRequest(
        repo=repo,
        root=root,
        revision=revision,
        allow_patterns=include or None,
        ignore_patterns=exclude or None,
        verify=verify,
        force=force,
        endpoint=os.environ.get("HF_ENDPOINT") or None,
        token=_token(),
    )
    progress = DownloadProgress()
    try:
        with _progress_display(progress, enabled=not (no_progress or as_json)):
            report = download_model(request, progress)
    except DownloadError as error:
        _fail(error, as_json)
    if as_json:
        payload: dict[str, Any] = {
            "result": "Succeeded",
            "repo": report.repo,
            "revision": report.revision,
            "resolvedRevision": report.sha,
            "modelPath": str(report.path),
            "bytesTotal": report.bytes_total,
            "bytesTransferred": report.bytes_transferred,
            "files": report.files,
            "alreadyPresent": report.already_present,
        }
        typer.echo(json.dumps(payload))
    else:
        state = "already complete" if report.already_present else "downloaded and verified"
        typer.echo(f"{report.repo}@{report.sha[:12]} {state}: {report.path}")


def _iso(timestamp: float | None) -> str | None:
    return datetime.fromtimestamp(timestamp, UTC).isoformat() if timestamp is not None else None


@model_app.command("list")
def list_models(root: RootOption = Path("/models"), as_json: JsonOption = False) -> None:
    """List revisions under the root with size on disk, revision and last use."""
    revisions = list_revisions(root)
    if as_json:
        rows = [
            {
                "repo": r.repo,
                "revision": r.revision,
                "path": str(r.path),
                "sizeBytes": r.size_bytes,
                "lastUsed": _iso(r.last_used),
                "complete": r.complete,
            }
            for r in revisions
        ]
        typer.echo(json.dumps(rows))
        return
    table = Table("REPO", "REVISION", "SIZE", "LAST USED", "COMPLETE")
    for r in revisions:
        table.add_row(
            r.repo,
            r.revision[:12],
            f"{r.size_bytes / 2**30:.2f} GiB",
            _iso(r.last_used) or "",
            "yes" if r.complete else "no",
        )
    Console().print(table)


def _revision_dirs(root: Path, repo: str, revision: str | None) -> list[Path]:
    validate_repo_id(repo)
    if revision is not None:
        directory = model_dir(root, repo, revision)
        return [directory] if directory.is_dir() else []
    return [r.path for r in list_revisions(root, repo)]


@model_app.command()
def verify(  # noqa: PLR0917 - one parameter per CLI option
    repo_or_path: Annotated[str, typer.Argument(help="org/name, or a model directory.")],
    root: RootOption = Path("/models"),
    revision: Annotated[str | None, typer.Option(help="Commit sha (default: newest).")] = None,
    mode: Annotated[VerifyMode, typer.Option("--mode", help="sha256, size or none.")] = (
        VerifyMode.SHA256
    ),
    require_manifest: Annotated[
        bool,
        typer.Option(
            "--require-manifest", help="Fail without a valid manifest, as the serving pod does."
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Check a downloaded revision against its manifest (or completeness without one)."""
    try:
        candidate = Path(repo_or_path)
        if candidate.is_dir():
            directory = candidate
        else:
            dirs = _revision_dirs(root, repo_or_path, revision)
            if not dirs:
                raise DownloadError(Reason.INCOMPLETE, f"{repo_or_path} not found under {root}")
            directory = dirs[0]
        result = verify_directory(directory, mode, require_manifest=require_manifest)
    except DownloadError as error:
        _fail(error, as_json)
    if as_json:
        typer.echo(result.line())
    else:
        typer.echo(f"OK {directory}: {result.message}")


@model_app.command()
def delete(
    repo: Annotated[str, typer.Argument(help="org/name.")],
    root: RootOption = Path("/models"),
    revision: Annotated[str | None, typer.Option(help="Only this revision (default: all).")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Delete revisions of REPO from the root, after confirmation."""
    try:
        dirs = _revision_dirs(root, repo, revision)
    except DownloadError as error:
        _fail(error, as_json)
    if not dirs:
        typer.echo(f"nothing to delete for {repo}", err=True)
        raise typer.Exit(1)
    if not yes:
        if not sys.stdin.isatty():
            typer.echo("refusing to delete without --yes: no terminal to confirm on", err=True)
            raise typer.Exit(1)
        listing = "\n".join(f"  {d}" for d in dirs)
        if not typer.confirm(f"Delete these revisions?\n{listing}\n", default=False):
            raise typer.Exit(1)
    for directory in dirs:
        shutil.rmtree(directory)
    repo_dir = model_dir(root, repo, "x").parent
    if repo_dir.is_dir() and not any(repo_dir.iterdir()):
        repo_dir.rmdir()
    if as_json:
        typer.echo(json.dumps({"deleted": [str(d) for d in dirs]}))
    else:
        for directory in dirs:
            typer.echo(f"deleted {directory}")
