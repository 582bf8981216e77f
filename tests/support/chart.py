"""The Helm chart under test: the pinned helm binary, rendering, the operator's expected
permissions, and a kubeconfig that acts as the chart's ServiceAccount."""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from tests.support.cluster import REPO_ROOT, tool_path

CHART = REPO_ROOT / "charts/modelfleet"

Rules = dict[tuple[str, str], frozenset[str]]
"""(apiGroup, resource) -> verbs."""


def _rules(*entries: tuple[str, Iterable[str], Iterable[str]]) -> Rules:
    return {
        (group, resource): frozenset(verbs)
        for group, resources, verbs in entries
        for resource in resources
    }


# Exactly what the operator uses in a namespace it manages (kube/client.py, kopf). Server-side
# apply of a missing object is authorized as `create` as well as `patch`, so each kind the
# operator applies (Deployments, Services, ServiceAccounts, Roles, RoleBindings) needs both.
NAMESPACED_RULES: Rules = _rules(
    ("modelfleet.io", ["models"], ["get", "list", "watch", "create", "patch"]),
    ("modelfleet.io", ["models/status"], ["get", "patch"]),
    ("modelfleet.io", ["finetunejobs"], ["get", "list", "watch", "patch"]),
    ("modelfleet.io", ["finetunejobs/status"], ["get", "patch"]),
    ("", ["persistentvolumeclaims"], ["list", "watch", "create", "patch"]),  # patch: growing
    ("", ["pods"], ["list", "watch"]),
    ("", ["pods/status"], ["patch"]),  # the smoke-test readiness gate of serving pods
    ("", ["services"], ["get", "list", "watch", "create", "patch"]),
    ("", ["secrets"], ["get"]),
    ("", ["configmaps"], ["get"]),
    ("", ["serviceaccounts"], ["get", "create", "patch"]),
    ("batch", ["jobs"], ["list", "watch", "create", "delete"]),
    ("apps", ["deployments"], ["get", "list", "watch", "create", "patch"]),
    ("networking.k8s.io", ["ingresses"], ["get", "list", "watch", "create", "patch", "delete"]),
    # delete: the serving pods' budget below 2 replicas
    ("policy", ["poddisruptionbudgets"], ["get", "list", "watch", "create", "patch", "delete"]),
    ("", ["events"], ["list"]),  # a pod's FailedMount / FailedAttachVolume
    ("events.k8s.io", ["events"], ["create"]),
    ("rbac.authorization.k8s.io", ["roles", "rolebindings"], ["get", "create", "patch"]),
)
# The verbs granted only on the Job identity's own name (resourceNames): an access review must
# name it to be allowed.
JOB_IDENTITY = "modelfleet-job"
NAMED_VERBS = {
    ("", "serviceaccounts"): {"get", "patch"},
    ("rbac.authorization.k8s.io", "roles"): {"get", "patch"},
    ("rbac.authorization.k8s.io", "rolebindings"): {"get", "patch"},
}


def rule_name(group: str, resource: str, verb: str) -> str:
    """The object name an access review of this verb must carry ("" for any object)."""
    return JOB_IDENTITY if verb in NAMED_VERBS.get((group, resource), set()) else ""


CLUSTER_SCOPED_RULES: Rules = _rules(
    ("storage.k8s.io", ["storageclasses"], ["get"]),
    ("apiextensions.k8s.io", ["customresourcedefinitions"], ["list", "watch"]),
    ("", ["namespaces"], ["list", "watch"]),
)
CLUSTER_PEERING_RULES: Rules = _rules(
    ("kopf.dev", ["clusterkopfpeerings"], ["get", "list", "watch", "patch"])
)
NAMESPACED_PEERING_RULES: Rules = _rules(
    ("kopf.dev", ["kopfpeerings"], ["get", "list", "watch", "patch"])
)


