"""The generated CRDs accept every example and refuse every manifest in the invalid corpus."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from modelfleet.api.v1alpha1 import FinetuneJob, Model
from tests.support.crdschema import REPO_ROOT, load_crd, validate

pytestmark = pytest.mark.unit

PLURALS = {"Model": "models", "FinetuneJob": "finetunejobs"}
EXAMPLES = sorted((REPO_ROOT / "examples").glob("*.yaml"))
INVALID = sorted((REPO_ROOT / "tests" / "corpus" / "invalid").glob("*.yaml"))
VALID = sorted((REPO_ROOT / "tests" / "corpus" / "valid").glob("*.yaml"))


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _crd_for(manifest: dict[str, Any]) -> dict[str, Any]:
    return load_crd(PLURALS[manifest["kind"]])


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_is_accepted(path: Path) -> None:
    for manifest in _documents(path):
        if manifest.get("apiVersion") != "modelfleet.io/v1alpha1":
            continue
        assert validate(_crd_for(manifest), manifest) == []
        # The operator parses what the API server stores.
        api_type = Model if manifest["kind"] == "Model" else FinetuneJob
        api_type.model_validate(manifest)


def test_the_corpus_is_large_enough() -> None:
    assert len(INVALID) >= 90
    assert len(VALID) >= 10
    assert len(EXAMPLES) >= 5


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_manifest_is_refused_with_a_message_naming_the_field(path: Path) -> None:
    case = yaml.safe_load(path.read_text())
    errors = validate(_crd_for(case["manifest"]), case["manifest"])
    assert errors, f"{path.name}: accepted, but {case['description']} must be refused"
    joined = "\n".join(errors)
    for expected in case["expectError"]:
        assert expected in joined, f"{path.name}: {expected!r} not in {joined!r}"


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_a_manifest_close_to_a_refused_one_is_accepted(path: Path) -> None:
    case = yaml.safe_load(path.read_text())
    assert validate(_crd_for(case["manifest"]), case["manifest"]) == [], case["description"]
    api_type = Model if case["manifest"]["kind"] == "Model" else FinetuneJob
    api_type.model_validate(case["manifest"])


def test_defaults_are_applied_like_the_api_server() -> None:
    manifest = {
        "apiVersion": "modelfleet.io/v1alpha1",
        "kind": "Model",
        "metadata": {"name": "tiny"},
        "spec": {"source": {"huggingface": {"repo": "org/tiny"}}, "serving": {}},
    }
    from tests.support.crdschema import apply_defaults, crd_schema

    defaulted = apply_defaults(crd_schema(load_crd("models")), manifest)
    assert defaulted["spec"]["source"]["huggingface"]["revision"] == "main"
    assert defaulted["spec"]["serving"]["gpu"] == {"count": 1, "resourceName": "nvidia.com/gpu"}
    assert defaulted["spec"]["serving"]["rollout"]["maxSurge"] == 1
    assert defaulted["spec"]["serving"]["rollout"]["maxUnavailable"] == 0
    assert defaulted["spec"]["storage"]["keepRevisions"] == 2
    assert defaulted["spec"]["download"]["retries"] == 5


def test_tensor_parallel_size_that_divides_gpu_count_is_accepted() -> None:
    manifest = {
        "apiVersion": "modelfleet.io/v1alpha1",
        "kind": "Model",
        "metadata": {"name": "tp"},
        "spec": {
            "source": {"huggingface": {"repo": "org/m"}},
            "serving": {"gpu": {"count": 4}, "tensorParallelSize": 2},
        },
    }
    assert validate(load_crd("models"), manifest) == []


def test_finetunejob_spec_is_immutable() -> None:
    old = yaml.safe_load((REPO_ROOT / "examples" / "finetunejob-lora.yaml").read_text())
    new = yaml.safe_load((REPO_ROOT / "examples" / "finetunejob-lora.yaml").read_text())
    new["spec"]["hyperparameters"]["epochs"] = 5
    errors = validate(load_crd("finetunejobs"), new, old=old)
    assert any(e.startswith("spec:") and "immutable" in e for e in errors), errors
    assert validate(load_crd("finetunejobs"), old, old=old) == []
