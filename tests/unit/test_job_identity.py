"""The Jobs' ServiceAccount, Role and RoleBinding are made once per namespace, trusted for a
while, and made again when a later check finds them gone."""

from __future__ import annotations

import pytest

from modelfleet.kube.client import Kube, Manifest, Resource
from modelfleet.kube.identity import JobIdentities
from modelfleet.settings import OperatorSettings

pytestmark = pytest.mark.unit

SETTINGS = OperatorSettings(downloader_image="downloader:test", model_root="/models")


class _Namespace(Kube):
    """The identity objects of one namespace, in memory."""

    def __init__(self) -> None:
        self.objects: dict[str, Manifest] = {}
        self.gets = 0

    def get(self, resource: Resource, namespace: str | None, name: str) -> Manifest | None:
        self.gets += 1
        return self.objects.get(resource.plural)

    def apply(self, manifest: Manifest) -> Manifest:
        plural = {"ServiceAccount": "serviceaccounts", "Role": "roles"}
        self.objects[plural.get(manifest["kind"], "rolebindings")] = manifest
        return manifest


def test_made_once_then_trusted() -> None:
    kube, identities = _Namespace(), JobIdentities()

    identities.ensure(kube, SETTINGS, "team-a")
    identities.ensure(kube, SETTINGS, "team-a")

    assert sorted(kube.objects) == ["rolebindings", "roles", "serviceaccounts"]
    assert kube.gets == 1  # the first check found nothing; the second call trusted the first


def test_made_again_when_deleted_after_the_trust_expired() -> None:
    kube, identities = _Namespace(), JobIdentities(recheck_seconds=0.0)
    identities.ensure(kube, SETTINGS, "team-a")
    kube.objects.pop("serviceaccounts")

    identities.ensure(kube, SETTINGS, "team-a")

    assert "serviceaccounts" in kube.objects
