"""Faults for the local control plane: restart one of its processes, throttle a user."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from tests.support.cluster import wait_for


def kwok_cluster_dir(cluster_name: str) -> Path:
    """Where kwokctl keeps the cluster's pids, logs and configuration."""
    return Path.home() / ".kwok" / "clusters" / cluster_name


def _alive(proc: Path) -> bool:
    """Whether the process exists and is not a zombie nobody has reaped yet."""
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def restart_component(
    cluster_name: str,
    component: str,
    *,
    down_seconds: float = 2.0,
    extra_args: tuple[str, ...] = (),
    argv_override: list[str] | None = None,
) -> list[str]:
    """Stop ``component`` (kube-apiserver, etcd, ...) and start it again with the same command
    line (plus ``extra_args``, or ``argv_override`` instead), working directory and environment,
    as a supervisor would after a crash. Returns the command line it had before."""
    directory = kwok_cluster_dir(cluster_name)
    pid_file = directory / "pids" / f"{component}.pid"
    pid = int(pid_file.read_text().strip())
    proc = Path("/proc") / str(pid)
    argv, cwd, env = _launch_of(pid)
    others = _command_lines(directory, exclude=component)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while _alive(proc) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _alive(proc):  # a graceful shutdown drains long watches; do not wait for all of them
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not _alive(proc) or None, timeout=30, message=f"{component} to exit")
    time.sleep(down_seconds)
    log = (directory / "logs" / f"{component}.log").open("ab")
    new_argv = argv_override if argv_override is not None else [*argv, *extra_args]
    process = subprocess.Popen(
        new_argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    pid_file.write_text(str(process.pid))
    _supervise(directory, others, seconds=15)
    return argv


Launch = tuple[list[str], str, dict[str, str]]


def _launch_of(pid: int) -> Launch:
    proc = Path("/proc") / str(pid)
    argv = [a.decode() for a in (proc / "cmdline").read_bytes().split(b"\0") if a]
    env = dict(
        line.split("=", 1)
        for line in (proc / "environ").read_bytes().decode(errors="replace").split("\0")
        if "=" in line
    )
    return argv, os.readlink(proc / "cwd"), env


def _command_lines(directory: Path, exclude: str) -> dict[str, Launch]:
    launches = {}
    for pid_file in (directory / "pids").glob("*.pid"):
        if pid_file.stem != exclude:
            launches[pid_file.stem] = _launch_of(int(pid_file.read_text().strip()))
    return launches


def _supervise(directory: Path, launches: dict[str, Launch], seconds: float) -> None:
    """Restart, like a kubelet restarts static pods, any other component that died meanwhile."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for name, (argv, cwd, env) in launches.items():
            pid_file = directory / "pids" / f"{name}.pid"
            if not _alive(Path("/proc") / pid_file.read_text().strip()):
                log = (directory / "logs" / f"{name}.log").open("ab")
                process = subprocess.Popen(
                    argv,
                    cwd=cwd,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
                pid_file.write_text(str(process.pid))
        time.sleep(1)
