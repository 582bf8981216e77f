"""Serving for real, piece by piece: the arguments vLLM accepts, the one CPU substitution, the
smoke test against a real HTTP server, and how the operator reads serving pods."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

import pytest
import yaml

from modelfleet.builders.serving import SMOKE_TEST_CONDITION
from modelfleet.conditions import STALLED_REASONS, Reason
from modelfleet.dev.engines import (
    CPU_ENGINE_ENV,
    SIMULATED_ENGINE_IMAGES,
    Backoff,
    cpu_engine_command,
)
from modelfleet.dev.podrunner import EXECUTED_COMPONENTS
from modelfleet.reconcile.model.decide import (
    CRASH_LOOP_RESTARTS,
    _serving_problem,
    smoke_test_decisions,
)
from modelfleet.reconcile.model.observe import Observed, pods_awaiting_smoke_test
from modelfleet.smoketest import SmokeResult, smoke_test
from tests.support.cluster import engine_python
from tests.unit.test_builders import deployment_for, load_example

pytestmark = pytest.mark.unit

SERVING_EXAMPLES = ("model-tiny", "model-qwen", "model-gated", "model-pvc", "model-modelscope")
VARIANTS: dict[str, dict[str, Any]] = {
    "tensor-parallel": {"serving": {"gpu": {"count": 4}, "tensorParallelSize": 2}},
    "lora": {"serving": {"loraAdapters": [{"name": "sql", "path": "/models/adapters/sql"}]}},
    "extra-args": {
        "serving": {
            "args": ["--max-num-seqs", "8", "--enable-prefix-caching"],
            "gpuMemoryUtilization": 0.85,
            "dtype": "bfloat16",
            "servedModelName": "chat",
        }
    },
}


def engine_argvs() -> dict[str, list[str]]:
    """Every shape of `vllm serve` command line the builder emits, by case name."""
    cases: dict[str, list[str]] = {}
    for example in SERVING_EXAMPLES:
        container = deployment_for(load_example(example))["spec"]["template"]["spec"]["containers"][
            0
        ]
        cases[example] = [*container["command"], *container["args"]]
    for name, overrides in VARIANTS.items():
        container = deployment_for(load_example("model-tiny", **overrides))["spec"]["template"][
            "spec"
        ]["containers"][0]
        cases[name] = [*container["command"], *container["args"]]
    return cases


PARSE = """
import json, sys
from vllm.entrypoints.launchers.cli_args import make_arg_parser
from vllm.utils.argparse_utils import FlexibleArgumentParser
parser = make_arg_parser(FlexibleArgumentParser())
for name, argv in json.load(sys.stdin).items():
    assert argv[:2] == ["vllm", "serve"], argv
    parser.parse_args(["--model", argv[2], *argv[3:]])
    print("parsed", name)
"""


def parse_in_vllm(cases: dict[str, list[str]]) -> subprocess.CompletedProcess[str]:
    """Each `vllm serve` command line through vLLM's own argument parser, in the engine's
    environment (skips where hack/engine-env.sh has not installed it)."""
    python = engine_python()
    if python is None:
        pytest.skip("the CPU vLLM engine is not installed: bash hack/engine-env.sh")
    return subprocess.run(
        [python, "-c", PARSE],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={"VLLM_TARGET_DEVICE": "cpu", "PATH": "/usr/bin:/bin"},
    )


def test_every_engine_command_line_the_builder_emits_parses_in_vllm() -> None:
    cases = engine_argvs()
    result = parse_in_vllm(cases)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split("\n")[:-1] == [f"parsed {name}" for name in cases]


def test_vllm_refuses_an_argument_it_does_not_know() -> None:
    """The parser check above can fail: vLLM's parser exits on an unknown flag."""
    result = parse_in_vllm({"bad": ["vllm", "serve", "/m", "--no-such-flag"]})
    assert result.returncode != 0
    assert "--no-such-flag" in result.stderr


