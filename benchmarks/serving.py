"""Real serving in the local cluster: apply to first token, engine start, memory, a roll.

Starts (or reuses) a local cluster of its own, the test hub and the operator, then:

1. applies the tiny Model with 2 replicas of a real CPU vLLM engine after dropping the page
   cache (cold: the engine's libraries and the weights are read from disk) and times apply to
   the first token answered through the Service;
2. deletes it and applies it again (warm: everything in the page cache);
3. reads each engine's start (container started to ContainersReady) and memory (the
   proportional set size of its whole process group);
4. rolls it to the hub's other revision while a client asks through the Service every 0.5 s,
   and counts failed requests and the fewest ready endpoints.

Prints a markdown section; ``--write FILE`` replaces the ``## Serving`` section of FILE.

    python benchmarks/serving.py --write docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT), str(REPO_ROOT / "operator"), str(REPO_ROOT / "benchmarks")]

import psutil  # noqa: E402
import yaml  # noqa: E402
from kubernetes import client, config  # noqa: E402
from scale import binaries  # noqa: E402
from tests.hubserver.__main__ import DEMO_REPO, demo_hub  # noqa: E402
from tests.support.cluster import engine_python, scratch_namespace, wait_for  # noqa: E402
from tests.support.operator import OperatorProcess  # noqa: E402

from modelfleet.dev.client import SteadyClient, complete_through_service  # noqa: E402
from modelfleet.dev.cluster import DevCluster  # noqa: E402

SECTION = re.compile(r"^## Serving\n.*?(?=^## |\Z)", re.DOTALL | re.MULTILINE)
GROUP, VERSION, PLURAL = "modelfleet.io", "v1alpha1", "models"
PROMPT = "t3 t4"


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def tiny(endpoint: str) -> dict[str, Any]:
    manifest: dict[str, Any] = yaml.safe_load((REPO_ROOT / "examples/model-tiny.yaml").read_text())
    manifest["spec"]["source"]["huggingface"]["endpoint"] = endpoint
    return manifest


def first_answer(api: client.ApiClient, namespace: str, timeout: float) -> float:
    """Seconds until the Service answers a completion (polled every 0.2 s)."""
    started = time.monotonic()
    wait_for(
        lambda: _answers(api, namespace),
        timeout=timeout,
        interval=0.2,
        message="a completion through the Service",
    )
    return time.monotonic() - started


def _answers(api: client.ApiClient, namespace: str) -> bool:
    try:
        return bool(complete_through_service(api, namespace, "tiny", "tiny", PROMPT, timeout=10))
    except (LookupError, OSError):
        return False


def engines(api: client.ApiClient, namespace: str) -> list[dict[str, float]]:
    """Start seconds and resident MB of each serving pod's engine."""
    found = []
    pods = client.CoreV1Api(api).list_namespaced_pod(
        namespace, label_selector="app.kubernetes.io/component=serving"
    )
    for pod in pods.items:
        running = pod.status.container_statuses[0].state.running
        ready = next(c for c in pod.status.conditions if c.type == "ContainersReady")
        started = running.started_at
        if isinstance(started, str):
            started = datetime.fromisoformat(started.replace("Z", "+00:00"))
        rss = 0
        for process in psutil.process_iter(["cmdline"]):
            cmdline = process.info["cmdline"] or []
            if pod.status.pod_ip in cmdline and "vllm.entrypoints.openai.api_server" in cmdline:
                group = os.getpgid(process.pid)
                # PSS: shared pages (torch's libraries, mapped by all three processes) are
                # counted once, in shares, not three times as a sum of RSS would.
                rss = sum(
                    p.memory_full_info().pss for p in psutil.process_iter() if _pgid(p.pid) == group
                )
        found.append(
            {
                "start": (ready.last_transition_time - started).total_seconds(),
                "rss_mb": rss / 1e6,
            }
        )
    return found


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def run(args: argparse.Namespace) -> dict[str, Any]:
    cluster = DevCluster(args.cluster)
    bins = binaries()
    engine = engine_python()
    if engine is None:
        raise SystemExit("the CPU vLLM engine is not installed: bash hack/engine-env.sh")
    os.environ["MODELFLEET_ENGINE_PYTHON"] = engine
    cluster.up(bins, gpu_nodes=2, cpu_nodes=1)
    subprocess.run(
        [str(bins.kubectl), "--kubeconfig", str(cluster.kubeconfig), "apply", "--server-side",
         "--force-conflicts", "-f", str(REPO_ROOT / "crds")],
        check=True, capture_output=True,
    )  # fmt: skip
    api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    custom = client.CustomObjectsApi(api)
    hub = demo_hub(port=0)
    operator = OperatorProcess(cluster.kubeconfig, cluster.state_dir / "bench-operator.log")
    operator.start()
    results: dict[str, Any] = {}
    try:
        with scratch_namespace(api, prefix="bench") as namespace:
            manifest = tiny(hub.endpoint)
            if os.geteuid() == 0:
                subprocess.run(["sync"], check=True)
                Path("/proc/sys/vm/drop_caches").write_text("3\n")
            log("cold: applying the tiny Model (2 replicas)")
            start = time.monotonic()
            custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, manifest)
            first_answer(api, namespace, timeout=900)
            results["cold"] = time.monotonic() - start
            wait_for(lambda: len(engines(api, namespace)) == 2, timeout=300, message="2 engines")
            results["engines"] = engines(api, namespace)
            custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "tiny")
            wait_for(
                lambda: (
                    not client.CoreV1Api(api)
                    .list_namespaced_pod(namespace, label_selector="modelfleet.io/model=tiny")
                    .items
                ),
                timeout=300,
                message="the first Model's pods to go",
            )
            log("warm: applying it again")
            start = time.monotonic()
            custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, manifest)
            first_answer(api, namespace, timeout=900)
            results["warm"] = time.monotonic() - start
            wait_for(
                lambda: (
                    custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "tiny")
                    .get("status", {})
                    .get("serving", {})
                    .get("readyReplicas")
                    == 2
                ),
                timeout=600,
                message="2 ready replicas",
            )
            new_sha = hub.repos[DEMO_REPO].refs["v2"]
            log("roll: to revision v2 with a client every 0.5 s")
            start = time.monotonic()
            with SteadyClient(api, namespace, "tiny", "tiny", PROMPT, interval=0.5) as steady:
                custom.patch_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURAL, "tiny",
                    {"spec": {"source": {"huggingface": {"revision": "v2"}}}},
                )  # fmt: skip
                wait_for(
                    lambda: (
                        custom.get_namespaced_custom_object(
                            GROUP, VERSION, namespace, PLURAL, "tiny"
                        )["status"]["serving"].get("activeRevision")
                        == new_sha
                    ),
                    timeout=900,
                    interval=2,
                    message="the new revision active",
                )
                results["roll"] = time.monotonic() - start
                time.sleep(3)
            results["requests"] = len(steady.answers) + len(steady.failures)
            results["failed"] = len(steady.failures)
            results["fewest_ready"] = steady.fewest_ready
    finally:
        operator.stop()
        hub.stop()
        if not args.keep:
            cluster.down(bins)
    return results


