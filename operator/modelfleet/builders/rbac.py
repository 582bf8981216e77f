"""The identity of download and training Jobs in a namespace: a ServiceAccount allowed to patch
the status of Models and FinetuneJobs there, and nothing else."""

from __future__ import annotations

from modelfleet.api.v1alpha1.common import GROUP
from modelfleet.builders.common import MANAGED_BY, Manifest
from modelfleet.settings import OperatorSettings

_LABELS = {"app.kubernetes.io/managed-by": MANAGED_BY, "app.kubernetes.io/name": "modelfleet"}


def build_job_identity(settings: OperatorSettings, namespace: str) -> list[Manifest]:
    """ServiceAccount, Role and RoleBinding for the Jobs of one namespace."""
    name = settings.job_service_account
    meta = {"name": name, "namespace": namespace, "labels": dict(_LABELS)}
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": dict(meta),
            "automountServiceAccountToken": True,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": dict(meta),
            "rules": [
                {
                    "apiGroups": [GROUP],
                    "resources": ["models/status", "finetunejobs/status"],
                    "verbs": ["get", "patch"],
                }
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": dict(meta),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        },
    ]
