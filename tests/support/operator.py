"""Run the operator as a real process against the test cluster, and stop or kill it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.support.cluster import wait_for

WRITE_VERBS = ("POST", "PUT", "PATCH", "DELETE")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class OperatorProcess:
    """`modelfleet run` in a subprocess, logging to a file."""

    def __init__(
        self,
        kubeconfig: Path,
        log_path: Path,
        env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
    ) -> None:
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.env = dict(env or {})
        self.args = args
        # Free ports, chosen once: restarts keep them, parallel sessions do not collide.
        self.env.setdefault("MODELFLEET_HEALTH_PORT", str(_free_port()))
        self.env.setdefault("MODELFLEET_METRICS_PORT", str(_free_port()))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def metrics_url(self) -> str:
        """The operator's Prometheus endpoint."""
        return f"http://127.0.0.1:{self.env['MODELFLEET_METRICS_PORT']}/metrics"

    def samples(self, metric: str) -> list[tuple[dict[str, str], float]]:
        """The samples of one metric on the operator's Prometheus endpoint."""
        with urllib.request.urlopen(self.metrics_url, timeout=5) as response:
            text = response.read().decode()
        return [
            (sample.labels, sample.value)
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == metric
        ]

    def writes(self) -> dict[str, float]:
        """Write requests this process sent, by ``VERB resource``."""
        counts: dict[str, float] = {}
        for labels, value in self.samples("modelfleet_api_requests_total"):
            if labels["verb"] in WRITE_VERBS and value:
                key = f"{labels['verb']} {labels['resource']}"
                counts[key] = counts.get(key, 0) + value
        return counts

    def reconciles(self, result: str | None = None) -> float:
        """Reconciles this process ran, all kinds; only those ending in ``result`` if given."""
        return sum(
            value
            for labels, value in self.samples("modelfleet_reconciles_total")
            if result is None or labels["result"] == result
        )

    def start(self) -> OperatorProcess:
        """Start the operator and wait for its liveness endpoint."""
        port = self.env["MODELFLEET_HEALTH_PORT"]
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "MODELFLEET_RESYNC_SECONDS": "30",
            "MODELFLEET_CLAIM_BIND_GRACE_SECONDS": "15",
            **self.env,
        }
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "modelfleet.cli.main", "run", *self.args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

        def healthy() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"operator exited: {self.log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                    return True
            except OSError:
                return False

        wait_for(healthy, timeout=60, message="the operator's liveness endpoint")
        return self

    def kill(self) -> None:
        """SIGKILL, as a node failure or OOM would."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM and wait; SIGKILL after 15 s."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self) -> None:
        """Kill and start again."""
        self.kill()
        time.sleep(0.5)
        self.start()

    def logs(self) -> str:
        """Everything the operator logged so far."""
        return self.log_path.read_text(errors="replace")
