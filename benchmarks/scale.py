"""Scale benchmark: N Models on one operator, on the local control plane with simulated GPUs.

Creates its own cluster (``--name``, default ``modelfleet-scale``) with an API server audit
log that records only the operator's requests, simulated GPU nodes with room for every serving
replica plus one surge pod each, and runs the operator (`modelfleet run`) under its own
ServiceAccount bound to the Helm chart's ClusterRole. Then:

1. creates N Models across ``--namespaces`` namespaces, a third each cache-only, serving one
   replica and serving two; their download Jobs complete by simulation (the dev agent
   succeeds a pod whose image is ``simulate.invalid/download`` with the result line of a real
   download and no bytes);
2. measures the time until each is Ready, the operator's requests until then (audit log),
   its requests per minute at idle, its peak RSS and CPU seconds;
3. changes every Model's revision (``main`` -> ``v2``, a new simulated commit) and measures
   the time until each serves the new one.

    .venv/bin/python benchmarks/scale.py --models 100 --write docs/benchmarks.md

``--write`` adds (or replaces) this N's row in the ``## Scale`` section of the file and
redraws ``docs/scale.png`` from every row there.
"""

from __future__ import annotations

import argparse
import atexit
import json
import math
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT), str(REPO_ROOT / "operator"), str(REPO_ROOT / "benchmarks")]

import psutil  # noqa: E402
import yaml  # noqa: E402
from kubernetes import client, config, watch  # noqa: E402
from kubernetes.client.exceptions import ApiException  # noqa: E402
from scale_audit import audit_policy, between, per_minute, read_requests, summarize  # noqa: E402
from tests.support.chart import chart_operator_kubeconfig, render_chart  # noqa: E402
from tests.support.operator import OperatorProcess  # noqa: E402

from modelfleet.dev.cluster import Binaries, DevCluster  # noqa: E402
from modelfleet.dev.engines import SIMULATED_ENGINE_IMAGE  # noqa: E402
from modelfleet.dev.podrunner import SIMULATED_DOWNLOAD_IMAGE, simulated_revision  # noqa: E402

GROUP, VERSION, PLURAL = "modelfleet.io", "v1alpha1", "models"
REPO = "modelfleet-test/tiny-llama"
OPERATOR_NAMESPACE = "modelfleet-scale"
OPERATOR_ACCOUNT = "operator"
OPERATOR_USER = f"system:serviceaccount:{OPERATOR_NAMESPACE}:{OPERATOR_ACCOUNT}"
NAMESPACE_PREFIX = "scale-"
KINDS = ("cache-only", "serving-1", "serving-2")


def log(message: str) -> None:
    """Progress on stderr, with a timestamp."""
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


