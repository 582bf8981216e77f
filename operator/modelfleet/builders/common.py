"""Pieces every child manifest shares: labels, owner reference, spec hash, pod security."""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from modelfleet.api.v1alpha1 import API_VERSION, Model
from modelfleet.api.v1alpha1.common import JobPodSettings
from modelfleet.contracts.results import EXIT_PERMANENT
from modelfleet.settings import ChildDefaults

Manifest = dict[str, Any]
"""A Kubernetes object as plain JSON-compatible data."""

Component = Literal["weights", "download", "verify", "resolve", "serving"]
"""The role of a child; the value of ``app.kubernetes.io/component``."""

MANAGED_BY = "modelfleet"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MODEL_LABEL = "modelfleet.io/model"
COMPONENT_LABEL = "app.kubernetes.io/component"
SPEC_HASH_ANNOTATION = "modelfleet.io/spec-hash"
REVISION_ANNOTATION = "modelfleet.io/revision"
RETRY_TOKEN_ANNOTATION = "modelfleet.io/retry-token"
MODEL_PATH_ANNOTATION = "modelfleet.io/model-path"

# A fixed non-root identity: the Pod Security "restricted" profile refuses root, and a numeric
# UID lets the kubelet check runAsNonRoot even for images whose USER is a name (or root).
RUN_AS_ID = 65532

WEIGHTS_VOLUME = "weights"
TMP_VOLUME = "tmp"
TMP_PATH = "/tmp"

EPHEMERAL_STORAGE = "ephemeral-storage"
# What a container writes on the node's disk outside the emptyDirs: its logs (the kubelet keeps
# five files of 10Mi by default); the roots are read-only, except vLLM's (serving.py).
LOG_HEADROOM_GIB = 1


def model_name(model: Model) -> str:
    """The Model's name; refuses a Model without one."""
    if not model.metadata.name:
        raise ValueError("the Model has no metadata.name")
    return model.metadata.name


def model_namespace(model: Model) -> str:
    """The Model's namespace; every child lives beside it."""
    if not model.metadata.namespace:
        raise ValueError(f"Model {model.metadata.name!r} has no metadata.namespace")
    return model.metadata.namespace


def labels(model: Model, component: Component) -> dict[str, str]:
    """The labels of every child object and pod template."""
    name = model_name(model)
    return {
        MANAGED_BY_LABEL: MANAGED_BY,
        "app.kubernetes.io/name": "modelfleet",
        "app.kubernetes.io/instance": name,
        COMPONENT_LABEL: component,
        MODEL_LABEL: name,
    }


def selector_labels(model: Model, component: Component) -> dict[str, str]:
    """The subset of :func:`labels` that selects a Model's pods of one component."""
    return {MODEL_LABEL: model_name(model), COMPONENT_LABEL: component}


