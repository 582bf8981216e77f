"""Bring the local cluster up and down: kwokctl with the binary runtime, simulated GPU and CPU
nodes, the local volume provisioner and pod runner (``modelfleet dev agent``)."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from modelfleet.dev.network import PodNetwork
from modelfleet.dev.nodes import default_nodes
from modelfleet.dev.provisioner import release_volumes, storage_class_manifests

LOG = logging.getLogger(__name__)

DEFAULT_NAME = "modelfleet"


def cache_dir() -> Path:
    """~/.cache/modelfleet, or MODELFLEET_CACHE."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "modelfleet"
    return Path(os.environ.get("MODELFLEET_CACHE", default))


@dataclass(frozen=True)
class Binaries:
    """Paths of the control plane's binaries (built by hack/build-tools.sh)."""

    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kubectl: Path
    etcd: Path
    kwok: Path
    kwokctl: Path

    @classmethod
    def from_env(cls) -> Binaries:
        """Read MODELFLEET_K8S_BIN, MODELFLEET_ETCD_BIN and MODELFLEET_KWOK_BIN."""
        k8s = Path(os.environ["MODELFLEET_K8S_BIN"])
        kwok = Path(os.environ["MODELFLEET_KWOK_BIN"])
        return cls(
            kube_apiserver=k8s / "kube-apiserver",
            kube_controller_manager=k8s / "kube-controller-manager",
            kube_scheduler=k8s / "kube-scheduler",
            kubectl=k8s / "kubectl",
            etcd=Path(os.environ["MODELFLEET_ETCD_BIN"]) / "etcd",
            kwok=kwok / "kwok",
            kwokctl=kwok / "kwokctl",
        )


