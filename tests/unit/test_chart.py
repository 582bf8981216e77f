"""The Helm chart, rendered by the pinned helm: lint, pod security, the operator's exact
permissions, watched-namespace mode, peering, values validation and pinned images."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelfleet.settings import OperatorSettings
from tests.support.chart import (
    CHART,
    CLUSTER_PEERING_RULES,
    CLUSTER_SCOPED_RULES,
    NAMESPACED_PEERING_RULES,
    NAMESPACED_RULES,
    helm,
    render_chart,
    rules_of,
    values_args,
)
from tests.support.scrape import pod_monitor_target
from tests.unit.test_builders import SHA, deployment_for, download_job_for, load_example

pytestmark = pytest.mark.unit

DEFAULTS = yaml.safe_load((CHART / "values.yaml").read_text())

VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "namespaced": {"watchNamespaces": ["team-a", "team-b"]},
    "ha": {"replicaCount": 2},
    "namespaced-ha": {"watchNamespaces": ["team-a"], "peering": {"enabled": True}},
    "monitoring": {
        "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}},
        "image": {"digest": "sha256:" + "a" * 64},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
        "logFormat": "plain",
        "extraEnv": [{"name": "MODELFLEET_REQUEST_TIMEOUT_SECONDS", "value": "10"}],
    },
    "no-rbac-aggregation": {"rbac": {"aggregateToDefaultRoles": False}},
    "network-policy": {
        "networkPolicy": {
            "enabled": True,
            "metricsFrom": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}],
            "apiServer": [{"to": [{"ipBlock": {"cidr": "10.0.0.1/32"}}], "ports": [{"port": 443}]}],
        }
    },
    "observability": {
        "dashboards": {
            "enabled": True,
            "namespace": "monitoring",
            "labels": {"team": "ml"},
            "annotations": {"grafana_folder": "modelfleet"},
        },
        "prometheusRule": {"enabled": True, "labels": {"release": "prom"}},
    },
    "engine-metrics": {
        "engineMetrics": {"podMonitor": {"enabled": True, "labels": {"release": "prom"}}},
    },
}


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def operator_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    containers = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["operator"]
    container: dict[str, Any] = containers[0]
    return container


def env_of(objects: list[dict[str, Any]]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in operator_container(objects)["env"]}


def operator_cluster_role(objects: list[dict[str, Any]]) -> dict[str, Any]:
    binding = one(objects, "ClusterRoleBinding")
    name = binding["roleRef"]["name"]
    return next(o for o in by_kind(objects, "ClusterRole") if o["metadata"]["name"] == name)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    directory = tmp_path_factory.mktemp("chart")
    return {name: render_chart(values, directory) for name, values in VALUE_SETS.items()}


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_helm_lint_strict(name: str, tmp_path: Path) -> None:
    result = helm("lint", "--strict", str(CHART), *values_args(VALUE_SETS[name], tmp_path))
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_operator_pod_is_locked_down(name: str, rendered: dict[str, Any]) -> None:
    objects = rendered[name]
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = operator_container(objects)
    security = container["securityContext"]
    assert security["runAsUser"] == 65532
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    # A read-only root needs a writable /tmp for Python and the kubernetes client.
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]


def test_probes_hit_the_operators_health_endpoint(rendered: dict[str, Any]) -> None:
    objects = rendered["defaults"]
    container = operator_container(objects)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    settings = OperatorSettings()
    assert ports == {"health": settings.health_port, "metrics": settings.metrics_port}
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    env = env_of(objects)
    assert env["MODELFLEET_HEALTH_PORT"] == str(settings.health_port)
    assert env["MODELFLEET_METRICS_PORT"] == str(settings.metrics_port)
    service = next(
        s for s in by_kind(objects, "Service") if s["metadata"]["name"].endswith("-metrics")
    )
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"
    pod_labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_every_modelfleet_variable_is_an_operator_setting(
    name: str, rendered: dict[str, Any]
) -> None:
    """A misspelt MODELFLEET_ variable would be silently ignored by pydantic-settings."""
    fields = {f"MODELFLEET_{field.upper()}" for field in OperatorSettings.model_fields}
    names = {n for n in env_of(rendered[name]) if n.startswith("MODELFLEET_")}
    assert names <= fields, names - fields
    # ...and the operator parses what the chart writes.
    env = {k: v for k, v in env_of(rendered[name]).items() if k.startswith("MODELFLEET_")}
    settings = OperatorSettings(
        **{k.removeprefix("MODELFLEET_").lower(): _parse(v) for k, v in env.items()}
    )
    assert settings.namespaces == VALUE_SETS[name].get("watchNamespaces", [])


def _parse(value: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def test_default_images_are_the_operators_defaults(rendered: dict[str, Any]) -> None:
    env = env_of(rendered["defaults"])
    settings = OperatorSettings()
    assert env["MODELFLEET_DOWNLOADER_IMAGE"] == settings.downloader_image
    assert env["MODELFLEET_TRAINER_IMAGE"] == settings.trainer_image
    assert env["MODELFLEET_VLLM_IMAGE"] == settings.vllm_image
    assert env["MODELFLEET_JOB_SERVICE_ACCOUNT"] == settings.job_service_account
    assert env["MODELFLEET_VLLM_IMAGE"].startswith("vllm/vllm-openai:v")


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_no_floating_image_tags(name: str, rendered: dict[str, Any]) -> None:
    objects = rendered[name]
    env = env_of(objects)
    images = [operator_container(objects)["image"]] + [
        env[k]
        for k in (
            "MODELFLEET_DOWNLOADER_IMAGE",
            "MODELFLEET_TRAINER_IMAGE",
            "MODELFLEET_VLLM_IMAGE",
        )
    ]
    for image in images:
        if "@sha256:" in image:
            assert re.fullmatch(r"[^@]+@sha256:[0-9a-f]{64}", image), image
            continue
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{image} has no tag"
        assert tag != "latest", image


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_no_wildcard_in_any_rbac_rule(name: str, rendered: dict[str, Any]) -> None:
    for role in by_kind(rendered[name], "ClusterRole") + by_kind(rendered[name], "Role"):
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs", "resourceNames"):
                assert not any("*" in item for item in rule.get(field, [])), (
                    role["metadata"],
                    rule,
                )
            assert "nonResourceURLs" not in rule


def test_cluster_role_grants_exactly_the_operators_verbs(rendered: dict[str, Any]) -> None:
    role = operator_cluster_role(rendered["defaults"])
    assert rules_of(role["rules"]) == NAMESPACED_RULES | CLUSTER_SCOPED_RULES
    assert not by_kind(rendered["defaults"], "Role")
    binding = one(rendered["defaults"], "ClusterRoleBinding")
    account = one(rendered["defaults"], "ServiceAccount")["metadata"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["name"], "namespace": "modelfleet-system"}
    ]
    pod = one(rendered["defaults"], "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["name"]


def test_watch_namespaces_renders_a_role_per_namespace(rendered: dict[str, Any]) -> None:
    objects = rendered["namespaced"]
    assert rules_of(operator_cluster_role(objects)["rules"]) == CLUSTER_SCOPED_RULES
    roles = by_kind(objects, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    for role in roles:
        assert rules_of(role["rules"]) == NAMESPACED_RULES
    bindings = by_kind(objects, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    for binding in bindings:
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": roles[0]["metadata"]["name"],
        }
        assert binding["subjects"][0]["namespace"] == "modelfleet-system"
    assert json.loads(env_of(objects)["MODELFLEET_NAMESPACES"]) == ["team-a", "team-b"]


def test_one_replica_runs_standalone_and_is_replaced_not_surged(rendered: dict[str, Any]) -> None:
    objects = rendered["defaults"]
    env = env_of(objects)
    assert env["MODELFLEET_STANDALONE"] == "true"
    assert json.loads(env["MODELFLEET_NAMESPACES"]) == []
    assert one(objects, "Deployment")["spec"]["strategy"] == {"type": "Recreate"}
    assert not [o for o in objects if "kopf" in o["apiVersion"] or "kopf" in o["metadata"]["name"]]


def test_several_replicas_turn_peering_on(rendered: dict[str, Any]) -> None:
    objects = rendered["ha"]
    env = env_of(objects)
    assert env["MODELFLEET_STANDALONE"] == "false"
    assert env["MODELFLEET_PEERING_NAME"] == DEFAULTS["peering"]["name"]
    assert one(objects, "Deployment")["spec"]["replicas"] == 2
    assert one(objects, "Deployment")["spec"]["strategy"]["type"] == "RollingUpdate"
    # The peering CRDs come from crds/ (generated), never from templates.
    assert not by_kind(objects, "CustomResourceDefinition")
    peering = one(objects, "ClusterKopfPeering")
    assert peering["metadata"]["name"] == DEFAULTS["peering"]["name"]
    role = rules_of(operator_cluster_role(objects)["rules"])
    assert role == NAMESPACED_RULES | CLUSTER_SCOPED_RULES | CLUSTER_PEERING_RULES


def test_several_replicas_spread_over_nodes_and_drain_one_at_a_time(
    rendered: dict[str, Any],
) -> None:
    objects = rendered["ha"]
    pod = one(objects, "Deployment")["spec"]["template"]
    (term,) = pod["spec"]["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"
    ]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    selector = term["podAffinityTerm"]["labelSelector"]["matchLabels"]
    assert selector.items() <= pod["metadata"]["labels"].items()
    budget = one(objects, "PodDisruptionBudget")["spec"]
    assert budget["maxUnavailable"] == 1
    assert budget["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    # One replica: nothing to spread, and a budget would protect nothing.
    assert "affinity" not in one(rendered["defaults"], "Deployment")["spec"]["template"]["spec"]
    assert not by_kind(rendered["defaults"], "PodDisruptionBudget")


def test_the_users_affinity_replaces_the_default_spread(tmp_path: Path) -> None:
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "pool", "operator": "In", "values": ["system"]}
        ]}]
    }}}  # fmt: skip
    objects = render_chart({"replicaCount": 2, "affinity": affinity}, tmp_path)
    assert one(objects, "Deployment")["spec"]["template"]["spec"]["affinity"] == affinity


def test_the_network_policy_admits_only_metrics_and_probes(rendered: dict[str, Any]) -> None:
    assert not by_kind(rendered["defaults"], "NetworkPolicy")
    objects = rendered["network-policy"]
    policy = one(objects, "NetworkPolicy")["spec"]
    pod_labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    metrics, health = policy["ingress"]
    assert metrics["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    assert metrics["from"] == [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}]
    assert health == {"ports": [{"port": "health", "protocol": "TCP"}]}
    api_server, serving = policy["egress"]
    assert api_server["to"] == [{"ipBlock": {"cidr": "10.0.0.1/32"}}]
    # The smoke test dials the serving pods the builders describe, in any namespace.
    (peer,) = serving["to"]
    assert peer["namespaceSelector"] == {}
    selector = peer["podSelector"]["matchLabels"].items()
    model = load_example("model-tiny")
    assert selector <= deployment_for(model)["spec"]["template"]["metadata"]["labels"].items()
    assert not selector <= download_job_for(model)["spec"]["template"]["metadata"]["labels"].items()


def test_without_the_api_servers_address_egress_stays_open(tmp_path: Path) -> None:
    objects = render_chart({"networkPolicy": {"enabled": True}}, tmp_path)
    policy = one(objects, "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress"]
    assert "egress" not in policy
    assert "from" not in policy["ingress"][0]  # metrics from anywhere


def test_namespaced_peering_uses_kopfpeerings_in_each_namespace(rendered: dict[str, Any]) -> None:
    objects = rendered["namespaced-ha"]
    assert [p["metadata"]["namespace"] for p in by_kind(objects, "KopfPeering")] == ["team-a"]
    assert not by_kind(objects, "ClusterKopfPeering")
    assert rules_of(one(objects, "Role")["rules"]) == NAMESPACED_RULES | NAMESPACED_PEERING_RULES
    assert rules_of(operator_cluster_role(objects)["rules"]) == CLUSTER_SCOPED_RULES


def test_service_monitor_scrapes_the_metrics_port(rendered: dict[str, Any]) -> None:
    assert not by_kind(rendered["defaults"], "ServiceMonitor")
    monitor = one(rendered["monitoring"], "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    container = operator_container(rendered["monitoring"])
    assert container["image"] == "ghcr.io/modelfleet/operator@sha256:" + "a" * 64
    assert container["args"] == ["run", "--log-format=plain"]
    pod = one(rendered["monitoring"], "Deployment")["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["tolerations"][0]["key"] == "dedicated"
    assert env_of(rendered["monitoring"])["MODELFLEET_REQUEST_TIMEOUT_SECONDS"] == "10"


def test_users_get_models_through_the_default_roles(rendered: dict[str, Any]) -> None:
    roles = {r["metadata"]["name"]: r for r in by_kind(rendered["defaults"], "ClusterRole")}
    edit, view = roles["mf-modelfleet-edit"], roles["mf-modelfleet-view"]
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert rules_of(view["rules"])[("modelfleet.io", "models")] == {"get", "list", "watch"}
    assert len(by_kind(rendered["no-rbac-aggregation"], "ClusterRole")) == 1


def test_crds_come_from_the_generated_copy(tmp_path: Path) -> None:
    objects = render_chart({}, tmp_path, extra=["--include-crds"])
    names = {c["metadata"]["name"] for c in by_kind(objects, "CustomResourceDefinition")}
    assert {"models.modelfleet.io", "finetunejobs.modelfleet.io"} <= names
    generated = {
        doc["metadata"]["name"]
        for path in (CHART / "crds").glob("*.yaml")
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    }
    assert names == generated
    # kopf's peering CRDs ship with the chart whenever peering may be turned on.
    assert {"clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"} <= names


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicaCount": "two"}, "replicaCount"),
        ({"replicaCount": -1}, "replicaCount"),
        ({"image": {"tag": "latest"}}, "image/tag"),
        ({"image": {"tag": ""}}, "image/tag"),
        ({"defaultImages": {"vllm": {"tag": "latest"}}}, "defaultImages/vllm/tag"),
        ({"image": {"digest": "sha256:short"}}, "image/digest"),
        ({"logFormat": "xml"}, "logFormat"),
        ({"watchNamespaces": "team-a"}, "watchNamespaces"),
        ({"watchNamespaces": ["Team_A"]}, "watchNamespaces"),
        ({"unknownKey": True}, "unknownKey"),
        ({"metrics": {"port": 70000}}, "metrics/port"),
        ({"peering": {"enabled": "yes"}}, "peering/enabled"),
        ({"dashboards": {"enabled": "yes"}}, "dashboards/enabled"),
        ({"dashboards": {"namespace": "Monitoring"}}, "dashboards/namespace"),
        ({"prometheusRule": {"labels": {"release": 1}}}, "prometheusRule/labels/release"),
        ({"prometheusRule": {"groups": []}}, "prometheusRule"),
        ({"engineMetrics": {"podMonitor": {"enabled": "yes"}}}, "engineMetrics/podMonitor/enabled"),
        (
            {"engineMetrics": {"podMonitor": {"interval": "30"}}},
            "engineMetrics/podMonitor/interval",
        ),
        ({"engineMetrics": {"podMonitor": {"job": ""}}}, "engineMetrics/podMonitor/job"),
    ],
)
def test_schema_rejects_bad_values(values: dict[str, Any], message: str, tmp_path: Path) -> None:
    result = helm("template", "mf", str(CHART), *values_args(values, tmp_path), check=False)
    assert result.returncode != 0, f"{values} was accepted"
    assert "values don't meet the specifications of the schema" in result.stderr
    assert message in result.stderr, result.stderr


def test_service_monitor_without_service_fails(tmp_path: Path) -> None:
    values = {"metrics": {"service": {"enabled": False}, "serviceMonitor": {"enabled": True}}}
    result = helm("template", "mf", str(CHART), *values_args(values, tmp_path), check=False)
    assert result.returncode != 0
    assert "needs metrics.service.enabled" in result.stderr


def test_prometheus_rule_ships_the_checked_rule_file(rendered: dict[str, Any]) -> None:
    """The PrometheusRule's groups are dashboards/rules.yaml, the file promtool checks."""
    assert not by_kind(rendered["defaults"], "PrometheusRule")
    rule = one(rendered["observability"], "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["namespace"] == "modelfleet-system"
    assert rule["metadata"]["labels"]["release"] == "prom"
    checked = yaml.safe_load((CHART / "dashboards/rules.yaml").read_text())
    assert rule["spec"] == {"groups": checked["groups"]}
    alerts = [r["alert"] for group in rule["spec"]["groups"] for r in group["rules"]]
    assert "ModelfleetOperatorDown" in alerts and "ModelfleetModelStalled" in alerts


def test_dashboard_config_map_carries_the_dashboard(rendered: dict[str, Any]) -> None:
    assert not [
        c
        for c in by_kind(rendered["defaults"], "ConfigMap")
        if c["metadata"]["name"].endswith("-dashboard")
    ]
    (config_map,) = [
        c
        for c in by_kind(rendered["observability"], "ConfigMap")
        if c["metadata"]["name"].endswith("-dashboard")
    ]
    metadata = config_map["metadata"]
    assert metadata["labels"]["grafana_dashboard"] == "1"
    assert metadata["labels"]["team"] == "ml"
    assert metadata["annotations"] == {"grafana_folder": "modelfleet"}
    assert metadata["namespace"] == "monitoring"
    dashboard = json.loads((CHART / "dashboards/modelfleet.json").read_text())
    assert json.loads(config_map["data"]["modelfleet.json"]) == dashboard


def test_the_job_identity_is_patched_only_under_its_own_name(rendered: dict[str, Any]) -> None:
    """get and patch on ServiceAccounts, Roles and RoleBindings name the Job identity; only
    create (which RBAC cannot limit by name) is granted for any name."""
    role = operator_cluster_role(rendered["defaults"])
    identity_kinds = {"serviceaccounts", "roles", "rolebindings"}
    for rule in role["rules"]:
        if not identity_kinds & set(rule.get("resources", [])):
            continue
        if rule.get("resourceNames"):
            assert rule["resourceNames"] == ["modelfleet-job"], rule
            assert set(rule["verbs"]) == {"get", "patch"}, rule
        else:
            assert rule["verbs"] == ["create"], f"{rule} grants more than create for any name"


def _admission_policy(tmp_path: Path, *extra: str) -> list[dict[str, Any]]:
    objects = render_chart(None, tmp_path, extra=extra)
    return [o for o in objects if o["kind"].startswith("ValidatingAdmissionPolicy")]


def test_the_admission_policy_pins_the_operators_jobs(tmp_path: Path) -> None:
    policy, binding = _admission_policy(tmp_path, "--kube-version", "1.34.0")
    assert binding["spec"] == {
        "policyName": policy["metadata"]["name"],
        "validationActions": ["Deny"],
    }
    (condition,) = policy["spec"]["matchConditions"]
    assert "system:serviceaccount:modelfleet-system:mf-modelfleet" in condition["expression"]
    account, images = policy["spec"]["validations"]
    assert '"modelfleet-job"' in account["expression"]
    prefixes = {v["name"]: v["expression"] for v in policy["spec"]["variables"]}["prefixes"]
    assert json.loads(prefixes) == [
        "ghcr.io/modelfleet/downloader:",
        "ghcr.io/modelfleet/downloader@",
        "ghcr.io/modelfleet/trainer:",
        "ghcr.io/modelfleet/trainer@",
    ]
    assert "initContainers" in images["expression"]


def test_the_admission_policy_is_left_out_where_it_cannot_be_served(tmp_path: Path) -> None:
    assert _admission_policy(tmp_path, "--kube-version", "1.29.0") == []
    off = ("--kube-version", "1.34.0", "--set", "admissionPolicy.enabled=false")
    assert _admission_policy(tmp_path, *off) == []


POD_MONITOR_API = "monitoring.coreos.com/v1/PodMonitor"


def _pod_monitors(tmp_path: Path, *extra: str) -> list[dict[str, Any]]:
    return by_kind(render_chart(None, tmp_path, extra=extra), "PodMonitor")


def test_the_pod_monitor_is_on_where_the_prometheus_operator_is(tmp_path: Path) -> None:
    """auto (the default) follows the cluster's API versions; true and false decide alone."""
    assert DEFAULTS["engineMetrics"]["podMonitor"]["enabled"] == "auto"
    assert _pod_monitors(tmp_path) == []
    (monitor,) = _pod_monitors(tmp_path, "--api-versions", POD_MONITOR_API)
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["namespace"] == "modelfleet-system"
    off = ("--api-versions", POD_MONITOR_API, "--set", "engineMetrics.podMonitor.enabled=false")
    assert _pod_monitors(tmp_path, *off) == []
    assert len(_pod_monitors(tmp_path, "--set", "engineMetrics.podMonitor.enabled=true")) == 1


def test_the_pod_monitor_scrapes_every_serving_pod_labelled_by_model(
    rendered: dict[str, Any],
) -> None:
    """The PodMonitor, applied to the pods the builders describe: it scrapes vLLM's /metrics
    on a serving pod (not a download Job's), and every series carries the Model's name,
    namespace and revision, under a job the operator-down alert does not take for the
    operator."""
    monitor = one(rendered["engine-metrics"], "PodMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["namespaceSelector"] == {"any": True}
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["path"] == "/metrics"
    model = load_example("model-tiny")
    pod = deployment_for(model, revision=SHA)["spec"]["template"]
    namespace = model.metadata.namespace
    assert namespace
    target = pod_monitor_target(monitor, pod, namespace, pod_name="tiny-7f9c-abcde")
    assert target is not None, "the PodMonitor does not scrape a serving pod"
    assert target["model"] == model.metadata.name
    assert target["namespace"] == namespace
    assert target["revision"] == SHA
    assert target["job"] == "vllm"
    assert not re.fullmatch(".*modelfleet.*", target["job"])  # ModelfleetOperatorDown's match
    assert target["pod"] == "tiny-7f9c-abcde" and target["container"] == "vllm"
    job_pod = download_job_for(model)["spec"]["template"]
    assert pod_monitor_target(monitor, job_pod, namespace) is None


def test_watched_namespaces_bound_the_pod_monitor(tmp_path: Path) -> None:
    values = {"watchNamespaces": ["team-a"], "engineMetrics": {"podMonitor": {"enabled": True}}}
    monitor = one(render_chart(values, tmp_path), "PodMonitor")
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["team-a"]}
    pod = deployment_for(load_example("model-tiny"))["spec"]["template"]
    assert pod_monitor_target(monitor, pod, "team-a") is not None
    assert pod_monitor_target(monitor, pod, "team-b") is None