def test_the_cpu_substitution_keeps_every_argument_of_the_builder() -> None:
    argv = engine_argvs()["tensor-parallel"]
    command, env = cpu_engine_command(
        argv,
        {"HOME": "/tmp/x"},
        pod_ip="198.18.3.7",
        engine_python="/engine/bin/python",
        exec_prefix=["nsenter", "--net=/run/netns/n"],
    )
    assert command[:7] == [
        "nsenter",
        "--net=/run/netns/n",
        "/engine/bin/python",
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        argv[2],
    ]
    rest = command[7:]
    assert rest[rest.index("--host") + 1] == "198.18.3.7"
    assert rest[rest.index("--tensor-parallel-size") + 1] == "1"
    assert rest[-1] == "--enforce-eager"
    # Everything else the builder wrote is there, in its order.
    kept = [a for a in argv[3:] if a not in ("0.0.0.0", "2", "--host", "--tensor-parallel-size")]
    assert [a for a in rest if a in kept] == kept
    assert env == {"HOME": "/tmp/x", **CPU_ENGINE_ENV}


def test_the_cpu_substitution_refuses_anything_but_vllm_serve() -> None:
    with pytest.raises(ValueError, match="vllm serve"):
        cpu_engine_command(["python", "x.py"], {}, pod_ip="1.2.3.4", engine_python="p")


def test_restart_back_off_doubles_to_five_minutes() -> None:
    backoff = Backoff(10)
    assert [backoff.next() for _ in range(7)] == [10, 20, 40, 80, 160, 300, 300]


def test_kwok_leaves_executed_serving_pods_alone() -> None:
    """The stages that make pods Ready or delete them at once name exactly the simulated
    engine images; every other serving pod is the agent's."""
    text = resources.files("modelfleet.dev").joinpath("stages.yaml").read_text()
    stages = {
        d["metadata"]["name"]: d for d in yaml.safe_load_all(text) if d.get("kind") == "Stage"
    }

    def values(stage: str, key: str) -> tuple[str, set[str]]:
        for expression in stages[stage]["spec"]["selector"]["matchExpressions"]:
            if expression["key"] == key:
                return expression["operator"], set(expression["values"])
        raise AssertionError(f"{stage} has no selector on {key}")

    component = '.metadata.labels["app.kubernetes.io/component"]'
    image = ".spec.containers.[0].image"
    assert values("pod-ready", component) == ("NotIn", set(EXECUTED_COMPONENTS))
    jobs = set(EXECUTED_COMPONENTS) - {"serving"}
    assert values("pod-complete", component) == ("NotIn", jobs)  # every Job pod run for real
    assert values("pod-ready-simulated-engine", image) == ("In", {"simulate.invalid/engine"})
    assert values("pod-delete", component) == ("NotIn", {"serving"})
    assert values("pod-delete-simulated-engine", image) == ("In", set(SIMULATED_ENGINE_IMAGES))


