"""A small Kubernetes client over the official one: plain dicts in and out, server-side apply.

Handlers and builders speak the API's own JSON (camelCase dicts), so this wrapper sends and
returns exactly that, and keeps every request in one place where it can be counted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from modelfleet.metrics import API_ERRORS, API_REQUESTS

FIELD_MANAGER = "modelfleet"

Manifest = dict[str, Any]


@dataclass(frozen=True)
class Resource:
    """Where a kind lives in the API."""

    api_version: str
    plural: str
    namespaced: bool = True

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        """The REST path of the collection, or of one object when ``name`` is given."""
        group_version = self.api_version
        base = f"/api/{group_version}" if "/" not in group_version else f"/apis/{group_version}"
        if self.namespaced and namespace is not None:
            base += f"/namespaces/{quote(namespace, safe='')}"
        base += f"/{self.plural}"
        if name is not None:
            # Every character quoted, "/" included: a name from a spec can never add a segment.
            base += f"/{quote(name, safe='')}"
        return base


PVC = Resource("v1", "persistentvolumeclaims")
SERVICE = Resource("v1", "services")
POD = Resource("v1", "pods")
SECRET = Resource("v1", "secrets")
CONFIG_MAP = Resource("v1", "configmaps")
EVENT = Resource("events.k8s.io/v1", "events")
CORE_EVENT = Resource("v1", "events")
JOB = Resource("batch/v1", "jobs")
DEPLOYMENT = Resource("apps/v1", "deployments")
DISRUPTION_BUDGET = Resource("policy/v1", "poddisruptionbudgets")
INGRESS = Resource("networking.k8s.io/v1", "ingresses")
SERVICE_ACCOUNT = Resource("v1", "serviceaccounts")
ROLE = Resource("rbac.authorization.k8s.io/v1", "roles")
ROLE_BINDING = Resource("rbac.authorization.k8s.io/v1", "rolebindings")
STORAGE_CLASS = Resource("storage.k8s.io/v1", "storageclasses", namespaced=False)
MODEL = Resource("modelfleet.io/v1alpha1", "models")
FINETUNE_JOB = Resource("modelfleet.io/v1alpha1", "finetunejobs")

_BY_KIND = {
    "PersistentVolumeClaim": PVC,
    "Service": SERVICE,
    "Pod": POD,
    "Job": JOB,
    "Deployment": DEPLOYMENT,
    "PodDisruptionBudget": DISRUPTION_BUDGET,
    "Ingress": INGRESS,
    "Model": MODEL,
    "ServiceAccount": SERVICE_ACCOUNT,
    "Role": ROLE,
    "RoleBinding": ROLE_BINDING,
    "FinetuneJob": FINETUNE_JOB,
}


def resource_of(manifest: Manifest) -> Resource:
    """The Resource of a manifest, from its kind."""
    return _BY_KIND[manifest["kind"]]


def _resource_label(path: str) -> str:
    """The resource (and subresource) a REST path addresses, for metric labels."""
    parts = [p for p in path.split("/") if p]
    if "namespaces" in parts and parts.index("namespaces") + 2 < len(parts):
        parts = parts[parts.index("namespaces") + 2 :]
    else:
        parts = parts[2:] if parts[0] == "api" else parts[3:]
    return parts[0] + (f"/{parts[2]}" if len(parts) > 2 else "") if parts else "unknown"


def describe_error(error: Exception) -> str:
    """One line about a failed request: the status and the API server's message, without the
    response headers an ApiException prints."""
    if not isinstance(error, ApiException):
        return str(error)
    try:
        message = json.loads(error.body or "{}").get("message", "")
    except (ValueError, AttributeError):
        message = ""
    status = f"{error.status} {error.reason}"
    return f"{status}: {message}" if message else status


def namespace_terminating(error: Exception) -> bool:
    """Whether a request was refused because its namespace is being deleted (and the object
    that asked with it): nothing to retry or to report."""
    return (
        isinstance(error, ApiException)
        and error.status == 403
        and "NamespaceTerminating" in str(error.body or "")
    )


class Kube:
    """Synchronous requests returning decoded JSON; 404 on reads becomes None."""

    def __init__(self, api: client.ApiClient, timeout: float = 30.0) -> None:
        self.api = api
        self.timeout = timeout

    def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        body: Any = None,
        content_type: str | None = None,
    ) -> Any:
        """One request; raises ApiException on any non-2xx status."""
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        method_, url, headers_, body_, _ = self.api.param_serialize(
            method=method,
            resource_path=path,
            query_params=list((query or {}).items()),
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self.api.call_api(
            method_, url, header_params=headers_, body=body_, _request_timeout=self.timeout
        )
        data = response.read()
        resource = _resource_label(path)
        API_REQUESTS.labels(method, resource).inc()
        if not 200 <= response.status < 300:
            API_ERRORS.labels(method, resource, str(response.status)).inc()
            raise ApiException(status=response.status, reason=response.reason, http_resp=response)
        return json.loads(data) if data else None

    def get(self, resource: Resource, namespace: str | None, name: str) -> Manifest | None:
        """The object, or None when it does not exist."""
        try:
            result: Manifest = self.request("GET", resource.path(namespace, name))
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return result

    def read_live(self, resource: Resource, namespace: str | None, name: str) -> Manifest | None:
        """The object as the API server has it now, or None; never from a cache."""
        return Kube.get(self, resource, namespace, name)

    def pod_events(self, namespace: str, pod: str) -> list[Manifest]:
        """The Events posted about a pod (by the kubelet, the attach controller), read live."""
        query = {"fieldSelector": f"involvedObject.kind=Pod,involvedObject.name={pod}"}
        items: list[Manifest] = self.request("GET", CORE_EVENT.path(namespace), query=query)[
            "items"
        ]
        return items

    def list(
        self, resource: Resource, namespace: str | None, label_selector: str | None = None
    ) -> list[Manifest]:
        """Objects of a kind in a namespace, optionally filtered by labels."""
        query = {"labelSelector": label_selector} if label_selector else None
        items: list[Manifest] = self.request("GET", resource.path(namespace), query=query)["items"]
        return items

    def apply(self, manifest: Manifest) -> Manifest:
        """Server-side apply with field manager ``modelfleet``, taking over conflicts."""
        resource = resource_of(manifest)
        meta = manifest["metadata"]
        result: Manifest = self.request(
            "PATCH",
            resource.path(meta.get("namespace"), meta["name"]),
            query={"fieldManager": FIELD_MANAGER, "force": "true"},
            body=manifest,
            content_type="application/apply-patch+yaml",
        )
        return result

    def create(self, resource: Resource, namespace: str | None, body: Manifest) -> Manifest:
        """Create an object."""
        result: Manifest = self.request("POST", resource.path(namespace), body=body)
        return result

    def delete(self, resource: Resource, namespace: str | None, name: str) -> bool:
        """Delete with background propagation; False when it was already gone."""
        try:
            self.request(
                "DELETE",
                resource.path(namespace, name),
                body={"propagationPolicy": "Background"},
            )
        except ApiException as error:
            if error.status == 404:
                return False
            raise
        return True

    def merge_patch(
        self, resource: Resource, namespace: str, name: str, body: dict[str, Any]
    ) -> Manifest:
        """JSON merge patch of an object: a null removes a field."""
        result: Manifest = self.request(
            "PATCH",
            resource.path(namespace, name),
            body=body,
            content_type="application/merge-patch+json",
        )
        return result

    def patch_pod_condition(self, namespace: str, name: str, condition: dict[str, Any]) -> None:
        """Set one condition of a pod's status (a readiness gate), leaving the others as the
        kubelet wrote them: a strategic merge patch merges conditions by type."""
        self.request(
            "PATCH",
            POD.path(namespace, name) + "/status",
            body={"status": {"conditions": [condition]}},
            content_type="application/strategic-merge-patch+json",
        )

    def patch_status(
        self, resource: Resource, namespace: str, name: str, status: dict[str, Any]
    ) -> Manifest:
        """Merge-patch the status subresource."""
        result: Manifest = self.request(
            "PATCH",
            resource.path(namespace, name) + "/status",
            body={"status": status},
            content_type="application/merge-patch+json",
        )
        return result