# -- the cluster -------------------------------------------------------------------------------
def binaries() -> Binaries:
    """The pinned control-plane binaries (hack/versions.sh), built when missing."""
    subprocess.run(["bash", str(REPO_ROOT / "hack/build-tools.sh"), "cluster"], check=True)
    paths = subprocess.run(
        ["bash", "-c", 'source hack/versions.sh; echo "$K8S_BIN $ETCD_BIN $KWOK_BIN"'],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    os.environ |= dict(
        zip(
            ("MODELFLEET_K8S_BIN", "MODELFLEET_ETCD_BIN", "MODELFLEET_KWOK_BIN"), paths, strict=True
        )
    )
    return Binaries.from_env()


def start_cluster(name: str, gpu_nodes: int, fresh: bool) -> DevCluster:
    """A cluster with the audit policy and enough GPU nodes; re-created when ``fresh``."""
    bins = binaries()
    cluster = DevCluster(name)
    if fresh:
        cluster.down(bins)
    cluster.state_dir.mkdir(parents=True, exist_ok=True)
    policy = cluster.state_dir / "audit-policy.yaml"
    policy.write_text(yaml.safe_dump(audit_policy(OPERATOR_USER)))
    started = time.monotonic()
    cluster.up(
        bins,
        gpu_nodes=gpu_nodes,
        cpu_nodes=2,
        audit_policy=policy,
        disable_qps_limits=True,
        # One Service per serving Model: the default 10.0.0.0/24 holds about 250.
        service_cidr="10.96.0.0/16",
    )
    log(f"cluster {name} up with {gpu_nodes} GPU nodes in {time.monotonic() - started:.0f}s")
    if not cluster.audit_log.exists():
        raise SystemExit(
            f"{cluster.audit_log} missing: the cluster was created without the audit policy;"
            " run again without --reuse"
        )
    return cluster


def apply(cluster: DevCluster, manifests: list[dict[str, Any]]) -> None:
    """kubectl apply, server-side, as the admin."""
    cluster.kubectl(
        binaries_cached(),
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        "-",
        stdin=yaml.safe_dump_all(manifests),
    )


_BINARIES: Binaries | None = None


def binaries_cached() -> Binaries:
    """Binaries, resolved once."""
    global _BINARIES  # noqa: PLW0603 - resolved once per process
    if _BINARIES is None:
        _BINARIES = Binaries.from_env()
    return _BINARIES


def operator_identity(cluster: DevCluster, work: Path) -> Path:
    """A ServiceAccount bound to the chart's ClusterRole, and a kubeconfig that acts as it."""
    rendered = render_chart({}, work, release="modelfleet", namespace=OPERATOR_NAMESPACE)
    role = next(doc for doc in rendered if doc["kind"] == "ClusterRole")
    role["metadata"] = {"name": "modelfleet-scale-operator"}
    manifests: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": OPERATOR_NAMESPACE}},
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": OPERATOR_ACCOUNT, "namespace": OPERATOR_NAMESPACE},
        },
        role,
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "modelfleet-scale-operator"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "modelfleet-scale-operator",
            },
            "subjects": [
                {
                    "kind": "ServiceAccount",
                    "name": OPERATOR_ACCOUNT,
                    "namespace": OPERATOR_NAMESPACE,
                }
            ],
        },
    ]
    apply(cluster, manifests)
    cluster.kubectl(binaries_cached(), "apply", "--server-side", "-f", str(REPO_ROOT / "crds"))
    # kubectl wait fails at once, instead of waiting, while a new CRD has no conditions yet.
    for attempt in range(30):
        try:
            cluster.kubectl(
                binaries_cached(),
                "wait",
                "--for=condition=Established",
                "crd/models.modelfleet.io",
                "--timeout=60s",
            )
            break
        except RuntimeError:
            if attempt == 29:
                raise
            time.sleep(1)
    return chart_operator_kubeconfig(
        cluster.kubeconfig,
        OPERATOR_NAMESPACE,
        OPERATOR_ACCOUNT,
        work / "operator-kubeconfig",
        duration="12h",
    )


# -- the Models --------------------------------------------------------------------------------
def model_manifest(index: int, namespace: str, revision: str = "main") -> dict[str, Any]:
    """Model number ``index``: cache-only, serving 1 replica or serving 2, by index modulo 3."""
    kind = KINDS[index % 3]
    spec: dict[str, Any] = {
        "source": {
            "huggingface": {
                "repo": REPO,
                "revision": revision,
                # Never contacted: the download is simulated.
                "endpoint": "http://127.0.0.1:9",
            }
        },
        "storage": {"size": "1Gi"},
        "download": {"image": SIMULATED_DOWNLOAD_IMAGE},
    }
    if kind != "cache-only":
        spec["serving"] = {
            "replicas": 1 if kind == "serving-1" else 2,
            "gpu": {"count": 1},
            "maxModelLen": 512,
            # Thousands of engines do not fit on one machine: kwok makes these pods Ready.
            "image": SIMULATED_ENGINE_IMAGE,
        }
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Model",
        "metadata": {"name": f"m-{index:04d}", "namespace": namespace},
        "spec": spec,
    }


def _condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    for condition in (obj.get("status") or {}).get("conditions", []):
        if condition.get("type") == type_:
            return dict(condition)
    return {}


def is_ready(obj: dict[str, Any]) -> bool:
    """Ready=True for the current generation."""
    status = obj.get("status") or {}
    return _condition(obj, "Ready").get("status") == "True" and status.get(
        "observedGeneration"
    ) == obj["metadata"].get("generation")


def serves(revision: str) -> Callable[[dict[str, Any]], bool]:
    """Ready, with ``revision`` verified and (when serving) active."""

    def check(obj: dict[str, Any]) -> bool:
        status = obj.get("status") or {}
        if not is_ready(obj) or status.get("resolvedRevision") != revision:
            return False
        if obj["spec"].get("serving"):
            return (status.get("serving") or {}).get("activeRevision") == revision
        return True

    return check


