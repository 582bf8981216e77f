"""pytest fixtures for the test hub (import them from a conftest.py) and download helpers."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelfleet.downloader.download import DownloadRequest
from modelfleet.downloader.hub import configure_hub_session
from modelfleet.downloader.retry import BackoffPolicy
from tests.hubserver.server import HubServer


def running_hub(tls: ssl.SSLContext | None = None, **options: Any) -> Iterator[HubServer]:
    """A started test hub on 127.0.0.1 (``hub.endpoint``; https with ``tls``) made with
    ``options``, stopped when the generator closes."""
    server = HubServer(**options).start(tls=tls)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def hub() -> Iterator[HubServer]:
    """A started test hub on 127.0.0.1 (``hub.endpoint``), stopped after the test."""
    yield from running_hub()


def download_request(hub: HubServer, root: Path, repo: str, **overrides: Any) -> DownloadRequest:
    """A download from ``hub`` into ``root`` with test-sized backoff and stall timeouts."""
    configure_hub_session(10)
    settings: dict[str, Any] = {
        "repo": repo,
        "root": root,
        "endpoint": hub.endpoint,
        "policy": BackoffPolicy(attempts=4, initial=0.02, maximum=0.5),
        "stall_timeout": 2.0,
        "max_workers": 4,
    }
    settings.update(overrides)
    return DownloadRequest(**settings)


def job_env(hub: HubServer, root: Path, repo: str, **overrides: str) -> dict[str, str]:
    """Environment for ``python -m modelfleet.downloader`` against ``hub``."""
    env = {
        "HF_ENDPOINT": hub.endpoint,
        "MODELFLEET_REPO": repo,
        "MODELFLEET_MODEL_ROOT": str(root),
        "MODELFLEET_RETRIES": "3",
        "MODELFLEET_BACKOFF_INITIAL_SECONDS": "0.05",
        "MODELFLEET_BACKOFF_MAX_SECONDS": "0.5",
        "MODELFLEET_STALL_TIMEOUT_SECONDS": "5",
        "MODELFLEET_TERMINATION_LOG": str(root / "termination-log"),
    }
    env.update(overrides)
    return env


def run_downloader_job(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``python -m modelfleet.downloader`` with only ``env`` (and PATH), as a Job runs it."""
    operator = Path(__file__).resolve().parents[2] / "operator"
    return subprocess.run(
        [sys.executable, "-m", "modelfleet.downloader"],
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(operator), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
