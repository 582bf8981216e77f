"""An Ingress for clients outside the cluster (service.ingress), and what status.revisions
says of each revision kept: its size and when it was last served."""

from __future__ import annotations

from typing import Any

import pytest

from modelfleet.api.v1alpha1 import Model
from modelfleet.builders.serving import build_ingress
from modelfleet.conditions import Reason
from modelfleet.contracts.results import DownloadResult
from modelfleet.kube.client import INGRESS
from modelfleet.reconcile.model.decide import decide
from modelfleet.reconcile.model.observe import Observed
from tests.unit.test_builders import load_example
from tests.unit.test_model_decide import (
    NOW,
    OLD_SHA,
    SETTINGS,
    SHA,
    bound_claim,
    deployment,
    job,
    job_pod,
    model,
)

pytestmark = pytest.mark.unit

INGRESS_SPEC = {
    "host": "tiny.models.example.com",
    "className": "nginx",
    "tlsSecretName": "tiny-tls",
    "annotations": {"nginx.ingress.kubernetes.io/proxy-read-timeout": "600"},
}


def _with_ingress(**ingress: Any) -> Model:
    return model(serving={"replicas": 1, "service": {"ingress": ingress or INGRESS_SPEC}})


def test_the_ingress_routes_the_host_to_the_service_over_tls() -> None:
    ingress = build_ingress(
        load_example("model-tiny", serving={"service": {"ingress": INGRESS_SPEC}})
    )
    assert ingress["metadata"]["name"] == "tiny"
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-read-timeout"] == (
        "600"
    )
    spec = ingress["spec"]
    assert spec["ingressClassName"] == "nginx"
    assert spec["tls"] == [{"hosts": ["tiny.models.example.com"], "secretName": "tiny-tls"}]
    (rule,) = spec["rules"]
    assert rule["host"] == "tiny.models.example.com"
    (path,) = rule["http"]["paths"]
    assert path["backend"] == {"service": {"name": "tiny", "port": {"number": 8000}}}


def _served(m: Model, **status: Any) -> Observed:
    result = DownloadResult(
        result="Succeeded", reason=Reason.DOWNLOADED, resolved_revision=SHA, bytes_total=1234
    )
    observed = Observed(
        claim=bound_claim(m), job=job(m, "Complete"), job_pods=[job_pod("Succeeded", result)]
    )
    observed.deployment = deployment(m, **status)
    return observed


def test_a_model_with_an_ingress_applies_it_and_shows_its_url() -> None:
    m = _with_ingress()
    plan = decide(m, _served(m, replicas=1, readyReplicas=1, updatedReplicas=1), SETTINGS, NOW)
    assert [a["kind"] for a in plan.apply if a["kind"] == "Ingress"] == ["Ingress"]
    assert plan.status["serving"]["externalUrl"] == "https://tiny.models.example.com/v1"
    plain = _with_ingress(host="tiny.internal")
    plan = decide(plain, _served(plain), SETTINGS, NOW)
    assert plan.status["serving"]["externalUrl"] == "http://tiny.internal/v1"


def test_an_ingress_no_longer_asked_for_is_deleted() -> None:
    m = _with_ingress()
    observed = _served(m, replicas=1, readyReplicas=1, updatedReplicas=1)
    observed.ingress = build_ingress(m)
    assert decide(m, observed, SETTINGS, NOW).delete == []
    without = model(serving={"replicas": 1})
    plan = decide(without, observed, SETTINGS, NOW)
    assert plan.delete == [(INGRESS, "tiny")]
    assert not [a for a in plan.apply if a["kind"] == "Ingress"]


def test_the_operators_annotations_and_a_bad_host_are_refused() -> None:
    with pytest.raises(ValueError, match=r"service\.ingress\.annotations"):
        _with_ingress(host="tiny.example.com", annotations={"modelfleet.io/spec-hash": "x"})
    with pytest.raises(ValueError, match="host"):
        _with_ingress(host="Not A Host")


def test_a_verified_revision_is_kept_with_its_size() -> None:
    m = model()
    plan = decide(m, _served(m, replicas=1, readyReplicas=1, updatedReplicas=1), SETTINGS, NOW)
    (kept,) = plan.status["revisions"]
    assert (kept["revision"], kept["sizeBytes"]) == (SHA, 1234)
    assert "lastServedAt" not in kept


def test_the_revision_serving_moves_off_gets_its_last_served_time() -> None:
    m = model()
    m.status = m.status.model_validate(
        {
            "revisions": [{"revision": OLD_SHA, "path": f"/models/org/tiny/{OLD_SHA}"}],
            "serving": {"activeRevision": OLD_SHA},
        }
    )
    plan = decide(m, _served(m, replicas=1, readyReplicas=1, updatedReplicas=1), SETTINGS, NOW)
    assert plan.status["serving"]["activeRevision"] == SHA
    new, old = plan.status["revisions"]
    assert new["revision"] == SHA and "lastServedAt" not in new
    assert (old["revision"], old["lastServedAt"]) == (OLD_SHA, NOW)
