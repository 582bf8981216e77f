"""Run modelfleet's Job pods for real on a cluster whose nodes are simulated.

kwok nodes never start containers. Pods that do real work (download, verify, resolve, train: the
``app.kubernetes.io/component`` label) are instead executed here as local processes, with the
container's command, args and environment; volumes are mapped to host directories (a claim to
the directory of its bound PersistentVolume), and the pod's status is then written the way a
kubelet would: Running while the process runs, then Succeeded or Failed with the exit code and
the termination message.

Serving pods (component ``serving``) run here too, for real, with a CPU vLLM engine: see
``modelfleet.dev.engines``. Their pod gets an address in the cluster's pod network
(``modelfleet.dev.network``).

A download or verify pod whose image is ``simulate.invalid/download`` is not executed: it
succeeds at once with the result line a real download would write (no bytes), its
``resolvedRevision`` derived from the requested repo and revision. Scale benchmarks and tests
use it to exercise the operator without moving weights.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from modelfleet.conditions import Reason
from modelfleet.contracts.download import DownloaderSettings
from modelfleet.contracts.results import DownloadResult
from modelfleet.dev.engines import (
    BACKOFF_INITIAL_SECONDS,
    ServingPodRun,
    executes_serving_pod,
)
from modelfleet.dev.network import PodNetwork
from modelfleet.kube.timestamps import now_text

LOG = logging.getLogger(__name__)

EXECUTED_COMPONENTS = ("download", "verify", "resolve", "train", "serving")
LABEL_SELECTOR = (
    "app.kubernetes.io/managed-by=modelfleet,"
    f"app.kubernetes.io/component in ({','.join(EXECUTED_COMPONENTS)})"
)
# Pods that have finished are never looked at again; leaving them out keeps each pass cheap
# when thousands of completed Job pods remain.
UNFINISHED = "status.phase!=Succeeded,status.phase!=Failed"
_TERMINATION_LOG_TAIL = 4096
SIMULATED_DOWNLOAD_IMAGE = "simulate.invalid/download"
DEFAULT_MAX_ENGINES = 3


def simulated_revision(repo: str, revision: str) -> str:
    """The commit a simulated download resolves ``repo@revision`` to: 40 stable hex digits."""
    return hashlib.sha1(f"{repo}@{revision}".encode()).hexdigest()


class PodConfigError(Exception):
    """The pod cannot start yet: a referenced Secret, ConfigMap or claim is missing."""


class VolumeMountError(PodConfigError):
    """A volume of the pod cannot be mounted: the pod stays in ContainerCreating and a
    FailedMount Event says why, as a kubelet does."""


def _terminated(container: Any, exit_code: int, message: str, started: str) -> dict[str, Any]:
    """The status of a container that has exited, as a kubelet reports it."""
    return {
        "name": container.name,
        "image": container.image,
        "imageID": "",
        "ready": False,
        "restartCount": 0,
        "started": False,
        "state": {
            "terminated": {
                "exitCode": exit_code,
                "reason": "Completed" if exit_code == 0 else "Error",
                "message": message,
                "startedAt": started,
                "finishedAt": now_text(),
            }
        },
    }


@dataclass
class _Execution:
    process: subprocess.Popen[bytes] | None = None
    done: threading.Event = field(default_factory=threading.Event)


class PodRunner:
    """Executes selected pods as local processes and reports their status."""

    def __init__(
        self,
        core: client.CoreV1Api,
        work_dir: Path,
        volume_root: Path,
        python: str | None = None,
        *,
        engine_python: str | None = None,
        network: PodNetwork | None = None,
        max_engines: int = DEFAULT_MAX_ENGINES,
        restart_backoff_seconds: float = BACKOFF_INITIAL_SECONDS,
    ) -> None:
        self.core = core
        self.work_dir = work_dir
        self.volume_root = volume_root
        self.python = python or sys.executable
        self.engine_python = engine_python
        self.restart_backoff_seconds = restart_backoff_seconds
        self._engine_slots = threading.BoundedSemaphore(max_engines)
        self.network = network or PodNetwork(work_dir.parent)
        self._serving: dict[str, ServingPodRun] = {}
        self._running: dict[str, _Execution] = {}
        self._finished: set[str] = set()
        # Pods whose volume could not be mounted: their FailedMount Event is posted once.
        self._mount_failures: set[str] = set()
        self._lock = threading.Lock()

    # -- the loop --------------------------------------------------------------------------
    def sync(self, pods: list[dict[str, Any]]) -> None:
        """One pass: start new pods, stop processes whose pod was deleted. ``pods`` are the
        unfinished pods of ``LABEL_SELECTOR``, from a watch (``Reflector``)."""
        alive = set()
        for pod in pods:
            meta, spec = pod["metadata"], pod.get("spec") or {}
            uid = meta["uid"]
            alive.add(uid)
            if meta.get("deletionTimestamp"):
                grace = meta.get("deletionGracePeriodSeconds")
                self._stop(uid, float(grace) if grace is not None else None)
                continue
            if not spec.get("nodeName") or (pod.get("status") or {}).get("phase") in (
                "Succeeded",
                "Failed",
            ):
                continue
            if meta.get("labels", {}).get("app.kubernetes.io/component") == "serving":
                if executes_serving_pod(pod):
                    self._start_serving(pod)
                continue
            with self._lock:
                if uid in self._running or uid in self._finished:
                    continue
                self._running[uid] = _Execution()
            # Only a pod that starts is made a client object (costly for hundreds at once).
            threading.Thread(
                target=self._run_pod, args=(client.V1Pod.from_dict(pod),), daemon=True
            ).start()
        with self._lock:
            gone = [uid for uid in [*self._running, *self._serving] if uid not in alive]
        for uid in gone:
            self._kill(uid)

    def stop_all(self) -> None:
        """Kill every running process (the agent is shutting down)."""
        with self._lock:
            uids = [*self._running, *self._serving]
        for uid in uids:
            self._kill(uid)

    def _start_serving(self, pod: dict[str, Any]) -> None:
        uid = pod["metadata"]["uid"]
        with self._lock:
            if uid in self._serving:
                return
            run = ServingPodRun(
                self,
                client.V1Pod.from_dict(pod),
                address=self.network.allocate(uid),
                slots=self._engine_slots,
                engine_python=self.engine_python,
                backoff_seconds=self.restart_backoff_seconds,
            )
            self._serving[uid] = run
        threading.Thread(target=run.run, daemon=True, name=f"pod-{uid[:8]}").start()

    def _serving_finished(self, uid: str) -> None:
        with self._lock:
            self._serving.pop(uid, None)
        self.network.release(uid)

    def _stop(self, uid: str, grace: float | None = None) -> None:
        """The pod was deleted: a serving pod stops gracefully, a Job pod's process dies."""
        with self._lock:
            serving = self._serving.get(uid)
        if serving is not None:
            serving.request_stop(grace)
            return
        self._kill(uid)

    def _kill(self, uid: str) -> None:
        with self._lock:
            execution = self._running.get(uid)
            serving = self._serving.get(uid)
        if serving is not None:
            serving.kill_now()
        if execution and execution.process and execution.process.poll() is None:
            LOG.info("pod %s deleted: killing its process", uid)
            os.killpg(execution.process.pid, signal.SIGKILL)

    # -- one pod ---------------------------------------------------------------------------
    def _run_pod(self, pod: Any) -> None:
        uid = pod.metadata.uid
        key = f"{pod.metadata.namespace}/{pod.metadata.name}"
        pod_dir = self.work_dir / "pods" / f"{pod.metadata.namespace}_{pod.metadata.name}_{uid}"
        pod_dir.mkdir(parents=True, exist_ok=True)
        started = now_text()
        statuses: list[dict[str, Any]] = []
        phase = "Succeeded"
        if any(c.image == SIMULATED_DOWNLOAD_IMAGE for c in pod.spec.containers):
            statuses = [self._simulated_download(c, started) for c in pod.spec.containers]
            with self._lock:
                self._running.pop(uid, None)
                self._finished.add(uid)
            self._patch_status(pod, phase, started, statuses)
            LOG.info("pod %s finished: simulated download", key)
            return
        try:
            mounts = self._volume_paths(pod, pod_dir)
            self._patch_status(pod, "Running", started, [])
            for container in [*(pod.spec.init_containers or []), *pod.spec.containers]:
                status = self._run_container(pod, container, mounts, pod_dir, uid)
                statuses.append(status)
                if status["state"]["terminated"]["exitCode"] != 0:
                    phase = "Failed"
                    break
        except VolumeMountError as error:
            LOG.warning("pod %s cannot mount a volume: %s", key, error)
            with self._lock:
                self._running.pop(uid, None)  # try again on a later pass
                first = uid not in self._mount_failures
                self._mount_failures.add(uid)
            if first:
                self._patch_waiting(pod, "", reason="ContainerCreating")
                self._post_event(pod, "FailedMount", str(error))
            return
        except PodConfigError as error:
            LOG.warning("pod %s cannot start: %s", key, error)
            with self._lock:
                self._running.pop(uid, None)  # try again on a later pass
            self._patch_waiting(pod, str(error))
            return
        except Exception:
            LOG.exception("running pod %s failed", key)
            phase = "Failed"
        with self._lock:
            self._running.pop(uid, None)
            self._finished.add(uid)
        self._patch_status(pod, phase, started, statuses)
        LOG.info("pod %s finished: %s", key, phase)

    def _volume_paths(self, pod: Any, pod_dir: Path) -> dict[str, Path]:
        """Host directory of each volume of the pod."""
        paths: dict[str, Path] = {}
        for volume in pod.spec.volumes or []:
            if volume.persistent_volume_claim:
                claim = self._read_claim(pod.metadata.namespace, volume.persistent_volume_claim)
                paths[volume.name] = claim
            elif volume.config_map:
                paths[volume.name] = self._config_map_dir(pod, volume, pod_dir)
            else:  # emptyDir and anything else: a scratch directory of the pod
                directory = pod_dir / "volumes" / volume.name
                directory.mkdir(parents=True, exist_ok=True)
                paths[volume.name] = directory
        return paths

    def _read_claim(self, namespace: str, source: Any) -> Path:
        try:
            claim = self.core.read_namespaced_persistent_volume_claim(source.claim_name, namespace)
        except ApiException as error:
            raise PodConfigError(
                f'persistentvolumeclaim "{source.claim_name}" not found'
            ) from error
        if not claim.spec.volume_name:
            raise PodConfigError(f'persistentvolumeclaim "{source.claim_name}" is not bound')
        volume = self.core.read_persistent_volume(claim.spec.volume_name)
        if volume.spec.host_path is None:
            raise PodConfigError(f"volume {volume.metadata.name} is not a host path")
        path = Path(volume.spec.host_path.path)
        if volume.spec.host_path.type == "Directory" and not path.is_dir():
            raise VolumeMountError(
                f'MountVolume.SetUp failed for volume "{volume.metadata.name}" : hostPath type'
                f" check failed: {path} is not a directory"
            )
        return path

    def _config_map_dir(self, pod: Any, volume: Any, pod_dir: Path) -> Path:
        directory: Path = pod_dir / "volumes" / volume.name
        directory.mkdir(parents=True, exist_ok=True)
        try:
            config_map = self.core.read_namespaced_config_map(
                volume.config_map.name, pod.metadata.namespace
            )
        except ApiException as error:
            raise PodConfigError(f'configmap "{volume.config_map.name}" not found') from error
        for key, value in (config_map.data or {}).items():
            (directory / key).write_text(value)
        return directory

    def _env(self, pod: Any, container: Any) -> dict[str, str]:
        env: dict[str, str] = {}
        for var in container.env or []:
            if var.value_from is None:
                env[var.name] = var.value or ""
                continue
            source = var.value_from
            if source.secret_key_ref is not None:
                env[var.name] = self._secret_value(pod, source.secret_key_ref)
            elif source.config_map_key_ref is not None:
                ref = source.config_map_key_ref
                try:
                    data = self.core.read_namespaced_config_map(ref.name, pod.metadata.namespace)
                except ApiException as error:
                    raise PodConfigError(f'configmap "{ref.name}" not found') from error
                env[var.name] = (data.data or {}).get(ref.key, "")
            elif source.field_ref is not None:
                field_path = source.field_ref.field_path
                values = {
                    "metadata.name": pod.metadata.name,
                    "metadata.namespace": pod.metadata.namespace,
                    "metadata.uid": pod.metadata.uid,
                    "spec.nodeName": pod.spec.node_name or "",
                    "spec.serviceAccountName": pod.spec.service_account_name or "",
                }
                env[var.name] = values.get(field_path, "")
        return env

    def _secret_value(self, pod: Any, ref: Any) -> str:
        try:
            secret = self.core.read_namespaced_secret(ref.name, pod.metadata.namespace)
        except ApiException as error:
            if ref.optional:
                return ""
            raise PodConfigError(f'secret "{ref.name}" not found') from error
        data = secret.data or {}
        if ref.key not in data:
            if ref.optional:
                return ""
            raise PodConfigError(f"couldn't find key {ref.key} in Secret {ref.name}")
        return base64.b64decode(data[ref.key]).decode()

    def _prepare_container(
        self, pod: Any, container: Any, volumes: Mapping[str, Path], pod_dir: Path
    ) -> tuple[list[str], dict[str, str], Path, Path]:
        """The argv and environment of ``container`` with container paths made host paths,
        its log file and its termination-message file."""
        # Container paths become host paths, longest mount first so nested mounts win.
        mapping: list[tuple[str, str]] = []
        for mount in container.volume_mounts or []:
            host = volumes[mount.name] / (mount.sub_path or "")
            mapping.append((mount.mount_path.rstrip("/") or "/", str(host)))
        termination_log = pod_dir / f"{container.name}.termination-log"
        termination_log.unlink(missing_ok=True)
        mapping.append(
            (container.termination_message_path or "/dev/termination-log", str(termination_log))
        )
        mapping.sort(key=lambda pair: len(pair[0]), reverse=True)

        def to_host(text: str) -> str:
            for container_path, host_path in mapping:
                if text == container_path or text.startswith(container_path + "/"):
                    return host_path + text[len(container_path) :]
                text = text.replace("=" + container_path, "=" + host_path)
            return text

        env = {name: to_host(value) for name, value in self._env(pod, container).items()}
        argv = [to_host(part) for part in [*(container.command or []), *(container.args or [])]]
        if argv and argv[0] in ("python", "python3"):
            argv[0] = self.python
        process_env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(pod_dir),
            "KUBECONFIG": os.environ.get("KUBECONFIG", ""),
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        return argv, process_env, pod_dir / f"{container.name}.log", termination_log

    def _run_container(
        self,
        pod: Any,
        container: Any,
        volumes: Mapping[str, Path],
        pod_dir: Path,
        uid: str,
        *,
        on_start: Callable[[subprocess.Popen[bytes]], None] | None = None,
    ) -> dict[str, Any]:
        """Run ``container`` to its end; its terminated status."""
        argv, process_env, log_path, termination_log = self._prepare_container(
            pod, container, volumes, pod_dir
        )
        termination_log.unlink(missing_ok=True)
        started = now_text()
        LOG.info("pod %s/%s: running %s", pod.metadata.namespace, pod.metadata.name, container.name)
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                argv,
                env=process_env,
                cwd=pod_dir,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            with self._lock:
                if uid in self._running:
                    self._running[uid].process = process
            if on_start is not None:
                on_start(process)
            exit_code = process.wait()
        if exit_code < 0:
            exit_code = 128 - exit_code  # killed by a signal, as a kubelet reports it
        message = termination_log.read_text() if termination_log.exists() else ""
        if not message and exit_code != 0:
            message = log_path.read_bytes()[-_TERMINATION_LOG_TAIL:].decode(errors="replace")
        return _terminated(container, exit_code, message[-_TERMINATION_LOG_TAIL:], started)

    def _simulated_download(self, container: Any, started: str) -> dict[str, Any]:
        """The terminated status of a download container that succeeded without running."""
        env = {var.name: var.value or "" for var in container.env or [] if var.value_from is None}
        task = DownloaderSettings.from_env(env)
        revision = simulated_revision(task.repo, task.revision)
        result = DownloadResult(
            result="Succeeded",
            reason=Reason.DOWNLOADED,
            message="simulated download: no bytes",
            resolved_revision=revision,
        )
        return _terminated(container, 0, result.line() + "\n", started)

    # -- status ----------------------------------------------------------------------------
    def _patch_status(
        self, pod: Any, phase: str, started: str, statuses: list[dict[str, Any]]
    ) -> None:
        init_names = {c.name for c in pod.spec.init_containers or []}
        status: dict[str, Any] = {
            "phase": phase,
            "startTime": started,
            "conditions": [
                {"type": "Ready", "status": "False", "lastTransitionTime": now_text()},
                {"type": "ContainersReady", "status": "False", "lastTransitionTime": now_text()},
            ],
        }
        if phase == "Running":
            status["containerStatuses"] = [
                {
                    "name": c.name,
                    "image": c.image,
                    "imageID": "",
                    "ready": False,
                    "restartCount": 0,
                    "started": True,
                    "state": {"running": {"startedAt": started}},
                }
                for c in pod.spec.containers
            ]
        else:
            status["containerStatuses"] = [s for s in statuses if s["name"] not in init_names]
            status["initContainerStatuses"] = [s for s in statuses if s["name"] in init_names]
        self._patch(pod, {"status": status})

    def _post_event(self, pod: Any, reason: str, message: str) -> None:
        """A Warning Event about ``pod``, as the kubelet posts it."""
        now = now_text()
        body = {
            "metadata": {
                "generateName": f"{pod.metadata.name}.",
                "namespace": pod.metadata.namespace,
            },
            "involvedObject": {
                "kind": "Pod",
                "namespace": pod.metadata.namespace,
                "name": pod.metadata.name,
                "uid": pod.metadata.uid,
                "apiVersion": "v1",
            },
            "reason": reason,
            "message": message,
            "type": "Warning",
            "source": {"component": "kubelet", "host": pod.spec.node_name or ""},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self.core.create_namespaced_event(pod.metadata.namespace, body)
        except ApiException as error:
            LOG.warning("could not post %s about %s: %s", reason, pod.metadata.name, error.reason)

    def _patch_waiting(
        self, pod: Any, message: str, *, reason: str = "CreateContainerConfigError"
    ) -> None:
        waiting = {"reason": reason, "message": message} if message else {"reason": reason}
        self._patch(
            pod,
            {
                "status": {
                    "phase": "Pending",
                    "containerStatuses": [
                        {
                            "name": c.name,
                            "image": c.image,
                            "imageID": "",
                            "ready": False,
                            "restartCount": 0,
                            "state": {"waiting": waiting},
                        }
                        for c in pod.spec.containers
                    ],
                }
            },
        )

    def _patch(self, pod: Any, body: dict[str, Any]) -> None:
        try:
            self.core.patch_namespaced_pod_status(pod.metadata.name, pod.metadata.namespace, body)
        except ApiException as error:
            if error.status != 404:
                LOG.warning("could not update pod %s status: %s", pod.metadata.name, error.reason)
