"""Ask a Model of the local cluster for a completion, the way a client inside the cluster
would: through its Service, i.e. one of the ready endpoints of the Service's EndpointSlices
(what kube-proxy picks from), at the pod's (loopback) address."""

from __future__ import annotations

import json
import random
import time
import urllib.request
from dataclasses import dataclass
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
