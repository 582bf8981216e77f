"""Every pod the builders describe passes the Pod Security Standards "restricted" profile.

``restricted_violations`` applies the rules of the profile (baseline included) as the API
server's PodSecurity admission does for ``pod-security.kubernetes.io/enforce: restricted``
(https://kubernetes.io/docs/concepts/security/pod-security-standards/). The last test shows it
refuses pods that break each rule, so a pass means something.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from modelfleet.builders.common import Manifest
from modelfleet.builders.download import build_download_job, build_verify_job
from modelfleet.builders.serving import build_deployment
from tests.unit.test_builders import SETTINGS, deployment_for, download_job_for, load_example

pytestmark = pytest.mark.unit

RESTRICTED_VOLUME_TYPES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}
ALLOWED_SECCOMP = {"RuntimeDefault", "Localhost"}


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """Why the pod spec would be refused under the "restricted" profile; empty when admitted."""
    problems: list[str] = []
    pod_sc = pod.get("securityContext", {})
    containers = [
        *pod.get("initContainers", []),
        *pod.get("containers", []),
        *pod.get("ephemeralContainers", []),
    ]
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(field):
            problems.append(f"{field} is true")
    for volume in pod.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUME_TYPES:
            problems.append(f"volume {volume['name']} has type {sorted(kinds)}")
    for sysctl in pod_sc.get("sysctls", []):
        if sysctl["name"] not in SAFE_SYSCTLS:
            problems.append(f"unsafe sysctl {sysctl['name']}")
    if pod_sc.get("runAsUser") == 0:
        problems.append("pod runAsUser is 0")
    if pod_sc.get("seLinuxOptions", {}).get("user") or pod_sc.get("seLinuxOptions", {}).get("role"):
        problems.append("pod sets seLinuxOptions user or role")
    pod_seccomp = pod_sc.get("seccompProfile", {}).get("type")
    if pod_seccomp is not None and pod_seccomp not in ALLOWED_SECCOMP:
        problems.append(f"pod seccompProfile {pod_seccomp}")

    for container in containers:
        name = container["name"]
        sc = container.get("securityContext", {})
        if sc.get("privileged"):
            problems.append(f"{name}: privileged")
        if sc.get("windowsOptions", {}).get("hostProcess"):
            problems.append(f"{name}: hostProcess")
        if sc.get("procMount", "Default") != "Default":
            problems.append(f"{name}: procMount {sc['procMount']}")
        if sc.get("seLinuxOptions", {}).get("user") or sc.get("seLinuxOptions", {}).get("role"):
            problems.append(f"{name}: seLinuxOptions user or role")
        if any(p.get("hostPort") for p in container.get("ports", [])):
            problems.append(f"{name}: hostPort")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation is not false")
        # runAsNonRoot: set true on the pod (and not overridden false) or on the container.
        non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
        if non_root is not True:
            problems.append(f"{name}: runAsNonRoot is not true")
        if sc.get("runAsUser") == 0:
            problems.append(f"{name}: runAsUser is 0")
        seccomp = sc.get("seccompProfile", {}).get("type", pod_seccomp)
        if seccomp not in ALLOWED_SECCOMP:
            problems.append(f"{name}: seccompProfile {seccomp}")
        capabilities = sc.get("capabilities", {})
        if "ALL" not in capabilities.get("drop", []):
            problems.append(f"{name}: capabilities do not drop ALL")
        if set(capabilities.get("add", [])) - {"NET_BIND_SERVICE"}:
            problems.append(f"{name}: adds capabilities {capabilities['add']}")
    return problems


def _pod(manifest: Manifest) -> dict[str, Any]:
    pod: dict[str, Any] = manifest["spec"]["template"]["spec"]
    return pod


POD_BUILDERS: dict[str, Callable[[], Manifest]] = {
    "download-tiny": lambda: download_job_for(load_example("model-tiny")),
    "download-gated": lambda: download_job_for(load_example("model-gated")),
    "download-modelscope": lambda: build_download_job(
        load_example("model-modelscope"),
        settings=SETTINGS,
        revision="master",
        retry_token="",
        protected_paths=[],
    ),
    "verify-pvc": lambda: build_verify_job(
        load_example("model-pvc"), settings=SETTINGS, retry_token=""
    ),
    "serving-tiny": lambda: deployment_for(load_example("model-tiny")),
    "serving-gated": lambda: deployment_for(load_example("model-gated")),
    "serving-qwen-spread": lambda: deployment_for(load_example("model-qwen")),
    "serving-pvc": lambda: build_deployment(
        load_example("model-pvc"),
        settings=SETTINGS,
        model_path="/models/qwen2.5-7b-instruct",
        revision="preloaded",
        claim_name="preloaded-weights",
    ),
}


@pytest.mark.parametrize("builder", POD_BUILDERS.values(), ids=POD_BUILDERS.keys())
def test_every_pod_is_admitted_under_restricted(builder: Callable[[], Manifest]) -> None:
    pod = _pod(builder())
    assert restricted_violations(pod) == []
    # Stated on the pod itself, not left to the image: the vLLM image's user is root.
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}


def test_read_only_root_where_the_program_allows_it() -> None:
    job_pod = _pod(download_job_for(load_example("model-tiny")))
    serving_pod = _pod(deployment_for(load_example("model-tiny")))
    read_only = {
        c["name"]: c["securityContext"]["readOnlyRootFilesystem"]
        for c in [
            *job_pod["containers"],
            *serving_pod["initContainers"],
            *serving_pod["containers"],
        ]
    }
    assert read_only == {"download": True, "verify-weights": True, "vllm": False}
    for pod in (job_pod, serving_pod):
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert "/tmp" in mounts, container["name"]
    vllm_env = {e["name"]: e.get("value") for e in serving_pod["containers"][0]["env"]}
    for name in ("HOME", "XDG_CACHE_HOME", "TRITON_CACHE_DIR", "VLLM_CACHE_ROOT", "HF_HOME"):
        assert vllm_env[name] is not None
        assert vllm_env[name].startswith("/tmp"), name


BREAKAGES: dict[str, Callable[[dict[str, Any]], None]] = {
    "hostPath volume": lambda pod: pod["volumes"].append(
        {"name": "host", "hostPath": {"path": "/"}}
    ),
    "root user": lambda pod: pod["securityContext"].update(runAsUser=0),
    "runAsNonRoot false on a container": lambda pod: pod["containers"][0]["securityContext"].update(
        runAsNonRoot=False
    ),
    "privilege escalation": lambda pod: pod["containers"][0]["securityContext"].update(
        allowPrivilegeEscalation=True
    ),
    "capabilities kept": lambda pod: pod["containers"][0]["securityContext"].update(
        capabilities={"drop": ["NET_RAW"]}
    ),
    "capability added": lambda pod: pod["initContainers"][0]["securityContext"][
        "capabilities"
    ].update(add=["SYS_ADMIN"]),
    "seccomp unconfined": lambda pod: pod["securityContext"].update(
        seccompProfile={"type": "Unconfined"}
    ),
    "privileged": lambda pod: pod["containers"][0]["securityContext"].update(privileged=True),
    "hostNetwork": lambda pod: pod.update(hostNetwork=True),
    "hostPort": lambda pod: pod["containers"][0]["ports"][0].update(hostPort=8000),
}


@pytest.mark.parametrize("breakage", BREAKAGES.values(), ids=BREAKAGES.keys())
def test_the_checker_refuses_a_pod_that_breaks_a_rule(
    breakage: Callable[[dict[str, Any]], None],
) -> None:
    pod = copy.deepcopy(_pod(deployment_for(load_example("model-tiny"))))
    breakage(pod)
    assert restricted_violations(pod) != []
