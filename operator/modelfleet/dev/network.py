"""The local cluster's pod network: addresses that Services can route to, on this machine only.

Executed serving pods need their own address each (every engine listens on the same port) that
EndpointSlices accept. The API server refuses loopback addresses in an EndpointSlice
("may not be in the loopback range (127.0.0.0/8, ::1/128)"), so the pods cannot simply get
127.x addresses. Instead the cluster creates one network namespace, joined to this machine by a
veth pair, and gives each pod an address in it from a /24 of 198.18.0.0/15 (reserved for
network testing: nothing outside answers there). Engines run inside that namespace, bound to
their pod's address; the operator, the agent's probes and the tests reach them through the veth.
No packet leaves the machine: the namespace has no other link and no route out.

Creating a network namespace needs root (CAP_NET_ADMIN). Without it, pods get loopback
addresses instead: the engines still run and answer at their pod IP, but their Service has no
endpoints (the agent logs a warning saying so).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import signal
import subprocess
import threading
from pathlib import Path

LOG = logging.getLogger(__name__)

NETNS_DIR = Path("/run/netns")
POD_INTERFACE = "pods"
FIRST_POD_HOST = 2  # .1 is this machine's end of the veth


class PodNetwork:
    """One cluster's network namespace and the pod addresses handed out in it."""

    def __init__(self, state_dir: Path) -> None:
        # Keyed by the cluster's state directory: two caches (two checkouts, a cold-start
        # benchmark) may each run a cluster of the same name.
        digest = hashlib.sha1(str(state_dir.resolve()).encode()).hexdigest()[:6]
        self.state_dir = state_dir
        self.netns = f"modelfleet-{digest}"
        self.host_interface = f"mf{digest}"
        self.prefix = f"198.18.{int(digest, 16) % 250 + 1}"
        self.gateway = f"{self.prefix}.1"
        self.enabled = False
        self._taken: dict[str, str] = {}
        self._lock = threading.Lock()

    # -- the namespace ---------------------------------------------------------------------
    def _ip(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["ip", *args], capture_output=True, text=True, check=False, timeout=30
        )
        if check and result.returncode != 0:
            raise OSError(f"ip {' '.join(args)}: {result.stderr.strip()}")
        return result

    def ensure(self) -> bool:
        """Create the namespace and its veth unless they exist; False where that is not
        possible (not root, no iproute2): pods then get loopback addresses."""
        if os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("nsenter") is None:
            LOG.warning(
                "pods get loopback addresses: creating the pod network needs root and iproute2;"
                " Services of executed pods will have no endpoints"
            )
            return False
        if not (NETNS_DIR / self.netns).exists():
            self._ip("netns", "add", self.netns)
        if self._ip("link", "show", self.host_interface, check=False).returncode != 0:
            self._ip(
                "link", "add", self.host_interface, "type", "veth",
                "peer", "name", POD_INTERFACE, "netns", self.netns,
            )  # fmt: skip
            self._ip("addr", "add", f"{self.gateway}/24", "dev", self.host_interface)
        self._ip("link", "set", self.host_interface, "up")
        self._ip("-n", self.netns, "link", "set", "lo", "up")
        self._ip("-n", self.netns, "link", "set", POD_INTERFACE, "up")
        # Pod addresses are /32 each (removing one must not remove the others, as deleting the
        # first address of a shared /24 would); replies reach this machine by this route.
        self._route()
        self.enabled = True
        LOG.info("pod network %s.0/24 in network namespace %s", self.prefix, self.netns)
        return True

    def delete(self) -> None:
        """Kill every process left in the namespace, then remove it (and with it the veth pair
        and every pod address). A namespace some process still holds would outlive its name."""
        if not (NETNS_DIR / self.netns).exists():
            return
        for pid in self._ip("netns", "pids", self.netns, check=False).stdout.split():
            with contextlib.suppress(ProcessLookupError, PermissionError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        self._ip("netns", "del", self.netns, check=False)

    def exec_prefix(self) -> list[str]:
        """What runs a command inside the pod network (nothing where it is disabled)."""
        return ["nsenter", f"--net={NETNS_DIR / self.netns}"] if self.enabled else []

    # -- addresses -------------------------------------------------------------------------
    def allocate(self, uid: str) -> str:
        """The pod's address, added to the namespace's interface."""
        with self._lock:
            if uid in self._taken:
                return self._taken[uid]
            used = set(self._taken.values())
            for host in range(FIRST_POD_HOST, 255):
                address = f"{self.prefix}.{host}" if self.enabled else f"127.1.0.{host}"
                if address not in used:
                    break
            else:
                raise RuntimeError(f"no pod address left in {self.prefix}.0/24")
            self._taken[uid] = address
        if self.enabled:
            self._ip("-n", self.netns, "addr", "replace", f"{address}/32", "dev", POD_INTERFACE)
            # The kernel drops the interface's routes when its last address goes: a cluster
            # whose serving pods all went away has none until this puts it back.
            self._route()
        return address

    def _route(self) -> None:
        self._ip("-n", self.netns, "route", "replace", f"{self.prefix}.0/24", "dev", POD_INTERFACE)

    def release(self, uid: str) -> None:
        with self._lock:
            address = self._taken.pop(uid, None)
        if address is not None and self.enabled:
            self._ip(
                "-n", self.netns, "addr", "del", f"{address}/32", "dev", POD_INTERFACE, check=False
            )