def section(results: dict[str, Any]) -> str:
    starts = [e["start"] for e in results["engines"]]
    memory = [e["rss_mb"] for e in results["engines"]]
    load = os.getloadavg()
    return "\n".join(
        [
            "## Serving",
            "",
            "Real serving in the local cluster: the tiny Model (`examples/model-tiny.yaml`, 2"
            " replicas) on the CPU build of vLLM "
            "(`hack/engine-env.sh`), each engine in its own executed pod. "
            f"{os.cpu_count()} CPUs, Python {platform.python_version()}, load average"
            f" {load[0]:.1f} after the run. Run: `python benchmarks/serving.py --write"
            " docs/benchmarks.md`.",
            "",
            "| what | measured |",
            "|---|---|",
            f"| apply to first token through the Service, cold (page cache dropped: engine"
            f" libraries and weights from disk) | {results['cold']:.0f} s |",
            f"| apply to first token, warm (page cache) | {results['warm']:.0f} s |",
            "| engine start (container started to ready: load, profile, `/health`), per engine |"
            f" {', '.join(f'{s:.0f} s' for s in starts)} (two starting at once on 2 cores) |",
            "| memory per engine (proportional set size of its whole process group: API server,"
            f" engine core, worker) | {', '.join(f'{m:.0f} MB' for m in memory)} |",
            f"| roll of 2 replicas to a new revision (maxSurge 1) | {results['roll']:.0f} s |",
            f"| requests during the roll (one every 0.5 s through the Service), failed |"
            f" {results['requests']}, {results['failed']} failed |",
            f"| fewest ready endpoints during the roll | {results['fewest_ready']} |",
            "",
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--cluster", default="modelfleet-bench")
    parser.add_argument("--keep", action="store_true", help="leave the cluster running")
    parser.add_argument("--write", type=Path, help="replace the '## Serving' section here")
    args = parser.parse_args()
    text = section(run(args))
    print(text)
    if args.write:
        doc = args.write.read_text()
        doc = SECTION.sub(text, doc) if SECTION.search(doc) else doc + "\n" + text
        args.write.write_text(doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
