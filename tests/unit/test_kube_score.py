"""kube-score on everything modelfleet puts in a cluster: the chart, rendered with several value
sets, and every child the builders describe for the examples. A finding fails the test unless
docs/security.md's table of findings that stay lists it with its reason; an entry of that table
that no longer matches a finding fails it too, so the table is the one list, and true."""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelfleet.api.v1alpha1 import FinetuneJob
from modelfleet.builders.common import COMPONENT_LABEL, Manifest
from modelfleet.builders.download import build_verify_job
from modelfleet.builders.rbac import build_job_identity
from modelfleet.builders.serving import build_service
from modelfleet.builders.storage import build_weights_claim, needs_weights_claim
from modelfleet.builders.training import build_training_job
from tests.support.chart import render_chart
from tests.support.cluster import REPO_ROOT, tool_path
from tests.unit.test_builders import (
    NAMESPACE,
    SETTINGS,
    UID,
    deployment_for,
    download_job_for,
    load_example,
)

pytestmark = pytest.mark.unit

SECURITY_DOC = REPO_ROOT / "docs/security.md"
ALLOWLIST_MARKER = "<!-- kube-score allowlist"
# Optional checks that hold for every object today and should keep holding.
OPTIONAL_CHECKS = ["container-seccomp-profile"]
NETWORK_POLICY = {
    "enabled": True,
    "metricsFrom": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}],
    "apiServer": [{"to": [{"ipBlock": {"cidr": "10.0.0.1/32"}}], "ports": [{"port": 6443}]}],
}
CHART_VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "namespaced": {"watchNamespaces": ["team-a", "team-b"]},
    "ha": {"replicaCount": 2},
    "namespaced-peering": {"watchNamespaces": ["team-a"], "peering": {"enabled": True}},
    "locked-down": {"replicaCount": 2, "networkPolicy": NETWORK_POLICY},
    "no-admission-policy": {"admissionPolicy": {"enabled": False}},
    "monitoring": {
        "metrics": {"serviceMonitor": {"enabled": True}},
        "prometheusRule": {"enabled": True},
        "dashboards": {"enabled": True},
    },
}
MODEL_EXAMPLES = sorted(p.stem for p in (REPO_ROOT / "examples").glob("model-*.yaml"))
FINETUNE_EXAMPLES = sorted(p.stem for p in (REPO_ROOT / "examples").glob("finetunejob-*.yaml"))


@dataclass(frozen=True, order=True)
class Finding:
    """One kube-score comment, named without the object's name so that a row of the table
    covers every Model or release: ``serving Deployment``, not ``tiny``."""

    check: str
    object: str
    container: str
    summary: str

    def row(self) -> str:
        return f"| `{self.check}` | {self.object} | {self.container or '—'} | {self.summary} |"


def kube_score() -> str:
    try:
        return tool_path("kube-score")
    except AssertionError:
        pytest.skip("kube-score is not built: run `bash hack/build-tools.sh kube-score`")


def kubernetes_minor() -> str:
    """The local cluster's Kubernetes release (hack/versions.sh), as kube-score's vN.NN."""
    pinned = re.search(r"K8S_VERSION:-(v\d+\.\d+)", (REPO_ROOT / "hack/versions.sh").read_text())
    assert pinned, "K8S_VERSION not found in hack/versions.sh"
    return pinned.group(1)


def allowlist() -> dict[Finding, str]:
    """The table after the allowlist marker in docs/security.md: finding -> why it stays."""
    text = SECURITY_DOC.read_text()
    assert ALLOWLIST_MARKER in text, f"{SECURITY_DOC} has no {ALLOWLIST_MARKER} ... --> table"
    lines = text.split(ALLOWLIST_MARKER, 1)[1].splitlines()[1:]
    rows = [line for line in lines[: _table_end(lines)] if line.startswith("|")][2:]
    entries: dict[Finding, str] = {}
    for row in rows:
        cells = [cell.strip() for cell in row.strip().strip("|").split("|")]
        assert len(cells) == 5, f"a row needs check, object, container, finding, reason: {row}"
        check, obj, container, summary, reason = cells
        assert reason, f"a finding that stays needs its reason: {row}"
        finding = Finding(check.strip("`"), obj, "" if container == "—" else container, summary)
        assert finding not in entries, f"listed twice: {row}"
        entries[finding] = reason
    assert entries, "the allowlist table is empty"
    return entries


def _table_end(lines: list[str]) -> int:
    """Index of the first line after the table that follows the marker."""
    started = False
    for index, line in enumerate(lines):
        if line.startswith("|"):
            started = True
        elif started:
            return index
    return len(lines)


