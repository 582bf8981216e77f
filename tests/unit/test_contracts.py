"""The contracts with the Jobs: the settings the builders write are what the Job reads, and the
result line a Job's program dumps is what the operator parses."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from modelfleet.api.v1alpha1.finetunejob import Hyperparameters
from modelfleet.builders.download import DOWNLOADER_COMMAND
from modelfleet.conditions import Reason
from modelfleet.contracts.download import DownloaderSettings, Mode, Source
from modelfleet.contracts.results import DownloadResult, TrainingResult, read_result
from modelfleet.contracts.training import TrainerSettings
from modelfleet.downloader.result import DownloaderResult
from modelfleet.jobprogram import invalid_settings
from modelfleet.trainer.result import TrainerResult
from tests.unit.test_builders import NAMESPACE, RENDERERS
from tests.unit.test_builders_training import load_finetune, training_job

pytestmark = pytest.mark.unit

SHA = "a" * 40


def test_a_download_result_reads_back_as_it_was_written() -> None:
    written = DownloadResult(
        result="Succeeded",
        reason=Reason.DOWNLOADED,
        message="ok",
        resolved_revision=SHA,
        bytes_total=10,
        bytes_transferred=4,
        files=2,
    )
    line = written.line()

    assert json.loads(line)["resolvedRevision"] == SHA
    assert read_result(f"some log\n{line}\n", DownloadResult) == written


def test_the_downloaders_own_line_is_the_contracts() -> None:
    line = DownloaderResult(
        result="Failed", reason=Reason.REPO_NOT_FOUND, message="Repository not found"
    ).line()

    parsed = read_result(line, DownloadResult)

    assert parsed is not None
    assert (parsed.result, parsed.reason, parsed.message) == (
        "Failed",
        "RepoNotFound",
        "Repository not found",
    )


def test_the_trainers_line_is_the_contracts_and_omits_an_absent_dataset_revision() -> None:
    written = TrainerResult(
        result="Succeeded", reason=Reason.SUCCEEDED, final_loss=0.5, steps=3, output_path="/o"
    )

    assert "datasetRevision" not in json.loads(written.line())
    parsed = read_result(written.line(), TrainingResult)
    assert parsed is not None
    assert (parsed.final_loss, parsed.steps, parsed.dataset_revision) == (0.5, 3, None)


def test_keys_a_newer_job_adds_are_ignored_and_garbage_is_no_result() -> None:
    newer = json.dumps({"result": "Succeeded", "reason": "Downloaded", "shards": 3})

    assert read_result(newer, DownloadResult) is not None
    assert read_result("Traceback (most recent call last):\n  boom", DownloadResult) is None
    assert read_result('{"result": "Maybe", "reason": "x"}', DownloadResult) is None
    assert (
        read_result('{"result": "Failed", "reason": "x", "bytesTotal": -1}', DownloadResult) is None
    )


def test_a_long_message_is_cut_to_fit_the_termination_message() -> None:
    line = TrainingResult(result="Failed", reason=Reason.INCOMPLETE, message="x" * 5000).line()

    assert len(line) < 1200
    assert json.loads(line)["message"].endswith("...")


# -- settings: what the builders write is what the Job reads --------------------------------


def _plain_env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


def _downloader_containers() -> list[dict[str, Any]]:
    children = [
        *RENDERERS["model-tiny"]("model-tiny").values(),
        *RENDERERS["model-gated"]("model-gated").values(),
        *RENDERERS["model-pvc"]("model-pvc").values(),
        training_job(load_finetune("finetunejob-hf-dataset")),
    ]
    containers = []
    for child in children:
        pod = child["spec"].get("template", {}).get("spec", {})
        for container in [*pod.get("initContainers", []), *pod.get("containers", [])]:
            if container["command"] == DOWNLOADER_COMMAND:
                containers.append(container)
    return containers


def test_every_downloader_container_reads_its_env_as_the_settings_written() -> None:
    containers = _downloader_containers()
    modes = set()
    for container in containers:
        env = _plain_env(container)
        settings = DownloaderSettings.from_env(env)
        modes.add((settings.mode, settings.source))
        # Every MODELFLEET_ variable is a field: a misspelt one would be silently ignored.
        written = {n for n in env if n.startswith("MODELFLEET_")}
        assert written <= {DownloaderSettings.env_names(f)[0] for f in settings.model_fields_set}
        assert {e["name"]: e["value"] for e in settings.to_env()}.items() <= env.items()
    # download, verify Job, serving init container, dataset fetch: all four shapes were read.
    assert modes == {
        (Mode.DOWNLOAD, Source.HUGGINGFACE),
        (Mode.VERIFY, Source.PVC),
        (Mode.DOWNLOAD, Source.HUGGINGFACE_DATASET),
    }
    assert len(containers) >= 5


def test_the_training_container_reads_its_env_as_the_finetunejob_asked() -> None:
    job = load_finetune("finetunejob-lora")
    [container] = training_job(job)["spec"]["template"]["spec"]["containers"]

    settings = TrainerSettings.from_env(_plain_env(container))

    assert settings.model_dump(include=set(Hyperparameters.model_fields)) == (
        job.spec.hyperparameters.model_dump()
    )
    assert settings.method == job.spec.method
    assert settings.status_target == f"{NAMESPACE}/{job.metadata.name}"
    assert str(settings.termination_log) == container["terminationMessagePath"]


def test_the_builders_own_environment_never_reaches_a_jobs(monkeypatch: Any) -> None:
    monkeypatch.setenv("MODELFLEET_REPO", "attacker/weights")
    monkeypatch.setenv("MODELFLEET_FORCE", "true")
    settings = DownloaderSettings(repo="org/model")

    assert settings.to_env() == [{"name": "MODELFLEET_REPO", "value": "org/model"}]


@pytest.mark.parametrize(
    ("value", "wanted"),
    [
        (["a*", "b/c?"], '["a*", "b/c?"]'),
        (True, "true"),
        (False, "false"),
        (Mode.VERIFY, "verify"),
    ],
)
def test_values_are_written_as_the_job_parses_them(value: Any, wanted: str) -> None:
    field = {list: "allow_patterns", bool: "force", Mode: "mode"}[type(value)]
    settings = DownloaderSettings.model_validate({field: value})

    [entry] = settings.to_env()

    assert entry["value"] == wanted
    assert getattr(DownloaderSettings.from_env({entry["name"]: wanted}), field) == value


def test_a_token_is_read_from_the_hub_tools_variable_and_never_written() -> None:
    settings = DownloaderSettings.from_env({"HF_TOKEN": "hf_secret", "MODELFLEET_REPO": "a/b"})

    assert settings.token is not None
    assert settings.token.get_secret_value() == "hf_secret"
    assert "hf_secret" not in json.dumps(settings.to_env())


def test_a_bad_value_names_its_field_and_not_the_value() -> None:
    with pytest.raises(ValidationError) as caught:
        DownloaderSettings.from_env({"MODELFLEET_RETRIES": "hf_secret", "HF_TOKEN": "x"})

    assert invalid_settings(caught.value).startswith("retries: ")
    assert "hf_secret" not in invalid_settings(caught.value)


def test_a_list_that_is_not_json_is_refused_naming_the_field() -> None:
    with pytest.raises(ValidationError) as caught:
        DownloaderSettings.from_env({"MODELFLEET_ALLOW_PATTERNS": "*.json"})

    assert invalid_settings(caught.value).startswith("allow_patterns: ")


def test_a_dataset_file_starting_with_a_bracket_stays_a_string() -> None:
    settings = TrainerSettings.from_env(
        {
            "MODELFLEET_MODEL_PATH": "/m",
            "MODELFLEET_OUTPUT_DIR": "/o",
            "MODELFLEET_DATASET_PATH": "/d",
            "MODELFLEET_DATASET_FILE": '["x"]',
        }
    )

    assert settings.dataset_file == '["x"]'