def owner_reference(model: Model) -> dict[str, Any]:
    """A controller reference to the Model, so its children are garbage-collected with it."""
    if not model.metadata.uid:
        raise ValueError(f"Model {model.metadata.name!r} has no metadata.uid")
    return {
        "apiVersion": API_VERSION,
        "kind": "Model",
        "name": model_name(model),
        "uid": model.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def object_meta(
    model: Model,
    name: str,
    component: Component,
    *,
    owned: bool = True,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """metadata of a child: name, namespace, labels, annotations and (if owned) the owner."""
    meta: dict[str, Any] = {
        "name": name,
        "namespace": model_namespace(model),
        "labels": labels(model, component),
    }
    if annotations:
        meta["annotations"] = dict(annotations)
    if owned:
        meta["ownerReferences"] = [owner_reference(model)]
    return meta


def spec_hash(manifest: Manifest) -> str:
    """First 16 hex digits of the sha256 of the manifest's canonical JSON, its hash excluded."""
    content = copy.deepcopy(manifest)
    annotations = content.get("metadata", {}).get("annotations")
    if annotations is not None:
        annotations.pop(SPEC_HASH_ANNOTATION, None)
        if not annotations:
            del content["metadata"]["annotations"]
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def stamp_spec_hash(manifest: Manifest) -> Manifest:
    """The manifest with its ``modelfleet.io/spec-hash`` annotation set (in place, returned)."""
    digest = spec_hash(manifest)
    annotations = manifest.setdefault("metadata", {}).setdefault("annotations", {})
    annotations[SPEC_HASH_ANNOTATION] = digest
    return manifest


def pod_security_context() -> dict[str, Any]:
    """Pod-level settings the Pod Security "restricted" profile requires."""
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_ID,
        "runAsGroup": RUN_AS_ID,
        # Files the Job writes on the weights volume are group-owned and readable by serving pods.
        "fsGroup": RUN_AS_ID,
        # Without this the kubelet re-chowns every file of a multi-GiB volume on each mount.
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context(*, read_only_root: bool) -> dict[str, Any]:
    """Container-level settings of the "restricted" profile; writable root only where needed."""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": read_only_root,
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_ID,
        "runAsGroup": RUN_AS_ID,
    }


def scratch_gib(volumes: list[dict[str, Any]]) -> int:
    """GiB the pod's disk-backed emptyDirs may hold: the sum of their ``sizeLimit`` (in Gi).
    Memory-backed ones count against memory instead."""
    total = 0
    for volume in volumes:
        empty_dir = volume.get("emptyDir")
        if empty_dir is None or empty_dir.get("medium") == "Memory":
            continue
        size = str(empty_dir.get("sizeLimit", ""))
        if not (size.endswith("Gi") and size[:-2].isdigit()):
            raise ValueError(f"emptyDir {volume['name']!r} needs a sizeLimit in Gi, not {size!r}")
        total += int(size[:-2])
    return total


def with_ephemeral_storage(
    resources: dict[str, Any], *, request: str, limit: str
) -> dict[str, Any]:
    """``resources`` plus an ephemeral-storage request and limit, unless the user set either.

    The pod's emptyDirs are the builders', so the disk they may fill is theirs to declare: the
    scheduler then places the pod where that disk is, and a limit that covers the emptyDirs
    means a full scratch volume meets its own sizeLimit, never an eviction of the pod.
    """
    result = copy.deepcopy(resources)
    if any(EPHEMERAL_STORAGE in result.get(bucket, {}) for bucket in ("requests", "limits")):
        return result
    result.setdefault("requests", {})[EPHEMERAL_STORAGE] = request
    result.setdefault("limits", {})[EPHEMERAL_STORAGE] = limit
    return result


def env_var(name: str, value: str) -> dict[str, Any]:
    """A literal environment variable."""
    return {"name": name, "value": value}


def secret_env_var(name: str, secret: str, key: str) -> dict[str, Any]:
    """An environment variable read from a Secret: the value never appears in a manifest."""
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def tmp_volume(size_limit: str | None = None) -> dict[str, Any]:
    """A scratch emptyDir for /tmp, since root filesystems are read-only or owned by root."""
    empty_dir: dict[str, Any] = {"sizeLimit": size_limit} if size_limit else {}
    return {"name": TMP_VOLUME, "emptyDir": empty_dir}


def claim_volume(claim_name: str, *, read_only: bool) -> dict[str, Any]:
    """The weights volume from a PersistentVolumeClaim."""
    source: dict[str, Any] = {"claimName": claim_name}
    if read_only:
        source["readOnly"] = True
    return {"name": WEIGHTS_VOLUME, "persistentVolumeClaim": source}


def volume_mount(name: str, path: str, *, read_only: bool = False) -> dict[str, Any]:
    """A volumeMount; ``readOnly`` is written only when true, as the API server stores it."""
    mount: dict[str, Any] = {"name": name, "mountPath": path}
    if read_only:
        mount["readOnly"] = True
    return mount


def pod_failure_policy(*container_names: str) -> dict[str, Any]:
    """A Job's podFailurePolicy: exit code 2 of any of ``container_names`` fails the Job at once;
    an evicted or preempted pod is not the program's fault and spends no retry."""
    return {
        "rules": [
            *(
                {
                    "action": "FailJob",
                    "onExitCodes": {
                        "containerName": name,
                        "operator": "In",
                        "values": [EXIT_PERMANENT],
                    },
                }
                for name in container_names
            ),
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
        ]
    }


def _with_env(container: dict[str, Any], extra: list[dict[str, Any]]) -> dict[str, Any]:
    """``container`` with ``extra`` variables first: the program's own come last, so a
    variable of the same name cannot replace them."""
    own = {variable["name"] for variable in container.get("env", [])}
    added = [variable for variable in extra if variable["name"] not in own]
    return {**container, "env": [*added, *container.get("env", [])]} if added else container


DEFAULTS_ANNOTATION = "modelfleet.io/defaults"
"""On a Job: the installation's defaults it took because its Model or FinetuneJob was silent."""


@dataclass(frozen=True)
class JobPod:
    """A Job pod's placement and extra environment: the object's own settings, else the
    installation's defaults."""

    env: list[dict[str, Any]] = field(default_factory=list)
    node_selector: dict[str, str] | None = None
    tolerations: list[dict[str, Any]] | None = None
    image_pull_secrets: list[str] = field(default_factory=list)
    from_defaults: tuple[str, ...] = ()
    """Which settings came from the defaults, for the DEFAULTS_ANNOTATION."""

    def annotations(self) -> dict[str, str]:
        return {DEFAULTS_ANNOTATION: ", ".join(self.from_defaults)} if self.from_defaults else {}


def job_pod(own: JobPodSettings, defaults: ChildDefaults) -> JobPod:
    """Merge ``own`` (a Model's download settings, a FinetuneJob's spec) over ``defaults``."""
    taken: list[str] = []
    own_names = {variable.name for variable in own.env}
    inherited = [variable for variable in defaults.jobs.env if variable.name not in own_names]
    if inherited:
        taken.append("env " + " ".join(variable.name for variable in inherited))
    node_selector = own.node_selector
    if node_selector is None and defaults.jobs.node_selector:
        node_selector = dict(defaults.jobs.node_selector)
        taken.append("nodeSelector")
    tolerations = own.tolerations
    if tolerations is None and defaults.jobs.tolerations:
        tolerations = list(defaults.jobs.tolerations)
        taken.append("tolerations")
    pull_secrets = own.image_pull_secrets
    if pull_secrets is None and defaults.image_pull_secrets:
        pull_secrets = list(defaults.image_pull_secrets)
        taken.append("imagePullSecrets")
    return JobPod(
        env=[variable.to_wire() for variable in (*inherited, *own.env)],
        node_selector=node_selector,
        tolerations=[t.to_wire() for t in tolerations] if tolerations is not None else None,
        image_pull_secrets=list(pull_secrets or []),
        from_defaults=tuple(taken),
    )


def job_spec(
    *,
    service_account: str,
    pod_labels: dict[str, str],
    container: dict[str, Any],
    volumes: list[dict[str, Any]],
    backoff_limit: int,
    active_deadline_seconds: int | None,
    placement: JobPod,
    init_containers: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The spec of every modelfleet Job: its pod runs once per attempt under the Job identity
    with the restricted security context, and a permanent failure (exit 2) of any container
    spends no retry. No ttlSecondsAfterFinished: the operator reads a finished Job's result,
    then deletes it."""
    names = [c["name"] for c in init_containers or []] + [container["name"]]
    container = _with_env(container, placement.env)
    init_containers = [_with_env(c, placement.env) for c in init_containers or []]
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "serviceAccountName": service_account,
        "securityContext": pod_security_context(),
        "containers": [container],
        "volumes": volumes,
    }
    if placement.node_selector:
        pod["nodeSelector"] = placement.node_selector
    if placement.tolerations:
        pod["tolerations"] = placement.tolerations
    if placement.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": name} for name in placement.image_pull_secrets]
    if init_containers:
        pod["initContainers"] = init_containers
    spec: dict[str, Any] = {
        "backoffLimit": backoff_limit,
        "podFailurePolicy": pod_failure_policy(*names),
        "template": {"metadata": {"labels": pod_labels}, "spec": pod},
    }
    if active_deadline_seconds is not None:
        spec["activeDeadlineSeconds"] = active_deadline_seconds
    return spec
