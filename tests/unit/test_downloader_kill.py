"""A Job killed halfway through a large file loses almost nothing on its next attempt."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelfleet.downloader.layout import MANIFEST_NAME
from modelfleet.downloader.verify import sha256_file
from tests.hubserver import Fault, HubServer, LazyBlob, tiny_model_files
from tests.hubserver.fixtures import job_env, running_hub

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]
REPO_ROOT = Path(__file__).resolve().parents[2]
SIZE = 200 << 20


@pytest.fixture
def hub() -> Iterator[HubServer]:
    yield from running_hub()


def _start(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "modelfleet.downloader"],
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO_ROOT / "operator"), **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_kill_at_half_then_resume_refetches_at_most_55_percent(
    hub: HubServer, tmp_path: Path
) -> None:
    blob = LazyBlob(SIZE, seed=11)
    sha = hub.add_repo("org/big", {**tiny_model_files(), "model.safetensors": blob})
    # Slow enough to catch the transfer in the middle.
    hub.add_fault(Fault(path="model.safetensors", throttle_bps=80e6))
    env = job_env(hub, tmp_path, "org/big")
    partial = tmp_path / "org" / "big" / sha / ".modelfleet-partial" / "model.safetensors.part"

    first = _start(env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if partial.exists() and partial.stat().st_size >= SIZE // 2:
            break
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    killed_at = partial.stat().st_size
    assert SIZE // 4 < killed_at < SIZE

    hub.clear_faults()
    hub.reset_counters()
    second = _start(env)
    assert second.wait(timeout=40) == 0

    refetched = hub.bytes_sent("model.safetensors")
    assert refetched <= 0.55 * SIZE
    assert refetched == SIZE - killed_at
    final = tmp_path / "org" / "big" / sha
    assert sha256_file(final / "model.safetensors") == blob.sha256
    assert (final / MANIFEST_NAME).is_file()
