"""Serving for real: the local cluster runs each serving pod's init container and a CPU vLLM
engine, probes it as a kubelet would, and routes its Service to the pod's own address.

Every test here starts real engines (about 0.9 GB and 40-90 s each on 2 cores); the local
cluster runs at most three at once, and so does each test.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from modelfleet.dev.client import SteadyClient, complete, ready_endpoints
from tests.hubserver.__main__ import DEMO_REPO
from tests.hubserver.server import HubServer
from tests.integration.test_model_lifecycle import Models, _host_path, tiny_manifest
from tests.support.cluster import TestCluster, wait_for

ENGINE_START_SECONDS = 300  # two engines starting at once on a busy 2-core machine
PROMPT = "t3 t4"


@pytest.fixture(autouse=True)
def _local_only(cluster: TestCluster) -> None:
    if not cluster.local:
        pytest.skip("real engines run in the local cluster's executed pods")


def _real_tiny(hub: HubServer, replicas: int, **spec: Any) -> dict[str, Any]:
    manifest = tiny_manifest(hub, real_engine=True, **spec)
    manifest["spec"]["serving"]["replicas"] = replicas
    return manifest


def _serving_pods(core: client.CoreV1Api, namespace: str) -> list[Any]:
    return [
        pod
        for pod in core.list_namespaced_pod(
            namespace, label_selector="app.kubernetes.io/component=serving"
        ).items
        if pod.metadata.deletion_timestamp is None
    ]


def _ask(api: client.ApiClient, namespace: str) -> str:
    """One completion through the Service: any ready endpoint of its EndpointSlices."""
    endpoints = ready_endpoints(api, namespace, "tiny")
    assert endpoints, "the Service has no ready endpoint"
    address, port = endpoints[0]
    return complete(address, port, "tiny", PROMPT, max_tokens=8, timeout=30).text


def _engine_pid(address: str) -> int | None:
    """The pid of the engine listening at ``address`` (its command line names it)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"vllm.entrypoints.openai.api_server" in argv and address.encode() in argv:
            return int(proc.name)
    return None


def _group_members(pgid: int) -> list[int]:
    """Processes whose process group is ``pgid`` (an engine leads its own group)."""
    members = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid:
                members.append(int(proc.name))
    return members


def test_apply_ready_answers_and_rolls_to_a_new_revision_without_a_failed_request(
    api: client.ApiClient, namespace: str, models: Models, model_hub: HubServer
) -> None:
    core = client.CoreV1Api(api)
    started = time.monotonic()
    models.create(_real_tiny(model_hub, replicas=2))
    models.wait_ready("tiny", timeout=ENGINE_START_SECONDS)
    apply_to_ready = time.monotonic() - started
    status = models.get("tiny")["status"]
    smoke = status["serving"]["smokeTest"]
    assert smoke["passed"] is True and smoke["timeToFirstTokenSeconds"] > 0, smoke
    assert smoke["tokensPerSecond"] > 0
    for pod in _serving_pods(core, namespace):
        assert pod.status.pod_ip.startswith("198.18."), "an address of the local pod network"
        gates = {c.type: c.status for c in pod.status.conditions}
        assert gates["modelfleet.io/smoke-test"] == "True"
        inits = pod.status.init_container_statuses
        assert inits[0].name == "verify-weights"
        assert inits[0].state.terminated.exit_code == 0, "the real init container ran"
    old_answer = _ask(api, namespace)
    assert old_answer.strip(), "the engine generated text"
    print(f"apply to Ready (2 engines): {apply_to_ready:.0f}s; answer: {old_answer!r}")

    # A client asks every 0.5 s through the Service (a ready endpoint, as kube-proxy picks).
    new_sha = model_hub.repos[DEMO_REPO].refs["v2"]
    with SteadyClient(api, namespace, "tiny", "tiny", PROMPT, interval=0.5) as steady:
        models.patch_spec("tiny", {"source": {"huggingface": {"revision": "v2"}}})
        wait_for(
            lambda: (
                models.get("tiny")["status"].get("serving", {}).get("activeRevision") == new_sha
            ),
            timeout=2 * ENGINE_START_SECONDS,
            interval=2,
            message="the new revision to be active",
        )
        rolled = time.monotonic()
        models.wait_ready("tiny", timeout=60)
        time.sleep(5)
    answers, failures = steady.answers, steady.failures
    assert failures == [], f"{len(failures)} failed requests during the roll: {failures[:5]}"
    assert (steady.fewest_ready or 0) >= 2, f"ready endpoints fell to {steady.fewest_ready}"
    after = [text for sent, text in answers if sent > rolled + 1]
    assert after, "answers after the roll"
    assert all(text == after[0] for text in after), "every answer after the roll is the same"
    assert after[0] != old_answer, "the new revision's weights answer differently"
    assert {text for _, text in answers} <= {old_answer, after[0]}
    print(f"{len(answers)} answers during the roll, 0 failed; new answer: {after[0]!r}")


