"""Helpers for tests that run against a real API server."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from kubernetes import client

REPO_ROOT = Path(__file__).resolve().parents[2]

T = TypeVar("T")


@dataclass(frozen=True)
class TestCluster:
    """The cluster a test session runs against."""

    __test__ = False  # not a test class, despite the name

    kubeconfig: Path
    local: bool
    """True for the local control plane, where Job pods are executed by the dev agent."""
    name: str = ""


def wait_for(
    probe: Callable[[], T | None],
    *,
    timeout: float = 60.0,
    interval: float = 0.5,
    message: str = "condition",
) -> T:
    """Poll ``probe`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {message}; last: {last!r}")


def tool_path(name: str) -> str:
    """A control-plane tool built by hack/build-tools.sh (kubectl, helm...), else from PATH."""
    import shutil
    import subprocess

    dirs = subprocess.run(
        ["bash", str(REPO_ROOT / "hack/build-tools.sh"), "--print"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for directory in dirs:
        candidate = Path(directory) / name
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise AssertionError(f"{name} not found: run hack/build-tools.sh")
    return found


@contextmanager
def scratch_namespace(
    api: client.ApiClient, prefix: str = "t", labels: dict[str, str] | None = None
) -> Iterator[str]:
    """A namespace of its own for a test (``prefix``-random, labelled as a test's), deleted
    when the block ends."""
    core = client.CoreV1Api(api)
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    all_labels = {"modelfleet.dev/test": "true", **(labels or {})}
    core.create_namespace({"metadata": {"name": name, "labels": all_labels}})
    try:
        yield name
    finally:
        core.delete_namespace(name)


def engine_python() -> str | None:
    """The CPU vLLM environment's python (hack/engine-env.sh), or None where not installed."""
    import subprocess

    python = subprocess.run(
        ["bash", str(REPO_ROOT / "hack/engine-env.sh"), "--print"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.strip()
    return python if Path(python).exists() else None
