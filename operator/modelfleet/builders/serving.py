"""The vLLM Deployment that serves a Model's weights, the Service in front of it, and the
PodDisruptionBudget that keeps a drain from taking all of its replicas."""

from __future__ import annotations

import copy
import math
from decimal import Decimal
from pathlib import Path
from typing import Any

from kubernetes.utils.quantity import parse_quantity

from modelfleet.api.v1alpha1 import Model
from modelfleet.api.v1alpha1.model import ProbeTiming, Serving
from modelfleet.builders.common import (
    EPHEMERAL_STORAGE,
    LOG_HEADROOM_GIB,
    MODEL_PATH_ANNOTATION,
    REVISION_ANNOTATION,
    TMP_PATH,
    TMP_VOLUME,
    WEIGHTS_VOLUME,
    Manifest,
    claim_volume,
    container_security_context,
    env_var,
    labels,
    model_name,
    model_namespace,
    object_meta,
    pod_security_context,
    selector_labels,
    stamp_spec_hash,
    tmp_volume,
    volume_mount,
    with_ephemeral_storage,
)
from modelfleet.builders.download import DOWNLOADER_COMMAND
from modelfleet.builders.naming import finetune_lora_path, serving_name, volume_path
from modelfleet.contracts.download import DownloaderSettings, Mode, Source, VerifyMode
from modelfleet.settings import OperatorSettings

CONTAINER_NAME = "vllm"
INIT_CONTAINER_NAME = "verify-weights"
PORT_NAME = "http"
HEALTH_PATH = "/health"
HOSTNAME_TOPOLOGY = "kubernetes.io/hostname"
ZONE_TOPOLOGY = "topology.kubernetes.io/zone"
# A readiness gate: a serving pod counts as Ready (for its Service and the rollout) only once
# the operator has had one completion answered by it (see modelfleet.smoketest).
SMOKE_TEST_CONDITION = "modelfleet.io/smoke-test"
REVISION_HISTORY_LIMIT = 5
# On deletion the pod keeps serving this long before vLLM gets SIGTERM: the time for its
# endpoint to leave the Service's EndpointSlices (and kube-proxy's rules, and gateways' pools)
# so that a rollout fails no request.
PRE_STOP_SLEEP_SECONDS = 5
# The probes' timing where serving.probes is silent (its docstrings say why).
STARTUP_PROBE = ProbeTiming(period_seconds=10, failure_threshold=180, timeout_seconds=5)
READINESS_PROBE = ProbeTiming(period_seconds=10, failure_threshold=3, timeout_seconds=5)
LIVENESS_PROBE = ProbeTiming(period_seconds=15, failure_threshold=6, timeout_seconds=10)
# A disruption budget over fewer pods either blocks every drain or allows everything.
DISRUPTION_BUDGET_MIN_REPLICAS = 2
SHM_VOLUME = "dshm"
# The verify container only reads the claim; its disk is its logs (its /tmp is the pod's).
VERIFY_RESOURCES: dict[str, Any] = {
    "requests": {"cpu": "100m", "memory": "128Mi", EPHEMERAL_STORAGE: "64Mi"},
    "limits": {"memory": "512Mi", EPHEMERAL_STORAGE: f"{LOG_HEADROOM_GIB}Gi"},
}
# vLLM's ephemeral storage: the compile caches in /tmp (a few GiB) are what it usually takes;
# its limit adds, to the emptyDirs, what its libraries write on the writable root.
ENGINE_EPHEMERAL_REQUEST = "2Gi"
ENGINE_ROOT_HEADROOM_GIB = 4

