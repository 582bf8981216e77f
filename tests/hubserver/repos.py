"""Repo contents for the test hub: tiny model repos, and large synthetic blobs made on demand."""

from __future__ import annotations

import hashlib
import json
import random
import struct
from dataclasses import dataclass, field
from typing import Any

BLOCK = 1 << 20
_POOL_BLOCKS = 16


@dataclass
class LazyBlob:
    """``size`` pseudo-random bytes from ``seed``, made on demand: a multi-GB shard in no memory.

    Byte ``i`` depends only on (seed, i), so any range can be served without the rest.
    """

    size: int
    seed: int = 0
    # Advertise this hash instead of computing it: for huge blobs nobody will read in full.
    declared_sha256: str | None = None
    _pool: list[bytes] = field(default_factory=list, repr=False)
    _sha256: str | None = field(default=None, repr=False)

    def _block(self, index: int) -> bytes:
        if not self._pool:
            rng = random.Random(self.seed)
            self._pool = [rng.randbytes(BLOCK) for _ in range(_POOL_BLOCKS)]
        # Rotate the pool per block so consecutive blocks differ; slicing is cheap.
        pool = self._pool[(index * 7 + self.seed) % _POOL_BLOCKS]
        shift = (index * 4099) % BLOCK
        return pool[shift:] + pool[:shift]

    def read(self, offset: int, length: int) -> bytes:
        """Bytes ``[offset, offset+length)`` (clipped to the blob)."""
        end = min(self.size, offset + length)
        parts: list[bytes] = []
        position = offset
        while position < end:
            index, within = divmod(position, BLOCK)
            take = min(BLOCK - within, end - position)
            parts.append(self._block(index)[within : within + take])
            position += take
        return b"".join(parts)

    def chunks(self, offset: int = 0, chunk: int = BLOCK) -> list[tuple[int, int]]:
        """(offset, length) pairs covering ``[offset, size)``."""
        return [(o, min(chunk, self.size - o)) for o in range(offset, self.size, chunk)]

    @property
    def sha256(self) -> str:
        """sha256 of the whole blob (computed once), or the declared one."""
        if self.declared_sha256 is not None:
            return self.declared_sha256
        if self._sha256 is None:
            digest = hashlib.sha256()
            for o, n in self.chunks(0, 8 * BLOCK):
                digest.update(self.read(o, n))
            self._sha256 = digest.hexdigest()
        return self._sha256

    def materialize(self) -> bytes:
        """All the bytes (small blobs only)."""
        return self.read(0, self.size)


# Head size 32 (64 / 2 heads): the smallest vLLM's attention backends accept, so real
# engines serve it in the local cluster and on GPUs.
HIDDEN, INTERMEDIATE, HEADS, KV_HEADS = 64, 128, 2, 1
TINY_LLAMA_CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": HIDDEN,
    "intermediate_size": INTERMEDIATE,
    "num_attention_heads": HEADS,
    "num_key_value_heads": KV_HEADS,
    "num_hidden_layers": 1,
    "vocab_size": 32,
    "max_position_embeddings": 512,
    "rms_norm_eps": 1e-6,
    "torch_dtype": "float32",
    "bos_token_id": 1,
    "eos_token_id": 2,
}


def safetensors_bytes(tensors: dict[str, tuple[int, ...]], seed: int = 0) -> bytes:
    """A valid safetensors file of F32 tensors with the given shapes and random values."""
    rng = random.Random(seed)
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    data = bytearray()
    for name, shape in tensors.items():
        count = 1
        for dim in shape:
            count *= dim
        raw = struct.pack(f"<{count}f", *(rng.uniform(-0.1, 0.1) for _ in range(count)))
        header[name] = {
            "dtype": "F32",
            "shape": list(shape),
            "data_offsets": [len(data), len(data) + len(raw)],
        }
        data += raw
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)  # the format pads the header to 8 bytes
    return struct.pack("<Q", len(encoded)) + encoded + bytes(data)


