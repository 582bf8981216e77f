"""The builders turn a Model into the children a platform engineer expects, the same every time.

Snapshots under tests/unit/snapshots/ show each child of three examples in full; regenerate them
with ``UPDATE_SNAPSHOTS=1`` and review the diff. The other tests pin the behaviour that matters
when a snapshot is updated carelessly.
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelfleet.api.v1alpha1 import Model
from modelfleet.builders.common import SPEC_HASH_ANNOTATION, Manifest, spec_hash
from modelfleet.builders.download import build_download_job, build_verify_job
from modelfleet.builders.naming import (
    download_job_name,
    model_path,
    pvc_model_path,
    verify_job_name,
    weights_claim_name,
)
from modelfleet.builders.serving import (
    build_deployment,
    build_disruption_budget,
    build_service,
    serving_endpoint,
    wants_disruption_budget,
)
from modelfleet.builders.storage import build_weights_claim, derive_claim_size
from modelfleet.settings import OperatorSettings
from tests.support.crdschema import REPO_ROOT

pytestmark = pytest.mark.unit

SNAPSHOTS = Path(__file__).parent / "snapshots"
NAMESPACE = "default"
UID = "00000000-0000-0000-0000-000000000001"
SHA = "0123456789abcdef0123456789abcdef01234567"
OLD_SHA = "fedcba9876543210fedcba9876543210fedcba98"
# Explicit values so a MODELFLEET_* variable in the environment cannot change a snapshot.
SETTINGS = OperatorSettings(
    downloader_image="ghcr.io/modelfleet/downloader:0.1.0",
    vllm_image="vllm/vllm-openai:v0.32.0",
    model_root="/models",
    job_service_account="modelfleet-job",
)
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def load_example(
    name: str, *, new_source: dict[str, Any] | None = None, **spec_overrides: Any
) -> Model:
    """An example Model as the API server would hand it over, with spec changes merged in
    (``new_source`` replaces the source instead)."""
    body = yaml.safe_load((REPO_ROOT / "examples" / f"{name}.yaml").read_text())
    body["metadata"].update(namespace=NAMESPACE, uid=UID)
    _deep_update(body["spec"], spec_overrides)
    if new_source is not None:
        body["spec"]["source"] = new_source
    return Model.model_validate(body)


def _deep_update(target: dict[str, Any], changes: dict[str, Any]) -> None:
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _deep_update(target[key], value)
        else:
            target[key] = value


def deployment_for(model: Model, revision: str = SHA) -> Manifest:
    if model.spec.source.pvc is not None:
        path = pvc_model_path(SETTINGS, model)
    else:
        source = model.spec.source.huggingface or model.spec.source.modelscope
        assert source is not None
        path = model_path(SETTINGS, source.repo, revision)
    return build_deployment(
        model,
        settings=SETTINGS,
        model_path=path,
        revision=revision,
        claim_name=weights_claim_name(model),
    )


def download_job_for(model: Model, revision: str = "main", retry_token: str = "") -> Manifest:
    return build_download_job(
        model,
        settings=SETTINGS,
        revision=revision,
        retry_token=retry_token,
        protected_paths=[],
    )


def _render_downloaded(example: str) -> dict[str, Manifest]:
    model = load_example(example)
    assert model.spec.storage.size is not None
    repo = model.spec.source.huggingface.repo if model.spec.source.huggingface else ""
    return {
        "claim": build_weights_claim(model, model.spec.storage.size),
        "download-job": build_download_job(
            model,
            settings=SETTINGS,
            revision="main",
            retry_token="1",
            protected_paths=[model_path(SETTINGS, repo, OLD_SHA)],
        ),
        "deployment": deployment_for(model),
        "service": build_service(model),
        **(
            {"disruption-budget": build_disruption_budget(model)}
            if wants_disruption_budget(model.spec.serving)
            else {}
        ),
    }


def _render_pvc(example: str) -> dict[str, Manifest]:
    model = load_example(example)
    return {
        "verify-job": build_verify_job(model, settings=SETTINGS, retry_token=""),
        "deployment": deployment_for(model, revision="preloaded"),
        "service": build_service(model),
    }


RENDERERS: dict[str, Callable[[str], dict[str, Manifest]]] = {
    "model-tiny": _render_downloaded,
    "model-gated": _render_downloaded,
    "model-pvc": _render_pvc,
}
SNAPSHOT_CASES = [
    (example, child)
    for example, render in RENDERERS.items()
    for child in render(example)  # cheap: pure functions
]


def _dump(manifest: Manifest) -> str:
    return yaml.safe_dump(manifest, sort_keys=False, width=100)


@pytest.mark.parametrize(("example", "child"), SNAPSHOT_CASES, ids=str)
def test_snapshot(example: str, child: str) -> None:
    rendered = _dump(RENDERERS[example](example)[child])
    path = SNAPSHOTS / f"{example}.{child}.yaml"
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        SNAPSHOTS.mkdir(exist_ok=True)
        path.write_text(rendered)
    assert path.is_file(), f"no snapshot {path.name}: run with UPDATE_SNAPSHOTS=1 and review it"
    assert rendered == path.read_text()


def test_every_snapshot_file_belongs_to_a_case() -> None:
    expected = {f"{example}.{child}.yaml" for example, child in SNAPSHOT_CASES}
    assert {p.name for p in SNAPSHOTS.glob("*.yaml")} == expected


# --- secrets ---------------------------------------------------------------------------------


def _containers(pod_spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from pod_spec.get("initContainers", [])
    yield from pod_spec["containers"]


def _env(manifest: Manifest, container: str) -> list[dict[str, Any]]:
    pod = manifest["spec"]["template"]["spec"]
    (match,) = [c for c in _containers(pod) if c["name"] == container]
    env: list[dict[str, Any]] = match["env"]
    return env


def _env_value(manifest: Manifest, container: str, name: str) -> str | None:
    values = [e.get("value") for e in _env(manifest, container) if e["name"] == name]
    assert len(values) <= 1, f"{name} set twice"
    return values[0] if values else None


@pytest.mark.parametrize(
    ("source", "token_env"),
    [
        ({"huggingface": {"repo": "org/gated", "tokenSecretRef": {"name": "tok", "key": "k"}}},
         "HF_TOKEN"),
        ({"modelscope": {"repo": "org/gated", "tokenSecretRef": {"name": "tok", "key": "k"}}},
         "MODELSCOPE_API_TOKEN"),
    ],
    ids=["huggingface", "modelscope"],
)  # fmt: skip
def test_token_reaches_the_job_only_through_a_secret_key_ref(
    source: dict[str, Any], token_env: str
) -> None:
    model = load_example("model-gated", new_source=source)
    job = download_job_for(model)

    (token,) = [e for e in _env(job, "download") if "TOKEN" in e["name"]]
    assert token == {
        "name": token_env,
        "valueFrom": {"secretKeyRef": {"name": "tok", "key": "k"}},
    }
    # The variable appears once in the whole Job, in the secretKeyRef entry above.
    assert json.dumps(job).count(token_env) == 1


def test_a_public_repo_gets_no_token_variable() -> None:
    job = download_job_for(load_example("model-tiny"))
    assert not [e for e in _env(job, "download") if "TOKEN" in e["name"]]


# --- determinism and the spec hash -----------------------------------------------------------


def _all_children(model: Model) -> list[Manifest]:
    return [
        build_weights_claim(model, "5Gi"),
        download_job_for(model),
        deployment_for(model),
        build_service(model),
        build_disruption_budget(model),
    ]


def test_the_same_model_builds_the_same_children() -> None:
    first = _all_children(load_example("model-gated"))
    second = _all_children(load_example("model-gated"))
    assert [_dump(m) for m in first] == [_dump(m) for m in second]
    for manifest in first:
        annotation = manifest["metadata"]["annotations"][SPEC_HASH_ANNOTATION]
        assert re.fullmatch(r"[0-9a-f]{16}", annotation)
        # The annotation is the hash of everything else: recomputing it gives the same value.
        assert spec_hash(manifest) == annotation


def _hash(manifest: Manifest) -> str:
    value: str = manifest["metadata"]["annotations"][SPEC_HASH_ANNOTATION]
    return value


def test_spec_hash_changes_with_replicas_and_revision_and_only_then() -> None:
    base = load_example("model-tiny")
    scaled = load_example("model-tiny", serving={"replicas": 5})

    assert _hash(deployment_for(scaled)) != _hash(deployment_for(base))
    assert _hash(deployment_for(base, revision=OLD_SHA)) != _hash(deployment_for(base))
    assert _hash(download_job_for(base, revision="v2")) != _hash(download_job_for(base))
    # The Service does not depend on replicas: scaling is a no-op for it.
    assert _hash(build_service(scaled)) == _hash(build_service(base))


# --- serving ---------------------------------------------------------------------------------


def _pod(manifest: Manifest) -> dict[str, Any]:
    pod: dict[str, Any] = manifest["spec"]["template"]["spec"]
    return pod


def _container(manifest: Manifest, name: str) -> dict[str, Any]:
    (match,) = [c for c in _containers(_pod(manifest)) if c["name"] == name]
    return match


def test_gpus_are_limited_and_requested_beside_the_users_resources() -> None:
    model = load_example(
        "model-gated",
        serving={
            "gpu": {"count": 4, "resourceName": "amd.com/gpu"},
            "tensorParallelSize": 4,
            "resources": {"limits": {"memory": "64Gi"}, "requests": {"cpu": "8"}},
        },
    )
    resources = _container(deployment_for(model), "vllm")["resources"]
    assert resources == {
        "limits": {"memory": "64Gi", "amd.com/gpu": "4", "ephemeral-storage": "21Gi"},
        "requests": {"cpu": "8", "amd.com/gpu": "4", "ephemeral-storage": "2Gi"},
    }


def test_the_users_ephemeral_storage_is_kept_as_written() -> None:
    model = load_example(
        "model-gated",
        serving={"resources": {"limits": {"ephemeral-storage": "50Gi"}}},
        download={"resources": {"requests": {"ephemeral-storage": "3Gi"}}},
    )
    vllm = _container(deployment_for(model), "vllm")["resources"]
    assert vllm["limits"]["ephemeral-storage"] == "50Gi"
    assert "ephemeral-storage" not in vllm.get("requests", {})
    download = _container(download_job_for(model), "download")["resources"]
    assert download == {"requests": {"ephemeral-storage": "3Gi"}}


def test_a_cpu_only_model_requests_no_gpu() -> None:
    model = load_example("model-tiny", serving={"gpu": {"count": 0}})
    vllm = _container(deployment_for(model), "vllm")
    assert not [name for bucket in vllm["resources"].values() for name in bucket if "gpu" in name]
    assert vllm["args"][vllm["args"].index("--tensor-parallel-size") + 1] == "1"


@pytest.mark.parametrize(
    ("serving", "expected"),
    [
        ({"gpu": {"count": 2}, "tensorParallelSize": 2}, "2"),
        ({"gpu": {"count": 4}, "tensorParallelSize": 2}, "2"),
        ({"gpu": {"count": 4}, "tensorParallelSize": None}, "4"),
    ],
)
def test_tensor_parallel_size(serving: dict[str, Any], expected: str) -> None:
    model = load_example("model-gated", serving=serving)
    args = _container(deployment_for(model), "vllm")["args"]
    assert args[args.index("--tensor-parallel-size") + 1] == expected


def test_engine_command_line() -> None:
    model = load_example(
        "model-tiny",
        serving={
            "servedModelName": "tiny-chat",
            "gpuMemoryUtilization": 0.85,
            "args": ["--max-num-seqs", "8"],
            "loraAdapters": [
                {"name": "sql", "path": "/adapters/sql"},
                {"name": "tuned", "finetuneJob": "ft-1"},
            ],
        },
    )
    vllm = _container(deployment_for(model), "vllm")
    path = f"/models/modelfleet-test/tiny-llama/{SHA}"
    assert vllm["command"] == ["vllm", "serve", path]
    assert vllm["args"] == [
        "--host", "0.0.0.0", "--port", "8000",
        "--served-model-name", "tiny-chat",
        "--tensor-parallel-size", "1",
        "--max-model-len", "512",
        "--dtype", "float32",
        "--gpu-memory-utilization", "0.85",
        "--enable-lora", "--lora-modules",
        "sql=/models/adapters/sql",
        "tuned=/models/finetunes/default/ft-1/lora",
        # The user's arguments come last, so they override ours.
        "--max-num-seqs", "8",
    ]  # fmt: skip
    init = _container(deployment_for(model), "verify-weights")
    assert _env_value(deployment_for(model), "verify-weights", "MODELFLEET_MODEL_PATH") == path
    assert _env_value(deployment_for(model), "verify-weights", "MODELFLEET_REQUIRE_MANIFEST") == (
        "true"
    )
    assert init["command"] == ["python", "-m", "modelfleet.downloader"]


def test_dtype_auto_and_the_default_served_name() -> None:
    model = load_example("model-gated")
    args = _container(deployment_for(model), "vllm")["args"]
    assert "--dtype" not in args
    assert args[args.index("--served-model-name") + 1] == "llama-8b"


def test_user_env_wins_without_repeating_a_name() -> None:
    model = load_example(
        "model-tiny",
        serving={"env": [{"name": "HF_HUB_OFFLINE", "value": "0"}, {"name": "X", "value": "1"}]},
    )
    deployment = deployment_for(model)
    env = _env(deployment, "vllm")
    names = [e["name"] for e in env]
    assert len(names) == len(set(names))
    assert names[-2:] == ["HF_HUB_OFFLINE", "X"]
    assert _env_value(deployment, "vllm", "HF_HUB_OFFLINE") == "0"
    assert _env_value(deployment, "vllm", "TRANSFORMERS_OFFLINE") == "1"


def test_rollout_surges_before_taking_capacity_by_default() -> None:
    default = deployment_for(load_example("model-tiny"))["spec"]
    assert default["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    tuned = deployment_for(
        load_example("model-tiny", serving={"rollout": {"maxSurge": 0, "maxUnavailable": 1}})
    )["spec"]
    assert tuned["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}


def test_startup_probe_allows_a_thirty_minute_load() -> None:
    vllm = _container(deployment_for(load_example("model-gated")), "vllm")
    startup = vllm["startupProbe"]
    assert startup["httpGet"] == {"path": "/health", "port": "http"}
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 30 * 60
    assert vllm["readinessProbe"]["httpGet"]["path"] == "/health"
    assert vllm["livenessProbe"]["httpGet"]["path"] == "/health"


USER_AFFINITY: dict[str, Any] = {
    "nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [
                {"matchExpressions": [{"key": "gpu", "operator": "In", "values": ["a100"]}]}
            ]
        }
    },
    "podAntiAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {
                "weight": 10,
                "podAffinityTerm": {
                    "labelSelector": {"matchLabels": {"team": "noisy"}},
                    "topologyKey": "kubernetes.io/hostname",
                },
            }
        ]
    },
}
SERVING_PODS = {"modelfleet.io/model": "llama-8b", "app.kubernetes.io/component": "serving"}
SAME_MODEL_ON_THE_SAME_NODE = {
    "weight": 100,
    "podAffinityTerm": {
        "labelSelector": {"matchLabels": SERVING_PODS},
        "topologyKey": "kubernetes.io/hostname",
    },
}


def test_spread_prefers_other_nodes_and_keeps_user_affinity() -> None:
    model = load_example(
        "model-gated", serving={"schedulingStrategy": "spread", "affinity": USER_AFFINITY}
    )
    pod = _pod(deployment_for(model))
    assert pod["topologySpreadConstraints"] == [
        {
            "maxSkew": 1,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": SERVING_PODS},
        }
    ]
    affinity = pod["affinity"]
    assert affinity["nodeAffinity"] == USER_AFFINITY["nodeAffinity"]
    assert affinity["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"] == [
        *USER_AFFINITY["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"],
        SAME_MODEL_ON_THE_SAME_NODE,
    ]
    assert "podAffinity" not in affinity
    # The Model's own spec is not modified by building.
    assert model.spec.serving is not None
    assert model.spec.serving.affinity == USER_AFFINITY


def test_binpack_prefers_nodes_that_already_serve_the_model() -> None:
    model = load_example(
        "model-gated", serving={"schedulingStrategy": "binpack", "affinity": USER_AFFINITY}
    )
    pod = _pod(deployment_for(model))
    assert "topologySpreadConstraints" not in pod
    assert pod["affinity"]["podAffinity"] == {
        "preferredDuringSchedulingIgnoredDuringExecution": [SAME_MODEL_ON_THE_SAME_NODE]
    }
    assert pod["affinity"]["podAntiAffinity"] == USER_AFFINITY["podAntiAffinity"]
    assert pod["affinity"]["nodeAffinity"] == USER_AFFINITY["nodeAffinity"]


def test_no_strategy_passes_the_user_affinity_through() -> None:
    model = load_example("model-gated", serving={"affinity": copy.deepcopy(USER_AFFINITY)})
    pod = _pod(deployment_for(model))
    assert pod["affinity"] == USER_AFFINITY
    assert "topologySpreadConstraints" not in pod
    assert "affinity" not in _pod(deployment_for(load_example("model-gated")))


def test_service_selects_the_deployments_pods() -> None:
    model = load_example("model-tiny", serving={"service": {"type": "NodePort", "port": 9000}})
    service = build_service(model)
    deployment = deployment_for(model)
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["type"] == "NodePort"
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 9000, "targetPort": "http", "protocol": "TCP"}
    ]
    assert _container(deployment, "vllm")["ports"][0]["containerPort"] == 9000
    assert serving_endpoint(model) == "http://tiny.default.svc:9000/v1"


def test_a_cache_only_model_has_no_serving_children() -> None:
    model = load_example("model-cache-only")
    with pytest.raises(ValueError, match="only caches weights"):
        build_service(model)


# --- volumes ---------------------------------------------------------------------------------


def _weights(manifest: Manifest) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    pod = _pod(manifest)
    (volume,) = [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
    mounts = [m for c in _containers(pod) for m in c["volumeMounts"] if m["name"] == volume["name"]]
    return volume, mounts


def test_serving_mounts_the_weights_read_only() -> None:
    volume, mounts = _weights(deployment_for(load_example("model-tiny")))
    assert volume["persistentVolumeClaim"] == {"claimName": "tiny-weights", "readOnly": True}
    assert len(mounts) == 2  # the init container and vLLM
    assert all(m["readOnly"] is True and m["mountPath"] == "/models" for m in mounts)


def test_the_verify_job_mounts_the_users_claim_read_only() -> None:
    model = load_example("model-pvc")
    job = build_verify_job(model, settings=SETTINGS, retry_token="")
    volume, mounts = _weights(job)
    assert volume["persistentVolumeClaim"] == {"claimName": "preloaded-weights", "readOnly": True}
    assert [m["readOnly"] for m in mounts] == [True]
    assert _env_value(job, "download", "MODELFLEET_MODEL_PATH") == "/models/qwen2.5-7b-instruct"
    assert _env_value(job, "download", "MODELFLEET_MODE") == "verify"
    assert not [e for e in _env(job, "download") if "TOKEN" in e["name"]]
    # The preloaded directory has no manifest of ours; the init container must not demand one.
    serving = deployment_for(model, revision="preloaded")
    assert _env_value(serving, "verify-weights", "MODELFLEET_REQUIRE_MANIFEST") == "false"


def test_the_download_job_mounts_the_claim_read_write() -> None:
    volume, mounts = _weights(download_job_for(load_example("model-tiny")))
    assert volume["persistentVolumeClaim"] == {"claimName": "tiny-weights"}
    assert [m.get("readOnly", False) for m in mounts] == [False]
    assert mounts[0]["mountPath"] == "/models"


def test_a_pvc_path_cannot_climb_out_of_the_volume() -> None:
    with pytest.raises(ValueError, match=r"spec\.source\.pvc\.path"):
        load_example("model-pvc", source={"pvc": {"path": "/../../etc"}})
    # And should one get past the schema, the builder still keeps it under the root.
    model = load_example("model-pvc")
    assert model.spec.source.pvc is not None
    model.spec.source.pvc.path = "/../../etc"
    assert pvc_model_path(SETTINGS, model) == "/models/etc"
    root = load_example("model-pvc", source={"pvc": {"path": "/"}})
    assert pvc_model_path(SETTINGS, root) == "/models"


# --- the download Job ------------------------------------------------------------------------


def test_download_job_retries_and_fails_fast_on_permanent_errors() -> None:
    model = load_example(
        "model-tiny", download={"retries": 7, "activeDeadlineSeconds": 3600, "verify": "size"}
    )
    job = download_job_for(model, retry_token="abc")
    spec = job["spec"]
    assert spec["backoffLimit"] == 7
    assert spec["activeDeadlineSeconds"] == 3600
    assert "ttlSecondsAfterFinished" not in spec
    assert {
        "action": "FailJob",
        "onExitCodes": {"containerName": "download", "operator": "In", "values": [2]},
    } in spec["podFailurePolicy"]["rules"]
    assert _pod(job)["restartPolicy"] == "Never"
    assert _pod(job)["serviceAccountName"] == "modelfleet-job"
    download = _container(job, "download")
    assert download["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert download["terminationMessagePath"] == "/dev/termination-log"
    assert job["metadata"]["annotations"]["modelfleet.io/retry-token"] == "abc"
    assert job["metadata"]["annotations"]["modelfleet.io/revision"] == "main"
    assert _env_value(job, "download", "MODELFLEET_VERIFY") == "size"


def test_download_env_follows_the_source() -> None:
    tiny = download_job_for(load_example("model-tiny"), revision="v1.0")
    assert _env_value(tiny, "download", "HF_ENDPOINT") == "http://127.0.0.1:18765"
    assert _env_value(tiny, "download", "HF_HUB_DISABLE_XET") == "1"
    assert _env_value(tiny, "download", "MODELFLEET_REVISION") == "v1.0"
    assert _env_value(tiny, "download", "MODELFLEET_STATUS_TARGET") == "default/tiny"
    assert _env_value(tiny, "download", "MODELFLEET_ALLOW_PATTERNS") is None

    qwen = build_download_job(
        load_example("model-qwen"),
        settings=SETTINGS,
        revision="main",
        retry_token="",
        protected_paths=["/models/Qwen/Qwen2.5-0.5B-Instruct/" + OLD_SHA],
    )
    assert _env_value(qwen, "download", "HF_ENDPOINT") is None
    assert _env_value(qwen, "download", "HF_HUB_DISABLE_XET") is None
    allow = _env_value(qwen, "download", "MODELFLEET_ALLOW_PATTERNS")
    assert allow is not None
    assert json.loads(allow) == ["*.json", "*.safetensors", "*.txt"]
    protected = _env_value(qwen, "download", "MODELFLEET_PROTECTED_PATHS")
    assert protected is not None
    assert json.loads(protected) == ["/models/Qwen/Qwen2.5-0.5B-Instruct/" + OLD_SHA]


def test_job_names_change_with_content_and_retry_token() -> None:
    model = load_example("model-tiny")
    names = {
        download_job_for(model)["metadata"]["name"],
        download_job_for(model, retry_token="1")["metadata"]["name"],
        download_job_for(model, revision="v2")["metadata"]["name"],
        download_job_for(
            load_example("model-tiny", source={"huggingface": {"repo": "other/repo"}})
        )["metadata"]["name"],
    }
    assert len(names) == 4
    assert all(re.fullmatch(r"tiny-dl-[0-9a-f]{8}", n) for n in names)
    # Settings that do not change the weights keep the name: a finished Job still counts.
    more_retries = load_example("model-tiny", download={"retries": 9})
    assert (
        download_job_for(more_retries)["metadata"]["name"]
        == download_job_for(model)["metadata"]["name"]
    )


def test_names_of_a_48_character_model_fit_in_63() -> None:
    name = "m" + "x" * 46 + "z"
    assert len(name) == 48
    body = yaml.safe_load((REPO_ROOT / "examples" / "model-gated.yaml").read_text())
    body["metadata"] = {"name": name, "namespace": NAMESPACE, "uid": UID}
    model = Model.model_validate(body)
    names = [m["metadata"]["name"] for m in _all_children(model)]
    names += [download_job_name(model, "k" * 300, "t" * 300), verify_job_name(model, "k", "t")]
    for child in names:
        assert len(child) <= 63, child
        assert DNS_1035.fullmatch(child), child
    for manifest in _all_children(model):
        assert all(len(v) <= 63 for v in manifest["metadata"]["labels"].values())


# --- labels, owners, storage -----------------------------------------------------------------


def test_every_child_and_pod_template_is_labelled_and_owned() -> None:
    model = load_example("model-gated")
    expected_owner = {
        "apiVersion": "modelfleet.io/v1alpha1",
        "kind": "Model",
        "name": "llama-8b",
        "uid": UID,
        "controller": True,
        "blockOwnerDeletion": True,
    }
    pvc_model = load_example("model-pvc")
    children = [
        *_all_children(model),
        build_verify_job(pvc_model, settings=SETTINGS, retry_token=""),
    ]
    components = ["weights", "download", "serving", "serving", "serving", "verify"]
    for manifest, component in zip(children, components, strict=True):
        owner_name = manifest["metadata"]["labels"]["modelfleet.io/model"]
        expected = {
            "app.kubernetes.io/managed-by": "modelfleet",
            "app.kubernetes.io/name": "modelfleet",
            "app.kubernetes.io/instance": owner_name,
            "app.kubernetes.io/component": component,
            "modelfleet.io/model": owner_name,
        }
        assert manifest["metadata"]["labels"] == expected
        assert manifest["metadata"]["namespace"] == NAMESPACE
        assert manifest["metadata"]["ownerReferences"] == [{**expected_owner, "name": owner_name}]
        if "template" in manifest["spec"]:
            assert manifest["spec"]["template"]["metadata"]["labels"] == expected


def test_a_retained_claim_has_no_owner() -> None:
    retained = build_weights_claim(
        load_example("model-gated", storage={"retainOnDelete": True}), "40Gi"
    )
    assert "ownerReferences" not in retained["metadata"]
    owned = build_weights_claim(load_example("model-gated"), "40Gi")
    assert owned["metadata"]["ownerReferences"][0]["uid"] == UID


def test_claim_spec() -> None:
    claim = build_weights_claim(
        load_example("model-gated", storage={"storageClassName": "fast"}), "42Gi"
    )
    assert claim["metadata"]["name"] == "llama-8b-weights"
    assert claim["spec"] == {
        "accessModes": ["ReadWriteMany"],
        "storageClassName": "fast",
        "resources": {"requests": {"storage": "42Gi"}},
    }
    assert "storageClassName" not in build_weights_claim(load_example("model-tiny"), "1Gi")["spec"]


def test_no_claim_is_built_over_a_users_claim() -> None:
    # An owner reference on it would let garbage collection delete the user's weights.
    with pytest.raises(ValueError, match="existing claim"):
        build_weights_claim(load_example("model-pvc"), "1Gi")
    existing = load_example("model-tiny", storage={"size": None, "existingClaim": "shared"})
    with pytest.raises(ValueError, match="existing claim"):
        build_weights_claim(existing, "1Gi")
    assert weights_claim_name(existing) == "shared"


GIB = 1024**3


@pytest.mark.parametrize(
    ("total_bytes", "keep", "expected"),
    [
        (0, 2, "1Gi"),
        (1, 1, "1Gi"),
        (10 * GIB, 2, "24Gi"),
        (5 * GIB, 1, "6Gi"),  # exactly 6 GiB needed: no extra Gi from rounding
        (5 * GIB + 1, 1, "7Gi"),
        (16_000_000_000, 3, "54Gi"),  # 57.6e9 bytes = 53.6 GiB
    ],
)
def test_derived_claim_size(total_bytes: int, keep: int, expected: str) -> None:
    assert derive_claim_size(total_bytes, keep) == expected
