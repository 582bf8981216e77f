"""A link planted in the weights volume is refused, never followed: no byte outside the Model's own
revision directory changes.

Anyone else who mounts the volume can leave a link where the downloader writes. Links are
planted before the download (where the path checks of planning see them) and while it runs
(after those checks, as a racing writer would), at the partial file, the partial directory, a
final file, the manifest, the last-used marker, the revision directory and the repo directory.
Each download fails with VerificationFailed and the whole volume, with a directory beside it the
links point into, hashes the same before and after (the Model's own directory aside).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from modelfleet.conditions import Reason
from modelfleet.downloader.download import download_model
from modelfleet.downloader.errors import DownloadError
from modelfleet.downloader.layout import LAST_USED_NAME, MANIFEST_NAME, PARTIAL_DIR
from modelfleet.downloader.progress import DownloadProgress, ProgressSnapshot
from tests.hubserver import HubServer, tiny_model_files
from tests.hubserver.fixtures import download_request, running_hub
from tests.hubserver.volume import VICTIM, Volume

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]
REPO = "org/model"
WEIGHTS = "model.safetensors"


@pytest.fixture
def hub() -> Iterator[HubServer]:
    yield from running_hub()


@dataclass(frozen=True)
class Plant:
    """A link (or FIFO) put at ``own`` (the Model's revision directory) or above it."""

    make: Callable[[Volume, Path], None]
    while_downloading: bool  # after planning's checks, as a racing writer would


def _link(at: Path, to: Path) -> None:
    at.parent.mkdir(parents=True, exist_ok=True)
    at.symlink_to(to)


def _fifo(at: Path) -> None:
    at.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(at)


PARTIAL = f"{PARTIAL_DIR}/{WEIGHTS}.part"
PLANTS = {
    # Resuming would hash the outside file and append the rest of the weights to it.
    "partial-to-outside-file": Plant(
        lambda v, own: _link(own / PARTIAL, v.outside / "keep.txt"), while_downloading=True
    ),
    "partial-dangling": Plant(
        lambda v, own: _link(own / PARTIAL, v.outside / "created.bin"), while_downloading=True
    ),
    "partial-directory": Plant(
        lambda v, own: _link(own / PARTIAL_DIR, v.outside), while_downloading=True
    ),
    # A copy of the right bytes outside: a followed link passes verification and is served.
    "final-file": Plant(
        lambda v, own: _link(own / WEIGHTS, v.outside / WEIGHTS), while_downloading=True
    ),
    "manifest": Plant(
        lambda v, own: _link(own / MANIFEST_NAME, v.outside / "keep.txt"), while_downloading=False
    ),
    "manifest-late": Plant(
        lambda v, own: _link(own / MANIFEST_NAME, v.outside / "keep.txt"), while_downloading=True
    ),
    "last-used-marker": Plant(
        lambda v, own: _link(own / LAST_USED_NAME, v.outside / "marker"), while_downloading=True
    ),
    # Inside the root, so no "resolves outside the root" check sees it: the victim's download.
    "revision-directory": Plant(lambda v, own: _link(own, v.victim), while_downloading=False),
    "repo-directory": Plant(
        lambda v, own: _link(own.parent, v.root / VICTIM), while_downloading=False
    ),
    # Not a link, but planted the same way: opening it for writing would block forever.
    "fifo-partial": Plant(lambda v, own: _fifo(own / PARTIAL), while_downloading=False),
}


def _planting(plant: Callable[[], None]) -> DownloadProgress:
    """Progress that plants once the transfer starts: after every check planning makes."""
    progress = DownloadProgress()
    planted: list[bool] = []

    def on_change(snapshot: ProgressSnapshot) -> None:
        if snapshot.phase == "Downloading" and not planted:
            planted.append(True)
            plant()

    progress.subscribe(on_change)
    return progress


@pytest.mark.parametrize("plant", PLANTS.values(), ids=PLANTS)
def test_a_planted_link_fails_the_download_and_changes_nothing_outside(
    hub: HubServer, tmp_path: Path, plant: Plant
) -> None:
    volume = Volume(hub, tmp_path)
    # One file more than the victim has: a download into the victim's directory would find
    # its manifest short, drop it and write over the victim's files.
    files = {**tiny_model_files(seed=2), "hostile.txt": b"written through a link\n"}
    sha = hub.add_repo(REPO, files)
    own = volume.root / REPO / sha
    weights = files[WEIGHTS]
    assert isinstance(weights, bytes)
    (volume.outside / WEIGHTS).write_bytes(weights)
    if not plant.while_downloading:
        plant.make(volume, own)
    # The download may make its own <root>/org/model/<sha>, and nothing else.
    mine = volume.root / "org"
    before = volume.snapshot(exclude=mine)
    progress = _planting(lambda: plant.make(volume, own) if plant.while_downloading else None)

    with pytest.raises(DownloadError) as failure:
        download_model(download_request(hub, volume.root, REPO), progress)

    assert failure.value.reason is Reason.VERIFICATION_FAILED
    assert "refusing" in failure.value.message
    assert volume.snapshot(exclude=mine) == before
    assert not (volume.outside / "created.bin").exists()
    assert not (volume.outside / "marker").exists()


def test_without_links_the_same_download_succeeds(hub: HubServer, tmp_path: Path) -> None:
    volume = Volume(hub, tmp_path)
    sha = hub.add_repo(REPO, {**tiny_model_files(seed=2), "hostile.txt": b"plain\n"})
    before = volume.snapshot(exclude=volume.root / "org")

    report = download_model(download_request(hub, volume.root, REPO))

    assert report.path == volume.root / REPO / sha
    assert (report.path / MANIFEST_NAME).is_file()
    assert volume.snapshot(exclude=volume.root / "org") == before
