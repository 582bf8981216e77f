"""`helm install` of the chart into a real API server, then the API server's own verdict on
what the chart's ServiceAccount may do: every verb the operator uses is allowed, nothing else."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from modelfleet.kube.client import SECRET, Kube
from tests.support.chart import (
    CHART,
    CLUSTER_SCOPED_RULES,
    NAMESPACED_RULES,
    Rules,
    chart_operator_kubeconfig,
    helm,
    rule_name,
)
from tests.support.cluster import TestCluster, scratch_namespace

pytestmark = pytest.mark.integration

CLUSTER_SCOPED = {resource for _, resource in CLUSTER_SCOPED_RULES}
# Verbs the operator never uses; each must be refused.
FORBIDDEN: list[tuple[str, str, str]] = [
    ("", "secrets", "list"),
    ("", "secrets", "delete"),
    ("", "secrets", "create"),
    ("", "pods", "create"),
    ("", "pods", "delete"),
    ("", "pods/exec", "create"),
    ("apps", "deployments", "delete"),
    ("", "services", "delete"),
    ("", "persistentvolumeclaims", "delete"),
    ("modelfleet.io", "models", "delete"),
    ("modelfleet.io", "models", "update"),
    ("modelfleet.io", "finetunejobs", "create"),
    # The Job identity's kinds: create any, but get or patch only its own name.
    ("", "serviceaccounts", "patch"),
    ("", "serviceaccounts", "get"),
    ("rbac.authorization.k8s.io", "rolebindings", "patch"),
    ("rbac.authorization.k8s.io", "roles", "escalate"),
    ("rbac.authorization.k8s.io", "clusterroles", "bind"),
    ("rbac.authorization.k8s.io", "clusterrolebindings", "create"),
    ("", "nodes", "get"),
    ("", "namespaces", "delete"),
    ("apiextensions.k8s.io", "customresourcedefinitions", "create"),
]


def can(
    api: client.ApiClient, group: str, resource: str, verb: str, namespace: str, name: str = ""
) -> bool:
    """The API server's answer to a SelfSubjectAccessReview made with ``api``'s credentials,
    for any object of the kind, or the one named ``name``."""
    subresource = ""
    if "/" in resource:
        resource, subresource = resource.split("/", 1)
    attributes: dict[str, Any] = {
        "group": group,
        "resource": resource,
        "subresource": subresource,
        "verb": verb,
        "name": name,
    }
    if resource not in CLUSTER_SCOPED and resource not in {"nodes", "namespaces"}:
        attributes["namespace"] = namespace
    review = client.AuthorizationV1Api(api).create_self_subject_access_review(
        {"spec": {"resourceAttributes": attributes}}
    )
    return bool(review.status.allowed)


def granted(rules: Rules) -> list[tuple[str, str, str]]:
    return sorted(
        (group, resource, verb) for (group, resource), verbs in rules.items() for verb in verbs
    )


class Release:
    """One installed release of the chart, uninstalled at the end."""

    def __init__(self, kubeconfig: Path, namespace: str, values: dict[str, Any], tmp: Path):
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.name = f"mf-{uuid.uuid4().hex[:6]}"
        values_file = tmp / "values.yaml"
        values_file.write_text(yaml.safe_dump(values))
        self.install = helm(
            "install",
            self.name,
            str(CHART),
            "--kubeconfig",
            str(kubeconfig),
            "--namespace",
            namespace,
            "--values",
            str(values_file),
            "--timeout",
            "120s",
            timeout=180,
        )
        self.service_account = f"{self.name}-modelfleet"

    def uninstall(self) -> None:
        helm(
            "uninstall",
            self.name,
            "--kubeconfig",
            str(self.kubeconfig),
            "--namespace",
            self.namespace,
            "--wait",
            "--timeout",
            "120s",
            timeout=180,
        )


@pytest.fixture
def workload_namespace(api: client.ApiClient) -> Iterator[str]:
    """A namespace where Models would live, apart from the release's own."""
    with scratch_namespace(api) as name:
        yield name


def operator_api(cluster: TestCluster, release: Release, tmp_path: Path) -> client.ApiClient:
    path = chart_operator_kubeconfig(
        cluster.kubeconfig, release.namespace, release.service_account, tmp_path / "operator.kcfg"
    )
    return config.new_client_from_config(config_file=str(path))


