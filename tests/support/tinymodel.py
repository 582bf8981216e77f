"""A tiny random Llama-style model with a real tokenizer, written offline, for trainer tests.

``write_tiny_llama`` builds a word-level tokenizer from a small corpus (so it needs no hub), wraps
it as a fast tokenizer with a chat template, and saves a randomly initialised
``LlamaForCausalLM`` of about 100k parameters beside it in safetensors. The result loads with
``AutoModelForCausalLM``/``AutoTokenizer`` like any downloaded checkpoint. ``write_dataset``
writes a small instruction dataset whose answers follow a pattern the model can learn quickly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SPECIAL_TOKENS = ["<pad>", "<unk>", "<s>", "</s>", "<|user|>", "<|assistant|>", "<|system|>"]

# The chat template renders each turn as "<|role|> content </s>"; an assistant turn is what the
# trainer learns, so the generation prompt is just the assistant marker.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|> ' + message['content'] + ' ' + eos_token + ' ' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|> ' }}{% endif %}"
)

COLOURS = ["red", "green", "blue", "yellow", "black", "white", "orange", "purple"]
ANIMALS = ["cat", "dog", "fox", "owl", "bee", "cow", "hen", "pig"]
_CORPUS = [
    "### Instruction: Input: Response: System: User: Assistant:",
    "what colour is the animal ? the animal is . name a colour for this animal",
    "answer with one word please . you are a helpful assistant",
    " ".join(COLOURS),
    " ".join(ANIMALS),
    # Numbers pad the vocabulary to a few hundred entries, like a (very) small real one.
    " ".join(str(number) for number in range(200)),
]


def _word_level_tokenizer(chat_template: bool) -> Any:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()]
    )
    trainer = trainers.WordLevelTrainer(special_tokens=SPECIAL_TOKENS, min_frequency=1)
    backend.train_from_iterator(_CORPUS, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        additional_special_tokens=["<|user|>", "<|assistant|>", "<|system|>"],
    )
    if chat_template:
        tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def write_tiny_llama(directory: Path, seed: int = 0, *, chat_template: bool = True) -> Path:
    """Write a tiny random ``LlamaForCausalLM`` and its tokenizer to ``directory``; return it.

    Hidden size 64, 2 layers, 2 heads of size 32, a vocabulary of about 250 words. With
    ``chat_template=False`` the tokenizer has none, so the trainer uses its plain prompt format.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = _word_level_tokenizer(chat_template)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        # Head size 32: the smallest vLLM's attention backends accept, so the same model can
        # be served in GPU tests.
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model: LlamaForCausalLM = LlamaForCausalLM(config)
    model.to(torch.float32)  # type: ignore[arg-type]
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def dataset_rows(rows: int = 40, *, chat: bool = False) -> list[dict[str, Any]]:
    """``rows`` instruction rows (or chat rows) mapping an animal to a fixed colour."""
    result: list[dict[str, Any]] = []
    for index in range(rows):
        animal = ANIMALS[index % len(ANIMALS)]
        colour = COLOURS[index % len(COLOURS)]
        if chat:
            result.append(
                {
                    "messages": [
                        {"role": "system", "content": "you are a helpful assistant"},
                        {"role": "user", "content": f"what colour is the {animal} ?"},
                        {"role": "assistant", "content": f"the {animal} is {colour} ."},
                    ]
                }
            )
        else:
            result.append(
                {
                    "instruction": "name a colour for this animal",
                    "input": animal,
                    "output": f"the {animal} is {colour} .",
                }
            )
    return result


def write_dataset(path: Path, rows: int = 40, *, chat: bool = False) -> Path:
    """Write ``rows`` rows of :func:`dataset_rows` as JSONL to ``path``; return it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(row) for row in dataset_rows(rows, chat=chat)]
    path.write_text("\n".join(lines) + "\n")
    return path