# -- the smoke test against a real HTTP server ---------------------------------------------------
class _Engine(BaseHTTPRequestHandler):
    """Answers /v1/completions like vLLM: a stream of chunks, or a 400 with vLLM's error."""

    mode = "ok"

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.mode == "error":
            payload = json.dumps(
                {"error": {"message": "This model's maximum context length is 4 tokens"}}
            ).encode()
            self.send_response(400)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        texts = [] if self.mode == "empty" else [" t1", " t2", " t3"]
        for text in texts:
            chunk = {"model": body["model"], "choices": [{"index": 0, "text": text}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        usage = {"choices": [], "usage": {"completion_tokens": len(texts)}}
        self.wfile.write(f"data: {json.dumps(usage)}\n\ndata: [DONE]\n\n".encode())

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def engine() -> Iterator[tuple[ThreadingHTTPServer, type[_Engine]]]:
    handler = type("Engine", (_Engine,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, handler
    server.shutdown()


def test_smoke_test_measures_a_streamed_completion(engine: Any) -> None:
    server, _ = engine
    result = smoke_test("127.0.0.1", server.server_address[1], "tiny")
    assert result.passed and result.tokens == 3
    assert result.time_to_first_token is not None and result.time_to_first_token >= 0
    assert result.tokens_per_second is not None and result.tokens_per_second > 0


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("error", "HTTP 400: This model's maximum context length is 4 tokens"),
        ("empty", "no tokens"),
    ],
)
def test_smoke_test_fails_with_the_engines_own_message(
    engine: Any, mode: str, message: str
) -> None:
    server, handler = engine
    handler.mode = mode
    result = smoke_test("127.0.0.1", server.server_address[1], "tiny")
    assert not result.passed
    assert message in result.message


def test_smoke_test_of_an_address_nobody_listens_on_fails_quickly() -> None:
    result = smoke_test("127.0.0.1", 9, "tiny", timeout=5)
    assert not result.passed and "no answer" in result.message


# -- how the operator reads serving pods ---------------------------------------------------------
def pod(
    name: str,
    *,
    containers_ready: bool = True,
    ready: bool = False,
    gate: dict[str, Any] | None = None,
    ip: str | None = "198.18.1.2",
    deleting: bool = False,
    init: dict[str, Any] | None = None,
    engine: dict[str, Any] | None = None,
) -> dict[str, Any]:
    conditions = [
        {"type": "ContainersReady", "status": str(containers_ready)},
        {"type": "Ready", "status": str(ready)},
    ]
    if gate is not None:
        conditions.append({"type": SMOKE_TEST_CONDITION, **gate})
    meta: dict[str, Any] = {"name": name, "annotations": {"modelfleet.io/revision": "abc"}}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-01T00:00:00Z"
    status: dict[str, Any] = {"conditions": conditions}
    if ip:
        status["podIP"] = ip
    if init is not None:
        status["initContainerStatuses"] = [{"name": "verify-weights", **init}]
    if engine is not None:
        status["containerStatuses"] = [{"name": "vllm", **engine}]
    return {"metadata": meta, "status": status}


NOW = 1_800_000_000.0
NOW_TEXT = "2027-01-15T08:00:00Z"


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        (pod("new"), True),
        (pod("passed", ready=True, gate={"status": "True"}), False),
        (pod("no-gate-ready", ready=True), False),
        (pod("starting", containers_ready=False), False),
        (pod("no-address", ip=None), False),
        (pod("leaving", deleting=True), False),
        (pod("failed-now", gate={"status": "False", "lastProbeTime": NOW_TEXT}), False),
        (
            pod(
                "failed-long-ago", gate={"status": "False", "lastProbeTime": "2020-01-01T00:00:00Z"}
            ),
            True,
        ),
    ],
    ids=lambda v: v["metadata"]["name"] if isinstance(v, dict) else str(v),
)
def test_which_pods_are_asked_for_a_smoke_completion(case: dict[str, Any], expected: bool) -> None:
    from modelfleet.kube.timestamps import parse_time

    now = parse_time(NOW_TEXT)
    assert now is not None
    assert (pods_awaiting_smoke_test([case], now) == [case]) is expected


def test_smoke_results_become_gate_conditions_and_status() -> None:
    observed = Observed(
        serving_pods=[pod("a"), pod("b")],
        smoke_results={
            "a": SmokeResult(True, "8 tokens", time_to_first_token=0.05, tokens_per_second=90.0),
            "b": SmokeResult(False, "HTTP 400: too long"),
        },
    )
    conditions, latest = smoke_test_decisions(observed, NOW_TEXT, None)
    assert [(name, c["status"], c["reason"]) for name, c in conditions] == [
        ("a", "True", "SmokeTestPassed"),
        ("b", "False", Reason.SMOKE_TEST_FAILED),
    ]
    assert all(c["type"] == SMOKE_TEST_CONDITION for _, c in conditions)
    assert latest is not None and latest["pod"] == "b" and latest["passed"] is False
    assert latest["revision"] == "abc"
    assert _serving_problem(observed) == (Reason.SMOKE_TEST_FAILED, "pod b: HTTP 400: too long")
    assert Reason.SMOKE_TEST_FAILED in STALLED_REASONS
    unchanged = smoke_test_decisions(Observed(serving_pods=[pod("a")]), NOW_TEXT, latest)
    assert unchanged == ([], latest)


def test_a_failing_verify_container_is_weights_invalid() -> None:
    failed = {
        "restartCount": 1,
        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": {"exitCode": 1, "message": "boom\nmanifest missing"}},
    }
    reason, message = _serving_problem(Observed(serving_pods=[pod("p", init=failed)])) or ("", "")
    assert reason == Reason.WEIGHTS_INVALID
    assert message.endswith("manifest missing") and "verify-weights" in message


@pytest.mark.parametrize("restarts", [1, CRASH_LOOP_RESTARTS - 1, CRASH_LOOP_RESTARTS])
def test_crash_loop_only_after_repeated_restarts(restarts: int) -> None:
    engine = {"restartCount": restarts, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
    problem = _serving_problem(Observed(serving_pods=[pod("p", engine=engine)]))
    if restarts >= CRASH_LOOP_RESTARTS:
        assert problem is not None and problem[0] == Reason.CRASH_LOOP
    else:
        assert problem is None