# vLLM, PyTorch, Triton and Hugging Face write caches and configs under HOME and XDG paths.
# The image's home belongs to root and UID 65532 has no passwd entry, so point them all at the
# writable /tmp emptyDir; USER keeps getpass.getuser() (used by torch) from failing.
_ENGINE_ENV: tuple[tuple[str, str], ...] = (
    ("HF_HUB_OFFLINE", "1"),
    ("TRANSFORMERS_OFFLINE", "1"),
    ("HF_HUB_DISABLE_TELEMETRY", "1"),
    ("VLLM_NO_USAGE_STATS", "1"),
    ("DO_NOT_TRACK", "1"),
    ("USER", "vllm"),
    ("HOME", TMP_PATH),
    ("XDG_CACHE_HOME", f"{TMP_PATH}/.cache"),
    ("XDG_CONFIG_HOME", f"{TMP_PATH}/.config"),
    ("HF_HOME", f"{TMP_PATH}/.cache/huggingface"),
    ("VLLM_CACHE_ROOT", f"{TMP_PATH}/.cache/vllm"),
    ("VLLM_CONFIG_ROOT", f"{TMP_PATH}/.config/vllm"),
    ("TRITON_CACHE_DIR", f"{TMP_PATH}/.cache/triton"),
    ("TORCHINDUCTOR_CACHE_DIR", f"{TMP_PATH}/.cache/torchinductor"),
    ("NUMBA_CACHE_DIR", f"{TMP_PATH}/.cache/numba"),
    ("OUTLINES_CACHE_DIR", f"{TMP_PATH}/.cache/outlines"),
)


def _serving(model: Model) -> Serving:
    if model.spec.serving is None:
        raise ValueError(f"Model {model.metadata.name!r} has no serving: it only caches weights")
    return model.spec.serving


def serving_endpoint(model: Model) -> str:
    """In-cluster URL of the Model's OpenAI-compatible API."""
    port = _serving(model).service.port
    return f"http://{serving_name(model)}.{model_namespace(model)}.svc:{port}/v1"


def tensor_parallel_size(serving: Serving) -> int:
    """``tensorParallelSize``, else one shard per GPU (at least 1)."""
    return serving.tensor_parallel_size or max(serving.gpu.count, 1)


def vllm_args(model: Model, *, settings: OperatorSettings) -> list[str]:
    """Arguments after ``vllm serve <path>``; the user's ``serving.args`` come last so they win."""
    serving = _serving(model)
    args = [
        "--host",
        "0.0.0.0",
        "--port",
        str(serving.service.port),
        "--served-model-name",
        serving.served_model_name or model_name(model),
        "--tensor-parallel-size",
        str(tensor_parallel_size(serving)),
    ]
    if serving.max_model_len is not None:
        args += ["--max-model-len", str(serving.max_model_len)]
    if serving.dtype != "auto":
        args += ["--dtype", serving.dtype]
    if serving.gpu_memory_utilization is not None:
        args += ["--gpu-memory-utilization", str(serving.gpu_memory_utilization)]
    if serving.lora_adapters:
        modules = []
        for adapter in serving.lora_adapters:
            if adapter.finetune_job:
                path = finetune_lora_path(settings, model_namespace(model), adapter.finetune_job)
            elif adapter.path:
                path = volume_path(settings, adapter.path)
            else:
                raise ValueError(f"LoRA adapter {adapter.name!r} has neither path nor finetuneJob")
            modules.append(f"{adapter.name}={path}")
        args += ["--enable-lora", "--lora-modules", *modules]
    return [*args, *serving.args]


def _engine_env(serving: Serving) -> list[dict[str, Any]]:
    """Our defaults, then the user's env. A name the user sets replaces ours instead of being
    repeated: server-side apply refuses duplicate keys in the env list."""
    user: dict[str, dict[str, Any]] = {}
    for var in serving.env:
        user.pop(var.name, None)  # the last of a repeated name wins, in its last position
        user[var.name] = var.to_wire()
    ours = [env_var(name, value) for name, value in _ENGINE_ENV if name not in user]
    return [*ours, *user.values()]


def _engine_resources(serving: Serving) -> dict[str, Any]:
    resources = serving.resources.to_wire() if serving.resources is not None else {}
    if serving.gpu.count > 0:
        # Extended resources must be requested equal to their limit; set both explicitly.
        count = str(serving.gpu.count)
        resources.setdefault("limits", {})[serving.gpu.resource_name] = count
        resources.setdefault("requests", {})[serving.gpu.resource_name] = count
    return resources


