"""Count the operator's API requests from the API server's audit log.

The scale benchmark creates its cluster with an audit policy that records, at level Metadata,
only the requests of the operator's ServiceAccount. Each request appears once per stage; a
request is counted once, by its ``auditID``, at the time the API server received it. kopf's
own requests (watches, finalizers) carry the user agent ``kopf/<version>``; modelfleet's
reconcile requests go through the official client (``OpenAPI-Generator/...``).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})
MODEL_NAME = re.compile(r"^(m-\d{4,})")


def audit_policy(username: str) -> dict[str, Any]:
    """An audit policy that records only ``username``'s requests, without bodies."""
    return {
        "apiVersion": "audit.k8s.io/v1",
        "kind": "Policy",
        "omitStages": ["RequestReceived"],
        "rules": [
            {"level": "Metadata", "users": [username]},
            {"level": "None"},
        ],
    }


@dataclass(frozen=True)
class Request:
    """One API request of the operator."""

    time: float
    """When the API server received it, in seconds since the epoch."""
    verb: str
    resource: str
    """resource[/subresource], e.g. ``models/status``."""
    namespace: str
    name: str
    client: str
    """``kopf`` or ``modelfleet`` (the reconcile's own client)."""
    code: int

    @property
    def write(self) -> bool:
        """Whether the request changes state."""
        return self.verb in WRITE_VERBS

    @property
    def model(self) -> str | None:
        """The benchmark Model a request is about, from the object's name (m-0001-weights...)."""
        found = MODEL_NAME.match(self.name)
        return f"{self.namespace}/{found.group(1)}" if found else None


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def read_requests(path: Path, username: str) -> list[Request]:
    """Every request of ``username`` in the audit log (and its rotated siblings)."""
    seen: set[str] = set()
    requests: list[Request] = []
    files = sorted(path.parent.glob(path.name + "*"), key=lambda p: p.stat().st_mtime)
    for file in files:
        with file.open() as lines:
            for line in lines:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if event.get("user", {}).get("username") != username:
                    continue
                audit_id = event["auditID"]
                if audit_id in seen:
                    continue
                seen.add(audit_id)
                ref = event.get("objectRef") or {}
                resource = ref.get("resource") or event.get("requestURI", "?").split("?")[0]
                if ref.get("subresource"):
                    resource += "/" + ref["subresource"]
                agent = event.get("userAgent", "")
                requests.append(
                    Request(
                        time=_epoch(event["requestReceivedTimestamp"]),
                        verb=event["verb"],
                        resource=resource,
                        namespace=ref.get("namespace", ""),
                        name=ref.get("name", ""),
                        client="kopf" if agent.startswith("kopf/") else "modelfleet",
                        code=int((event.get("responseStatus") or {}).get("code") or 0),
                    )
                )
    requests.sort(key=lambda r: r.time)
    return requests


def between(requests: list[Request], start: float, end: float) -> list[Request]:
    """The requests received in [start, end)."""
    return [r for r in requests if start <= r.time < end]


def summarize(requests: list[Request], models: int) -> dict[str, Any]:
    """Counts by verb, by verb and resource, writes per Model (mean and max) for one phase."""
    by_verb = Counter(r.verb for r in requests)
    by_resource = Counter(f"{r.verb} {r.resource}" for r in requests)
    by_client = Counter(f"{r.client} {r.verb}" for r in requests)
    writes_of = Counter(r.model for r in requests if r.write and r.model)
    writes = sum(1 for r in requests if r.write)
    return {
        "requests": len(requests),
        "writes": writes,
        "reads": len(requests) - writes,
        "per_model": round(len(requests) / models, 2) if models else None,
        "writes_per_model": round(writes / models, 2) if models else None,
        "max_writes_of_one_model": max(writes_of.values(), default=0),
        "by_verb": dict(by_verb.most_common()),
        "by_verb_resource": dict(by_resource.most_common()),
        "by_client": dict(by_client.most_common()),
        "errors": dict(
            Counter(f"{r.verb} {r.resource} {r.code}" for r in requests if r.code >= 400)
        ),
    }


def per_minute(requests: list[Request], seconds: float) -> dict[str, Any]:
    """Request rates of an idle window: per minute, by verb and by verb and resource."""
    minutes = seconds / 60
    by_verb = Counter(r.verb for r in requests)
    by_resource = Counter(f"{r.verb} {r.resource}" for r in requests)
    return {
        "seconds": round(seconds, 1),
        "requests_per_min": round(len(requests) / minutes, 2),
        "writes_per_min": round(sum(1 for r in requests if r.write) / minutes, 2),
        "lists_per_min": round(by_verb.get("list", 0) / minutes, 2),
        "by_verb_per_min": {k: round(v / minutes, 2) for k, v in by_verb.most_common()},
        "by_verb_resource": dict(by_resource.most_common()),
    }
