"""Downloads against the test hub: layout, manifest, revisions, patterns, resume, pruning."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelfleet.conditions import Reason
from modelfleet.contracts.download import Source, VerifyMode
from modelfleet.downloader.download import download_model
from modelfleet.downloader.errors import DownloadError
from modelfleet.downloader.layout import MANIFEST_NAME, PARTIAL_DIR, list_revisions
from modelfleet.downloader.manifest import load_and_verify_manifest
from tests.hubserver import HubServer, LazyBlob, sharded_model_files, tiny_model_files
from tests.hubserver.fixtures import download_request, running_hub

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]


@pytest.fixture
def hub() -> Iterator[HubServer]:
    yield from running_hub()


def _content(value: bytes | LazyBlob) -> bytes:
    return value.materialize() if isinstance(value, LazyBlob) else value


def test_clean_download_writes_layout_files_and_manifest_last(
    hub: HubServer, tmp_path: Path
) -> None:
    files = tiny_model_files()
    sha = hub.add_repo("org/tiny", files)

    report = download_model(download_request(hub, tmp_path, "org/tiny"))

    directory = tmp_path / "org" / "tiny" / sha
    assert report.path == directory
    assert report.sha == sha
    for path, content in files.items():
        assert (directory / path).read_bytes() == _content(content)
    manifest = json.loads((directory / MANIFEST_NAME).read_text())
    assert manifest["repo"] == "org/tiny"
    assert manifest["resolvedRevision"] == sha
    listed = {f["path"]: f for f in manifest["files"]}
    assert set(listed) == set(files)
    for path, content in files.items():
        assert listed[path]["size"] == len(_content(content))
        assert listed[path]["sha256"] == hashlib.sha256(_content(content)).hexdigest()
    manifest_mtime = (directory / MANIFEST_NAME).stat().st_mtime_ns
    assert all(p.stat().st_mtime_ns <= manifest_mtime for p in directory.rglob("*") if p.is_file())
    assert not (directory / PARTIAL_DIR).exists()
    assert report.bytes_transferred == sum(len(_content(c)) for c in files.values())
    load_and_verify_manifest(directory, VerifyMode.SHA256)


def test_sharded_model_downloads_every_shard(hub: HubServer, tmp_path: Path) -> None:
    files = sharded_model_files()
    sha = hub.add_repo("org/sharded", files)

    report = download_model(download_request(hub, tmp_path, "org/sharded"))

    for path, content in files.items():
        assert (report.path / path).read_bytes() == _content(content)
    assert report.path.name == sha


def test_branch_tag_and_sha_resolve_to_their_commit(hub: HubServer, tmp_path: Path) -> None:
    first = hub.add_repo("org/model", tiny_model_files(seed=0))
    second = hub.add_commit("org/model", tiny_model_files(seed=1), branches=("dev",), tags=("v1",))
    assert first != second

    assert download_model(download_request(hub, tmp_path, "org/model")).sha == first
    for revision in ("dev", "v1", second):
        report = download_model(download_request(hub, tmp_path, "org/model", revision=revision))
        assert report.path == tmp_path / "org" / "model" / second
        config = json.loads((report.path / "config.json").read_text())
        assert config["_seed"] == 1


def test_allow_and_ignore_patterns_select_files(hub: HubServer, tmp_path: Path) -> None:
    hub.add_repo("org/tiny", tiny_model_files())

    report = download_model(
        download_request(
            hub,
            tmp_path,
            "org/tiny",
            allow_patterns=["*.json", "*.safetensors"],
            ignore_patterns=["generation_config.json"],
        )
    )

    present = {p.name for p in report.path.iterdir() if not p.name.startswith(".modelfleet")}
    assert present == {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
    }
    assert {r.file for r in hub.gets()} == present


def test_complete_files_are_never_fetched_again(hub: HubServer, tmp_path: Path) -> None:
    hub.add_repo("org/tiny", tiny_model_files())
    first = download_model(download_request(hub, tmp_path, "org/tiny"))
    hub.reset_counters()

    again = download_model(download_request(hub, tmp_path, "org/tiny"))
    assert again.already_present
    assert hub.gets() == []

    # Killed after every file was in place but before the manifest: still nothing to fetch.
    (first.path / MANIFEST_NAME).unlink()
    resumed = download_model(download_request(hub, tmp_path, "org/tiny"))
    assert hub.gets() == []
    assert resumed.bytes_transferred == 0
    assert (first.path / MANIFEST_NAME).is_file()


def test_force_downloads_everything_again(hub: HubServer, tmp_path: Path) -> None:
    files = tiny_model_files()
    hub.add_repo("org/tiny", files)
    download_model(download_request(hub, tmp_path, "org/tiny"))
    hub.reset_counters()

    download_model(download_request(hub, tmp_path, "org/tiny", force=True))

    assert {r.file for r in hub.gets()} == set(files)


def test_stale_leftovers_of_a_killed_attempt_are_cleared_and_partial_resumed(
    hub: HubServer, tmp_path: Path
) -> None:
    blob = LazyBlob(4 << 20, seed=3)
    files: dict[str, bytes | LazyBlob] = {**tiny_model_files(), "model.safetensors": blob}
    sha = hub.add_repo("org/big", files)
    directory = tmp_path / "org" / "big" / sha
    leftovers = [
        directory / "model.safetensors.lock",
        directory / ".cache" / "huggingface" / "download" / "model.safetensors.lock",
        directory / ".cache" / "huggingface" / "download" / "abc123.incomplete",
        directory / PARTIAL_DIR / "not-in-this-commit.bin.part",
    ]
    for path in leftovers:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"junk")
    half = blob.size // 2
    (directory / PARTIAL_DIR / "model.safetensors.part").write_bytes(blob.read(0, half))

    report = download_model(download_request(hub, tmp_path, "org/big"))

    assert not any(p.exists() for p in leftovers)
    assert (report.path / "model.safetensors").read_bytes() == blob.materialize()
    [get] = hub.gets("model.safetensors")
    assert get.range == f"bytes={half}-"
    assert get.bytes_sent == blob.size - half


def test_insufficient_storage_fails_before_transfer(hub: HubServer, tmp_path: Path) -> None:
    huge = LazyBlob(1 << 60, declared_sha256="0" * 64)
    hub.add_repo("org/huge", {"config.json": b"{}", "model.safetensors": huge})

    with pytest.raises(DownloadError) as failure:
        download_model(download_request(hub, tmp_path, "org/huge"))

    assert failure.value.reason is Reason.INSUFFICIENT_STORAGE
    assert not failure.value.retryable
    assert hub.gets() == []


def test_keep_revisions_prunes_old_ones_but_never_the_protected_path(
    hub: HubServer, tmp_path: Path
) -> None:
    shas = [hub.add_repo("org/m", tiny_model_files(seed=0))]
    shas += [hub.add_commit("org/m", tiny_model_files(seed=s)) for s in (1, 2, 3)]
    served = tmp_path / "org" / "m" / shas[0]

    for index, sha in enumerate(shas):
        download_model(
            download_request(
                hub, tmp_path, "org/m", revision=sha, keep_revisions=2, protected_paths=[served]
            )
        )
        assert (tmp_path / "org" / "m" / sha / MANIFEST_NAME).is_file()
        assert index == 0 or served.is_dir()

    remaining = {r.revision for r in list_revisions(tmp_path, "org/m")}
    assert remaining == {shas[0], shas[2], shas[3]}


def test_incomplete_selection_is_refused(hub: HubServer, tmp_path: Path) -> None:
    files = sharded_model_files()
    hub.add_repo("org/sharded", files)

    with pytest.raises(DownloadError) as failure:
        download_model(
            download_request(
                hub, tmp_path, "org/sharded", ignore_patterns=["model-00002-of-00002.safetensors"]
            )
        )

    assert failure.value.reason is Reason.INCOMPLETE
    assert not list(tmp_path.rglob(MANIFEST_NAME))


def test_dataset_file_comes_from_the_dataset_repository(hub: HubServer, tmp_path: Path) -> None:
    rows = b'{"instruction": "say hi", "output": "hi"}\n'
    hub.add_repo("org/tiny", tiny_model_files())  # a model of the same name is not read
    sha = hub.add_repo(
        "org/tiny", {"train.jsonl": rows, "README.md": b"# data\n"}, repo_type="dataset"
    )

    report = download_model(
        download_request(
            hub,
            tmp_path,
            "org/tiny",
            source=Source.HUGGINGFACE_DATASET,
            allow_patterns=["train.jsonl"],
        )
    )

    assert report.sha == sha
    assert [p.name for p in report.path.iterdir() if not p.name.startswith(".")] == ["train.jsonl"]
    assert (report.path / "train.jsonl").read_bytes() == rows
    assert [r.path for r in hub.gets()] and all(
        r.path.startswith("/datasets/org/tiny/resolve/") for r in hub.gets()
    )


def test_missing_dataset_repository_is_repo_not_found(hub: HubServer, tmp_path: Path) -> None:
    hub.add_repo("org/tiny", tiny_model_files())  # only a model by that name

    with pytest.raises(DownloadError) as failure:
        download_model(
            download_request(hub, tmp_path, "org/tiny", source=Source.HUGGINGFACE_DATASET)
        )

    assert failure.value.reason is Reason.REPO_NOT_FOUND
