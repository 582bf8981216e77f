"""Training rows: parse and validate a JSON/JSONL file, render prompts, tokenize with masks.

A row is either Alpaca style (``instruction``, optional ``input``, ``output``) or chat style
(``messages``: ``[{role, content}, ...]`` ending with an ``assistant`` turn). Only the response
is trained on: the labels of every prompt token are -100, so the loss covers the ``output`` or
the last assistant turn (plus the end-of-sequence token). When the tokenizer has a chat
template it renders both styles (an Alpaca row becomes one user turn and one assistant turn);
otherwise the plain format below is used. No torch here: the result is lists of token ids.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelfleet.conditions import Reason
from modelfleet.contracts.download import VerifyMode
from modelfleet.downloader.errors import DownloadError
from modelfleet.downloader.layout import list_revisions
from modelfleet.downloader.manifest import load_and_verify_manifest
from modelfleet.trainer.errors import TrainerError

IGNORE_INDEX = -100
"""Label of a token the loss skips (the prompt, padding)."""
ROLES = frozenset({"system", "user", "assistant"})


@dataclass(frozen=True)
class Message:
    """One turn of a conversation."""

    role: str
    content: str


@dataclass(frozen=True)
class Example:
    """One validated row: the conversation whose last (assistant) turn is the response."""

    messages: tuple[Message, ...]
    line: int
    instruction: str | None = None
    input: str | None = None

    @property
    def response(self) -> str:
        """What the model learns to produce."""
        return self.messages[-1].content


@dataclass(frozen=True)
class Dataset:
    """The rows of a dataset file and what identifies that file."""

    examples: list[Example]
    sha256: str
    path: Path
    revision: str | None = None
    """Commit sha of the hub repository the file came from; None for a mounted file."""


@dataclass(frozen=True)
class TokenizedExample:
    """Token ids and labels of one row, already truncated to the maximum sequence length."""

    input_ids: list[int]
    labels: list[int]

    @property
    def trained_tokens(self) -> int:
        """Tokens that contribute to the loss."""
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


def _invalid(where: str, message: str) -> TrainerError:
    return TrainerError(Reason.DATASET_INVALID, f"{where}: {message}")


def _as_text(value: Any, where: str, field: str, *, required: bool) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise _invalid(where, f"{field} must be a string")
    if required and not value.strip():
        raise _invalid(where, f"{field} is empty")
    return value


def parse_row(row: Any, line: int, where: str) -> Example:
    """Validate one decoded row; ``where`` names it in errors ("line 7", "row 3")."""
    if not isinstance(row, dict):
        raise _invalid(where, "not a JSON object")
    if "messages" in row:
        raw = row["messages"]
        if not isinstance(raw, list) or not raw:
            raise _invalid(where, "messages must be a non-empty list")
        messages: list[Message] = []
        for index, item in enumerate(raw):
            if not isinstance(item, dict) or item.get("role") not in ROLES:
                raise _invalid(
                    where, f"messages[{index}] needs a role of {', '.join(sorted(ROLES))}"
                )
            content = _as_text(
                item.get("content"), where, f"messages[{index}].content", required=False
            )
            messages.append(Message(str(item["role"]), content))
        if messages[-1].role != "assistant" or not messages[-1].content.strip():
            raise _invalid(where, "the last message must be a non-empty assistant turn")
        return Example(tuple(messages), line)
    if "instruction" in row and "output" in row:
        instruction = _as_text(row["instruction"], where, "instruction", required=True)
        extra = _as_text(row.get("input"), where, "input", required=False)
        output = _as_text(row["output"], where, "output", required=True)
        user = f"{instruction}\n\n{extra}" if extra.strip() else instruction
        return Example(
            (Message("user", user), Message("assistant", output)),
            line,
            instruction=instruction,
            input=extra,
        )
    raise _invalid(where, "needs instruction/output or messages")


def parse_dataset_text(text: str) -> list[Example]:
    """Rows of a JSON array or of JSONL text (blank lines skipped); raises DatasetInvalid."""
    if text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as error:
            raise _invalid(f"line {error.lineno}", f"not valid JSON ({error.msg})") from None
        if not isinstance(rows, list):
            raise _invalid("line 1", "a JSON dataset must be an array of rows")
        examples = [parse_row(row, 0, f"row {index + 1}") for index, row in enumerate(rows)]
    else:
        examples = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise _invalid(f"line {number}", f"not valid JSON ({error.msg})") from None
            examples.append(parse_row(row, number, f"line {number}"))
    if not examples:
        raise TrainerError(Reason.DATASET_INVALID, "the dataset has no rows")
    return examples


def fetched_dataset(root: Path, repo: str, file: str) -> tuple[Path, str]:
    """The file the fetch-dataset container downloaded from ``repo`` under ``root``, checked
    against its manifest, and the commit it came from."""
    fetched = [r for r in list_revisions(root, repo) if r.complete]
    if len(fetched) != 1:
        raise TrainerError(
            Reason.DATASET_INVALID,
            f"expected one fetched revision of {repo} under {root}, found {len(fetched)}",
        )
    try:
        manifest = load_and_verify_manifest(fetched[0].path, VerifyMode.SIZE)
    except DownloadError as error:
        raise TrainerError(Reason.DATASET_INVALID, f"fetched dataset: {error}") from None
    return fetched[0].path / file, manifest.resolved_revision


def load_dataset(path: Path, revision: str | None = None) -> Dataset:
    """Read, hash and validate the dataset file; raises DatasetInvalid."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise TrainerError(Reason.DATASET_INVALID, f"{path} does not exist") from None
    except IsADirectoryError:
        raise TrainerError(Reason.DATASET_INVALID, f"{path} is a directory, not a file") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise TrainerError(Reason.DATASET_INVALID, f"not UTF-8 text (byte {error.start})") from None
    return Dataset(parse_dataset_text(text), hashlib.sha256(data).hexdigest(), path, revision)


