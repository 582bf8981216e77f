"""The installation's defaults for Job pods (the chart's ``defaults``): they reach the operator
as MODELFLEET_DEFAULTS, fill in what a Model or FinetuneJob leaves out, lose to what it sets,
and the Job names what it took from them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelfleet.api.v1alpha1 import FinetuneJob
from modelfleet.builders.common import DEFAULTS_ANNOTATION
from modelfleet.builders.download import build_download_job, build_resolve_job
from modelfleet.builders.serving import build_deployment
from modelfleet.builders.training import build_training_job
from modelfleet.settings import OperatorSettings
from tests.support.chart import render_chart
from tests.support.cluster import REPO_ROOT
from tests.unit.test_builders import SETTINGS, SHA, load_example

pytestmark = pytest.mark.unit

PROXY = [
    {"name": "HTTPS_PROXY", "value": "http://proxy.corp:3128"},
    {"name": "NO_PROXY", "value": ".svc,.cluster.local"},
]
GPU_POOL = [{"key": "pool", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]
CHART_VALUES: dict[str, Any] = {
    "defaults": {
        "imagePullSecrets": ["mirror"],
        "jobs": {"env": PROXY, "nodeSelector": {"pool": "cpu"}, "tolerations": GPU_POOL},
        "huggingfaceEndpoint": "https://hf-mirror.corp",
    }
}


def settings_from_chart(values: dict[str, Any], tmp_path: Path) -> OperatorSettings:
    """The operator's settings as the chart's Deployment gives them to it."""
    (deployment,) = [o for o in render_chart(values, tmp_path) if o["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    return OperatorSettings(
        downloader_image=SETTINGS.downloader_image,
        defaults=json.loads(env["MODELFLEET_DEFAULTS"]),
    )


@pytest.fixture(scope="module")
def chart_settings(tmp_path_factory: pytest.TempPathFactory) -> OperatorSettings:
    return settings_from_chart(CHART_VALUES, tmp_path_factory.mktemp("chart"))


def _pod(job: dict[str, Any]) -> dict[str, Any]:
    pod: dict[str, Any] = job["spec"]["template"]["spec"]
    return pod


def _env(container: dict[str, Any]) -> dict[str, str | None]:
    return {e["name"]: e.get("value") for e in container["env"]}


def test_the_charts_defaults_reach_the_operator(chart_settings: OperatorSettings) -> None:
    defaults = chart_settings.defaults
    assert [e.name for e in defaults.jobs.env] == ["HTTPS_PROXY", "NO_PROXY"]
    assert defaults.jobs.node_selector == {"pool": "cpu"}
    assert defaults.image_pull_secrets == ["mirror"]
    assert defaults.huggingface_endpoint == "https://hf-mirror.corp"


def test_an_empty_chart_gives_no_defaults(tmp_path: Path) -> None:
    settings = settings_from_chart({}, tmp_path)
    assert settings.defaults == OperatorSettings().defaults
    job = build_download_job(
        load_example("model-tiny"),
        settings=settings,
        revision="main",
        retry_token="",
        protected_paths=[],
    )
    assert DEFAULTS_ANNOTATION not in job["metadata"].get("annotations", {})
    assert not {"nodeSelector", "tolerations", "imagePullSecrets"} & set(_pod(job))


def test_a_silent_model_takes_every_default(chart_settings: OperatorSettings) -> None:
    model = load_example("model-gated")  # no endpoint of its own
    for job in (
        build_download_job(
            model, settings=chart_settings, revision="main", retry_token="", protected_paths=[]
        ),
        build_resolve_job(model, settings=chart_settings, revision="main", retry_token=""),
    ):
        pod = _pod(job)
        (container,) = pod["containers"]
        env = _env(container)
        assert env["HTTPS_PROXY"] == "http://proxy.corp:3128"
        assert env["NO_PROXY"] == ".svc,.cluster.local"
        assert env["HF_ENDPOINT"] == "https://hf-mirror.corp"
        names = [e["name"] for e in container["env"]]
        assert names.index("NO_PROXY") < names.index("MODELFLEET_MODE")  # the Job's own last
        assert pod["nodeSelector"] == {"pool": "cpu"}
        assert pod["tolerations"] == GPU_POOL
        assert pod["imagePullSecrets"] == [{"name": "mirror"}]
        assert job["metadata"]["annotations"][DEFAULTS_ANNOTATION] == (
            "env HTTPS_PROXY NO_PROXY, nodeSelector, tolerations, imagePullSecrets"
        )


def test_the_models_own_settings_win(chart_settings: OperatorSettings) -> None:
    model = load_example(
        "model-tiny",  # names its own endpoint: the mirror is not used
        download={
            "env": [{"name": "NO_PROXY", "value": "hub.internal"}],
            "nodeSelector": {"pool": "download"},
            "tolerations": [],
            "imagePullSecrets": ["team-registry"],
        },
    )
    job = build_download_job(
        model, settings=chart_settings, revision="main", retry_token="", protected_paths=[]
    )
    pod = _pod(job)
    (container,) = pod["containers"]
    env = _env(container)
    assert env["NO_PROXY"] == "hub.internal"
    assert env["HTTPS_PROXY"] == "http://proxy.corp:3128"
    assert [e["name"] for e in container["env"]].count("NO_PROXY") == 1
    assert env["HF_ENDPOINT"] == "http://127.0.0.1:18765"
    assert pod["nodeSelector"] == {"pool": "download"}
    assert "tolerations" not in pod  # an empty list is the Model's word: none
    assert pod["imagePullSecrets"] == [{"name": "team-registry"}]
    assert job["metadata"]["annotations"][DEFAULTS_ANNOTATION] == "env HTTPS_PROXY"


def test_a_job_cannot_replace_its_own_settings() -> None:
    """MODELFLEET_* names are the Job's contract with its program: the schema refuses them."""
    with pytest.raises(ValueError):
        load_example("model-tiny", download={"env": [{"name": "bad name", "value": "x"}]})
    crd = yaml.safe_load((REPO_ROOT / "crds/modelfleet.io_models.yaml").read_text())
    download = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
        "properties"
    ]["download"]["properties"]
    (rule,) = download["env"]["x-kubernetes-validations"]
    assert "MODELFLEET_" in rule["rule"]


