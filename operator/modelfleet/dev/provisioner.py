"""A dynamic volume provisioner for the local cluster: host directories as PersistentVolumes.

kwok's nodes have no kubelet, so no in-cluster provisioner can create a directory on them. This
one runs beside the control plane: for every pending claim of the ``modelfleet-local``
StorageClass it creates a directory and a PersistentVolume of exactly the requested size bound
to that claim, and deletes both once the claim is gone.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

LOG = logging.getLogger(__name__)

PROVISIONER = "modelfleet.io/local-path"
STORAGE_CLASS = "modelfleet-local"


def storage_class_manifest() -> dict[str, Any]:
    """The default StorageClass served by this provisioner."""
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": STORAGE_CLASS,
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
        },
        "provisioner": PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate",
        "allowVolumeExpansion": True,
    }


def _volume_name(claim: dict[str, Any]) -> str:
    """The name of the volume provisioned for a claim."""
    return f"pvc-{claim['metadata']['uid']}"


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
        classes = {STORAGE_CLASS}
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
                and spec.get("storageClassName", STORAGE_CLASS) in classes
                and _volume_name(claim) not in made
            ):
                self._provision(claim)
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
        body = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {
                "name": name,
                "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER},
            },
            "spec": {
                "capacity": {"storage": spec["resources"]["requests"]["storage"]},
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

    def _reclaim(self, volume_name: str) -> None:
        shutil.rmtree(self.volume_path(volume_name), ignore_errors=True)
        try:
            self.core.delete_persistent_volume(volume_name)
            LOG.info("reclaimed %s", volume_name)
        except ApiException as error:
            if error.status != 404:
                raise