def test_missing_weights_manifest_fails_the_init_container_and_restoring_recovers(
    api: client.ApiClient, namespace: str, models: Models, model_hub: HubServer
) -> None:
    core = client.CoreV1Api(api)
    models.create(_real_tiny(model_hub, replicas=1))
    models.wait_ready("tiny", timeout=ENGINE_START_SECONDS)
    sha = model_hub.repos[DEMO_REPO].refs["main"]
    manifest = _host_path(api, namespace, "tiny-weights") / DEMO_REPO / sha
    manifest /= ".modelfleet-manifest.json"
    saved = manifest.read_bytes()
    manifest.unlink()
    (pod,) = _serving_pods(core, namespace)
    core.delete_namespaced_pod(pod.metadata.name, namespace)  # its replacement verifies again

    condition = models.wait_reason("tiny", "Stalled", "WeightsInvalid", timeout=120)
    assert condition["status"] == "True"
    assert "verify-weights" in condition["message"]
    (pod,) = wait_for(lambda: _serving_pods(core, namespace), message="the new pod")
    pod = core.read_namespaced_pod(pod.metadata.name, namespace)
    (init,) = pod.status.init_container_statuses
    failed = init.last_state.terminated or init.state.terminated
    assert failed is not None and failed.exit_code != 0, "the real verify-weights failed"
    engine = pod.status.container_statuses[0]
    assert engine.state.running is None, "no engine starts on unverified weights"
    assert _engine_pid(pod.status.pod_ip) is None

    manifest.write_bytes(saved)
    models.wait_ready("tiny", timeout=ENGINE_START_SECONDS)
    assert _ask(api, namespace).strip()


def test_killed_engine_restarts_with_back_off_then_crash_loops(
    api: client.ApiClient, namespace: str, models: Models, model_hub: HubServer
) -> None:
    core = client.CoreV1Api(api)
    models.create(_real_tiny(model_hub, replicas=1))
    models.wait_ready("tiny", timeout=ENGINE_START_SECONDS)
    (pod,) = _serving_pods(core, namespace)
    name, address = pod.metadata.name, pod.status.pod_ip

    def engine_status() -> Any:
        return core.read_namespaced_pod(name, namespace).status.container_statuses[0]

    killed: list[int] = []
    for kills in range(1, 4):
        pid = wait_for(lambda: _engine_pid(address), timeout=60, message="an engine process")
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

        def restarted(kills: int = kills) -> Any:
            status = engine_status()
            return status if status.restart_count >= kills else None

        status = wait_for(
            restarted,
            timeout=60,
            message=f"restart {kills}",
        )
        assert status.last_state.terminated.exit_code == 137
        assert status.last_state.terminated.reason == "Error"
        if kills == 1:
            assert status.state.waiting.reason == "CrashLoopBackOff", "a back-off first"
            assert models.condition("tiny", "Stalled").get("status") != "True"
    condition = models.wait_reason("tiny", "Stalled", "CrashLoop", timeout=60)
    assert name in condition["message"]
    assert len(set(killed)) == 3, "each restart started a new engine process"
    leftovers = {pid: _group_members(pid) for pid in killed}
    assert not any(leftovers.values()), f"a dead engine left processes behind: {leftovers}"

    # Left alone, it comes back.
    models.wait_ready("tiny", timeout=ENGINE_START_SECONDS)
    assert engine_status().restart_count == 3


def test_a_revision_that_fails_its_smoke_test_never_becomes_active(
    api: client.ApiClient, namespace: str, models: Models, model_hub: HubServer
) -> None:
    models.create(_real_tiny(model_hub, replicas=1))
    models.wait_ready("tiny", timeout=ENGINE_START_SECONDS)
    sha = model_hub.repos[DEMO_REPO].refs["main"]
    before = _ask(api, namespace)

    # The engine starts with a context of 4 tokens: /health answers, no completion fits.
    models.patch_spec("tiny", {"serving": {"maxModelLen": 4}})
    condition = models.wait_reason("tiny", "Stalled", "SmokeTestFailed", timeout=300)
    assert "maximum context length" in condition["message"] or "HTTP 400" in condition["message"]
    status = models.get("tiny")["status"]
    assert status["serving"]["activeRevision"] == sha
    assert status["serving"]["smokeTest"]["passed"] is False
    assert models.condition("tiny", "Ready")["status"] == "False"
    # The old pod still serves, and answers as before.
    assert _ask(api, namespace) == before

    # Fixing the spec recovers: a new pod, a new smoke test, the same weights.
    models.patch_spec("tiny", {"serving": {"maxModelLen": 256}})
    models.wait_ready("tiny", timeout=ENGINE_START_SECONDS)
    assert models.get("tiny")["status"]["serving"]["smokeTest"]["passed"] is True
    assert _ask(api, namespace) == before


def test_the_pod_network_reaches_a_pod_after_every_other_pod_went_away(tmp_path: Path) -> None:
    """The kernel drops an interface's routes with its last address: a new pod after all the
    others left must still be reachable."""
    import http.server
    import subprocess
    import sys
    import urllib.request

    from modelfleet.dev.network import PodNetwork

    network = PodNetwork(tmp_path)
    assert network.ensure(), "the pod network needs root"
    try:
        network.allocate("first")
        network.release("first")
        address = network.allocate("second")
        server = subprocess.Popen(
            [*network.exec_prefix(), sys.executable, "-m", http.server.__name__, "8000",
             "--bind", address, "--directory", str(tmp_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:

            def answers() -> bool:
                try:
                    with urllib.request.urlopen(f"http://{address}:8000/", timeout=2):
                        return True
                except OSError:
                    return False

            wait_for(answers, timeout=30, message=f"an answer from {address}")
        finally:
            server.kill()
            server.wait()
    finally:
        network.delete()
