"""A hostile hub chooses no path: its commit ids and file names never leave the revision directory.

The hub's commit id becomes a directory name and its file names become paths below it. A hub
answering ``../../other-org/other-model/<sha>``, ``/abs/path`` or ``../x`` must fail the download
with VerificationFailed and leave every byte outside the Model's own revision directory as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from modelfleet.conditions import Reason
from tests.hubserver import HubServer, tiny_model_files
from tests.hubserver.fixtures import running_hub
from tests.hubserver.volume import VICTIM, Volume

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]
REPO = "org/model"


@pytest.fixture
def hub() -> Iterator[HubServer]:
    yield from running_hub()


@pytest.fixture
def volume(hub: HubServer, tmp_path: Path) -> Volume:
    return Volume(hub, tmp_path)


HOSTILE_COMMIT_IDS: dict[str, Callable[[Volume], str]] = {
    "into-another-model": lambda v: f"../../{VICTIM}/{v.victim_sha}",
    "absolute": lambda v: str(v.outside / "abs"),
    "parent": lambda _: "..",
    "dot": lambda _: ".",
    "uppercase": lambda v: v.victim_sha.upper(),
    "trailing-newline": lambda v: v.victim_sha + "\n",
    "nested": lambda v: f"{v.victim_sha}/{v.victim_sha}",
}


@pytest.mark.parametrize("make_commit_id", HOSTILE_COMMIT_IDS.values(), ids=HOSTILE_COMMIT_IDS)
def test_a_hostile_commit_id_fails_and_writes_nothing(
    hub: HubServer,
    volume: Volume,
    monkeypatch: pytest.MonkeyPatch,
    make_commit_id: Callable[[Volume], str],
) -> None:
    commit_id = make_commit_id(volume)
    # Other bytes and one more file than the victim has: a download that followed the id would
    # find the victim's manifest short, drop it and overwrite the victim's files.
    files = {**tiny_model_files(seed=2), "hostile.txt": b"written by a hostile hub\n"}
    hub.add_repo(REPO, files, commit_id=commit_id)
    before = volume.snapshot()

    result = volume.run_job(monkeypatch, REPO)

    assert result["result"] == "Failed"
    assert result["reason"] == Reason.VERIFICATION_FAILED
    assert "commit id" in str(result["message"])
    assert result["resolvedRevision"] is None
    assert result["modelPath"] is None
    assert volume.snapshot() == before
    assert hub.gets() == [], "no file of a hostile commit may be fetched"


HOSTILE_FILE_NAMES: dict[str, Callable[[Volume], str]] = {
    "into-another-model": lambda v: f"../../{VICTIM}/{v.victim_sha}/config.json",
    "absolute": lambda v: str(v.outside / "keep.txt"),
    "dot-dot-inside": lambda _: "sub/../../../outside.txt",
    "backslash": lambda _: "..\\..\\outside.txt",
    "nul": lambda _: "config.json\x00.txt",
}


@pytest.mark.parametrize("make_name", HOSTILE_FILE_NAMES.values(), ids=HOSTILE_FILE_NAMES)
def test_a_hostile_file_name_fails_and_writes_nothing(
    hub: HubServer,
    volume: Volume,
    monkeypatch: pytest.MonkeyPatch,
    make_name: Callable[[Volume], str],
) -> None:
    files = {**tiny_model_files(seed=2), make_name(volume): b"written by a hostile hub\n"}
    sha = hub.add_repo(REPO, files)
    own = volume.root / REPO / sha
    before = volume.snapshot(exclude=own)

    result = volume.run_job(monkeypatch, REPO)

    assert result["result"] == "Failed"
    assert result["reason"] == Reason.VERIFICATION_FAILED
    assert volume.snapshot(exclude=own) == before
    assert hub.gets() == []


def test_a_link_in_the_revision_directory_cannot_carry_a_file_outside(
    hub: HubServer, volume: Volume, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Plain names, but the directory holds a link (left by anyone with the volume) leading out.
    files = tiny_model_files(seed=2)
    files["weights/model.safetensors"] = files.pop("model.safetensors")
    sha = hub.add_repo(REPO, files)
    own = volume.root / REPO / sha
    own.mkdir(parents=True)
    (own / "weights").symlink_to(volume.outside, target_is_directory=True)
    before = volume.snapshot(exclude=own)

    result = volume.run_job(monkeypatch, REPO)

    assert result["result"] == "Failed"
    assert result["reason"] == Reason.VERIFICATION_FAILED
    assert "resolves outside" in str(result["message"])
    assert volume.snapshot(exclude=own) == before
    assert not (volume.outside / "model.safetensors").exists()
