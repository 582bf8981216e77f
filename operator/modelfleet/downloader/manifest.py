"""``.modelfleet-manifest.json``: what a finished download wrote, written atomically and last.

The serving pod's init container calls :func:`load_and_verify_manifest` and refuses to start
the engine on a directory without a valid one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from modelfleet.conditions import Reason
from modelfleet.contracts.download import Source, VerifyMode
from modelfleet.downloader import nofollow
from modelfleet.downloader.errors import DownloadError
from modelfleet.downloader.layout import MANIFEST_NAME, validate_file_path
from modelfleet.downloader.verify import check_completeness, check_file

MANIFEST_API_VERSION = "modelfleet.io/v1alpha1"


class _CamelModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class ManifestFile(_CamelModel):
    """One file of the download."""

    path: str
    size: int = Field(ge=0)
    sha256: str | None = None


class Manifest(_CamelModel):
    """The record of a complete, verified revision directory."""

    api_version: str = MANIFEST_API_VERSION
    kind: str = "ModelManifest"
    repo: str
    source: str
    revision: str
    resolved_revision: str
    verify: VerifyMode
    files: list[ManifestFile]
    total_bytes: int = Field(ge=0)
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    def to_json(self) -> str:
        """The manifest as written to disk (camelCase keys)."""
        return self.model_dump_json(by_alias=True, indent=2) + "\n"


def manifest_path(directory: Path) -> Path:
    """Where the manifest of a revision directory lives."""
    return directory / MANIFEST_NAME


def write_manifest(directory: Path, manifest: Manifest, *, root: Path | None = None) -> Path:
    """Write the manifest atomically: temp file, fsync, rename, fsync of the directory.

    Below ``root`` (the model root; by default the directory itself) no link is followed, and a
    link planted at the manifest's own name is replaced, never written through.
    """
    target = manifest_path(directory)
    nofollow.write_new_file(root or directory, target, manifest.to_json().encode())
    return target


def load_manifest(directory: Path) -> Manifest:
    """Parse the manifest of ``directory``; Incomplete if absent, VerificationFailed if invalid."""
    path = manifest_path(directory)
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise DownloadError(Reason.INCOMPLETE, f"no {MANIFEST_NAME} in {directory}") from None
    except OSError as error:
        raise DownloadError(
            Reason.VERIFICATION_FAILED, f"cannot read {path}: {error.strerror or error}"
        ) from None
    try:
        manifest = Manifest.model_validate_json(text)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "document"
        raise DownloadError(
            Reason.VERIFICATION_FAILED,
            f"{path} is not a valid manifest ({error.error_count()} errors; "
            f"first at {where}: {first['msg']})",
        ) from None
    for entry in manifest.files:
        try:
            validate_file_path(entry.path)
        except DownloadError:
            raise DownloadError(
                Reason.VERIFICATION_FAILED, f"{path} lists an unsafe path {entry.path!r}"
            ) from None
    return manifest


def load_and_verify_manifest(directory: Path, mode: VerifyMode = VerifyMode.SIZE) -> Manifest:
    """Load the manifest and check every file it lists in ``mode`` plus, for weights, that
    they form a loadable model.

    ``directory`` may also be the manifest file itself.
    """
    if directory.name == MANIFEST_NAME:
        directory = directory.parent
    manifest = load_manifest(directory)
    for entry in manifest.files:
        check_file(
            directory / entry.path,
            size=entry.size,
            sha256=entry.sha256 if mode is VerifyMode.SHA256 else None,
            # "none" still needs the files to exist: a manifest over missing files is a lie.
            mode=VerifyMode.SIZE if mode is VerifyMode.NONE else mode,
        )
    if manifest.source != Source.HUGGINGFACE_DATASET:
        check_completeness(directory, {f.path: f.size for f in manifest.files})
    return manifest