class ReadyTracker:
    """Watches every Model and records when each first meets the current phase's test."""

    def __init__(self, api: client.ApiClient) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.lock = threading.Lock()
        self.test: Callable[[dict[str, Any]], bool] = is_ready
        self.done: dict[str, float] = {}
        self.latest: dict[str, dict[str, Any]] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def phase(self, test: Callable[[dict[str, Any]], bool]) -> None:
        """Start a phase: forget who was done, judge everyone anew."""
        with self.lock:
            self.test = test
            self.done = {}
            for key, obj in self.latest.items():
                if test(obj):
                    self.done[key] = time.time()

    def count(self) -> int:
        """How many Models passed the current phase's test."""
        with self.lock:
            return len(self.done)

    def _run(self) -> None:
        resource_version = ""
        while not self.stop.is_set():
            try:
                stream = watch.Watch().stream(
                    self.custom.list_cluster_custom_object,
                    GROUP,
                    VERSION,
                    PLURAL,
                    resource_version=resource_version,
                    allow_watch_bookmarks=True,
                    timeout_seconds=120,
                )
                for event in stream:
                    obj = event["object"]
                    meta = obj.get("metadata", {})
                    resource_version = meta.get("resourceVersion", resource_version)
                    if event["type"] == "BOOKMARK":
                        continue
                    key = f"{meta['namespace']}/{meta['name']}"
                    with self.lock:
                        self.latest[key] = obj
                        if key not in self.done and self.test(obj):
                            self.done[key] = time.time()
            except ApiException as error:
                if error.status == 410:
                    resource_version = ""
                else:
                    time.sleep(1)
            except Exception:  # noqa: BLE001 - a broken watch is re-established
                time.sleep(1)


class ProcessSampler:
    """Peak RSS and CPU seconds of the operator, and CPU of the cluster's processes."""

    def __init__(self, pid: int, cluster_name: str) -> None:
        self.process = psutil.Process(pid)
        self.cluster_name = cluster_name
        self.peak_rss = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                self.peak_rss = max(self.peak_rss, self.process.memory_info().rss)
            except psutil.Error:
                return
            self.stop.wait(0.5)

    def cpu(self) -> float:
        """User plus system CPU seconds of the operator so far."""
        times = self.process.cpu_times()
        return float(times.user + times.system)

    def cluster_cpu(self) -> dict[str, float]:
        """CPU seconds so far of each control-plane process of this cluster, and the agent."""
        result: dict[str, float] = {}
        marker = f"/clusters/{self.cluster_name}/"
        for proc in psutil.process_iter(["cmdline", "cpu_times"]):
            cmdline = " ".join(proc.info["cmdline"] or [])
            if marker not in cmdline and f"--name {self.cluster_name}" not in cmdline:
                continue
            times = proc.info["cpu_times"]
            if times is None:
                continue
            name = Path((proc.info["cmdline"] or ["?"])[0]).name
            if "dev agent" in cmdline:
                name = "dev-agent"
            result[name] = result.get(name, 0.0) + times.user + times.system
        return result


def operator_counters(port: int) -> dict[str, float]:
    """modelfleet_api_requests_total by (verb, resource) and modelfleet_reconciles_total by
    (kind, result), from the metrics endpoint."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return {}
    counters: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(("modelfleet_api_requests_total{", "modelfleet_reconciles_total{")):
            labels, value = line.rsplit(" ", 1)
            counters[labels.removeprefix("modelfleet_api_requests_total")] = float(value)
    return counters


def percentile(values: list[float], fraction: float) -> float:
    """The ``fraction`` quantile (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


def wait_all(tracker: ReadyTracker, total: int, timeout: float, what: str) -> tuple[float, bool]:
    """Wait until ``total`` Models passed the phase test; (end time, all passed)."""
    deadline = time.monotonic() + timeout
    last_log = 0.0
    while time.monotonic() < deadline:
        done = tracker.count()
        if done >= total:
            return time.time(), True
        if time.monotonic() - last_log > 15:
            log(f"{what}: {done}/{total}")
            last_log = time.monotonic()
        time.sleep(0.2)
    return time.time(), False


def latencies(started: dict[str, float], finished: dict[str, float]) -> dict[str, Any]:
    """p50/p95/max seconds from each Model's start to its finish."""
    values = [finished[k] - started[k] for k in started if k in finished]
    if not values:
        return {}
    return {
        "p50": round(statistics.median(values), 1),
        "p95": round(percentile(values, 0.95), 1),
        "max": round(max(values), 1),
    }


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30),
        "load": [round(x, 2) for x in os.getloadavg()],
        "python": sys.version.split()[0],
        "date": time.strftime("%Y-%m-%d"),
    }


