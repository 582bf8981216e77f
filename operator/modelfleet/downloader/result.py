"""The download Job's result line (the contract in ``modelfleet.contracts.results``), with
secrets redacted from its message, and the exit code that tells the Job whether to retry."""

from __future__ import annotations

from collections.abc import Sequence

from modelfleet.contracts.results import DownloadResult, exit_code
from modelfleet.downloader.errors import PERMANENT_REASONS, redact


class DownloaderResult(DownloadResult):
    """How the download or verify ended, as the operator reads it, and the Job's exit code."""

    @property
    def exit_code(self) -> int:
        """0 on success, 2 when no retry can help, 1 otherwise."""
        return exit_code(self, PERMANENT_REASONS)

    def redacted(self, secrets: Sequence[str | None]) -> DownloaderResult:
        """The result with every form of ``secrets`` (and anything credential-shaped) removed
        from its message."""
        return self.model_copy(update={"message": redact(self.message, secrets)})