def _probe(default: ProbeTiming, own: ProbeTiming | None) -> dict[str, Any]:
    """A /health probe: the user's timing where given, else ``default``'s."""
    timing = default.model_copy(update=own.model_dump(exclude_none=True) if own else {})
    return {
        "httpGet": {"path": HEALTH_PATH, "port": PORT_NAME},
        "periodSeconds": timing.period_seconds,
        "timeoutSeconds": timing.timeout_seconds,
        "failureThreshold": timing.failure_threshold,
    }


def _gib_ceiling(quantity: str) -> int:
    """Whole GiB that hold ``quantity`` (a Kubernetes quantity), rounded up."""
    return math.ceil(Decimal(parse_quantity(quantity)) / 1024**3)


def _preferred_same_model_term(model: Model) -> dict[str, Any]:
    return {
        "weight": 100,
        "podAffinityTerm": {
            "labelSelector": {"matchLabels": selector_labels(model, "serving")},
            "topologyKey": HOSTNAME_TOPOLOGY,
        },
    }


def _spread_over(model: Model, topology_key: str) -> dict[str, Any]:
    return {
        "maxSkew": 1,
        "topologyKey": topology_key,
        # A preference: replicas still start when there are fewer domains than replicas.
        "whenUnsatisfiable": "ScheduleAnyway",
        "labelSelector": {"matchLabels": selector_labels(model, "serving")},
    }


def scheduling(model: Model) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The pod's affinity (the user's, plus what ``schedulingStrategy`` prefers) and its
    topologySpreadConstraints (over nodes for ``spread``, over zones for ``topologySpread``).
    The strategy only adds preferred terms: a user's required terms and nodeAffinity are kept
    as written."""
    serving = _serving(model)
    affinity = copy.deepcopy(serving.affinity) if serving.affinity else {}
    spread: list[dict[str, Any]] = []
    if serving.scheduling_strategy == "spread":
        spread.append(_spread_over(model, HOSTNAME_TOPOLOGY))
    if serving.topology_spread == "zone":
        spread.append(_spread_over(model, ZONE_TOPOLOGY))
    if serving.scheduling_strategy == "spread":
        kind = "podAntiAffinity"
    elif serving.scheduling_strategy == "binpack":
        kind = "podAffinity"
    else:
        return (affinity or None), spread
    section = affinity.setdefault(kind, {})
    section.setdefault("preferredDuringSchedulingIgnoredDuringExecution", []).append(
        _preferred_same_model_term(model)
    )
    return affinity, spread


def _verify_container(
    model: Model, *, settings: OperatorSettings, model_path: str
) -> dict[str, Any]:
    # A pvc source holds weights the user put there, never with our manifest: the verify Job
    # checked their completeness instead. Everything the operator downloaded must have one.
    task = DownloaderSettings(
        mode=Mode.VERIFY,
        source=Source.PVC,
        model_root=Path(settings.model_root),
        model_path=Path(model_path),
        # Sizes only: hashing the weights on every pod start would delay it by minutes.
        verify=VerifyMode.SIZE,
        require_manifest=model.spec.source.pvc is None,
    )
    return {
        "name": INIT_CONTAINER_NAME,
        "image": model.spec.download.image or settings.downloader_image,
        "command": list(DOWNLOADER_COMMAND),
        "env": [*task.to_env(), env_var("HOME", TMP_PATH), env_var("HF_HUB_OFFLINE", "1")],
        "resources": copy.deepcopy(VERIFY_RESOURCES),
        "securityContext": container_security_context(read_only_root=True),
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [
            volume_mount(WEIGHTS_VOLUME, settings.model_root, read_only=True),
            volume_mount(TMP_VOLUME, TMP_PATH),
        ],
    }


def _engine_container(
    model: Model, *, settings: OperatorSettings, model_path: str, scratch: int
) -> dict[str, Any]:
    """The vLLM container; ``scratch`` is the GiB its pod's emptyDirs may hold."""
    serving = _serving(model)
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": serving.image or settings.vllm_image,
        "command": ["vllm", "serve", model_path],
        # The image's working directory belongs to root; anything written relative lands here.
        "workingDir": TMP_PATH,
        "args": vllm_args(model, settings=settings),
        "ports": [{"name": PORT_NAME, "containerPort": serving.service.port, "protocol": "TCP"}],
        "env": _engine_env(serving),
        **({"envFrom": [s.to_wire() for s in serving.env_from]} if serving.env_from else {}),
        "resources": with_ephemeral_storage(
            _engine_resources(serving),
            request=ENGINE_EPHEMERAL_REQUEST,
            limit=f"{scratch + ENGINE_ROOT_HEADROOM_GIB + LOG_HEADROOM_GIB}Gi",
        ),
    }
    probes = serving.probes
    container |= {
        "startupProbe": _probe(STARTUP_PROBE, probes.startup if probes else None),
        "readinessProbe": _probe(READINESS_PROBE, probes.readiness if probes else None),
        "livenessProbe": _probe(LIVENESS_PROBE, probes.liveness if probes else None),
        "lifecycle": {"preStop": {"sleep": {"seconds": PRE_STOP_SLEEP_SECONDS}}},
        # vLLM (Triton, torch.compile, its own libraries) writes outside the mounted dirs.
        "securityContext": container_security_context(read_only_root=False),
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [
            volume_mount(WEIGHTS_VOLUME, settings.model_root, read_only=True),
            volume_mount(SHM_VOLUME, "/dev/shm"),
            volume_mount(TMP_VOLUME, TMP_PATH),
        ],
    }
    return container


