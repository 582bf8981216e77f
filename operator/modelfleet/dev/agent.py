"""The local cluster's node agent: the volume provisioner and the pod runner in one loop."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from modelfleet.dev.podrunner import PodRunner
from modelfleet.dev.provisioner import LocalPathProvisioner

LOG = logging.getLogger(__name__)


def run_agent(state_dir: Path, kubeconfig: Path, interval: float = 0.5) -> None:
    """Sync volumes and pods every ``interval`` seconds until SIGTERM or SIGINT."""
    config.load_kube_config(config_file=str(kubeconfig))
    core = client.CoreV1Api()
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
