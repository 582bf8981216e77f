"""Completeness and integrity of a model directory: what must be there, and is it intact."""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Callable, Mapping
from pathlib import Path

from modelfleet.conditions import Reason
from modelfleet.contracts.download import VerifyMode
from modelfleet.downloader.errors import DownloadError
from modelfleet.downloader.layout import is_internal

HASH_CHUNK = 8 << 20
WEIGHT_SUFFIXES = (".safetensors", ".bin")


def sha256_file(path: Path, on_bytes: Callable[[int], None] | None = None) -> str:
    """Hex sha256 of a file, read in large chunks (hashlib releases the GIL on them)."""
    digest = hashlib.sha256()
    with path.open("rb", buffering=0) as handle:
        buffer = bytearray(HASH_CHUNK)
        view = memoryview(buffer)
        while n := handle.readinto(buffer):
            digest.update(view[:n])
            if on_bytes is not None:
                on_bytes(n)
    return digest.hexdigest()


def git_blob_sha1(path: Path) -> str:
    """The git object id of a file: what the hub lists as ``oid`` for non-LFS files."""
    digest = hashlib.sha1(usedforsecurity=False)
    digest.update(f"blob {path.stat().st_size}\0".encode())
    with path.open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def check_file(
    path: Path,
    *,
    size: int | None,
    sha256: str | None,
    mode: VerifyMode,
    blob_id: str | None = None,
) -> str | None:
    """Check one file in ``mode``; return its sha256 when computed. Raises VerificationFailed."""
    if not path.is_file():
        raise DownloadError(Reason.INCOMPLETE, f"{path.name} is missing")
    if mode is VerifyMode.NONE:
        return None
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        raise DownloadError(
            Reason.VERIFICATION_FAILED, f"{path.name}: size {actual_size}, expected {size}"
        )
    if mode is VerifyMode.SIZE:
        return None
    if sha256 is not None:
        actual = sha256_file(path)
        if actual != sha256:
            raise DownloadError(Reason.VERIFICATION_FAILED, f"{path.name}: sha256 mismatch")
        return actual
    if blob_id and git_blob_sha1(path) != blob_id:
        raise DownloadError(Reason.VERIFICATION_FAILED, f"{path.name}: git blob id mismatch")
    return sha256_file(path)


def safetensors_expected_size(path: Path) -> int | None:
    """The size a safetensors file must have according to its own header, or None if unreadable."""
    try:
        with path.open("rb") as handle:
            header_len: int = struct.unpack("<Q", handle.read(8))[0]
            if header_len > 100 << 20:
                return None
            header = json.loads(handle.read(header_len))
    except (OSError, struct.error, ValueError):
        return None
    ends = [
        int(t["data_offsets"][1])
        for name, t in header.items()
        if name != "__metadata__" and isinstance(t, dict)
    ]
    return 8 + header_len + max(ends, default=0)


def _index_shards(index: Path) -> set[str]:
    try:
        weight_map = json.loads(index.read_text()).get("weight_map", {})
    except (OSError, ValueError, AttributeError) as error:
        raise DownloadError(Reason.INCOMPLETE, f"{index.name} is unreadable: {error}") from None
    if not isinstance(weight_map, dict):
        raise DownloadError(Reason.INCOMPLETE, f"{index.name} has no weight_map")
    base = index.parent
    return {(base / str(shard)).as_posix() for shard in weight_map.values()}


def check_completeness(directory: Path, sizes: Mapping[str, int] | None = None) -> None:
    """Raise Incomplete unless the directory holds a loadable model.

    Needs ``config.json``, at least one ``*.safetensors``/``*.bin``, and every shard named by a
    ``*.index.json`` present with its size: the listed one from ``sizes`` (tree or manifest), or
    for safetensors the size its own header implies.
    """
    if not (directory / "config.json").is_file():
        raise DownloadError(Reason.INCOMPLETE, "config.json is missing")
    files = [
        p
        for p in directory.rglob("*")
        if p.is_file() and not is_internal(p.relative_to(directory).as_posix())
    ]
    if not any(p.name.endswith(WEIGHT_SUFFIXES) for p in files):
        raise DownloadError(Reason.INCOMPLETE, "no *.safetensors or *.bin weights")
    for index in (p for p in files if p.name.endswith(".index.json")):
        for shard in sorted(_index_shards(index)):
            shard_path = Path(shard)
            relative = shard_path.relative_to(directory).as_posix()
            if not shard_path.is_file():
                raise DownloadError(
                    Reason.INCOMPLETE, f"shard {relative} named by {index.name} is missing"
                )
            actual = shard_path.stat().st_size
            expected = (sizes or {}).get(relative)
            if expected is None and shard_path.name.endswith(".safetensors"):
                expected = safetensors_expected_size(shard_path)
            if expected is not None and actual != expected:
                raise DownloadError(
                    Reason.INCOMPLETE, f"shard {relative} has {actual} bytes, expected {expected}"
                )