@dataclass(frozen=True)
class DevCluster:
    """One named local cluster and the files that belong to it."""

    name: str = DEFAULT_NAME

    @property
    def state_dir(self) -> Path:
        """Kubeconfig, agent pid and logs, volumes."""
        return cache_dir() / "clusters" / self.name

    @property
    def kubeconfig(self) -> Path:
        """Admin kubeconfig of the cluster."""
        return self.state_dir / "kubeconfig"

    @property
    def volumes_dir(self) -> Path:
        """Where the provisioner keeps the PersistentVolumes' directories."""
        return self.state_dir / "volumes"

    @property
    def agent_pid_file(self) -> Path:
        """Pid of the running agent."""
        return self.state_dir / "agent.pid"

    def _env(self, binaries: Binaries) -> dict[str, str]:
        env = dict(os.environ)
        env["PATH"] = f"{binaries.kubectl.parent}{os.pathsep}{env.get('PATH', '')}"
        env["KWOK_KUBECTL_BINARY"] = str(binaries.kubectl)
        return env

    @property
    def audit_log(self) -> Path:
        """The API server's audit log, written when the cluster was created with a policy."""
        return Path.home() / ".kwok" / "clusters" / self.name / "logs" / "audit.log"

    def up(
        self,
        binaries: Binaries,
        *,
        gpu_nodes: int = 4,
        cpu_nodes: int = 2,
        audit_policy: Path | None = None,
        disable_qps_limits: bool = False,
        service_cidr: str | None = None,
    ) -> None:
        """Create the cluster (or reuse a running one), its nodes, storage and agent.

        ``audit_policy`` turns on the API server's audit log (``audit_log``) and
        ``disable_qps_limits`` lifts the client rate limits of the controller manager, scheduler
        and kwok; ``service_cidr`` replaces the API server's default Service range (10.0.0.0/24:
        about 250 Services). They take effect only when the cluster is created, not reused.
        """
        self.state_dir.mkdir(parents=True, exist_ok=True)
        stages = self.state_dir / "stages.yaml"
        stages.write_text(resources.files("modelfleet.dev").joinpath("stages.yaml").read_text())
        env = self._env(binaries)
        started = time.monotonic()
        if not self.is_running(binaries):
            options: list[str] = []
            if audit_policy is not None:
                options += ["--kube-audit-policy", str(audit_policy.resolve())]
            if disable_qps_limits:
                options.append("--disable-qps-limits")
            if service_cidr is not None:
                options += [
                    "--extra-args",
                    f"kube-apiserver=service-cluster-ip-range={service_cidr}",
                ]
            subprocess.run(
                [
                    str(binaries.kwokctl),
                    "create",
                    "cluster",
                    "--name",
                    self.name,
                    "--runtime",
                    "binary",
                    "--config",
                    str(stages),
                    "--kube-authorization",
                    "--kube-admission",
                    "--kube-apiserver-binary",
                    str(binaries.kube_apiserver),
                    "--kube-controller-manager-binary",
                    str(binaries.kube_controller_manager),
                    "--kube-scheduler-binary",
                    str(binaries.kube_scheduler),
                    "--etcd-binary",
                    str(binaries.etcd),
                    "--kwok-controller-binary",
                    str(binaries.kwok),
                    "--kubeconfig",
                    str(self.state_dir / "kwokctl-kubeconfig"),
                    "--wait",
                    "120s",
                    *options,
                ],
                check=True,
                env=env,
            )
        kubeconfig = subprocess.run(
            [str(binaries.kwokctl), "get", "kubeconfig", "--name", self.name],
            check=True,
            env=env,
            capture_output=True,
            text=True,
        ).stdout
        self.kubeconfig.write_text(kubeconfig)
        self.kubeconfig.chmod(0o600)
        LOG.info("API server healthy after %.1fs", time.monotonic() - started)
        manifests = [*storage_class_manifests(), *default_nodes(gpu_nodes, cpu_nodes)]
        self.kubectl(binaries, "apply", "-f", "-", stdin=yaml.safe_dump_all(manifests))
        self.start_agent()
        self.kubectl(binaries, "wait", "--for=condition=Ready", "node", "--all", "--timeout=120s")
        LOG.info("cluster %s ready after %.1fs", self.name, time.monotonic() - started)

    def exists(self, binaries: Binaries) -> bool:
        """Whether kwokctl knows a cluster of this name, healthy or not."""
        result = subprocess.run(
            [str(binaries.kwokctl), "get", "clusters"],
            env=self._env(binaries),
            capture_output=True,
            text=True,
            check=False,
        )
        return self.name in result.stdout.split()

    def is_running(self, binaries: Binaries) -> bool:
        """Whether kwokctl knows a cluster of this name and its API server is ready."""
        if not self.exists(binaries):
            return False
        probe = subprocess.run(
            [str(binaries.kwokctl), "get", "kubeconfig", "--name", self.name],
            env=self._env(binaries),
            capture_output=True,
            check=False,
        )
        if probe.returncode != 0:
            return False
        self.kubeconfig.write_bytes(probe.stdout)
        health = subprocess.run(
            [
                str(binaries.kubectl),
                "--kubeconfig",
                str(self.kubeconfig),
                "get",
                "--raw",
                "/readyz",
            ],
            capture_output=True,
            check=False,
        )
        return health.returncode == 0

    def kubectl(self, binaries: Binaries, *args: str, stdin: str | None = None) -> str:
        """Run kubectl against this cluster and return its output."""
        result = subprocess.run(
            [str(binaries.kubectl), "--kubeconfig", str(self.kubeconfig), *args],
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def start_agent(self) -> None:
        """Start `modelfleet dev agent` in the background unless it already runs."""
        if self._agent_pid() is not None:
            return
        log = (self.state_dir / "agent.log").open("ab")
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "modelfleet.cli.main",
                "dev",
                "agent",
                "--name",
                self.name,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, "KUBECONFIG": str(self.kubeconfig)},
        )
        self.agent_pid_file.write_text(str(process.pid))

    def _agent_pid(self) -> int | None:
        try:
            pid = int(self.agent_pid_file.read_text())
            os.kill(pid, 0)
        except (FileNotFoundError, ValueError, ProcessLookupError):
            return None
        return pid

    def stop_processes(self) -> None:
        """Stop every background process recorded in the state dir (agent, demo hub, operator)."""
        for pid_file in self.state_dir.glob("*.pid"):
            try:
                pid = int(pid_file.read_text())
                os.killpg(pid, signal.SIGTERM)
            except (ValueError, ProcessLookupError, PermissionError):
                continue
            for _ in range(50):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
            else:
                os.killpg(pid, signal.SIGKILL)

    def down(self, binaries: Binaries) -> None:
        """Stop the background processes and every process of the cluster; remove its state
        and its pod network."""
        self.stop_processes()
        PodNetwork(self.state_dir).delete()
        subprocess.run(
            [str(binaries.kwokctl), "delete", "cluster", "--name", self.name],
            env=self._env(binaries),
            check=False,
        )
        release_volumes(self.state_dir / "volumes")
        shutil.rmtree(self.state_dir, ignore_errors=True)
