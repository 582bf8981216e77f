"""What a hub lists is bounded and sane before anything is planned from it.

A listing of 200,000 entries is refused (VerificationFailed) after the cap, without the pages
after it being asked for, in bounded memory, whether the hub pages it or sends it in one answer.
Sizes that are not whole byte counts a file can have, a path listed twice or as both a file and
a folder, and malformed entries are refused the same way, before any byte is fetched. A hub file
named like the downloader's own manifest, partials or marker is kept apart: never fetched,
never mistaken for the downloader's.
"""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelfleet.conditions import Reason
from modelfleet.contracts.download import MAX_LISTING_ENTRIES, VerifyMode
from modelfleet.downloader.download import download_model
from modelfleet.downloader.errors import DownloadError
from modelfleet.downloader.hub_session import MAX_HUB_RESPONSE_BYTES
from modelfleet.downloader.layout import MANIFEST_NAME, PARTIAL_DIR
from modelfleet.downloader.manifest import load_and_verify_manifest
from modelfleet.downloader.retry import BackoffPolicy
from tests.hubserver import HubServer, tiny_model_files
from tests.hubserver.fixtures import download_request, running_hub
from tests.hubserver.volume import Volume

pytestmark = [pytest.mark.unit, pytest.mark.timeout(120)]
REPO = "org/model"
HUGE = 200_000
# Peak Python memory of a refused huge listing, hub included: a few pages, or the capped answer.
# Parsing all 200,000 entries (what an unbounded client does) takes several times more.
MEMORY_BOUND = 2 * MAX_HUB_RESPONSE_BYTES
ONCE = BackoffPolicy(attempts=1)


@pytest.fixture
def hub() -> Iterator[HubServer]:
    yield from running_hub()


def _tree_requests(hub: HubServer) -> int:
    return sum("/tree/" in r.path for r in hub.api_requests())


def _download_measured(hub: HubServer, root: Path) -> tuple[DownloadError, int]:
    tracemalloc.start()
    try:
        with pytest.raises(DownloadError) as failure:
            download_model(download_request(hub, root, REPO, policy=ONCE))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return failure.value, peak


def test_a_huge_paged_listing_stops_at_the_cap(hub: HubServer, tmp_path: Path) -> None:
    hub.add_repo(REPO, tiny_model_files(), listed_extra=HUGE)

    error, peak = _download_measured(hub, tmp_path)

    assert error.reason is Reason.VERIFICATION_FAILED
    assert f"more than {MAX_LISTING_ENTRIES} files and folders" in error.message
    # 1000 entries a page: the page that went over is the last one asked for.
    assert _tree_requests(hub) == MAX_LISTING_ENTRIES // 1000 + 1
    assert peak < MEMORY_BOUND, f"peak {peak} bytes"
    assert hub.gets() == []
    assert not any(tmp_path.iterdir())


def test_a_huge_unpaged_listing_is_refused_while_it_is_read(
    tmp_path: Path,
) -> None:
    hub = HubServer(tree_page_size=None).start()
    try:
        hub.add_repo(REPO, tiny_model_files(), listed_extra=HUGE)

        error, peak = _download_measured(hub, tmp_path)

        assert error.reason is Reason.VERIFICATION_FAILED
        assert f"more than {MAX_HUB_RESPONSE_BYTES} bytes" in error.message
        assert peak < MEMORY_BOUND, f"peak {peak} bytes"
        assert hub.gets() == []
    finally:
        hub.stop()


def test_an_unpaged_listing_over_the_cap_is_refused(hub: HubServer, tmp_path: Path) -> None:
    hub.tree_page_size = None
    hub.add_repo(REPO, tiny_model_files(), listed_extra=MAX_LISTING_ENTRIES)

    with pytest.raises(DownloadError) as failure:
        download_model(download_request(hub, tmp_path, REPO, policy=ONCE))

    assert failure.value.reason is Reason.VERIFICATION_FAILED
    assert "files and folders" in failure.value.message


