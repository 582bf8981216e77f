"""The local cluster's node agent: the volume provisioner and the pod runner in one loop."""

from __future__ import annotations

import functools
import logging
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from modelfleet.dev.podrunner import PodRunner
from modelfleet.dev.provisioner import LocalPathProvisioner

LOG = logging.getLogger(__name__)


class _WithTimeout:
    """A CoreV1Api whose every call carries a request timeout: a call in flight when the API
    server dies must fail, not hang the agent forever."""

    def __init__(self, api: client.CoreV1Api, timeout: float) -> None:
        self._api = api
        self._timeout = timeout

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._api, name)
        if callable(attribute):
            return functools.partial(attribute, _request_timeout=self._timeout)
        return attribute


def run_agent(state_dir: Path, kubeconfig: Path, interval: float = 0.5) -> None:
    """Sync volumes and pods every ``interval`` seconds until SIGTERM or SIGINT."""
    config.load_kube_config(config_file=str(kubeconfig))
    core: Any = _WithTimeout(client.CoreV1Api(), timeout=30.0)
    provisioner = LocalPathProvisioner(core, state_dir / "volumes")
    runner = PodRunner(core, state_dir / "agent", state_dir / "volumes")
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    LOG.info("agent running for %s", state_dir)
    while not stop.is_set():
        try:
            provisioner.sync()
            runner.sync()
        except (ApiException, HTTPError, OSError) as error:
            # The API server restarts in fault tests: keep going, calmly.
            LOG.warning("sync failed: %s", error)
            stop.wait(2.0)
        stop.wait(interval)
    runner.stop_all()
