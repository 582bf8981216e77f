"""A proxy configured once in the chart's values carries every download: the operator runs
with the MODELFLEET_DEFAULTS the chart's Deployment gives it, a Model that says nothing of
proxies reaches Ready through a recording proxy on 127.0.0.1, and NO_PROXY keeps a host off
the proxy."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from modelfleet.builders.common import DEFAULTS_ANNOTATION
from tests.hubserver.server import HubServer
from tests.integration.test_model_lifecycle import Models, tiny_manifest
from tests.support.chart import render_chart
from tests.support.cluster import TestCluster
from tests.support.operator import OperatorProcess
from tests.support.proxy import RecordingProxy

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


@pytest.fixture
def proxy() -> Iterator[RecordingProxy]:
    proxy = RecordingProxy().start()
    yield proxy
    proxy.stop()


def _chart_defaults(values: dict[str, Any], directory: Path) -> str:
    """MODELFLEET_DEFAULTS as the chart's Deployment sets it from ``values``."""
    (deployment,) = [o for o in render_chart(values, directory) if o["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    (value,) = [e["value"] for e in container["env"] if e["name"] == "MODELFLEET_DEFAULTS"]
    return str(value)


@pytest.fixture
def proxied_operator(
    cluster: TestCluster, operator: OperatorProcess, proxy: RecordingProxy, tmp_path: Path
) -> Iterator[OperatorProcess]:
    """The session's operator, replaced for one test by one run with the chart's defaults
    (a proxy for every Job, and NO_PROXY for ``localhost``)."""
    if not cluster.local:
        pytest.skip("the Jobs run on the local cluster, beside the proxy")
    values = {
        "defaults": {
            "jobs": {
                "env": [
                    {"name": "HTTP_PROXY", "value": proxy.url},
                    {"name": "NO_PROXY", "value": "localhost"},
                ]
            }
        }
    }
    env = {**operator.env, "MODELFLEET_DEFAULTS": _chart_defaults(values, tmp_path)}
    operator.stop()
    replaced = OperatorProcess(operator.kubeconfig, tmp_path / "operator.log", env=env)
    try:
        yield replaced.start()
    finally:
        replaced.stop()
        operator.start()


def test_a_download_through_the_charts_proxy_reaches_ready(
    api: client.ApiClient,
    namespace: str,
    cluster: TestCluster,
    proxied_operator: OperatorProcess,
    proxy: RecordingProxy,
    model_hub: HubServer,
) -> None:
    models = Models(api, namespace, cluster.kubeconfig)
    through = tiny_manifest(model_hub, "through")
    del through["spec"]["serving"]
    models.create(through)
    models.wait_ready("through", timeout=180)
    sha = models.get("through")["status"]["resolvedRevision"]
    carried = proxy.targets()
    assert any(f"/resolve/{sha}/config.json" in target for target in carried), carried
    assert all(target.startswith(model_hub.endpoint) for target in carried), carried

    # The same hub by a name NO_PROXY lists: nothing more goes through the proxy.
    before = len(carried)
    direct = tiny_manifest(model_hub, "direct")
    del direct["spec"]["serving"]
    endpoint = model_hub.endpoint.replace("127.0.0.1", "localhost")
    direct["spec"]["source"]["huggingface"]["endpoint"] = endpoint
    direct["spec"]["download"] = {"verify": "size"}  # other content: a Job of its own
    models.create(direct)
    models.wait_ready("direct", timeout=180)
    assert len(proxy.targets()) == before

    # The Job says what it took from the chart.
    jobs = client.BatchV1Api(api).list_namespaced_job(namespace).items
    annotations = [j.metadata.annotations or {} for j in jobs]
    assert annotations, "the download Jobs are gone before they could be read"
    assert {a.get(DEFAULTS_ANNOTATION) for a in annotations} == {"env HTTP_PROXY NO_PROXY"}
    assert json.loads(proxied_operator.env["MODELFLEET_DEFAULTS"])["jobs"]["env"][0]["value"] == (
        proxy.url
    )
