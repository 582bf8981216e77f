"""A weights volume for hostile-hub tests: another Model's complete download, a directory beside
the volume, and a fingerprint of every byte, link and directory in both, to compare before and
after a download that must not touch them."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import pytest

from modelfleet.downloader.download import download_model
from modelfleet.downloader.job import main
from tests.hubserver.fixtures import download_request, job_env
from tests.hubserver.repos import tiny_model_files
from tests.hubserver.server import HubServer

VICTIM = "other-org/other-model"


class Volume:
    """A weights volume holding another Model's complete download, and a directory beside it."""

    def __init__(self, hub: HubServer, tmp_path: Path) -> None:
        self.hub = hub
        self.root = tmp_path / "volume"
        self.outside = tmp_path / "outside"
        self.termination_log = tmp_path / "termination-log"
        self.outside.mkdir()
        (self.outside / "keep.txt").write_bytes(b"not the hub's to write\n")
        self.victim_sha = hub.add_repo(VICTIM, tiny_model_files(seed=1))
        self.victim = self.root / VICTIM / self.victim_sha
        download_model(download_request(hub, self.root, VICTIM))
        hub.reset_counters()

    def snapshot(self, exclude: Path | None = None) -> dict[str, str]:
        """Every file, link and directory under the volume and beside it, with content hashes
        (and modes: a touched marker or a chmod shows too)."""
        seen: dict[str, str] = {}
        for top in (self.root, self.outside):
            for dirpath, dirnames, filenames in os.walk(top):
                for name in [*dirnames, *filenames]:
                    path = Path(dirpath) / name
                    if exclude is not None and path.is_relative_to(exclude):
                        continue
                    seen[str(path)] = _fingerprint(path)
        return seen

    def run_job(self, monkeypatch: pytest.MonkeyPatch, repo: str, **env: str) -> dict[str, object]:
        """Run the download Job of ``repo`` in-process (it must fail); return its result line."""
        settings = job_env(self.hub, self.root, repo, **env)
        settings["MODELFLEET_TERMINATION_LOG"] = str(self.termination_log)
        for name, value in settings.items():
            monkeypatch.setenv(name, value)
        assert main() != 0
        result: dict[str, object] = json.loads(self.termination_log.read_text())
        return result


def _fingerprint(path: Path) -> str:
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode):
        return f"link {os.readlink(path)}"
    if stat.S_ISDIR(info.st_mode):
        return f"dir {info.st_mode:o}"
    if not stat.S_ISREG(info.st_mode):
        return f"special {info.st_mode:o}"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return f"file {info.st_mode:o} {info.st_mtime_ns} {digest}"