# -- the run -----------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> dict[str, Any]:
    n, namespaces = args.models, args.namespaces
    gpu_nodes = args.gpu_nodes or math.ceil(n * 5 / 3 / 8) + 1
    before = machine()
    cluster = start_cluster(args.name, gpu_nodes, fresh=not args.reuse)
    work = cluster.state_dir / "scale"
    work.mkdir(exist_ok=True)
    config.load_kube_config(config_file=str(cluster.kubeconfig))
    api = client.ApiClient()
    core, custom, batch = (
        client.CoreV1Api(api),
        client.CustomObjectsApi(api),
        client.BatchV1Api(api),
    )
    names = [f"{NAMESPACE_PREFIX}{i}" for i in range(namespaces)]
    existing = {ns.metadata.name for ns in core.list_namespace().items}
    if existing & set(names):
        raise SystemExit(f"namespaces {sorted(existing & set(names))} exist: run without --reuse")
    for name in names:
        core.create_namespace({"metadata": {"name": name}})
    kubeconfig = operator_identity(cluster, work)

    operator = OperatorProcess(
        kubeconfig,
        work / "operator.log",
        env={
            "MODELFLEET_HEALTH_PORT": str(args.port),
            "MODELFLEET_METRICS_PORT": str(args.port + 1000),
            "MODELFLEET_RESYNC_SECONDS": str(args.resync),
            "MODELFLEET_STANDALONE": "true",
        },
    )
    tracker = ReadyTracker(api)
    t_start_operator = time.time()
    operator.start()
    atexit.register(operator.stop)  # also when the run fails half-way
    assert operator.process is not None
    sampler = ProcessSampler(operator.process.pid, args.name)
    time.sleep(3)  # let kopf list and start watching before the clock starts
    result: dict[str, Any] = {
        "models": n,
        "namespaces": namespaces,
        "gpu_nodes": gpu_nodes,
        "resync_seconds": args.resync,
        "mix": {kind: sum(1 for i in range(n) if KINDS[i % 3] == kind) for kind in KINDS},
        "machine_before": before,
    }
    cpu_marks = {"start": sampler.cpu()}
    cluster_cpu_start = sampler.cluster_cpu()
    counters_start = operator_counters(args.port + 1000)

    # 1. apply -> Ready
    log(f"creating {n} Models in {namespaces} namespaces")
    created: dict[str, float] = {}
    t0 = time.time()

    def create(index: int) -> None:
        namespace = names[index % namespaces]
        manifest = model_manifest(index, namespace)
        key = f"{namespace}/{manifest['metadata']['name']}"
        created[key] = time.time()
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, manifest)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(create, range(n)))
    result["create_seconds"] = round(time.time() - t0, 1)
    t_ready, all_ready = wait_all(tracker, n, args.timeout, "Ready")
    ready_times = dict(tracker.done)
    result["ready"] = {
        "all": all_ready,
        "count": len(ready_times),
        "total_seconds": round(t_ready - t0, 1),
        **latencies(created, ready_times),
    }
    cpu_marks["ready"] = sampler.cpu()
    counters_ready = operator_counters(args.port + 1000)
    log(f"all Ready: {result['ready']}")

    # 2. idle
    time.sleep(args.settle)
    t_idle = time.time()
    cpu_marks["idle_start"] = sampler.cpu()
    log(f"idle for {args.idle_seconds}s")
    time.sleep(args.idle_seconds)
    t_idle_end = time.time()
    cpu_marks["idle_end"] = sampler.cpu()

    # 3. revision change
    patched: dict[str, float] = {}
    t2 = time.time()
    result["rollout"] = {"all": False, "count": 0, "total_seconds": None, "skipped": True}
    if args.rollout:
        rollout(
            args, custom=custom, tracker=tracker, created=created, patched=patched, result=result
        )
    time.sleep(5)  # let the last deletions of superseded Jobs land
    t_end = time.time()
    cpu_marks["end"] = sampler.cpu()
    counters_end = operator_counters(args.port + 1000)
    cluster_cpu_end = sampler.cluster_cpu()

    # correctness: one download Job per Model left, no duplicates
    jobs = batch.list_job_for_all_namespaces(
        label_selector="app.kubernetes.io/component=download"
    ).items
    per_model: dict[str, int] = {}
    for job in jobs:
        key = f"{job.metadata.namespace}/{job.metadata.labels.get('modelfleet.io/model')}"
        per_model[key] = per_model.get(key, 0) + 1
    result["jobs_left"] = {"total": len(jobs), "max_per_model": max(per_model.values(), default=0)}

    sampler.stop.set()
    tracker.stop.set()
    operator.stop()
    result["operator"] = {
        "peak_rss_mb": round(sampler.peak_rss / 2**20, 1),
        "cpu_seconds_to_ready": round(cpu_marks["ready"] - cpu_marks["start"], 1),
        "cpu_seconds_idle": round(cpu_marks["idle_end"] - cpu_marks["idle_start"], 2),
        "cpu_seconds_rollout": round(cpu_marks["end"] - cpu_marks["idle_end"], 1),
        "cpu_ms_per_model_to_ready": round((cpu_marks["ready"] - cpu_marks["start"]) * 1000 / n, 1),
    }
    result["cluster_cpu_seconds"] = {
        k: round(v - cluster_cpu_start.get(k, 0.0), 1) for k, v in cluster_cpu_end.items()
    }
    result["machine_after"] = machine()

    # requests, from the audit log
    time.sleep(2)
    requests = read_requests(cluster.audit_log, OPERATOR_USER)
    result["requests"] = {
        "startup": summarize(between(requests, t_start_operator, t0), n),
        "to_ready": summarize(between(requests, t0, t_ready), n),
        "settle": summarize(between(requests, t_ready, t_idle), n),
        "idle": per_minute(between(requests, t_idle, t_idle_end), t_idle_end - t_idle),
        "rollout": summarize(between(requests, t2, t_end), n),
    }
    result["pickup"] = {
        "to_ready": pickup(requests, created, t0, t_ready),
        "rollout": pickup(requests, patched, t2, t_end),
    }
    result["operator_counters"] = {
        "to_ready": _delta(counters_start, counters_ready),
        "to_end": _delta(counters_ready, counters_end),
    }
    (work / f"result-{n}.json").write_text(json.dumps(result, indent=2))
    log(f"result in {work / f'result-{n}.json'}")
    return result


