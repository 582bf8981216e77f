"""Kubernetes Events for condition transitions, with the condition's reason."""

from __future__ import annotations

import logging
import socket
import time
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.exceptions import ApiException

from modelfleet.kube.client import EVENT, Kube

LOG = logging.getLogger(__name__)

REPORTING_CONTROLLER = "modelfleet.io/operator"
_MAX_NOTE = 1024


class EventRecorder:
    """Posts events.k8s.io/v1 Events about modelfleet objects."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self.instance = socket.gethostname()

    def __call__(self, body: dict[str, Any], event_type: str, reason: str, message: str) -> None:
        """Record one Event regarding ``body``; a failure is logged, never raised."""
        meta = body["metadata"]
        event = {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            # Named like the kubelet's Events: "<object>.<unique hex>".
            "metadata": {
                "name": f"{meta['name']}.{time.time_ns():x}",
                "namespace": meta["namespace"],
            },
            "eventTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "reportingController": REPORTING_CONTROLLER,
            "reportingInstance": self.instance,
            "action": "Reconcile",
            "reason": str(reason),
            "note": message[:_MAX_NOTE],
            "type": event_type,
            "regarding": {
                "apiVersion": body.get("apiVersion"),
                "kind": body.get("kind"),
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
            },
        }
        try:
            self.kube.create(EVENT, meta["namespace"], event)
        except ApiException as error:
            LOG.warning("could not record event %s for %s: %s", reason, meta["name"], error.reason)
