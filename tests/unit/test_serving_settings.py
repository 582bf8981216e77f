"""The serving pod settings a platform team sets (pull secrets, priority and runtime class,
labels and annotations, identity, envFrom, zone spread, /dev/shm and /tmp sizes, probe timing,
grace period, Service annotations, the disruption budget) land in the children, are refused
by the schema when malformed, and the budget comes and goes with the replica count."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import ValidationError

from modelfleet.api.v1alpha1 import Model
from modelfleet.builders.common import SPEC_HASH_ANNOTATION, labels
from modelfleet.builders.serving import (
    build_disruption_budget,
    build_service,
    wants_disruption_budget,
)
from modelfleet.kube.client import DEPLOYMENT, DISRUPTION_BUDGET, SERVICE, STORAGE_CLASS
from modelfleet.reconcile.model.decide import decide
from modelfleet.reconcile.model.observe import Observed, is_ours, observe
from tests.support.crdschema import load_crd, validate
from tests.unit.test_builders import deployment_for, load_example
from tests.unit.test_model_decide import NOW, SETTINGS, deployment, downloaded, model

pytestmark = pytest.mark.unit

EVERY_SETTING: dict[str, Any] = {
    "replicas": 3,
    "imagePullSecrets": ["registry-a", "registry-b"],
    "priorityClassName": "llm-serving",
    "runtimeClassName": "nvidia",
    "podLabels": {"team": "search", "example.com/cost-center": "ml-42"},
    "podAnnotations": {"prometheus.io/scrape": "true", "example.com/owner": "search team"},
    "serviceAccountName": "llm-reader",
    "envFrom": [
        {"configMapRef": {"name": "engine-tuning"}},
        {"secretRef": {"name": "api-keys", "optional": True}, "prefix": "KEY_"},
    ],
    "topologySpread": "zone",
    "shmSize": "2Gi",
    "tmpSize": "20000Mi",
    "probes": {
        "startup": {"failureThreshold": 360},
        "readiness": {"periodSeconds": 5, "failureThreshold": 2, "timeoutSeconds": 3},
        "liveness": {"timeoutSeconds": 30},
    },
    "terminationGracePeriodSeconds": 120,
    "disruptionBudget": {"maxUnavailable": 2},
    "service": {
        "type": "LoadBalancer",
        "annotations": {"service.beta.kubernetes.io/aws-load-balancer-internal": "true"},
    },
}
SERVING_PODS = {"modelfleet.io/model": "tiny", "app.kubernetes.io/component": "serving"}


def _pod(manifest: dict[str, Any]) -> dict[str, Any]:
    pod: dict[str, Any] = manifest["spec"]["template"]["spec"]
    return pod


def _vllm(manifest: dict[str, Any]) -> dict[str, Any]:
    engines: list[dict[str, Any]] = [c for c in _pod(manifest)["containers"] if c["name"] == "vllm"]
    (engine,) = engines
    return engine


def _volume(manifest: dict[str, Any], name: str) -> dict[str, Any]:
    volumes: list[dict[str, Any]] = [v for v in _pod(manifest)["volumes"] if v["name"] == name]
    (volume,) = volumes
    return volume


def test_every_setting_lands_in_the_deployment() -> None:
    deployment = deployment_for(load_example("model-tiny", serving=copy.deepcopy(EVERY_SETTING)))
    pod = _pod(deployment)
    template = deployment["spec"]["template"]["metadata"]

    assert pod["imagePullSecrets"] == [{"name": "registry-a"}, {"name": "registry-b"}]
    assert pod["priorityClassName"] == "llm-serving"
    assert pod["runtimeClassName"] == "nvidia"
    assert pod["serviceAccountName"] == "llm-reader"
    assert pod["automountServiceAccountToken"] is False
    assert template["labels"]["team"] == "search"
    assert template["labels"]["example.com/cost-center"] == "ml-42"
    assert template["annotations"]["prometheus.io/scrape"] == "true"
    assert template["annotations"]["example.com/owner"] == "search team"
    # Pod labels never reach the selector: it stays the operator's, immutable.
    assert deployment["spec"]["selector"] == {"matchLabels": SERVING_PODS}
    assert "team" not in deployment["metadata"]["labels"]
    assert _vllm(deployment)["envFrom"] == [
        {"configMapRef": {"name": "engine-tuning"}},
        {"secretRef": {"name": "api-keys", "optional": True}, "prefix": "KEY_"},
    ]
    assert pod["topologySpreadConstraints"] == [
        {
            "maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": SERVING_PODS},
        }
    ]
    assert _volume(deployment, "dshm")["emptyDir"] == {"medium": "Memory", "sizeLimit": "2Gi"}
    assert _volume(deployment, "tmp")["emptyDir"] == {"sizeLimit": "20000Mi"}
    # 20000Mi is 19.5 GiB: 20 of scratch, 4 for the root, 1 for logs.
    assert _vllm(deployment)["resources"]["limits"]["ephemeral-storage"] == "25Gi"
    engine = _vllm(deployment)
    timing = ("periodSeconds", "failureThreshold", "timeoutSeconds")
    assert [engine["startupProbe"][k] for k in timing] == [10, 360, 5]
    assert [engine["readinessProbe"][k] for k in timing] == [5, 2, 3]
    assert [engine["livenessProbe"][k] for k in timing] == [15, 6, 30]
    assert pod["terminationGracePeriodSeconds"] == 120


def test_every_setting_lands_in_the_service_and_the_budget() -> None:
    model_ = load_example("model-tiny", serving=copy.deepcopy(EVERY_SETTING))
    service = build_service(model_)
    assert service["metadata"]["annotations"] == {
        "service.beta.kubernetes.io/aws-load-balancer-internal": "true",
        SPEC_HASH_ANNOTATION: service["metadata"]["annotations"][SPEC_HASH_ANNOTATION],
    }
    assert service["spec"]["type"] == "LoadBalancer"
    budget = build_disruption_budget(model_)
    assert budget["apiVersion"] == "policy/v1"
    assert budget["kind"] == "PodDisruptionBudget"
    assert budget["metadata"]["name"] == "tiny"
    assert budget["metadata"]["labels"] == labels(model_, "serving")
    assert budget["metadata"]["ownerReferences"][0]["name"] == "tiny"
    assert budget["spec"] == {
        "maxUnavailable": 2,
        "selector": {"matchLabels": SERVING_PODS},
        "unhealthyPodEvictionPolicy": "AlwaysAllow",
    }


def test_defaults_keep_the_pod_as_it_was() -> None:
    """Without the new settings the Deployment is the one the snapshots hold; the defaults
    written out in the spec build the same pod."""
    plain = deployment_for(load_example("model-tiny"))
    explicit = deployment_for(
        load_example(
            "model-tiny",
            serving={
                "shmSize": "8Gi",
                "tmpSize": "16Gi",
                "terminationGracePeriodSeconds": 60,
                "probes": {
                    "startup": {"periodSeconds": 10, "failureThreshold": 180, "timeoutSeconds": 5},
                    "readiness": {"periodSeconds": 10, "failureThreshold": 3, "timeoutSeconds": 5},
                    "liveness": {"periodSeconds": 15, "failureThreshold": 6, "timeoutSeconds": 10},
                },
                "disruptionBudget": {"enabled": True, "maxUnavailable": 1},
            },
        )
    )
    assert explicit == plain
    pod = _pod(plain)
    for absent in ("imagePullSecrets", "priorityClassName", "runtimeClassName"):
        assert absent not in pod
    assert "serviceAccountName" not in pod
    assert "envFrom" not in _vllm(plain)
    service = build_service(load_example("model-tiny"))
    assert set(service["metadata"]["annotations"]) == {SPEC_HASH_ANNOTATION}


def test_zone_spread_comes_after_the_node_spread() -> None:
    both = _pod(
        deployment_for(
            load_example(
                "model-tiny", serving={"schedulingStrategy": "spread", "topologySpread": "zone"}
            )
        )
    )
    keys = [c["topologyKey"] for c in both["topologySpreadConstraints"]]
    assert keys == ["kubernetes.io/hostname", "topology.kubernetes.io/zone"]
    assert "podAntiAffinity" in both["affinity"]
    zone_only = _pod(deployment_for(load_example("model-tiny", serving={"topologySpread": "zone"})))
    assert "affinity" not in zone_only


@pytest.mark.parametrize(
    ("serving", "wanted"),
    [
        ({"replicas": 2}, True),
        ({"replicas": 5}, True),
        ({"replicas": 1}, False),
        ({"replicas": 0}, False),
        ({"replicas": 2, "disruptionBudget": {"enabled": False}}, False),
    ],
)
def test_a_budget_only_for_two_replicas_or_more(serving: dict[str, Any], wanted: bool) -> None:
    assert (
        wants_disruption_budget(load_example("model-tiny", serving=serving).spec.serving) is wanted
    )


def test_the_spec_hash_follows_the_new_settings() -> None:
    base = load_example("model-tiny")
    annotated = load_example("model-tiny", serving={"service": {"annotations": {"a.io/b": "c"}}})
    assert (
        build_service(annotated)["metadata"]["annotations"][SPEC_HASH_ANNOTATION]
        != build_service(base)["metadata"]["annotations"][SPEC_HASH_ANNOTATION]
    )
    wider = load_example("model-tiny", serving={"disruptionBudget": {"maxUnavailable": 2}})
    assert (
        build_disruption_budget(wider)["metadata"]["annotations"][SPEC_HASH_ANNOTATION]
        != build_disruption_budget(base)["metadata"]["annotations"][SPEC_HASH_ANNOTATION]
    )


# --- refused by the schema --------------------------------------------------------------------

MALFORMED: list[tuple[str, dict[str, Any], list[str]]] = [
    ("pull-secret-name", {"imagePullSecrets": ["Registry_A"]},
     ["spec.serving.imagePullSecrets[0]"]),
    ("priority-class", {"priorityClassName": "High Priority"}, ["spec.serving.priorityClassName"]),
    ("runtime-class", {"runtimeClassName": "nvidia/gpu"}, ["spec.serving.runtimeClassName"]),
    ("pod-label-key", {"podLabels": {"bad key": "x"}},
     ["spec.serving.podLabels", "qualified name"]),
    ("pod-label-long-name", {"podLabels": {"x" * 64: "v"}},
     ["spec.serving.podLabels", "qualified name"]),
    ("pod-label-value", {"podLabels": {"team": "not ok"}}, ["spec.serving.podLabels.team"]),
    ("pod-label-selector", {"podLabels": {"modelfleet.io/model": "other"}},
     ["spec.serving.podLabels", "operator's own keys"]),
    ("pod-label-component", {"podLabels": {"app.kubernetes.io/component": "x"}},
     ["spec.serving.podLabels", "operator's own keys"]),
    ("pod-annotation-key", {"podAnnotations": {"-x": "v"}},
     ["spec.serving.podAnnotations", "qualified name"]),
    ("pod-annotation-ours", {"podAnnotations": {"modelfleet.io/revision": "x"}},
     ["spec.serving.podAnnotations", "operator's own keys"]),
    ("pod-annotation-container",
     {"podAnnotations": {"kubectl.kubernetes.io/default-container": "x"}},
     ["spec.serving.podAnnotations", "operator's own keys"]),
    ("service-account", {"serviceAccountName": "Default"}, ["spec.serving.serviceAccountName"]),
    ("env-from-neither", {"envFrom": [{"prefix": "X_"}]},
     ["spec.serving.envFrom[0]", "exactly one of configMapRef or secretRef"]),
    ("env-from-both", {"envFrom": [{"configMapRef": {"name": "a"}, "secretRef": {"name": "b"}}]},
     ["spec.serving.envFrom[0]", "exactly one of configMapRef or secretRef"]),
    ("env-from-prefix", {"envFrom": [{"configMapRef": {"name": "a"}, "prefix": "1X="}]},
     ["spec.serving.envFrom[0].prefix"]),
    ("env-from-name", {"envFrom": [{"secretRef": {"name": "../x"}}]},
     ["spec.serving.envFrom[0].secretRef.name"]),
    ("topology-spread", {"topologySpread": "region"}, ["spec.serving.topologySpread"]),
    ("shm-size-zero", {"shmSize": "0"}, ["spec.serving.shmSize", "above 0"]),
    ("shm-size-words", {"shmSize": "lots"}, ["spec.serving.shmSize"]),
    ("tmp-size-zero", {"tmpSize": "0Gi"}, ["spec.serving.tmpSize", "above 0"]),
    ("startup-threshold", {"probes": {"startup": {"failureThreshold": 0}}},
     ["spec.serving.probes.startup.failureThreshold"]),
    ("readiness-period", {"probes": {"readiness": {"periodSeconds": 0}}},
     ["spec.serving.probes.readiness.periodSeconds"]),
    ("liveness-timeout", {"probes": {"liveness": {"timeoutSeconds": 0}}},
     ["spec.serving.probes.liveness.timeoutSeconds"]),
    ("grace-period", {"terminationGracePeriodSeconds": 5},
     ["spec.serving.terminationGracePeriodSeconds"]),
    ("budget-zero", {"disruptionBudget": {"maxUnavailable": 0}},
     ["spec.serving.disruptionBudget.maxUnavailable"]),
    ("service-annotation-ours", {"service": {"annotations": {"modelfleet.io/spec-hash": "x"}}},
     ["spec.serving.service.annotations", "operator's own keys"]),
    ("service-annotation-key", {"service": {"annotations": {"a/b/c": "x"}}},
     ["spec.serving.service.annotations", "qualified name"]),
]  # fmt: skip
"""(case, serving settings, what the API server's message must contain)."""

# What the operator's own parse refuses too (the API server has refused it first).
REFUSED_BY_THE_OPERATOR = {
    "pod-label-key",
    "pod-label-long-name",
    "pod-label-value",
    "pod-label-selector",
    "pod-label-component",
    "pod-annotation-key",
    "pod-annotation-ours",
    "pod-annotation-container",
    "service-annotation-ours",
    "service-annotation-key",
}


def malformed_manifest(name: str, serving: dict[str, Any]) -> dict[str, Any]:
    """A Model otherwise valid, with ``serving`` malformed."""
    return {
        "apiVersion": "modelfleet.io/v1alpha1",
        "kind": "Model",
        "metadata": {"name": name},
        "spec": {"source": {"huggingface": {"repo": "org/tiny"}}, "serving": serving},
    }


@pytest.mark.parametrize(("case", "serving", "expected"), MALFORMED, ids=[c[0] for c in MALFORMED])
def test_a_malformed_setting_is_refused_naming_the_field(
    case: str, serving: dict[str, Any], expected: list[str]
) -> None:
    errors = "\n".join(validate(load_crd("models"), malformed_manifest("bad", serving)))
    assert errors, f"{case} was accepted"
    for fragment in expected:
        assert fragment in errors, f"{fragment!r} not in {errors!r}"
    if case in REFUSED_BY_THE_OPERATOR:
        with pytest.raises(ValidationError):
            Model.model_validate(malformed_manifest("bad", serving))


def test_every_setting_is_accepted() -> None:
    manifest = malformed_manifest("good", copy.deepcopy(EVERY_SETTING))
    assert validate(load_crd("models"), manifest) == []
    Model.model_validate(manifest)


def test_the_operators_own_pod_keys_are_all_refused() -> None:
    """Every label and annotation the builder puts on a serving pod is one the API refuses
    in podLabels and podAnnotations: a new one cannot be added without guarding it."""
    template = deployment_for(load_example("model-tiny"))["spec"]["template"]["metadata"]
    for field, keys in (
        ("podLabels", template["labels"]),
        ("podAnnotations", template["annotations"]),
    ):
        for key in keys:
            manifest = malformed_manifest("bad", {field: {key: "x"}})
            assert validate(load_crd("models"), manifest), f"{field} {key} accepted"
            with pytest.raises(ValidationError):
                Model.model_validate(manifest)


# --- the reconcile applies and deletes the budget ---------------------------------------------


def _kinds(manifests: list[dict[str, Any]]) -> list[str]:
    return [m["kind"] for m in manifests]


def _serving_two() -> tuple[Model, Observed]:
    m = model(serving={"replicas": 2})
    observed = downloaded(m)
    observed.deployment = deployment(m)
    return m, observed


def test_two_replicas_get_a_budget_applied_once() -> None:
    m, observed = _serving_two()
    plan = decide(m, observed, SETTINGS, NOW)
    [budget] = [a for a in plan.apply if a["kind"] == "PodDisruptionBudget"]
    assert budget["spec"]["maxUnavailable"] == 1
    assert plan.delete == []

    observed.disruption_budget = copy.deepcopy(budget)
    again = decide(m, observed, SETTINGS, NOW)
    assert "PodDisruptionBudget" not in _kinds(again.apply)
    assert again.delete == []


@pytest.mark.parametrize(
    "spec",
    [
        {"serving": {"replicas": 1}},
        {"serving": {"replicas": 0}},
        {"serving": {"replicas": 2, "disruptionBudget": {"enabled": False}}},
    ],
    ids=["one-replica", "stopped", "disabled"],
)
def test_an_unwanted_budget_is_deleted(spec: dict[str, Any]) -> None:
    m, observed = _serving_two()
    observed.disruption_budget = build_disruption_budget(m)
    fewer = model(**spec)
    plan = decide(fewer, observed, SETTINGS, NOW)
    assert plan.delete == [(DISRUPTION_BUDGET, "tiny")]
    assert "PodDisruptionBudget" not in _kinds(plan.apply)
    # Nothing to delete where there is none.
    observed.disruption_budget = None
    assert decide(fewer, observed, SETTINGS, NOW).delete == []


def test_a_model_that_stops_serving_deletes_its_budget() -> None:
    m, observed = _serving_two()
    observed.disruption_budget = build_disruption_budget(m)
    plan = decide(model(with_serving=False), observed, SETTINGS, NOW)
    assert plan.delete == [(DISRUPTION_BUDGET, "tiny")]


class _Cache:
    """What ``observe`` reads: the watch cache (only modelfleet's objects) and the API server."""

    def __init__(self, cached: dict[str, dict[str, Any]], live: dict[str, dict[str, Any]]):
        self.cached = cached
        self.live = live

    def get(self, resource: Any, namespace: str | None, name: str) -> dict[str, Any] | None:
        if resource == STORAGE_CLASS:
            return {"metadata": {"name": name}}
        return self.cached.get(resource.plural)

    def read_live(self, resource: Any, namespace: str | None, name: str) -> dict[str, Any] | None:
        return self.live.get(resource.plural)

    def list(self, *_: Any, **__: Any) -> list[dict[str, Any]]:
        return []


def _labelled(model_name: str) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "tiny",
            "labels": {
                "app.kubernetes.io/managed-by": "modelfleet",
                "modelfleet.io/model": model_name,
            },
        }
    }


def test_observe_reads_only_its_own_budget_and_refuses_to_take_one_over() -> None:
    m = model(serving={"replicas": 2}, storage={"size": "1Gi"})
    ours = _labelled("tiny")
    observed = observe(_Cache({DISRUPTION_BUDGET.plural: ours}, {}), m)  # type: ignore[arg-type]
    assert observed.disruption_budget is ours and observed.conflicts == []

    someone_elses = {"metadata": {"name": "tiny", "labels": {"team": "sre"}}}
    live = {DISRUPTION_BUDGET.plural: someone_elses, DEPLOYMENT.plural: _labelled("tiny")}
    live[SERVICE.plural] = _labelled("tiny")
    observed = observe(_Cache({}, live), m)  # type: ignore[arg-type]
    assert observed.disruption_budget is None
    assert observed.conflicts == ["PodDisruptionBudget team-a/tiny"]
    assert not is_ours(someone_elses, "tiny")
    # One replica wants no budget: a foreign one of that name is no conflict.
    single = model(serving={"replicas": 1}, storage={"size": "1Gi"})
    assert observe(_Cache({}, live), single).conflicts == []  # type: ignore[arg-type]