def has_chat_template(tokenizer: Any) -> bool:
    """True when the tokenizer carries a chat template to render conversations with."""
    return bool(getattr(tokenizer, "chat_template", None))


def plain_prompt(example: Example) -> str:
    """The prompt of a row for tokenizers without a chat template (docs/finetuning.md).

    Alpaca rows: an ``### Instruction:`` section, an ``### Input:`` section when the input is
    not empty, then ``### Response:``. Chat rows: a ``### {Role}:`` section per turn before the
    last, then ``### Assistant:``. Each header is followed by a newline, each section by two.
    """
    if example.instruction is not None:
        parts = [f"### Instruction:\n{example.instruction}\n\n"]
        if example.input:
            parts.append(f"### Input:\n{example.input}\n\n")
        parts.append("### Response:\n")
        return "".join(parts)
    turns = [f"### {m.role.capitalize()}:\n{m.content}\n\n" for m in example.messages[:-1]]
    return "".join(turns) + "### Assistant:\n"


def _ids(tokenizer: Any, text: str, *, special: bool) -> list[int]:
    if not text:
        return []
    return list(tokenizer(text, add_special_tokens=special)["input_ids"])


def _common_prefix(first: list[int], second: list[int]) -> int:
    length = 0
    for a, b in zip(first, second, strict=False):
        if a != b:
            break
        length += 1
    return length


def tokenize_example(
    example: Example, tokenizer: Any, max_seq_length: int
) -> TokenizedExample | None:
    """Token ids with the prompt masked out; None when truncation leaves no response token."""
    if has_chat_template(tokenizer):
        turns = [{"role": m.role, "content": m.content} for m in example.messages]
        try:
            full = tokenizer.apply_chat_template(turns, tokenize=False)
            prompt = (
                tokenizer.apply_chat_template(
                    turns[:-1], tokenize=False, add_generation_prompt=True
                )
                if len(turns) > 1
                else ""
            )
        except Exception as error:  # noqa: BLE001 - templates raise whatever jinja raises
            where = f"line {example.line}" if example.line else "a row"
            raise _invalid(where, f"the chat template rejected it: {error}") from None
        # The template owns special tokens (BOS, turn markers); the boundary is where the
        # rendered prompt's tokens stop matching the whole conversation's.
        input_ids = _ids(tokenizer, full, special=False)
        boundary = _common_prefix(_ids(tokenizer, prompt, special=False), input_ids)
    else:
        prompt_ids = _ids(tokenizer, plain_prompt(example), special=True)
        response_ids = _ids(tokenizer, example.response, special=False)
        if tokenizer.eos_token_id is not None:
            response_ids.append(int(tokenizer.eos_token_id))
        input_ids = prompt_ids + response_ids
        boundary = len(prompt_ids)
    labels = [IGNORE_INDEX] * boundary + input_ids[boundary:]
    tokenized = TokenizedExample(input_ids[:max_seq_length], labels[:max_seq_length])
    return tokenized if tokenized.trained_tokens else None


def tokenize_dataset(
    dataset: Dataset, tokenizer: Any, max_seq_length: int
) -> tuple[list[TokenizedExample], int]:
    """Tokenize every row; return the trainable ones and how many were dropped.

    Raises DatasetInvalid when no row keeps a response token within ``max_seq_length``.
    """
    kept: list[TokenizedExample] = []
    for example in dataset.examples:
        tokenized = tokenize_example(example, tokenizer, max_seq_length)
        if tokenized is not None:
            kept.append(tokenized)
    if not kept:
        raise TrainerError(
            Reason.DATASET_INVALID,
            f"no row has a response token within maxSeqLength {max_seq_length}",
        )
    return kept, len(dataset.examples) - len(kept)