def rollout(
    args: argparse.Namespace,
    *,
    custom: client.CustomObjectsApi,
    tracker: ReadyTracker,
    created: dict[str, float],
    patched: dict[str, float],
    result: dict[str, Any],
) -> None:
    """Change every Model's revision to v2; wait until each serves it."""
    n = args.models
    new_revision = simulated_revision(REPO, "v2")
    tracker.phase(serves(new_revision))
    log("changing every Model's revision to v2")
    t2 = time.time()

    def patch(key: str) -> None:
        namespace, name = key.split("/")
        patched[key] = time.time()
        custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            {"spec": {"source": {"huggingface": {"revision": "v2"}}}},
        )

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(patch, sorted(created)))
    t_rolled, all_rolled = wait_all(tracker, n, args.timeout, "serving v2")
    rolled_times = dict(tracker.done)
    result["rollout"] = {
        "all": all_rolled,
        "count": len(rolled_times),
        "total_seconds": round(t_rolled - t2, 1),
        **latencies(patched, rolled_times),
    }
    log(f"rollout: {result['rollout']}")


def pickup(
    requests: list[Any], started: dict[str, float], start: float, end: float
) -> dict[str, Any]:
    """How long after its change the operator first sent a request about each Model, and how
    long after that its first write: queueing in the operator versus waiting on the cluster."""
    first: dict[str, float] = {}
    first_write: dict[str, float] = {}
    for request in between(requests, start, end):
        key = request.model
        if key is None:
            continue
        first.setdefault(key, request.time)
        if request.write and request.client == "modelfleet":
            first_write.setdefault(key, request.time)
    return {
        "first_request": latencies(started, first),
        "first_write": latencies(started, first_write),
    }


def _delta(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {k: v - a.get(k, 0.0) for k, v in b.items() if v - a.get(k, 0.0)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--models", type=int, required=True)
    parser.add_argument("--gpu-nodes", type=int, default=0, help="default: serving + surge room")
    parser.add_argument("--namespaces", type=int, default=10)
    parser.add_argument("--name", default="modelfleet-scale", help="cluster name")
    parser.add_argument("--reuse", action="store_true", help="reuse a running cluster")
    parser.add_argument("--down", action="store_true", help="tear the cluster down at the end")
    parser.add_argument("--port", type=int, default=18481, help="operator health port")
    parser.add_argument(
        "--resync",
        type=float,
        default=120.0,
        help="MODELFLEET_RESYNC_SECONDS; below --idle-seconds so that the idle window sees one",
    )
    parser.add_argument("--idle-seconds", type=float, default=150.0)
    parser.add_argument("--settle", type=float, default=15.0)
    parser.add_argument("--timeout", type=float, default=1800.0, help="per phase")
    parser.add_argument(
        "--no-rollout", dest="rollout", action="store_false", help="skip the revision change"
    )
    parser.add_argument("--write", type=Path, help="update the ## Scale section of this file")
    parser.add_argument("--note", default="", help="said under the table, e.g. other load")
    args = parser.parse_args()
    try:
        result = run(args)
    finally:
        if args.down:
            DevCluster(args.name).down(binaries_cached())
    print(json.dumps(result, indent=2))
    if args.write:
        from scale_report import write_report  # noqa: PLC0415

        write_report(args.write, result, args.note)


if __name__ == "__main__":
    main()