def test_install_grants_exactly_the_operators_verbs_and_keeps_crds(
    cluster: TestCluster,
    api: client.ApiClient,
    namespace: str,
    workload_namespace: str,
    tmp_path: Path,
) -> None:
    release = Release(cluster.kubeconfig, namespace, {}, tmp_path)
    try:
        assert "kubectl get mfm" in release.install.stdout
        deployment = client.AppsV1Api(api).read_namespaced_deployment(
            release.service_account, namespace
        )
        assert deployment.spec.template.spec.service_account_name == release.service_account
        operator = operator_api(cluster, release, tmp_path)

        refused = [
            rule
            for rule in granted(NAMESPACED_RULES | CLUSTER_SCOPED_RULES)
            if not can(operator, *rule, workload_namespace, rule_name(*rule))
        ]
        assert refused == [], "the chart does not grant verbs the operator uses"
        allowed = [rule for rule in FORBIDDEN if can(operator, *rule, workload_namespace)]
        assert allowed == [], "the chart grants verbs the operator does not use"

        # The operator's own client under these credentials: server-side apply creates a missing
        # Service, a Secret is read by name...
        service = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "probe", "namespace": workload_namespace},
            "spec": {"ports": [{"port": 8000}]},
        }
        kube = Kube(operator)
        applied = kube.apply(service)
        assert applied["metadata"]["managedFields"][0]["manager"] == "modelfleet"
        assert kube.get(SECRET, workload_namespace, "absent") is None
        # ...but never listed.
        with pytest.raises(ApiException) as refusal:
            client.CoreV1Api(operator).list_namespaced_secret(workload_namespace)
        assert refusal.value.status == 403
    finally:
        release.uninstall()

    rbac = client.RbacAuthorizationV1Api(api)
    with pytest.raises(ApiException) as gone:
        rbac.read_cluster_role(release.service_account)
    assert gone.value.status == 404
    # Helm never deletes what it installed from crds/.
    extensions = client.ApiextensionsV1Api(api)
    for crd in ("models.modelfleet.io", "finetunejobs.modelfleet.io"):
        assert extensions.read_custom_resource_definition(crd).metadata.name == crd


def test_watch_namespaces_confines_the_operator(
    cluster: TestCluster,
    api: client.ApiClient,
    namespace: str,
    workload_namespace: str,
    tmp_path: Path,
) -> None:
    with scratch_namespace(api) as elsewhere:
        release = Release(
            cluster.kubeconfig, namespace, {"watchNamespaces": [workload_namespace]}, tmp_path
        )
        try:
            operator = operator_api(cluster, release, tmp_path)
            for rule in granted(NAMESPACED_RULES | CLUSTER_SCOPED_RULES):
                assert can(operator, *rule, workload_namespace, rule_name(*rule)), rule
            for rule in granted(NAMESPACED_RULES):
                assert not can(operator, *rule, elsewhere, rule_name(*rule)), rule
            # Not only the review: a read with the operator's own credentials is refused.
            core, operator_core = client.CoreV1Api(api), client.CoreV1Api(operator)
            for place in (workload_namespace, elsewhere):
                core.create_namespaced_secret(
                    place, {"metadata": {"name": "hf-token"}, "stringData": {"token": "x"}}
                )
            assert operator_core.read_namespaced_secret("hf-token", workload_namespace).data
            with pytest.raises(ApiException) as refused:
                operator_core.read_namespaced_secret("hf-token", elsewhere)
            assert refused.value.status == 403
            with pytest.raises(ApiException) as refused:
                operator_core.list_secret_for_all_namespaces()
            assert refused.value.status == 403
        finally:
            release.uninstall()


def test_several_replicas_install_the_peering_object(
    cluster: TestCluster, api: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    """kopf's peering CRDs come from crds/, so the same install can create the peering object
    that replicas with mandatory peering wait for."""
    peering = f"mf-{uuid.uuid4().hex[:6]}"
    release = Release(
        cluster.kubeconfig, namespace, {"replicaCount": 2, "peering": {"name": peering}}, tmp_path
    )
    custom = client.CustomObjectsApi(api)
    try:
        body = custom.get_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", peering)
        assert body["metadata"]["name"] == peering
        operator = operator_api(cluster, release, tmp_path)
        for verb in ("get", "list", "watch", "patch"):
            assert can(operator, "kopf.dev", "clusterkopfpeerings", verb, namespace), verb
    finally:
        release.uninstall()
    with pytest.raises(ApiException) as gone:
        custom.get_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", peering)
    assert gone.value.status == 404
