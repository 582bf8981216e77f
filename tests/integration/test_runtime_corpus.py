"""The runtime half of the bad-input corpus: manifests the API server accepts but only the
operator can judge (a missing Secret, a repo that does not exist, pods that cannot schedule...).

Each file of tests/corpus/runtime/ is created in a fresh namespace and must come to its typed
reason, with a Warning Event for it, and without harm: no Job or Event loop, no crash loop of
the operator, and a canary Model in another namespace left exactly as it was.
"""

from __future__ import annotations

import string
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, dynamic

from tests.hubserver.repos import tiny_model_files
from tests.hubserver.server import HubServer
from tests.integration.test_model_lifecycle import Models, tiny_manifest
from tests.support.cluster import REPO_ROOT, TestCluster, scratch_namespace, wait_for
from tests.support.operator import OperatorProcess

CORPUS = sorted((REPO_ROOT / "tests/corpus/runtime").glob("*.yaml"))
GROUP, VERSION = "modelfleet.io", "v1alpha1"
PLURALS = {"Model": "models", "FinetuneJob": "finetunejobs"}
OWNER_LABELS = ("modelfleet.io/model", "modelfleet.io/finetunejob")

GATED_REPO = "modelfleet-test/gated-corpus"
GATED_TOKEN = "hf_corpusGatedToken" + "Kx4" * 4
OTHER_REPO = "modelfleet-test/gated-other"
OTHER_TOKEN = "hf_corpusOtherToken" + "Pw9" * 4

# How long a case is watched after reaching its reason, to catch a Job or Event loop.
OBSERVE_SECONDS = 8.0
# Time for the rest of a transition's Events (one per condition) to be posted.
EVENT_SETTLE_SECONDS = 2.0
# Reconciles that failed on an API error during one case; a crash loop makes many more.
MAX_RECONCILE_ERRORS = 3
# Status writes to the object while it sits in its terminal reason.
MAX_STATUS_WRITES = 1

# Cases that show an operator bug, each with the evidence; flip them when the bug is fixed.
# Cases that expose an operator bug not fixed yet: xfail(strict) with the evidence, flipped once
# fixed. None today.
KNOWN_BUGS: dict[str, str] = {}


def _params() -> list[Any]:
    return [
        pytest.param(
            path,
            id=path.stem,
            marks=[pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[path.stem])]
            if path.stem in KNOWN_BUGS
            else [],
        )
        for path in CORPUS
    ]


def load_case(path: Path, values: dict[str, str]) -> dict[str, Any]:
    """A corpus file with its ${PLACEHOLDERS} filled in."""
    case: dict[str, Any] = yaml.safe_load(string.Template(path.read_text()).substitute(values))
    return case


# -- the cluster around each case ------------------------------------------------------------
@pytest.fixture(scope="module")
def corpus_values(model_hub: HubServer) -> dict[str, str]:
    """The hub and its gated repositories, as the corpus files' placeholders."""
    if GATED_REPO not in model_hub.repos:
        model_hub.add_repo(GATED_REPO, tiny_model_files(seed=5), gated=True, token=GATED_TOKEN)
        model_hub.add_repo(OTHER_REPO, tiny_model_files(seed=6), gated=True, token=OTHER_TOKEN)
    return {"HUB": model_hub.endpoint, "GATED_REPO": GATED_REPO, "OTHER_TOKEN": OTHER_TOKEN}


@dataclass
class Canary:
    """A Ready Model in its own namespace that no corpus case may touch."""

    models: Models
    apps: client.AppsV1Api
    batch: client.BatchV1Api

    def snapshot(self) -> dict[str, Any]:
        namespace = self.models.namespace
        model = self.models.get("canary")
        ready = next(c for c in model["status"]["conditions"] if c["type"] == "Ready")
        deployment = self.apps.read_namespaced_deployment("canary", namespace)
        return {
            "model generation": model["metadata"]["generation"],
            "ready": (ready["status"], ready["reason"], ready["lastTransitionTime"]),
            "deployment resourceVersion": deployment.metadata.resource_version,
            "deployment readyReplicas": deployment.status.ready_replicas,
            "jobs": sorted(
                j.metadata.name for j in self.batch.list_namespaced_job(namespace).items
            ),
        }


@pytest.fixture(scope="module")
def canary(
    api: client.ApiClient,
    cluster: TestCluster,
    operator: OperatorProcess,
    model_hub: HubServer,
) -> Iterator[Canary]:
    with scratch_namespace(api, "canary") as name:
        models = Models(api, name, cluster.kubeconfig)
        manifest = tiny_manifest(model_hub, name="canary")
        manifest["spec"]["serving"]["replicas"] = 1
        models.create(manifest)
        models.wait_ready("canary", timeout=180)
        yield Canary(models, client.AppsV1Api(api), client.BatchV1Api(api))


def create(api: client.ApiClient, namespace: str, manifest: dict[str, Any]) -> None:
    """Create any object (Secret, claim, Model...) in ``namespace``."""
    resource = dynamic.DynamicClient(api).resources.get(
        api_version=manifest["apiVersion"], kind=manifest["kind"]
    )
    resource.create(body=manifest, namespace=namespace)


def get_object(api: client.ApiClient, namespace: str, kind: str, name: str) -> dict[str, Any]:
    result: dict[str, Any] = client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURALS[kind], name
    )
    return result


