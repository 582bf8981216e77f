"""The engines' metrics with a real engine: the chart's PodMonitor, applied to the serving pod
the operator made, points at a /metrics that serves vLLM's series; promtool parses it; and every
engine panel of the dashboard returns series for the Model from two scrapes labelled as
Prometheus would label them.

One real engine (about 0.9 GB and 40-90 s on 2 cores); the local cluster runs it."""

from __future__ import annotations

import urllib.request
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from modelfleet.dev.client import complete
from tests.hubserver.server import HubServer
from tests.integration.test_model_lifecycle import Models
from tests.integration.test_serving import ENGINE_START_SECONDS, PROMPT, _real_tiny, _serving_pods
from tests.support.chart import render_chart
from tests.support.cluster import TestCluster
from tests.support.scrape import (
    input_series,
    pod_monitor_target,
    promtool_test_rules,
    returns_series_test,
)
from tests.unit.test_observability import engine_queries, promtool_findings, variables_picking


@pytest.fixture(autouse=True)
def _local_only(cluster: TestCluster) -> None:
    if not cluster.local:
        pytest.skip("real engines run in the local cluster's executed pods")


def _pod_monitor(directory: Path) -> dict[str, Any]:
    values = {"engineMetrics": {"podMonitor": {"enabled": True}}}
    (monitor,) = [o for o in render_chart(values, directory) if o["kind"] == "PodMonitor"]
    return monitor


def _port_number(pod: dict[str, Any], name: str) -> int:
    """The number of the container port the PodMonitor names."""
    for container in pod["spec"]["containers"]:
        for port in container.get("ports", []):
            if port.get("name") == name:
                return int(port["containerPort"])
    raise AssertionError(f"the serving pod has no port named {name}")


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as response:  # an http URL we build
        text: str = response.read().decode()
    return text


def _total(exposition: str, series: str) -> float:
    """The sum of the samples of ``series`` (a name, no labels) in an exposition text."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == series
    )


def test_the_pod_monitor_target_serves_what_the_dashboard_reads(
    api: client.ApiClient,
    namespace: str,
    cluster: TestCluster,
    operator: Any,
    model_hub: HubServer,
    tmp_path: Path,
) -> None:
    models = Models(api, namespace, cluster.kubeconfig)
    models.create(_real_tiny(model_hub, replicas=1))
    models.wait_ready("tiny", timeout=ENGINE_START_SECONDS)
    (pod,) = _serving_pods(client.CoreV1Api(api), namespace)
    pod_body: dict[str, Any] = api.sanitize_for_serialization(pod)

    monitor = _pod_monitor(tmp_path)
    target = pod_monitor_target(monitor, pod_body, namespace, pod_name=pod.metadata.name)
    assert target is not None, "the chart's PodMonitor does not scrape the serving pod"
    assert target["model"] == "tiny" and target["namespace"] == namespace
    assert target["revision"] == models.get("tiny")["status"]["serving"]["activeRevision"]

    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    port = _port_number(pod_body, endpoint["port"])
    url = f"http://{pod.status.pod_ip}:{port}{endpoint['path']}"
    before = _scrape(url)
    answer = complete(pod.status.pod_ip, port, "tiny", PROMPT, max_tokens=8, timeout=60)
    assert answer.text.strip(), "the engine generated text"
    after = _scrape(url)

    assert "vllm:num_requests_waiting{" in after
    assert _total(after, "vllm:generation_tokens_total") > _total(
        before, "vllm:generation_tokens_total"
    ), "the completion shows in vLLM's counters"

    assert promtool_findings(after) == []

    queries = engine_queries(variables_picking(target))
    series = input_series([before, after], target)
    document = returns_series_test(series, queries)
    result = promtool_test_rules(document, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