def operator_children() -> dict[str, list[Manifest]]:
    """Every child the builders describe for each example, one group per owner."""
    groups: dict[str, list[Manifest]] = {}
    for example in MODEL_EXAMPLES:
        model = load_example(example)
        children: list[Manifest] = []
        if needs_weights_claim(model):
            children.append(build_weights_claim(model, model.spec.storage.size or "10Gi"))
        if model.spec.source.pvc is not None:
            children.append(build_verify_job(model, settings=SETTINGS, retry_token=""))
        else:
            children.append(download_job_for(model))
        if model.spec.serving is not None:
            children += [deployment_for(model), build_service(model)]
        groups[example] = children
    for example in FINETUNE_EXAMPLES:
        body = yaml.safe_load((REPO_ROOT / "examples" / f"{example}.yaml").read_text())
        body["metadata"].update(namespace=NAMESPACE, uid=UID)
        job = build_training_job(
            FinetuneJob.model_validate(body),
            settings=SETTINGS,
            base_claim="base-weights",
            base_path="/models/org/base/0123",
            base_repo="org/base",
            base_revision="0123",
        )
        groups[example] = [job]
    groups["job-identity"] = build_job_identity(SETTINGS, NAMESPACE)
    return groups


def score(binary: str, objects: list[Manifest]) -> set[Finding]:
    """kube-score's findings on ``objects``, scored together (a NetworkPolicy, PDB or Service
    counts for the pods it selects among them)."""
    result = subprocess.run(
        [
            binary,
            "score",
            "--output-format",
            "json",
            "--kubernetes-version",
            kubernetes_minor(),
            *(arg for check in OPTIONAL_CHECKS for arg in ("--enable-optional-test", check)),
            "-",
        ],
        input=yaml.safe_dump_all(objects),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # 1: critical findings, which the allowlist judges; anything else is kube-score failing.
    assert result.returncode in (0, 1), f"kube-score failed:\n{result.stderr}"
    findings: set[Finding] = set()
    for scored in json.loads(result.stdout) or []:  # null: nothing it scores
        labels = scored["object_meta"].get("labels") or {}
        kind = scored["type_meta"]["kind"]
        obj = f"{labels[COMPONENT_LABEL]} {kind}" if COMPONENT_LABEL in labels else kind
        for check in scored["checks"]:
            if check["skipped"] or check["grade"] >= 10:  # 10: all OK
                continue
            for comment in check["comments"] or [{"path": "", "summary": check["check"]["name"]}]:
                findings.add(
                    Finding(check["check"]["id"], obj, comment["path"], comment["summary"])
                )
    return findings


@pytest.fixture(scope="module")
def findings(tmp_path_factory: pytest.TempPathFactory) -> set[Finding]:
    binary = kube_score()
    directory = tmp_path_factory.mktemp("kube-score")
    found: set[Finding] = set()
    for values in CHART_VALUE_SETS.values():
        # A Kubernetes version that serves the ValidatingAdmissionPolicy, so it is rendered too.
        objects = render_chart(values, directory, extra=["--kube-version", "1.34.0"])
        found |= score(binary, objects)
    for children in operator_children().values():
        found |= score(binary, children)
    return found


def test_every_finding_is_fixed_or_listed_with_its_reason(findings: set[Finding]) -> None:
    listed = allowlist()
    new = sorted(findings - listed.keys())
    assert not new, (
        "kube-score finds what docs/security.md does not list; fix it, or add a row with the"
        " reason it stays:\n" + "\n".join(f.row() + " <reason> |" for f in new)
    )


def test_every_listed_finding_still_occurs(findings: set[Finding]) -> None:
    stale = sorted(allowlist().keys() - findings)
    assert not stale, "fixed: remove these rows from docs/security.md:\n" + "\n".join(
        f.row() for f in stale
    )


def test_a_network_policy_covers_the_operator_when_enabled(tmp_path: Path) -> None:
    """The only chart finding that a value turns off: with networkPolicy set, none is left."""
    binary = kube_score()
    objects = render_chart({"networkPolicy": NETWORK_POLICY}, tmp_path)
    found = {f.check for f in score(binary, objects)}
    assert "pod-networkpolicy" not in found
    assert "networkpolicy-targets-pod" not in found


_BINARY_UNITS = {"Mi": 2**20, "Gi": 2**30}


def _bytes(quantity: str) -> int:
    return int(quantity[:-2]) * _BINARY_UNITS[quantity[-2:]]


def test_every_pods_ephemeral_storage_limit_covers_its_emptydirs() -> None:
    """The kubelet evicts a pod whose disk use passes the sum of its containers' limits (init
    containers run before and count apart): that limit must hold every disk-backed emptyDir
    full, with room for logs, so a full scratch volume meets its own sizeLimit instead."""
    for owner, children in operator_children().items():
        for child in children:
            if child["kind"] not in ("Deployment", "Job"):
                continue
            pod = child["spec"]["template"]["spec"]
            scratch = sum(
                _bytes(volume["emptyDir"]["sizeLimit"])
                for volume in pod["volumes"]
                if "emptyDir" in volume and volume["emptyDir"].get("medium") != "Memory"
            )
            limit = sum(
                _bytes(c["resources"]["limits"]["ephemeral-storage"]) for c in pod["containers"]
            )
            assert limit > scratch, f"{owner} {child['kind']}: {limit} <= emptyDirs {scratch}"
