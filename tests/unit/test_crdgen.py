"""`modelfleet crds` writes the CRDs the models describe, and `--check` catches drift."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from modelfleet import crdgen
from tests.support.crdschema import REPO_ROOT

pytestmark = pytest.mark.unit


def test_committed_crds_are_fresh() -> None:
    assert crdgen.stale_crds(REPO_ROOT) == []


def _run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelfleet.cli.main", "crds", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )


def test_check_fails_with_a_diff_when_a_docstring_changes(tmp_path: Path) -> None:
    # A copy of the checkout whose model source has an edited docstring, CRDs not regenerated.
    work = tmp_path / "repo"
    shutil.copytree(REPO_ROOT / "operator", work / "operator")
    shutil.copytree(REPO_ROOT / "crds", work / "crds")
    shutil.copytree(REPO_ROOT / "charts", work / "charts")
    shutil.copy(REPO_ROOT / "pyproject.toml", work / "pyproject.toml")
    model_py = work / "operator/modelfleet/api/v1alpha1/model.py"
    text = model_py.read_text()
    assert '"""GPUs per replica; 0 runs without an accelerator."""' in text
    model_py.write_text(
        text.replace(
            '"""GPUs per replica; 0 runs without an accelerator."""',
            '"""GPUs each replica requests; 0 runs on CPU."""',
        )
    )
    env_path = str(work / "operator")
    result = subprocess.run(
        [sys.executable, "-c", "from modelfleet.cli.main import app; app()", "crds", "--check"],
        cwd=work,
        capture_output=True,
        text=True,
        check=False,
        env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "GPUs each replica requests; 0 runs on CPU." in result.stderr
    assert "modelfleet crds" in result.stderr

    regenerate = subprocess.run(
        [sys.executable, "-c", "from modelfleet.cli.main import app; app()", "crds"],
        cwd=work,
        capture_output=True,
        text=True,
        check=False,
        env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"},
    )
    assert regenerate.returncode == 0, regenerate.stderr
    assert "GPUs each replica requests" in (work / "crds/modelfleet.io_models.yaml").read_text()


def test_crd_shape_matches_the_contract() -> None:
    crd = yaml.safe_load((REPO_ROOT / "crds/modelfleet.io_models.yaml").read_text())
    names = crd["spec"]["names"]
    assert names["shortNames"] == ["mfm"]
    assert names["categories"] == ["modelfleet"]
    version = crd["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c for c in version["additionalPrinterColumns"]}
    assert list(columns) == [
        "Ready",
        "Reason",
        "Revision",
        "Progress",
        "Replicas",
        "Age",
        "Source",
        "Endpoint",
    ]
    # Source and Endpoint show with -o wide only.
    assert [n for n, c in columns.items() if c.get("priority") == 1] == ["Source", "Endpoint"]
    gpu = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["serving"][
        "properties"
    ]["gpu"]
    assert gpu["description"] == "GPUs per replica."
    assert "0 runs without an accelerator" in gpu["properties"]["count"]["description"]

    ftj = yaml.safe_load((REPO_ROOT / "crds/modelfleet.io_finetunejobs.yaml").read_text())
    assert ftj["spec"]["names"]["shortNames"] == ["ftj"]
    ftj_columns = [c["name"] for c in ftj["spec"]["versions"][0]["additionalPrinterColumns"]]
    assert ftj_columns == ["Status", "Progress", "Loss", "Base", "Promoted", "Age"]


def _walk(node: object) -> list[dict[str, object]]:
    found = []
    if isinstance(node, dict):
        found.append(node)
        for value in node.values():
            found.extend(_walk(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(_walk(value))
    return found


@pytest.mark.parametrize("kind", crdgen.KINDS, ids=lambda k: k.kind)
def test_schema_is_structural(kind: crdgen.CrdKind) -> None:
    schema = crdgen.openapi_schema(kind.model)
    for node in _walk(schema):
        assert "$ref" not in node and "anyOf" not in node and "title" not in node
        assert not ("properties" in node and "additionalProperties" in node)
        if "properties" in node:
            assert node.get("type") == "object"