def build_deployment(
    model: Model,
    *,
    settings: OperatorSettings,
    model_path: str,
    revision: str,
    claim_name: str,
) -> Manifest:
    """The vLLM Deployment serving ``model_path`` (``revision``) from ``claim_name``, read-only.

    An init container refuses to start vLLM on a directory whose manifest is missing or does
    not match, and rollouts surge before they take capacity away (1/0 by default).
    """
    serving = _serving(model)
    affinity, spread = scheduling(model)
    volumes = [
        claim_volume(claim_name, read_only=True),
        {"name": SHM_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": str(serving.shm_size)}},
        tmp_volume(str(serving.tmp_size)),
    ]
    scratch = _gib_ceiling(str(serving.tmp_size))  # the only disk-backed emptyDir
    engine = _engine_container(model, settings=settings, model_path=model_path, scratch=scratch)
    pod_spec: dict[str, Any] = {
        "securityContext": pod_security_context(),
        # Serving pods never talk to the API server.
        "automountServiceAccountToken": False,
        # Service links would inject e.g. VLLM_PORT=tcp://... for a Service named "vllm",
        # which vLLM reads as its own setting and fails on.
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": serving.termination_grace_period_seconds,
        "readinessGates": [{"conditionType": SMOKE_TEST_CONDITION}],
        "initContainers": [_verify_container(model, settings=settings, model_path=model_path)],
        "containers": [engine],
        "volumes": volumes,
    }
    if serving.node_selector:
        pod_spec["nodeSelector"] = dict(serving.node_selector)
    if serving.tolerations:
        pod_spec["tolerations"] = [t.to_wire() for t in serving.tolerations]
    if affinity:
        pod_spec["affinity"] = affinity
    if spread:
        pod_spec["topologySpreadConstraints"] = spread
    # The Model's own list (an empty one included), else the installation's default.
    pull_secrets = serving.image_pull_secrets
    if pull_secrets is None:
        pull_secrets = settings.defaults.image_pull_secrets
    if pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": name} for name in pull_secrets]
    for key, value in (
        ("serviceAccountName", serving.service_account_name),
        ("priorityClassName", serving.priority_class_name),
        ("runtimeClassName", serving.runtime_class_name),
    ):
        if value:
            pod_spec[key] = value

    rollout = serving.rollout
    annotations = {REVISION_ANNOTATION: revision, MODEL_PATH_ANNOTATION: model_path}
    manifest: Manifest = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": object_meta(model, serving_name(model), "serving", annotations=annotations),
        "spec": {
            "replicas": serving.replicas,
            "selector": {"matchLabels": selector_labels(model, "serving")},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {
                    "maxSurge": rollout.max_surge,
                    "maxUnavailable": rollout.max_unavailable,
                },
            },
            "progressDeadlineSeconds": rollout.progress_deadline_seconds,
            "revisionHistoryLimit": REVISION_HISTORY_LIMIT,
            "template": {
                "metadata": {
                    # The operator's labels and annotations last: the API refuses a user's key
                    # that would replace one, and these win should one get past it.
                    "labels": {**(serving.pod_labels or {}), **labels(model, "serving")},
                    "annotations": {
                        **(serving.pod_annotations or {}),
                        **annotations,
                        # `kubectl logs` and `exec` pick the engine, not the init container.
                        "kubectl.kubernetes.io/default-container": CONTAINER_NAME,
                    },
                },
                "spec": pod_spec,
            },
        },
    }
    return stamp_spec_hash(manifest)


