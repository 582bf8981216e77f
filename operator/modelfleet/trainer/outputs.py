"""The run's outputs on the volume: ``lora/``, ``merged_model/`` and their manifests.

``merged_model/`` holds safetensors weights written by transformers, next to the base model's
own config, generation config and tokenizer files copied byte for byte: the architecture is
unchanged by fine-tuning, and files the serving engine already read for the base cannot be
misread after a transformers upgrade on the training side. Each directory gets the downloader's
``.modelfleet-manifest.json`` (every file with size and sha256), written last and atomically.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import shutil
from pathlib import Path
from typing import Any

from modelfleet.contracts.download import VerifyMode
from modelfleet.downloader.layout import is_internal
from modelfleet.downloader.manifest import (
    Manifest,
    ManifestFile,
    load_manifest,
    manifest_path,
    write_manifest,
)
from modelfleet.downloader.verify import sha256_file
from modelfleet.trainer.meta import META_NAME

LORA_DIR = "lora"
MERGED_DIR = "merged_model"
MANIFEST_SOURCE = "finetune"
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".h5", ".msgpack")
_FLOAT_DTYPES = frozenset({"float32", "float16", "bfloat16"})


def prepare_output_dir(output_dir: Path) -> None:
    """Create the output directory and clear what an earlier, unfinished attempt left there.

    Manifests go first, so no moment exists where a manifest vouches for half-removed files.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    for name in (MERGED_DIR, LORA_DIR):
        directory = output_dir / name
        if directory.is_dir():
            manifest_path(directory).unlink(missing_ok=True)
            shutil.rmtree(directory)
    (output_dir / META_NAME).unlink(missing_ok=True)


def base_dtype(base_path: Path) -> str | None:
    """The floating dtype the base checkpoint declares in its config, if any."""
    try:
        config = json.loads((base_path / "config.json").read_text())
    except (OSError, ValueError):
        return None
    declared = config.get("torch_dtype") or config.get("dtype")
    return declared if declared in _FLOAT_DTYPES else None


def copy_base_files(base_path: Path, target: Path) -> list[str]:
    """Copy the base's top-level non-weight files (config, tokenizer, license) into ``target``."""
    copied: list[str] = []
    for source in sorted(base_path.iterdir()):
        name = source.name
        if not source.is_file() or name.startswith("."):
            continue
        if name.endswith(_WEIGHT_SUFFIXES) or name.endswith(".index.json"):
            continue
        shutil.copyfile(source, target / name)
        copied.append(name)
    return copied


def save_adapter(peft_model: Any, directory: Path) -> None:
    """The LoRA adapter in peft's format (adapter_config.json, adapter_model.safetensors)."""
    directory.mkdir(parents=True, exist_ok=True)
    peft_model.save_pretrained(str(directory))


def save_model(model: Any, tokenizer: Any, base_path: Path, directory: Path) -> None:
    """A complete, standalone checkpoint: weights in the base's dtype, the base's other files."""
    directory.mkdir(parents=True, exist_ok=True)
    dtype = base_dtype(base_path)
    if dtype is not None:
        model = model.to(getattr(importlib.import_module("torch"), dtype))
    model.config.use_cache = True
    model.save_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))
    copy_base_files(base_path, directory)


def content_id(files: list[ManifestFile]) -> str:
    """A 40-hex id of the directory's content: sha256 over every path, size and sha256."""
    digest = hashlib.sha256()
    for entry in files:
        digest.update(f"{entry.path}\0{entry.size}\0{entry.sha256}\n".encode())
    return digest.hexdigest()[:40]


def make_readable(path: Path) -> None:
    """Add read permission for everyone: serving pods may run as another user than training,
    and some writers (temp-file-then-rename) create files 0600."""
    path.chmod(path.stat().st_mode | 0o444)


def write_output_manifest(directory: Path, *, repo: str, revision: str) -> Manifest:
    """Hash every file of ``directory`` and write its manifest, atomically and last."""
    for path in directory.rglob("*"):
        if path.is_file():
            make_readable(path)
    files = [
        ManifestFile(
            path=path.relative_to(directory).as_posix(),
            size=path.stat().st_size,
            sha256=sha256_file(path),
        )
        for path in sorted(directory.rglob("*"))
        if path.is_file() and not is_internal(path.relative_to(directory).as_posix())
    ]
    manifest = Manifest(
        repo=repo,
        source=MANIFEST_SOURCE,
        revision=revision,
        resolved_revision=content_id(files),
        verify=VerifyMode.SHA256,
        files=files,
        total_bytes=sum(entry.size for entry in files),
    )
    make_readable(write_manifest(directory, manifest))
    return load_manifest(directory)
