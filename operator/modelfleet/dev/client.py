"""Ask a Model of the local cluster for a completion, the way a client inside the cluster
would: through its Service, i.e. one of the ready endpoints of the Service's EndpointSlices
(what kube-proxy picks from), at the pod's (loopback) address."""

from __future__ import annotations

import json
import random
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client


@dataclass(frozen=True)
class Completion:
    """One answered completion."""

    text: str
    endpoint: str
    seconds: float


def ready_endpoints(api: client.ApiClient, namespace: str, service: str) -> list[tuple[str, int]]:
    """(address, port) of every ready endpoint of ``service``, from its EndpointSlices."""
    slices = client.DiscoveryV1Api(api).list_namespaced_endpoint_slice(
        namespace, label_selector=f"kubernetes.io/service-name={service}"
    )
    found: list[tuple[str, int]] = []
    for endpoint_slice in slices.items:
        ports = [p.port for p in endpoint_slice.ports or [] if p.port]
        if not ports:
            continue
        for endpoint in endpoint_slice.endpoints or []:
            conditions = endpoint.conditions
            if conditions is not None and conditions.ready is False:
                continue
            found += [(address, ports[0]) for address in endpoint.addresses]
    return sorted(found)


def complete(
    address: str, port: int, model: str, prompt: str, *, max_tokens: int = 16, timeout: float = 60
) -> Completion:
    """POST /v1/completions to one endpoint (greedy, so a revision answers the same each time)."""
    body: dict[str, Any] = {
        "model": model,
        "prompt": prompt,
        "max_tokens": max_tokens,
        "temperature": 0,
    }
    request = urllib.request.Request(  # an http URL we build
        f"http://{address}:{port}/v1/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    started = time.monotonic()
    with urllib.request.urlopen(request, timeout=timeout) as response:
        answer = json.loads(response.read())
    return Completion(answer["choices"][0]["text"], f"{address}:{port}", time.monotonic() - started)


def complete_through_service(
    api: client.ApiClient, namespace: str, service: str, model: str, prompt: str, **options: Any
) -> Completion:
    """A completion from one ready endpoint of ``service``, chosen at random like kube-proxy."""
    endpoints = ready_endpoints(api, namespace, service)
    if not endpoints:
        raise LookupError(f"Service {namespace}/{service} has no ready endpoint")
    address, port = random.choice(endpoints)
    return complete(address, port, model, prompt, **options)


@dataclass
class SteadyClient:
    """A client asking ``service`` for a completion every ``interval`` seconds from a thread,
    each time at one of the ready endpoints (round robin over what the EndpointSlices say now,
    as kube-proxy would route), recording every answer, every failure and the fewest ready
    endpoints it saw. For measuring a rollout."""

    api: client.ApiClient
    namespace: str
    service: str
    model: str
    prompt: str
    interval: float = 0.5
    answers: list[tuple[float, str]] = field(default_factory=list)
    """(monotonic time the request was sent, text)."""
    failures: list[str] = field(default_factory=list)
    fewest_ready: int | None = None

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> SteadyClient:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        turn = 0
        while not self._stop.is_set():
            endpoints = ready_endpoints(self.api, self.namespace, self.service)
            if self.fewest_ready is None or len(endpoints) < self.fewest_ready:
                self.fewest_ready = len(endpoints)
            if endpoints:
                address, port = endpoints[turn % len(endpoints)]
                turn += 1
                sent = time.monotonic()
                try:
                    answer = complete(address, port, self.model, self.prompt, max_tokens=8)
                    self.answers.append((sent, answer.text))
                except OSError as error:
                    self.failures.append(f"{address}: {error}")
            else:
                self.failures.append("no ready endpoint")
            self._stop.wait(self.interval)
