"""Prometheus metrics of the operator, served on ``MODELFLEET_METRICS_PORT``.

Names follow the Prometheus conventions: the ``modelfleet_`` prefix, base units, ``_total``
for counters and ``_seconds`` / ``_bytes`` for units.
"""

from __future__ import annotations

import threading
from collections import Counter as Tally
from collections.abc import Iterator

from prometheus_client import Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

RECONCILES = Counter(
    "modelfleet_reconciles_total", "Reconciles run, by kind and result.", ["kind", "result"]
)
RECONCILE_DURATION = Histogram(
    "modelfleet_reconcile_duration_seconds",
    "Time one reconcile took, by kind.",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
API_REQUESTS = Counter(
    "modelfleet_api_requests_total",
    "Requests the operator's reconciles sent to the API server, by verb and resource.",
    ["verb", "resource"],
)
API_ERRORS = Counter(
    "modelfleet_api_errors_total",
    "Failed requests to the API server, by verb, resource and HTTP status code.",
    ["verb", "resource", "code"],
)
DOWNLOAD_BYTES = Counter(
    "modelfleet_download_bytes_total", "Bytes of weights downloaded and verified."
)
DOWNLOAD_DURATION = Histogram(
    "modelfleet_download_duration_seconds",
    "Time from the start of a download Job to verified weights.",
    buckets=(5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400),
)
DOWNLOAD_FAILURES = Counter(
    "modelfleet_download_failures_total", "Downloads that ended in failure, by reason.", ["reason"]
)
ROLLOUT_DURATION = Histogram(
    "modelfleet_rollout_duration_seconds",
    "Time from verified new weights to every serving replica on them.",
    buckets=(5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600),
)
FINETUNE_RUNS = Counter(
    "modelfleet_finetune_runs_total", "FinetuneJobs that finished, by result.", ["result"]
)


class ModelConditions(Collector):
    """The number of Models per Ready status and reason, from the last reconcile of each."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_model: dict[str, tuple[str, str]] = {}

    def set(self, key: str, ready: str, reason: str) -> None:
        """Record the Ready status and reason of one Model."""
        with self._lock:
            self._by_model[key] = (ready, reason)

    def forget(self, key: str) -> None:
        """Drop a deleted Model."""
        with self._lock:
            self._by_model.pop(key, None)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """One gauge sample per (ready, reason)."""
        with self._lock:
            counts = Tally(self._by_model.values())
        family = GaugeMetricFamily(
            "modelfleet_models", "Models by Ready status and reason.", labels=["ready", "reason"]
        )
        for (ready, reason), count in sorted(counts.items()):
            family.add_metric([ready, reason], count)
        yield family


MODEL_CONDITIONS = ModelConditions()
REGISTRY.register(MODEL_CONDITIONS)


def serve(port: int) -> None:
    """Serve /metrics on ``port`` in a background thread."""
    start_http_server(port)