def _llama_tensors() -> dict[str, tuple[int, ...]]:
    h, i, v = HIDDEN, INTERMEDIATE, 32
    kv = h // HEADS * KV_HEADS
    return {
        "model.embed_tokens.weight": (v, h),
        "model.layers.0.input_layernorm.weight": (h,),
        "model.layers.0.self_attn.q_proj.weight": (h, h),
        "model.layers.0.self_attn.k_proj.weight": (kv, h),
        "model.layers.0.self_attn.v_proj.weight": (kv, h),
        "model.layers.0.self_attn.o_proj.weight": (h, h),
        "model.layers.0.post_attention_layernorm.weight": (h,),
        "model.layers.0.mlp.gate_proj.weight": (i, h),
        "model.layers.0.mlp.up_proj.weight": (i, h),
        "model.layers.0.mlp.down_proj.weight": (h, i),
        "model.norm.weight": (h,),
        "lm_head.weight": (v, h),
    }


def _tokenizer_files() -> dict[str, bytes | LazyBlob]:
    vocab = {f"t{i}": i for i in range(32)}
    # Every field of a tokenizers serialization, so that transformers loads it (a fine-tune of
    # the demo model needs the tokenizer); any word outside the vocabulary is t0.
    tokenizer: dict[str, Any] = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [],
        "normalizer": None,
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": None,
        "decoder": None,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "t0"},
    }
    return {
        "tokenizer.json": json.dumps(tokenizer).encode(),
        "tokenizer_config.json": json.dumps({"model_max_length": 512}).encode(),
        "special_tokens_map.json": json.dumps({"bos_token": "t1", "eos_token": "t2"}).encode(),
    }


def tiny_model_files(seed: int = 0) -> dict[str, bytes | LazyBlob]:
    """A tiny llama-style repo: config, one real safetensors file, tokenizer, README."""
    config = dict(TINY_LLAMA_CONFIG, _seed=seed)
    return {
        ".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n",
        "README.md": f"# tiny test model {seed}\n".encode(),
        "config.json": json.dumps(config, indent=2).encode(),
        "generation_config.json": json.dumps({"bos_token_id": 1, "eos_token_id": 2}).encode(),
        "model.safetensors": safetensors_bytes(_llama_tensors(), seed),
        **_tokenizer_files(),
    }


def sharded_model_files(seed: int = 0) -> dict[str, bytes | LazyBlob]:
    """The tiny model split into two safetensors shards with ``model.safetensors.index.json``."""
    tensors = _llama_tensors()
    names = list(tensors)
    halves = [names[: len(names) // 2], names[len(names) // 2 :]]
    files: dict[str, bytes | LazyBlob] = dict(tiny_model_files(seed))
    del files["model.safetensors"]
    weight_map: dict[str, str] = {}
    total = 0
    for number, half in enumerate(halves, start=1):
        shard = f"model-{number:05d}-of-00002.safetensors"
        content = safetensors_bytes({n: tensors[n] for n in half}, seed + number)
        files[shard] = content
        total += len(content)
        weight_map.update(dict.fromkeys(half, shard))
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    files["model.safetensors.index.json"] = json.dumps(index, indent=2).encode()
    return files


def large_model_files(size: int, seed: int = 0, shards: int = 1) -> dict[str, bytes | LazyBlob]:
    """A repo with ``shards`` lazily generated ``*.safetensors`` files of ``size`` bytes in all."""
    files: dict[str, bytes | LazyBlob] = {
        "config.json": json.dumps(TINY_LLAMA_CONFIG).encode(),
    }
    each = size // shards
    for number in range(1, shards + 1):
        name = (
            "model.safetensors"
            if shards == 1
            else f"model-{number:05d}-of-{shards:05d}.safetensors"
        )
        files[name] = LazyBlob(each, seed + number)
    return files
