"""The real API server refuses every manifest of the invalid corpus with a message naming the
field, accepts every example, and `kubectl explain` shows the pydantic docstrings."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.cluster import REPO_ROOT, TestCluster, tool_path

INVALID = sorted((REPO_ROOT / "tests/corpus/invalid").glob("*.yaml"))
EXAMPLES = sorted((REPO_ROOT / "examples").glob("*.yaml"))
VALID = sorted((REPO_ROOT / "tests/corpus/valid").glob("*.yaml"))


def _kubectl(
    cluster: TestCluster, namespace: str, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool_path("kubectl"), "--kubeconfig", str(cluster.kubeconfig), "-n", namespace, *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )


def _dry_run(
    cluster: TestCluster, namespace: str, manifest: dict[str, object]
) -> subprocess.CompletedProcess[str]:
    """``kubectl create --dry-run=server`` of one manifest: the API server's whole validation."""
    return _kubectl(
        cluster,
        namespace,
        "create",
        "--dry-run=server",
        "--validate=strict",
        "-f",
        "-",
        stdin=yaml.safe_dump(manifest),
    )


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_manifest_is_refused_naming_the_field(
    cluster: TestCluster, crds: None, namespace: str, path: Path
) -> None:
    case = yaml.safe_load(path.read_text())
    result = _dry_run(cluster, namespace, case["manifest"])
    assert result.returncode != 0, f"{path.name} was accepted: {case['description']}"
    for expected in case["expectError"]:
        assert expected in result.stderr, f"{expected!r} not in {result.stderr!r}"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_is_accepted(cluster: TestCluster, crds: None, namespace: str, path: Path) -> None:
    result = _kubectl(
        cluster, namespace, "create", "--dry-run=server", "--validate=strict", "-f", str(path)
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_a_manifest_close_to_a_refused_one_is_accepted(
    cluster: TestCluster, crds: None, namespace: str, path: Path
) -> None:
    case = yaml.safe_load(path.read_text())
    result = _dry_run(cluster, namespace, case["manifest"])
    assert result.returncode == 0, f"{path.name} ({case['description']}): {result.stderr}"


def test_finetunejob_spec_is_immutable(cluster: TestCluster, crds: None, namespace: str) -> None:
    path = REPO_ROOT / "examples/finetunejob-lora.yaml"
    assert _kubectl(cluster, namespace, "create", "-f", str(path)).returncode == 0
    result = _kubectl(
        cluster,
        namespace,
        "patch",
        "ftj",
        "tiny-lora",
        "--type",
        "merge",
        "-p",
        '{"spec":{"hyperparameters":{"epochs":5}}}',
    )
    assert result.returncode != 0
    assert "immutable" in result.stderr


def test_kubectl_explain_shows_the_docstrings(cluster: TestCluster, crds: None) -> None:
    result = _kubectl(cluster, "default", "explain", "model.spec.serving.gpu")
    assert result.returncode == 0, result.stderr
    assert "GPUs per replica" in result.stdout
    assert "0 runs without an accelerator" in result.stdout
