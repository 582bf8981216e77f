"""On the real API server, under the chart's identity: a Model that sets every serving pod
setting gets children that carry each, and pods the admission plugins accept; a malformed
setting is refused naming its field; the disruption budget exists from 2 replicas on and is
deleted below. Serving pods run the simulated engine."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.hubserver.server import HubServer
from tests.integration.test_api_validation import _dry_run
from tests.integration.test_model_lifecycle import Models, tiny_manifest
from tests.support.cluster import TestCluster, wait_for
from tests.unit.test_serving_settings import EVERY_SETTING, MALFORMED, malformed_manifest

PRIORITY_CLASS = "modelfleet-test-serving"
RUNTIME_CLASS = "nvidia"
SERVING_PODS = "modelfleet.io/model=tiny,app.kubernetes.io/component=serving"


@pytest.fixture
def cluster_classes(api: client.ApiClient) -> Iterator[None]:
    """The PriorityClass and RuntimeClass the settings name: without them the admission
    plugins refuse the serving pods."""
    scheduling, node = client.SchedulingV1Api(api), client.NodeV1Api(api)
    made: list[Callable[[], object]] = []

    def create(make: Callable[[], object], delete: Callable[[], object]) -> None:
        try:
            make()
            made.append(delete)
        except ApiException as error:
            if error.status != 409:  # 409: a class of that name is there already
                raise

    create(
        lambda: scheduling.create_priority_class(
            {"metadata": {"name": PRIORITY_CLASS}, "value": 1000}
        ),
        lambda: scheduling.delete_priority_class(PRIORITY_CLASS),
    )
    create(
        lambda: node.create_runtime_class(
            {"metadata": {"name": RUNTIME_CLASS}, "handler": RUNTIME_CLASS}
        ),
        lambda: node.delete_runtime_class(RUNTIME_CLASS),
    )
    yield
    for delete in made:
        delete()


def _settings() -> dict[str, Any]:
    """Every setting, on the 2 replicas of the example (ClusterIP: no load balancer here)."""
    settings = copy.deepcopy(EVERY_SETTING)
    settings.update(replicas=2, priorityClassName=PRIORITY_CLASS, runtimeClassName=RUNTIME_CLASS)
    settings["disruptionBudget"] = {"maxUnavailable": 1}
    settings["service"] = {"annotations": EVERY_SETTING["service"]["annotations"]}
    return settings


def test_every_setting_lands_in_the_children(
    api: client.ApiClient,
    namespace: str,
    models: Models,
    model_hub: HubServer,
    cluster_classes: None,
) -> None:
    core, apps, policy = client.CoreV1Api(api), client.AppsV1Api(api), client.PolicyV1Api(api)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "llm-reader"}})
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "engine-tuning"}, "data": {"VLLM_LOGGING_LEVEL": "INFO"}}
    )
    manifest = tiny_manifest(model_hub)
    manifest["spec"]["serving"].update(_settings())
    models.create(manifest)
    models.wait_ready("tiny")

    deployment = apps.read_namespaced_deployment("tiny", namespace)
    template = api.sanitize_for_serialization(deployment.spec.template)
    pod, meta = template["spec"], template["metadata"]
    assert pod["imagePullSecrets"] == [{"name": "registry-a"}, {"name": "registry-b"}]
    assert pod["priorityClassName"] == PRIORITY_CLASS
    assert pod["runtimeClassName"] == RUNTIME_CLASS
    assert pod["serviceAccountName"] == "llm-reader"
    assert pod["terminationGracePeriodSeconds"] == 120
    assert meta["labels"]["team"] == "search"
    assert meta["labels"]["example.com/cost-center"] == "ml-42"
    assert meta["annotations"]["example.com/owner"] == "search team"
    [zone] = pod["topologySpreadConstraints"]
    assert (zone["topologyKey"], zone["whenUnsatisfiable"]) == (
        "topology.kubernetes.io/zone",
        "ScheduleAnyway",
    )
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "2Gi"}
    assert volumes["tmp"]["emptyDir"] == {"sizeLimit": "20000Mi"}
    [engine] = [c for c in pod["containers"] if c["name"] == "vllm"]
    assert engine["envFrom"] == [
        {"configMapRef": {"name": "engine-tuning"}},
        {"secretRef": {"name": "api-keys", "optional": True}, "prefix": "KEY_"},
    ]
    assert engine["startupProbe"]["failureThreshold"] == 360
    assert engine["readinessProbe"]["periodSeconds"] == 5
    assert engine["readinessProbe"]["failureThreshold"] == 2
    assert engine["readinessProbe"]["timeoutSeconds"] == 3
    assert engine["livenessProbe"]["timeoutSeconds"] == 30

    service = core.read_namespaced_service("tiny", namespace)
    assert (
        service.metadata.annotations["service.beta.kubernetes.io/aws-load-balancer-internal"]
        == "true"
    )
    budget = policy.read_namespaced_pod_disruption_budget("tiny", namespace)
    assert budget.spec.max_unavailable == 1
    assert budget.spec.selector.match_labels == {
        "modelfleet.io/model": "tiny",
        "app.kubernetes.io/component": "serving",
    }
    assert budget.metadata.owner_references[0].name == "tiny"

    # The pods themselves passed admission with the classes and identity they name.
    pods = core.list_namespaced_pod(namespace, label_selector=SERVING_PODS).items
    assert len(pods) == 2
    for serving_pod in pods:
        assert serving_pod.spec.priority_class_name == PRIORITY_CLASS
        assert serving_pod.spec.priority == 1000
        assert serving_pod.spec.runtime_class_name == RUNTIME_CLASS
        assert serving_pod.spec.service_account_name == "llm-reader"
        assert serving_pod.metadata.labels["team"] == "search"
    # The disruption controller counts the pods the budget selects.
    wait_for(
        lambda: _expected_pods(policy, namespace) == 2,
        timeout=60,
        message="the budget to count both serving pods",
    )


@pytest.mark.parametrize(
    ("case", "serving", "expected"),
    [
        *MALFORMED,
        (
            "pull-secret-twice",
            {"imagePullSecrets": ["registry-a", "registry-a"]},
            ["spec.serving.imagePullSecrets[1]", "Duplicate value"],
        ),
    ],
    ids=[c[0] for c in MALFORMED] + ["pull-secret-twice"],
)
def test_a_malformed_setting_is_refused_naming_the_field(
    cluster: TestCluster,
    crds: None,
    namespace: str,
    case: str,
    serving: dict[str, Any],
    expected: list[str],
) -> None:
    result = _dry_run(cluster, namespace, malformed_manifest("bad", serving))
    assert result.returncode != 0, f"{case} was accepted"
    for fragment in expected:
        assert fragment in result.stderr, f"{fragment!r} not in {result.stderr!r}"


def _budget(policy: client.PolicyV1Api, namespace: str) -> Any:
    try:
        return policy.read_namespaced_pod_disruption_budget("tiny", namespace)
    except ApiException as error:
        if error.status == 404:
            return None
        raise


def _expected_pods(policy: client.PolicyV1Api, namespace: str) -> int:
    budget = _budget(policy, namespace)
    status = None if budget is None else budget.status
    return 0 if status is None else int(status.expected_pods or 0)


def _max_unavailable(policy: client.PolicyV1Api, namespace: str) -> int | None:
    budget = _budget(policy, namespace)
    return None if budget is None else int(budget.spec.max_unavailable)


def _caught_up(models: Models) -> bool:
    body = models.get("tiny")
    return bool(body.get("status", {}).get("observedGeneration") == body["metadata"]["generation"])


def test_the_budget_exists_for_two_replicas_and_is_gone_for_one(
    api: client.ApiClient, namespace: str, models: Models, model_hub: HubServer
) -> None:
    policy = client.PolicyV1Api(api)
    models.create(tiny_manifest(model_hub))
    wait_for(lambda: _max_unavailable(policy, namespace) == 1, timeout=120, message="the budget")

    models.patch_spec("tiny", {"serving": {"replicas": 1}})
    wait_for(lambda: _budget(policy, namespace) is None, timeout=60, message="no budget")

    models.patch_spec(
        "tiny", {"serving": {"replicas": 3, "disruptionBudget": {"maxUnavailable": 2}}}
    )
    wait_for(
        lambda: _max_unavailable(policy, namespace) == 2,
        timeout=60,
        message="the budget again, at maxUnavailable 2",
    )

    models.patch_spec("tiny", {"serving": {"disruptionBudget": {"enabled": False}}})
    wait_for(lambda: _budget(policy, namespace) is None, timeout=60, message="no budget")
    wait_for(lambda: _caught_up(models), timeout=60, message="the reconcile of the last change")
    assert _budget(policy, namespace) is None