def test_a_finetune_tolerates_a_tainted_gpu_pool_and_its_dataset_fetch_gets_the_proxy(
    chart_settings: OperatorSettings,
) -> None:
    body = yaml.safe_load((REPO_ROOT / "examples/finetunejob-hf-dataset.yaml").read_text())
    body["metadata"].update(namespace="team-a", uid="u1")
    body["spec"]["tolerations"] = GPU_POOL
    body["spec"]["nodeSelector"] = {"nvidia.com/gpu.present": "true"}
    job = build_training_job(
        FinetuneJob.model_validate(body),
        settings=chart_settings,
        base_claim="tiny-weights",
        base_path=f"/models/org/tiny/{SHA}",
        base_repo="org/tiny",
        base_revision=SHA,
    )
    pod = _pod(job)
    assert pod["tolerations"] == GPU_POOL
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["imagePullSecrets"] == [{"name": "mirror"}]
    for container in [*pod.get("initContainers", []), *pod["containers"]]:
        assert _env(container)["HTTPS_PROXY"] == "http://proxy.corp:3128", container["name"]
    assert job["metadata"]["annotations"][DEFAULTS_ANNOTATION] == (
        "env HTTPS_PROXY NO_PROXY, imagePullSecrets"
    )


def test_serving_pods_pull_with_the_default_secrets_unless_the_model_names_its_own(
    chart_settings: OperatorSettings,
) -> None:
    def pull_secrets(model: Any) -> Any:
        deployment = build_deployment(
            model,
            settings=chart_settings,
            model_path=f"/models/org/tiny/{SHA}",
            revision=SHA,
            claim_name="tiny-weights",
        )
        return deployment["spec"]["template"]["spec"].get("imagePullSecrets")

    assert pull_secrets(load_example("model-tiny")) == [{"name": "mirror"}]
    own = load_example("model-tiny", serving={"imagePullSecrets": ["team"]})
    assert pull_secrets(own) == [{"name": "team"}]
    assert pull_secrets(load_example("model-tiny", serving={"imagePullSecrets": []})) is None