def test_the_cap_is_a_setting_of_the_job(
    hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    volume = Volume(hub, tmp_path)
    hub.add_repo(REPO, tiny_model_files(), listed_extra=100)
    before = volume.snapshot()

    result = volume.run_job(monkeypatch, REPO, MODELFLEET_MAX_LISTING_ENTRIES="50")

    assert result["reason"] == Reason.VERIFICATION_FAILED
    assert "more than 50 files and folders" in str(result["message"])
    assert volume.snapshot() == before
    assert hub.gets() == []


HOSTILE_SIZES: dict[str, object] = {
    "negative": -1,
    "fraction": 1.5,
    "string": "12",
    "boolean": True,
    "null": None,
    "beyond-any-file": 1 << 64,
}


def _entry(path: str, size: object) -> dict[str, object]:
    return {"type": "file", "oid": "0" * 40, "size": size, "path": path}


@pytest.mark.parametrize("size", HOSTILE_SIZES.values(), ids=HOSTILE_SIZES)
def test_a_size_that_is_not_a_byte_count_is_refused(
    hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: object
) -> None:
    volume = Volume(hub, tmp_path)
    hub.add_repo(REPO, tiny_model_files(), raw_entries=[_entry("extra.bin", size)])
    before = volume.snapshot()

    result = volume.run_job(monkeypatch, REPO)

    assert result["reason"] == Reason.VERIFICATION_FAILED
    assert "not a whole number of bytes" in str(result["message"])
    assert volume.snapshot() == before
    assert hub.gets() == []


HOSTILE_ENTRIES: dict[str, tuple[dict[str, object], str]] = {
    "listed-twice": (_entry("config.json", 3), "twice"),
    "file-and-folder": (_entry("config.json/inner.bin", 3), "as a file and as a folder"),
    "no-size": ({"type": "file", "oid": "0" * 40, "path": "x.bin"}, "malformed"),
    "no-path": ({"type": "file", "oid": "0" * 40, "size": 3}, "malformed"),
}


@pytest.mark.parametrize(("entry", "said"), HOSTILE_ENTRIES.values(), ids=HOSTILE_ENTRIES)
def test_a_listing_that_contradicts_itself_is_refused(
    hub: HubServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    entry: dict[str, object],
    said: str,
) -> None:
    volume = Volume(hub, tmp_path)
    hub.add_repo(REPO, tiny_model_files(), raw_entries=[entry])
    before = volume.snapshot()

    result = volume.run_job(monkeypatch, REPO)

    assert result["reason"] == Reason.VERIFICATION_FAILED
    assert said in str(result["message"])
    assert volume.snapshot() == before
    assert hub.gets() == []


def test_hub_files_named_like_the_downloaders_own_are_kept_apart(
    hub: HubServer, tmp_path: Path
) -> None:
    model = tiny_model_files()
    fake_manifest = {
        "apiVersion": "modelfleet.io/v1alpha1",
        "kind": "ModelManifest",
        "repo": "someone/else",
        "source": "huggingface",
        "revision": "main",
        "resolvedRevision": "0" * 40,
        "verify": "none",
        "files": [],
        "totalBytes": 0,
    }
    reserved: dict[str, bytes] = {
        MANIFEST_NAME: json.dumps(fake_manifest).encode(),
        f"{PARTIAL_DIR}/model.safetensors.part": b"garbage to be resumed",
        ".modelfleet-last-used": b"",
        f"{MANIFEST_NAME}.0123abcd.tmp": b"{}",
        ".cache/huggingface/download/model.safetensors.metadata": b"x",
    }
    sha = hub.add_repo(REPO, {**model, **reserved})

    report = download_model(download_request(hub, tmp_path, REPO))

    directory = tmp_path / REPO / sha
    fetched = {r.file for r in hub.gets()}
    assert fetched == set(model)
    manifest = load_and_verify_manifest(directory, VerifyMode.SHA256)
    assert manifest.repo == REPO
    assert manifest.resolved_revision == sha
    assert {f.path for f in manifest.files} == set(model)
    assert report.files == len(model)
    assert (directory / "model.safetensors").read_bytes() == model["model.safetensors"]
    assert not (directory / PARTIAL_DIR).exists()
    assert not (directory / ".cache").exists()
    assert not list(directory.glob(f"{MANIFEST_NAME}.*"))
