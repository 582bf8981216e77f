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

from modelfleet.dev.podrunner import LABEL_SELECTOR, UNFINISHED, PodRunner
from modelfleet.dev.provisioner import LocalPathProvisioner
from modelfleet.dev.reflector import Reflector

LOG = logging.getLogger(__name__)

POOL_SIZE = 32


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


def run_agent(state_dir: Path, kubeconfig: Path, interval: float = 5.0) -> None:
    """Provision volumes and run pods whenever claims, volumes or pods change (and at least
    every ``interval`` seconds) until SIGTERM or SIGINT."""
    config.load_kube_config(config_file=str(kubeconfig))
    # Pods run in a thread each: a pool as large as the threads that write at once keeps their
    # connections (each new one is a TLS handshake on both sides).
    configuration = client.Configuration.get_default_copy()
    configuration.connection_pool_maxsize = POOL_SIZE
    core: Any = _WithTimeout(client.CoreV1Api(client.ApiClient(configuration)), timeout=30.0)
    provisioner = LocalPathProvisioner(core, state_dir / "volumes")
    runner = PodRunner(core, state_dir / "agent", state_dir / "volumes")
    stop = threading.Event()
    changed = threading.Event()
    claims = Reflector(core.list_persistent_volume_claim_for_all_namespaces, changed)
    volumes = Reflector(core.list_persistent_volume, changed)
    # The unfinished pods the runner executes.
    pods = Reflector(
        core.list_pod_for_all_namespaces,
        changed,
        label_selector=LABEL_SELECTOR,
        field_selector=UNFINISHED,
    )

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()
        changed.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    for reflector in (claims, volumes, pods):
        reflector.start(stop)
    LOG.info("agent running for %s", state_dir)
    # Each part runs again only when what it reads changed, or every ``interval``.
    seen_storage, seen_pods = (-1, -1), -1
    while not stop.is_set():
        quiet = not changed.wait(interval)
        changed.clear()
        if stop.is_set():
            break
        try:
            storage = (claims.revision, volumes.revision)
            if (
                claims.synced.is_set()
                and volumes.synced.is_set()
                and (quiet or storage != seen_storage)
            ):
                seen_storage = storage
                provisioner.sync(claims.items(), volumes.items())
            if pods.synced.is_set() and (quiet or pods.revision != seen_pods):
                seen_pods = pods.revision
                runner.sync(pods.items())
        except (ApiException, HTTPError, OSError) as error:
            # The API server restarts in fault tests: keep going, calmly.
            LOG.warning("sync failed: %s", error)
            stop.wait(2.0)
    runner.stop_all()