def condition_of(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    for condition in (obj.get("status") or {}).get("conditions", []):
        if condition["type"] == type_:
            return dict(condition)
    return {}


def jobs_per_owner(batch: client.BatchV1Api, namespace: str) -> Counter[str]:
    """How many Jobs each Model or FinetuneJob of the namespace has."""
    owners: Counter[str] = Counter()
    for job in batch.list_namespaced_job(namespace).items:
        labels = job.metadata.labels or {}
        for label in OWNER_LABELS:
            if label in labels:
                owners[f"{label}={labels[label]}"] += 1
    return owners


def events_about(
    api: client.ApiClient, namespace: str, kind: str, name: str
) -> list[client.CoreV1Event]:
    """The Events regarding one object (core/v1 view: other controllers' Events lack the
    eventTime the events.k8s.io/v1 client model insists on)."""
    return [
        e
        for e in client.CoreV1Api(api).list_namespaced_event(namespace).items
        if e.involved_object.kind == kind and e.involved_object.name == name
    ]


# -- the corpus ------------------------------------------------------------------------------
def test_corpus_is_well_formed() -> None:
    """Every case says what it is, what it needs and what it must come to."""
    assert len(CORPUS) >= 12
    values = {"HUB": "http://hub", "GATED_REPO": "org/gated", "OTHER_TOKEN": "hf_x"}
    for path in CORPUS:
        case = load_case(path, values)
        assert set(case) == {"description", "setup", "manifest", "expect"}, path.name
        assert case["manifest"]["kind"] in PLURALS, path.name
        expect = case["expect"]
        assert expect["condition"] in ("Stalled", "Ready", "Serving", "Downloaded", "Running")
        assert expect["status"] in ("True", "False"), path.name
        assert set(expect) <= {"condition", "status", "reason", "messageContains", "timeout"}


@pytest.mark.parametrize("path", _params())
def test_runtime_bad_input_shows_a_typed_reason_without_harm(
    path: Path,
    api: client.ApiClient,
    namespace: str,
    operator: OperatorProcess,
    canary: Canary,
    corpus_values: dict[str, str],
) -> None:
    case = load_case(path, corpus_values)
    manifest, expect = case["manifest"], case["expect"]
    kind, name = manifest["kind"], manifest["metadata"]["name"]
    batch = client.BatchV1Api(api)
    canary_before = canary.snapshot()
    errors_before = operator.reconciles("error")

    for obj in case["setup"]:
        create(api, namespace, obj)
    create(api, namespace, manifest)

    def reached() -> dict[str, Any] | None:
        condition = condition_of(get_object(api, namespace, kind, name), expect["condition"])
        if condition.get("reason") == expect["reason"] and condition["status"] == expect["status"]:
            return condition
        return None

    try:
        condition = wait_for(
            reached,
            timeout=expect.get("timeout", 90),
            interval=1.0,
            message=f"{kind} {name}: {expect['condition']}={expect['status']} {expect['reason']}",
        )
    except AssertionError as error:
        status = get_object(api, namespace, kind, name).get("status")
        raise AssertionError(f"{error}\nstatus: {yaml.safe_dump(status)}") from None
    assert expect.get("messageContains", "") in condition["message"], condition

    # The Events of a transition follow its status write.
    wait_for(
        lambda: [
            e for e in events_about(api, namespace, kind, name) if e.reason == expect["reason"]
        ],
        timeout=10,
        message=f"an Event with reason {expect['reason']}",
    )
    time.sleep(EVENT_SETTLE_SECONDS)

    # A terminal reason stays put: no new Jobs, no status writes, no more Events.
    events_before = len(events_about(api, namespace, kind, name))
    versions = set()
    deadline = time.monotonic() + OBSERVE_SECONDS
    while time.monotonic() < deadline:
        owners = jobs_per_owner(batch, namespace)
        assert all(count <= 1 for count in owners.values()), f"more than one Job: {owners}"
        versions.add(get_object(api, namespace, kind, name)["metadata"]["resourceVersion"])
        time.sleep(1.0)
    assert len(versions) <= 1 + MAX_STATUS_WRITES, f"{kind} rewritten {len(versions) - 1} times"
    assert reached(), "the reason did not hold"
    events = events_about(api, namespace, kind, name)
    assert len(events) == events_before, [e.message for e in events[events_before:]]
    typed = [e for e in events if e.reason == expect["reason"]]
    assert typed, f"no Event with reason {expect['reason']}: {[e.reason for e in events]}"
    assert all(e.type == "Warning" for e in typed), [(e.type, e.message) for e in typed]
    # One transition posts one Event per condition it changes (Downloaded, Ready, Stalled...);
    # the same Event again would be a loop.
    repeated = Counter((e.reason, e.message) for e in events for _ in range(e.count or 1))
    assert max(repeated.values()) <= 2, f"Events repeated: {repeated}"

    # The operator survived it, and nothing outside this namespace moved.
    assert operator.process is not None and operator.process.poll() is None, "operator exited"
    errors = operator.reconciles("error") - errors_before
    assert errors <= MAX_RECONCILE_ERRORS, f"{errors:.0f} failed reconciles during the case"
    assert canary.snapshot() == canary_before
