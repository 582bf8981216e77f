"""The ModelScope source through the real ``modelscope`` package against a local stand-in."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelfleet.conditions import Reason
from modelfleet.contracts.download import Source
from modelfleet.downloader.download import DownloadRequest, download_model
from modelfleet.downloader.errors import DownloadError
from modelfleet.downloader.layout import MANIFEST_NAME
from modelfleet.downloader.modelscope_source import modelscope_endpoint, snapshot_id
from modelfleet.downloader.retry import BackoffPolicy
from tests.hubserver import LazyBlob, sharded_model_files, tiny_model_files
from tests.hubserver.modelscope import ModelScopeServer

pytest.importorskip("modelscope_hub", reason="the modelscope extra is not installed")
pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]
TOKEN = "ms-PlantedSecretToken0123456789"


@pytest.fixture
def modelscope() -> Iterator[ModelScopeServer]:
    server = ModelScopeServer().start()
    try:
        yield server
    finally:
        server.stop()


def _request(
    server: ModelScopeServer, root: Path, repo: str, **overrides: object
) -> DownloadRequest:
    settings: dict[str, object] = {
        "repo": repo,
        "root": root,
        "source": Source.MODELSCOPE,
        "endpoint": server.endpoint,
        "policy": BackoffPolicy(attempts=3, initial=0.02, maximum=0.2),
        "stall_timeout": 5.0,
        "max_workers": 4,
    }
    settings.update(overrides)
    return DownloadRequest(**settings)  # type: ignore[arg-type]


def _bytes(content: bytes | LazyBlob) -> bytes:
    return content.materialize() if isinstance(content, LazyBlob) else content


def test_download_writes_files_and_a_manifest_with_hashes(
    modelscope: ModelScopeServer, tmp_path: Path
) -> None:
    files = {**sharded_model_files(), "nested/extra.json": b'{"a": 1}'}
    modelscope.add_repo("qwen/tiny", files)

    report = download_model(_request(modelscope, tmp_path, "qwen/tiny", revision="master"))

    assert report.path.parent == tmp_path / "qwen" / "tiny"
    for path, content in files.items():
        assert (report.path / path).read_bytes() == _bytes(content)
    manifest = json.loads((report.path / MANIFEST_NAME).read_text())
    assert manifest["source"] == "modelscope"
    listed = {f["path"]: f for f in manifest["files"]}
    assert set(listed) == set(files)  # folders in the listing are not files
    for path, content in files.items():
        assert listed[path]["sha256"] == hashlib.sha256(_bytes(content)).hexdigest()
    assert report.sha == manifest["resolvedRevision"]


def test_main_means_the_default_branch_and_tags_resolve(
    modelscope: ModelScopeServer, tmp_path: Path
) -> None:
    modelscope.add_repo("qwen/tiny", tiny_model_files(seed=0))
    modelscope.add_repo("qwen/tiny", tiny_model_files(seed=1), revision="v1.0", tag=True)

    default = download_model(_request(modelscope, tmp_path, "qwen/tiny", revision="main"))
    tagged = download_model(_request(modelscope, tmp_path, "qwen/tiny", revision="v1.0"))

    assert default.path != tagged.path
    assert json.loads((default.path / "config.json").read_text())["_seed"] == 0
    assert json.loads((tagged.path / "config.json").read_text())["_seed"] == 1
    assert any("Revision=v1.0" in r.path for r in modelscope.file_gets())


def test_same_listing_same_directory_and_nothing_fetched_again(
    modelscope: ModelScopeServer, tmp_path: Path
) -> None:
    modelscope.add_repo("qwen/tiny", tiny_model_files())
    first = download_model(_request(modelscope, tmp_path, "qwen/tiny"))
    gets = len(modelscope.file_gets())

    again = download_model(_request(modelscope, tmp_path, "qwen/tiny"))

    assert again.path == first.path and again.already_present
    assert len(modelscope.file_gets()) == gets


def test_a_cut_partial_resumes_with_range(modelscope: ModelScopeServer, tmp_path: Path) -> None:
    blob = LazyBlob(3 << 20, seed=8)
    modelscope.add_repo("qwen/big", {**tiny_model_files(), "model.safetensors": blob})
    first = download_model(_request(modelscope, tmp_path, "qwen/big"))
    # As if killed halfway: the file back to a half-written partial, no manifest.
    half = blob.size // 2
    partial = first.path / ".modelfleet-partial" / "model.safetensors.part"
    partial.parent.mkdir()
    partial.write_bytes(blob.read(0, half))
    (first.path / "model.safetensors").unlink()
    (first.path / MANIFEST_NAME).unlink()

    download_model(_request(modelscope, tmp_path, "qwen/big"))

    assert (first.path / "model.safetensors").read_bytes() == blob.materialize()
    last = modelscope.file_gets()[-1]
    assert "model.safetensors" in last.path
    assert last.range == f"bytes={half}-"
    assert last.bytes_sent == blob.size - half


def test_token_reaches_a_private_repo(modelscope: ModelScopeServer, tmp_path: Path) -> None:
    modelscope.add_repo("org/private", tiny_model_files(), token=TOKEN)

    with pytest.raises(DownloadError) as failure:
        download_model(_request(modelscope, tmp_path / "anon", "org/private"))
    assert failure.value.reason is Reason.UNAUTHORIZED
    assert not failure.value.retryable

    report = download_model(_request(modelscope, tmp_path / "auth", "org/private", token=TOKEN))
    assert (report.path / "config.json").read_bytes() == tiny_model_files()["config.json"]


@pytest.mark.parametrize(
    ("repo", "revision", "reason"),
    [
        ("org/absent", "master", Reason.REPO_NOT_FOUND),
        ("qwen/tiny", "v9", Reason.REVISION_NOT_FOUND),
    ],
)
def test_missing_repo_or_revision_fails_fast(
    modelscope: ModelScopeServer, tmp_path: Path, repo: str, revision: str, reason: Reason
) -> None:
    modelscope.add_repo("qwen/tiny", tiny_model_files())

    with pytest.raises(DownloadError) as failure:
        download_model(_request(modelscope, tmp_path, repo, revision=revision))

    assert failure.value.reason is reason
    assert not failure.value.retryable
    assert modelscope.file_gets() == []


def test_endpoint_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODELSCOPE_ENDPOINT", raising=False)
    monkeypatch.delenv("MODELSCOPE_DOMAIN", raising=False)
    assert modelscope_endpoint() == "https://www.modelscope.cn"
    monkeypatch.setenv("MODELSCOPE_DOMAIN", "mirror.example.cn")
    assert modelscope_endpoint() == "https://mirror.example.cn"
    monkeypatch.setenv("MODELSCOPE_ENDPOINT", "http://127.0.0.1:9/")
    assert modelscope_endpoint() == "http://127.0.0.1:9"
    assert modelscope_endpoint("http://explicit:1") == "http://explicit:1"


def test_snapshot_id_is_a_content_address() -> None:
    from modelfleet.downloader.hub import RemoteFile

    a = [RemoteFile("a", 1, sha256="x"), RemoteFile("b", 2, sha256="y")]
    assert snapshot_id(a) == snapshot_id(list(reversed(a)))
    assert snapshot_id(a) != snapshot_id([RemoteFile("a", 1, sha256="z"), a[1]])
    assert len(snapshot_id(a)) == 40