def helm_binary() -> Path:
    """The helm that hack/build-tools.sh builds; an AssertionError that says so when missing."""
    helm_bin = subprocess.run(
        ["bash", "-c", 'source hack/versions.sh && printf %s "$HELM_BIN"'],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    helm = Path(helm_bin) / "helm"
    if not helm.is_file():
        raise AssertionError(
            f"helm not found at {helm}: run hack/build-tools.sh (it builds the pinned helm)"
        )
    return helm


def helm(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the pinned helm; with ``check`` a failure raises with helm's own output."""
    result = subprocess.run(
        [str(helm_binary()), *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result


def values_args(values: Mapping[str, Any] | None, directory: Path) -> list[str]:
    """`--values FILE` for a values mapping (written into ``directory``)."""
    if not values:
        return []
    path = directory / f"values-{abs(hash(json.dumps(values, sort_keys=True)))}.yaml"
    path.write_text(yaml.safe_dump(dict(values)))
    return ["--values", str(path)]


def render_chart(
    values: Mapping[str, Any] | None,
    directory: Path,
    *,
    release: str = "mf",
    namespace: str = "modelfleet-system",
    extra: Iterable[str] = (),
) -> list[dict[str, Any]]:
    """`helm template` of the chart, parsed: every object, hooks included."""
    result = helm(
        "template",
        release,
        str(CHART),
        "--namespace",
        namespace,
        *values_args(values, directory),
        *extra,
    )
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def rules_of(rules: Iterable[Mapping[str, Any]]) -> Rules:
    """RBAC rules as (apiGroup, resource) -> verbs, merging rules that share a resource."""
    merged: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        for group in rule.get("apiGroups", []):
            for resource in rule.get("resources", []):
                merged.setdefault((group, resource), set()).update(rule.get("verbs", []))
    return {key: frozenset(verbs) for key, verbs in merged.items()}


def chart_operator_kubeconfig(
    admin_kubeconfig: Path,
    namespace: str,
    service_account: str,
    path: Path,
    *,
    duration: str = "2h",
) -> Path:
    """A kubeconfig at ``path`` that authenticates as ``namespace/service_account`` with a token
    from `kubectl create token`, against the cluster ``admin_kubeconfig`` names.

    Run the operator under it (``OperatorProcess(chart_operator_kubeconfig(...), log)``) and any
    verb the chart does not grant fails the same way it would in the cluster.
    """
    kubectl = tool_path("kubectl")
    token = subprocess.run(
        [
            kubectl,
            "--kubeconfig",
            str(admin_kubeconfig),
            "create",
            "token",
            service_account,
            "--namespace",
            namespace,
            "--duration",
            duration,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    view = json.loads(
        subprocess.run(
            [
                kubectl,
                "--kubeconfig",
                str(admin_kubeconfig),
                "config",
                "view",
                "--minify",
                "--raw",
                "--output",
                "json",
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
    )
    cluster = dict(view["clusters"][0]["cluster"])
    if "certificate-authority" in cluster:  # inline a CA given as a file path
        ca = Path(cluster.pop("certificate-authority")).read_bytes()
        cluster["certificate-authority-data"] = base64.b64encode(ca).decode()
    user = f"system:serviceaccount:{namespace}:{service_account}"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "cluster", "cluster": cluster}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [
            {
                "name": "chart-operator",
                "context": {"cluster": "cluster", "user": user, "namespace": namespace},
            }
        ],
        "current-context": "chart-operator",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


OPERATOR_NAMESPACE = "modelfleet-system"
OPERATOR_RELEASE = "modelfleet"


def chart_credentials(kubeconfig: Path, directory: Path, *sets: str) -> Path:
    """Install the chart (without its CRDs, already applied) and return a kubeconfig holding a
    token of the chart's ServiceAccount: the operator then has exactly the chart's rights.
    ``sets`` are extra ``--set`` values (``peering.enabled=true``)."""
    namespace = subprocess.run(
        [
            tool_path("kubectl"),
            "--kubeconfig",
            str(kubeconfig),
            "create",
            "namespace",
            OPERATOR_NAMESPACE,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert namespace.returncode == 0 or "AlreadyExists" in namespace.stderr, namespace.stderr
    helm(
        "upgrade",
        "--install",
        OPERATOR_RELEASE,
        str(CHART),
        "--kubeconfig",
        str(kubeconfig),
        "--namespace",
        OPERATOR_NAMESPACE,
        "--skip-crds",
        "--set",
        "replicaCount=1",
        # The local cluster's simulated download image may run as a Job too.
        "--set",
        "admissionPolicy.extraImagePrefixes={simulate.invalid/}",
        *[arg for value in sets for arg in ("--set", value)],
        "--timeout",
        "120s",
        timeout=180,
    )
    return chart_operator_kubeconfig(
        kubeconfig,
        OPERATOR_NAMESPACE,
        OPERATOR_RELEASE,  # the chart's fullname, hence its ServiceAccount, for this release
        directory / "operator-kubeconfig",
    )
