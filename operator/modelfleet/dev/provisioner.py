"""A dynamic volume provisioner for the local cluster: host directories as PersistentVolumes.

kwok's nodes have no kubelet, so no in-cluster provisioner can create a directory on them. This
one runs beside the control plane: for every pending claim of its StorageClasses it creates a
directory and a PersistentVolume of exactly the requested size bound to that claim, grows the
volume when the claim asks for more (the external resizer's part), and deletes both once the
claim is gone.

Three classes: ``modelfleet-local`` (the default; a plain directory, expandable),
``modelfleet-local-sized`` (the directory is a tmpfs of the claim's size, so a full volume is a
real ENOSPC and growing it a real online resize; memory-backed, for tests that need a size
enforced) and ``modelfleet-local-fixed`` (like the default, without ``allowVolumeExpansion``).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.utils.quantity import parse_quantity

LOG = logging.getLogger(__name__)

PROVISIONER = "modelfleet.io/local-path"
STORAGE_CLASS = "modelfleet-local"
SIZED_STORAGE_CLASS = "modelfleet-local-sized"
FIXED_STORAGE_CLASS = "modelfleet-local-fixed"
ENFORCED_ANNOTATION = "modelfleet.io/capacity-enforced"
"""On a PersistentVolume whose directory is a tmpfs of its capacity."""


def storage_class_manifests() -> list[dict[str, Any]]:
    """The StorageClasses served by this provisioner, the default first."""

    def storage_class(name: str, *, default: bool = False, expands: bool = True) -> dict[str, Any]:
        annotations = {"storageclass.kubernetes.io/is-default-class": "true"} if default else {}
        return {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {"name": name, "annotations": annotations},
            "provisioner": PROVISIONER,
            "reclaimPolicy": "Delete",
            "volumeBindingMode": "Immediate",
            "allowVolumeExpansion": expands,
        }

    return [
        storage_class(STORAGE_CLASS, default=True),
        storage_class(SIZED_STORAGE_CLASS),
        storage_class(FIXED_STORAGE_CLASS, expands=False),
    ]


CLASSES = frozenset({STORAGE_CLASS, SIZED_STORAGE_CLASS, FIXED_STORAGE_CLASS})


def release_volumes(root: Path) -> None:
    """Unmount the tmpfs of every sized volume under ``root`` (the cluster is going away:
    its memory is given back, and the directories can be removed)."""
    for path in sorted(root.glob("pvc-*")) if root.is_dir() else []:
        if os.path.ismount(path):
            subprocess.run(["umount", str(path)], check=False, capture_output=True, timeout=30)


def _volume_name(claim: dict[str, Any]) -> str:
    """The name of the volume provisioned for a claim."""
    return f"pvc-{claim['metadata']['uid']}"


def _bytes(quantity: str) -> int:
    return int(parse_quantity(quantity))


def _mount_tmpfs(path: Path, quantity: str, *, remount: bool = False) -> None:
    """Make ``path`` a tmpfs of ``quantity`` bytes (or give the mounted one that size)."""
    options = f"{'remount,' if remount else ''}size={_bytes(quantity)},mode=0777"
    command = (
        ["mount", "-o", options, str(path)]
        if remount
        else ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)]
    )
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=30)


class LocalPathProvisioner:
    """Creates and reclaims hostPath PersistentVolumes under ``root``."""

    def __init__(self, core: client.CoreV1Api, root: Path) -> None:
        self.core = core
        self.root = root
        # Volumes created whose watch event may not have arrived yet.
        self._created: set[str] = set()

    def volume_path(self, volume_name: str) -> Path:
        """Directory that backs a PersistentVolume."""
        return self.root / volume_name

    def sync(self, claims: list[dict[str, Any]], volumes: list[dict[str, Any]]) -> None:
        """One pass: provision pending claims, reclaim released volumes. ``claims`` and
        ``volumes`` come from watches (``Reflector``)."""
        # A claim stays Pending until the controller manager binds the volume made for it:
        # a claim whose volume exists already is not provisioned again.
        made = {volume["metadata"]["name"] for volume in volumes}
        self._created -= made
        made |= self._created
        for claim in claims:
            spec, status = claim["spec"], claim.get("status", {})
            if (
                status.get("phase") == "Pending"
                and not spec.get("volumeName")
                # No key: the default class; "": a static volume, not provisioned.
                and spec.get("storageClassName", STORAGE_CLASS) in CLASSES
                and _volume_name(claim) not in made
            ):
                self._provision(claim)
        ours = {
            volume["metadata"]["name"]: volume
            for volume in volumes
            if (volume["metadata"].get("annotations") or {}).get("pv.kubernetes.io/provisioned-by")
            == PROVISIONER
        }
        for claim in claims:
            volume = ours.get(claim["spec"].get("volumeName") or "")
            if volume is not None and claim.get("status", {}).get("phase") == "Bound":
                self._expand(claim, volume)
        for volume in volumes:
            annotations = volume["metadata"].get("annotations") or {}
            if (
                annotations.get("pv.kubernetes.io/provisioned-by") == PROVISIONER
                and volume.get("status", {}).get("phase") == "Released"
            ):
                self._reclaim(volume["metadata"]["name"])

    def _provision(self, claim: dict[str, Any]) -> None:
        meta, spec = claim["metadata"], claim["spec"]
        name = _volume_name(claim)
        path = self.volume_path(name)
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o777)  # pods run as arbitrary non-root users
        annotations = {"pv.kubernetes.io/provisioned-by": PROVISIONER}
        size = spec["resources"]["requests"]["storage"]
        if spec.get("storageClassName") == SIZED_STORAGE_CLASS:
            if not os.path.ismount(path):
                try:
                    _mount_tmpfs(path, size)
                except (OSError, subprocess.SubprocessError) as error:
                    # The claim stays Pending (ClaimPending on the Model), the log says why.
                    LOG.error("cannot mount a tmpfs of %s at %s: %s", size, path, error)
                    return
            annotations[ENFORCED_ANNOTATION] = "true"
        body = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": name, "annotations": annotations},
            "spec": {
                "capacity": {"storage": size},
                "accessModes": spec.get("accessModes"),
                "persistentVolumeReclaimPolicy": "Delete",
                "storageClassName": spec.get("storageClassName", STORAGE_CLASS),
                "hostPath": {"path": str(path), "type": "DirectoryOrCreate"},
                "claimRef": {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "namespace": meta["namespace"],
                    "name": meta["name"],
                    "uid": meta["uid"],
                },
            },
        }
        try:
            self.core.create_persistent_volume(body)
            self._created.add(name)
            LOG.info("provisioned %s for %s/%s", name, meta["namespace"], meta["name"])
        except ApiException as error:
            if error.status != 409:
                raise

    def _expand(self, claim: dict[str, Any], volume: dict[str, Any]) -> None:
        """Grow ``volume`` to what its claim requests now, then report the claim's capacity."""
        requested = claim["spec"]["resources"]["requests"]["storage"]
        capacity = volume["spec"]["capacity"]["storage"]
        reported = (claim.get("status", {}).get("capacity") or {}).get("storage") or capacity
        if _bytes(requested) <= min(_bytes(capacity), _bytes(reported)):
            return
        name, meta = volume["metadata"]["name"], claim["metadata"]
        if _bytes(requested) > _bytes(capacity):
            if (volume["metadata"].get("annotations") or {}).get(ENFORCED_ANNOTATION):
                try:
                    _mount_tmpfs(self.volume_path(name), requested, remount=True)
                except (OSError, subprocess.SubprocessError) as error:
                    LOG.error("cannot grow %s to %s: %s", name, requested, error)
                    return
            self.core.patch_persistent_volume(name, {"spec": {"capacity": {"storage": requested}}})
        self.core.patch_namespaced_persistent_volume_claim_status(
            meta["name"], meta["namespace"], {"status": {"capacity": {"storage": requested}}}
        )
        LOG.info("expanded %s for %s/%s to %s", name, meta["namespace"], meta["name"], requested)

    def _reclaim(self, volume_name: str) -> None:
        path = self.volume_path(volume_name)
        if os.path.ismount(path):
            subprocess.run(["umount", str(path)], check=False, capture_output=True, timeout=30)
        shutil.rmtree(path, ignore_errors=True)
        try:
            self.core.delete_persistent_volume(volume_name)
            LOG.info("reclaimed %s", volume_name)
        except ApiException as error:
            if error.status != 404:
                raise