def build_service(model: Model) -> Manifest:
    """The Service ``<name>`` in front of the serving pods, port ``http``."""
    serving = _serving(model)
    annotations = serving.service.annotations
    manifest: Manifest = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_meta(model, serving_name(model), "serving", annotations=annotations),
        "spec": {
            "type": serving.service.type,
            "selector": selector_labels(model, "serving"),
            "ports": [
                {
                    "name": PORT_NAME,
                    "port": serving.service.port,
                    "targetPort": PORT_NAME,
                    "protocol": "TCP",
                }
            ],
        },
    }
    return stamp_spec_hash(manifest)


def build_ingress(model: Model) -> Manifest:
    """The Ingress ``<name>`` routing ``service.ingress.host`` to the Service (https where it
    names a TLS Secret)."""
    service = _serving(model).service
    ingress = service.ingress
    if ingress is None:
        raise ValueError(f"Model {model.metadata.name!r} asks for no Ingress")
    backend = {"service": {"name": serving_name(model), "port": {"number": service.port}}}
    spec: dict[str, Any] = {
        "rules": [
            {
                "host": ingress.host,
                "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]},
            }
        ]
    }
    if ingress.class_name:
        spec["ingressClassName"] = ingress.class_name
    if ingress.tls_secret_name:
        spec["tls"] = [{"hosts": [ingress.host], "secretName": ingress.tls_secret_name}]
    manifest: Manifest = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": object_meta(
            model, serving_name(model), "serving", annotations=ingress.annotations
        ),
        "spec": spec,
    }
    return stamp_spec_hash(manifest)


def external_url(model: Model) -> str | None:
    """The OpenAI API's URL through the Ingress, if the Model has one."""
    ingress = _serving(model).service.ingress
    if ingress is None:
        return None
    return f"{'https' if ingress.tls_secret_name else 'http'}://{ingress.host}/v1"


def wants_disruption_budget(serving: Serving | None) -> bool:
    """Whether the serving pods get a PodDisruptionBudget: enabled, and 2 replicas or more."""
    return (
        serving is not None
        and serving.disruption_budget.enabled
        and serving.replicas >= DISRUPTION_BUDGET_MIN_REPLICAS
    )


def build_disruption_budget(model: Model) -> Manifest:
    """The PodDisruptionBudget ``<name>`` of the serving pods: a drain or another eviction
    takes at most ``disruptionBudget.maxUnavailable`` of them at once. A pod that is not Ready
    (still loading, crash-looping) may always be evicted, so a broken replica never blocks a
    node's drain."""
    serving = _serving(model)
    manifest: Manifest = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": object_meta(model, serving_name(model), "serving"),
        "spec": {
            "maxUnavailable": serving.disruption_budget.max_unavailable,
            "selector": {"matchLabels": selector_labels(model, "serving")},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }
    return stamp_spec_hash(manifest)
