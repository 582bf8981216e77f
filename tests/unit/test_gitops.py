"""GitOps health of our objects, judged by the real tools' logic: the Argo CD Lua health check
run by a Lua 5.1 interpreter (the dialect of Argo CD's gopher-lua), and kstatus
(sigs.k8s.io/cli-utils, as Flux uses it) built from its Go module by hack/build-tools.sh."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from lupa import lua51

from tests.support.cluster import REPO_ROOT, tool_path

pytestmark = pytest.mark.unit

ARGOCD = REPO_ROOT / "examples/argocd"
FLUX = REPO_ROOT / "examples/flux"
API_VERSION = "modelfleet.io/v1alpha1"


def cond(type_: str, status: bool, reason: str, message: str = "") -> dict[str, Any]:
    return {
        "type": type_,
        "status": "True" if status else "False",
        "reason": reason,
        "message": message,
        "lastTransitionTime": "2025-01-01T00:00:00Z",
        "observedGeneration": 2,
    }


def obj(
    kind: str, conditions: list[dict[str, Any]], *, observed: int | None = 2, **status: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": {"name": "sample", "namespace": "models", "generation": 2},
        "spec": {},
        "status": {"conditions": conditions, **status},
    }
    if observed is not None:
        body["status"]["observedGeneration"] = observed
    return body


@dataclass(frozen=True)
class Sample:
    name: str
    body: dict[str, Any]
    argocd: str
    kstatus: str


# Each sample is a status the operator writes (reconcile/model/decide.py: Ready, Stalled and
# Reconciling are set together on every reconcile).
SAMPLES = [
    Sample(
        "downloading",
        obj(
            "Model",
            [
                cond("Downloaded", False, "Downloading", "3/7 files"),
                cond("Serving", False, "Pending"),
                cond("Ready", False, "Downloading", "3/7 files"),
                cond("Stalled", False, "Ready"),
                cond("Reconciling", True, "Downloading", "3/7 files"),
            ],
            download={"phase": "Downloading", "bytesDone": 10, "bytesTotal": 100},
        ),
        "Progressing",
        "InProgress",
    ),
    Sample(
        "ready",
        obj(
            "Model",
            [
                cond("Downloaded", True, "Downloaded"),
                cond("Serving", True, "Serving", "2/2 replicas ready"),
                cond("Ready", True, "Ready", "weights verified"),
                cond("Stalled", False, "Ready"),
                cond("Reconciling", False, "Ready"),
            ],
        ),
        "Healthy",
        "Current",
    ),
    Sample(
        "stalled",
        obj(
            "Model",
            [
                cond("Downloaded", False, "RepoNotFound", "repository not found"),
                cond("Ready", False, "RepoNotFound", "repository not found"),
                cond("Stalled", True, "RepoNotFound", "repository not found"),
                cond("Reconciling", False, "Ready"),
            ],
        ),
        "Degraded",
        "Failed",
    ),
    Sample(
        "rollout-stalled",
        obj(
            "Model",
            [
                cond("Downloaded", True, "Downloaded"),
                # The old pods still serve while the new ones cannot start.
                cond("Serving", True, "RolloutStalled", "new pods not ready after 600s"),
                cond("Ready", False, "RolloutStalled", "new pods not ready after 600s"),
                cond("Stalled", True, "RolloutStalled", "new pods not ready after 600s"),
                cond("Reconciling", False, "Ready"),
            ],
        ),
        "Degraded",
        "Failed",
    ),
    Sample(
        "rolling-out",
        obj(
            "Model",
            [
                cond("Downloaded", True, "Downloaded"),
                cond("Serving", True, "RollingOut", "1/2 updated"),
                cond("Ready", False, "RollingOut", "1/2 updated"),
                cond("Stalled", False, "Ready"),
                cond("Reconciling", True, "RollingOut", "1/2 updated"),
            ],
        ),
        "Progressing",
        "InProgress",
    ),
    Sample(
        "stopped",
        obj(
            "Model",
            [
                cond("Downloaded", True, "Downloaded"),
                cond("Serving", False, "Stopped", "replicas is 0: serving is stopped"),
                cond("Ready", True, "Ready", "weights verified"),
                cond("Stalled", False, "Ready"),
                cond("Reconciling", False, "Ready"),
            ],
        ),
        "Healthy",
        "Current",
    ),
    Sample(
        "spec-not-yet-observed",
        obj(
            "Model",
            [cond("Ready", True, "Ready"), cond("Stalled", False, "Ready")],
            observed=1,
        ),
        "Progressing",
        "InProgress",
    ),
    Sample(
        "finetune-running",
        obj(
            "FinetuneJob",
            [
                cond("Running", True, "Training", "epoch 1/3, step 40/120"),
                cond("Succeeded", False, "Training"),
                cond("Failed", False, "Training"),
                cond("Reconciling", True, "Training", "epoch 1/3, step 40/120"),
                cond("Stalled", False, "Training"),
            ],
            progress={"epoch": 1, "step": 40, "totalSteps": 120, "percent": 33},
        ),
        "Progressing",
        "InProgress",
    ),
    Sample(
        "finetune-succeeded",
        obj(
            "FinetuneJob",
            [
                cond("Running", False, "Succeeded"),
                cond("Succeeded", True, "Succeeded", "merged_model written"),
                cond("Failed", False, "Succeeded"),
                cond("Ready", True, "Succeeded"),
                cond("Reconciling", False, "Succeeded"),
                cond("Stalled", False, "Succeeded"),
            ],
        ),
        "Healthy",
        "Current",
    ),
    Sample(
        "finetune-failed",
        obj(
            "FinetuneJob",
            [
                cond("Running", False, "OutOfMemory"),
                cond("Succeeded", False, "OutOfMemory"),
                cond("Failed", True, "OutOfMemory", "CUDA out of memory"),
                cond("Reconciling", False, "OutOfMemory"),
                cond("Stalled", True, "OutOfMemory", "CUDA out of memory"),
            ],
        ),
        "Degraded",
        "Failed",
    ),
]

# Judged by the Argo CD script only: kstatus calls an object without observedGeneration Current.
ARGOCD_ONLY = [
    Sample("no-status-yet", {**obj("Model", []), "status": None}, "Progressing", ""),
    Sample(
        "finetune-pending",
        obj("FinetuneJob", [cond("Running", False, "BaseModelNotReady", "qwen is downloading")]),
        "Progressing",
        "",
    ),
    Sample(
        "finetune-failed-without-stalled",
        obj("FinetuneJob", [cond("Failed", True, "DatasetInvalid", "line 3: not JSON")]),
        "Degraded",
        "",
    ),
]


def run_health_lua(script: str, body: dict[str, Any]) -> dict[str, str]:
    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    plain = {k: v for k, v in body.items() if v is not None}  # JSON null: absent in Lua
    lua.globals().obj = lua.table_from(plain, recursive=True)
    result = lua.execute(script)
    return {"status": result["status"], "message": result["message"]}


@pytest.fixture(scope="module")
def health_script() -> str:
    return (ARGOCD / "health.lua").read_text()


@pytest.mark.parametrize("sample", SAMPLES + ARGOCD_ONLY, ids=lambda s: s.name)
def test_argocd_health_script(sample: Sample, health_script: str) -> None:
    health = run_health_lua(health_script, sample.body)
    assert health["status"] == sample.argocd, health
    assert health["message"]


def test_argocd_health_messages_carry_the_reason(health_script: str) -> None:
    stalled = next(s for s in SAMPLES if s.name == "stalled")
    assert run_health_lua(health_script, stalled.body)["message"] == (
        "RepoNotFound: repository not found"
    )
    running = next(s for s in SAMPLES if s.name == "finetune-running")
    assert "epoch 1/3" in run_health_lua(health_script, running.body)["message"]


def test_there_are_enough_samples() -> None:
    assert len(SAMPLES) >= 8
    assert {s.kstatus for s in SAMPLES} == {"Current", "InProgress", "Failed"}
    assert {s.argocd for s in SAMPLES} == {"Healthy", "Progressing", "Degraded"}


def test_argocd_cm_embeds_the_script_for_both_kinds(health_script: str) -> None:
    config = yaml.safe_load((ARGOCD / "argocd-cm.yaml").read_text())
    assert config["metadata"] == {
        "name": "argocd-cm",
        "namespace": "argocd",
        "labels": {"app.kubernetes.io/name": "argocd-cm", "app.kubernetes.io/part-of": "argocd"},
    }
    for kind in ("Model", "FinetuneJob"):
        assert config["data"][f"resource.customizations.health.modelfleet.io_{kind}"] == (
            health_script
        )


def test_argocd_application_points_at_existing_examples() -> None:
    app = yaml.safe_load((ARGOCD / "application.yaml").read_text())
    assert app["apiVersion"] == "argoproj.io/v1alpha1" and app["kind"] == "Application"
    source = app["spec"]["source"]
    assert source["path"] == "examples"
    included = source["directory"]["include"].strip("{}").split(",")
    for name in included:
        manifest = yaml.safe_load((REPO_ROOT / source["path"] / name).read_text())
        assert manifest["apiVersion"] == API_VERSION


def kstatus_binary() -> Path:
    return Path(tool_path("kstatus"))


def test_kstatus_judges_our_status_as_flux_does() -> None:
    stream = "".join(f"---\n{yaml.safe_dump(s.body)}" for s in SAMPLES)
    result = subprocess.run(
        [str(kstatus_binary())],
        input=stream,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    verdicts = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(s.name, v["status"]) for s, v in zip(SAMPLES, verdicts, strict=True)] == [
        (s.name, s.kstatus) for s in SAMPLES
    ]


def test_flux_kustomization_waits_for_our_kinds() -> None:
    docs = list(yaml.safe_load_all((FLUX / "models-kustomization.yaml").read_text()))
    models, app = docs
    assert models["apiVersion"] == "kustomize.toolkit.fluxcd.io/v1"
    assert models["spec"]["wait"] is True
    assert models["spec"]["path"] == "./examples/flux/models"
    assert app["spec"]["dependsOn"] == [{"name": "modelfleet-models"}]
    check = app["spec"]["healthChecks"][0]
    assert (check["apiVersion"], check["kind"]) == (API_VERSION, "Model")
    served = yaml.safe_load((FLUX / "models/model-qwen.yaml").read_text())
    assert check["name"] == served["metadata"]["name"]


def test_flux_models_match_the_examples() -> None:
    kustomization = yaml.safe_load((FLUX / "models/kustomization.yaml").read_text())
    for name in kustomization["resources"]:
        assert (FLUX / "models" / name).is_file()
    copy = yaml.safe_load((FLUX / "models/model-qwen.yaml").read_text())
    assert copy == yaml.safe_load((REPO_ROOT / "examples/model-qwen.yaml").read_text())
