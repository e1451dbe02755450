"""clean.jsonl Traces -> tokenised chat rows with assistant masks, ready for TRL.

Each Trace becomes `trace.messages + [assistant turn]`, the assistant turn rendered once, by
`distill.trace.assistant_text` (`<think>\\n reasoning \\n</think>\\n\\n answer`). The training
template then adds the end-of-turn token inside the loss mask (see templates.py).

We tokenise here rather than let SFTTrainer do it because SFTTrainer truncates rows longer than
`max_length`: a 32k trace cut at 4k keeps its start and loses its answer and its eos, and the
student learns to stop mid-thought. Here a row longer than `max_length` is dropped and counted
(`DataStats.too_long`), never cut. The rows go to SFTTrainer with `input_ids` and
`assistant_masks` columns; it builds the labels from the mask (-100 elsewhere).
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from distill.config import ConfigError
from distill.trace import Trace, TraceError, assistant_text, read_traces

log = logging.getLogger(__name__)


@dataclass
class DataStats:
    """What happened to clean.jsonl on its way into training; goes into card.md."""

    path: str = ""
    sha256: str = ""
    """Hash of the clean.jsonl bytes: the card names exactly which data trained the student."""
    read: int = 0
    kept: int = 0
    too_long: int = 0
    """Traces longer than max_length tokens: dropped, never cut."""
    max_length: int = 0
    longest_kept: int = 0
    longest_dropped: int = 0
    tokens: int = 0
    """Tokens in the kept rows (prompt + assistant)."""
    loss_tokens: int = 0
    """Tokens the loss covers (reasoning, answer, end-of-turn)."""
    teachers: dict[str, int] = field(default_factory=dict)
    """Trace count per teacher model, from each Trace's `teacher` field."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def trace_messages(trace: Trace) -> list[dict[str, str]]:
    """The conversation the student trains on: the prompt as the teacher saw it, then the teacher's turn."""
    return [*trace.messages, {"role": "assistant", "content": assistant_text(trace.reasoning, trace.answer)}]


def tokenize_messages(tokenizer, messages: list[dict[str, str]], chat_template: str | None = None) -> dict[str, list[int]]:
    """input_ids and assistant_masks (1 on reasoning, answer and end-of-turn) for one conversation.

    Tokens after the last assistant token (ChatML's closing newline) carry no loss and are dropped:
    distillation collators treat everything after the prompt as completion.
    """
    enc = tokenizer.apply_chat_template(messages, chat_template=chat_template, tokenize=True, return_dict=True,
                                        return_assistant_tokens_mask=True)
    ids, mask = list(enc["input_ids"]), list(enc["assistant_masks"])
    if 1 not in mask:
        raise ConfigError("the chat template marks no assistant tokens: it needs {% generation %} around assistant content")
    end = len(mask) - mask[::-1].index(1)
    return {"input_ids": ids[:end], "assistant_masks": mask[:end]}


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_clean_file(path: str | Path) -> int:
    """Read every line of a clean JSONL before anything is trained or replaced; return the trace count.

    One pass of JSON parsing (about a minute for 30 GB), cheap next to training on it, and it
    turns a bad line met after `overwrite=true` deleted the old model into an error up front.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path} is a folder; the student trains on a clean.jsonl file (pass --data PATH)")
    if not path.exists():
        raise ConfigError(f"{path}: no such file. Run `make traces` and `make filter` first (they write "
                          "clean.jsonl), or pass --data PATH")
    n = 0
    try:
        for _ in read_traces(path):
            n += 1
    except TraceError as e:
        raise ConfigError(f"{e}. Fix or delete that line, or rerun `distill filter` to rewrite the file") from None
    if n == 0:
        raise ConfigError(f"{path}: no traces to train on (the file is empty); check the filter report next to it "
                          "(filter_report.json) or pass --data PATH")
    return n


def _rows(path: str, sha256: str):
    # `sha256` is unused here but part of the datasets fingerprint: same path, new content -> new cache.
    for trace in read_traces(path):
        yield {"id": trace.id, "messages": trace_messages(trace), "prompt": trace.messages,
               "teacher": str(trace.teacher.get("model", "unknown"))}


def _encode_fingerprint(data_fingerprint: str, tokenizer, chat_template: str | None, keep_text: bool) -> str:
    """The tokenised dataset's cache key, from what decides its rows: the data, the tokenizer's
    vocabulary and specials, the template. Without it, datasets fingerprints `encode` by hashing
    the pickled tokenizer it closes over: ~8 s for Qwen2.5's 151k vocabulary, on every run."""
    h = hashlib.sha256()
    backend = getattr(tokenizer, "backend_tokenizer", None)
    for part in (data_fingerprint, backend.to_str() if backend is not None else repr(sorted(tokenizer.get_vocab().items())),
                 repr(tokenizer.special_tokens_map), chat_template or tokenizer.chat_template or "", str(keep_text)):
        h.update(part.encode())
        h.update(b"\x00")
    return h.hexdigest()[:32]


def build_dataset(path: str | Path, tokenizer, max_length: int, *, chat_template: str | None = None,
                  num_proc: int | None = None, cache_dir: str | Path | None = None,
                  keep_text: bool = False):
    """Read, tokenise and length-filter clean.jsonl; return (datasets.Dataset, DataStats).

    Columns: input_ids, assistant_masks (and messages, prompt when `keep_text`, for the KD trainers).
    Streams through datasets' Arrow cache, so hundreds of thousands of long traces need not fit in memory.
    """
    from datasets import Dataset

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: no such file. Run `make filter` first (it writes clean.jsonl), or pass --data PATH")
    if next(read_traces(path), None) is None:
        check_clean_file(path)  # raises the CLI's error type, with what to do
    stats = DataStats(path=str(path), sha256=file_sha256(path), max_length=max_length)
    kwargs: dict[str, Any] = {"gen_kwargs": {"path": str(path), "sha256": stats.sha256}}
    if cache_dir is not None:
        kwargs["cache_dir"] = str(cache_dir)
    try:
        raw = Dataset.from_generator(_rows, **kwargs)
    except Exception as e:
        # datasets wraps the reader's error ("An error occurred while generating the dataset"); the
        # TraceError underneath names the file, line and field, which is what the user needs.
        cause = e.__cause__ or e.__context__
        if isinstance(cause, TraceError):
            raise cause from None  # the CLI prints it as one line (file:line: field)
        raise
    stats.read = len(raw)
    stats.teachers = dict(Counter(raw["teacher"]))

    def encode(example):
        out = tokenize_messages(tokenizer, example["messages"], chat_template)
        out["length"] = len(out["input_ids"])
        out["loss_tokens"] = sum(out["assistant_masks"])
        return out

    drop = [c for c in raw.column_names if not keep_text or c not in ("messages", "prompt")]
    encoded = raw.map(encode, remove_columns=drop, num_proc=num_proc, desc="Tokenising traces",
                      new_fingerprint=_encode_fingerprint(raw._fingerprint, tokenizer, chat_template, keep_text))
    lengths = encoded["length"]
    too_long = [n for n in lengths if n > max_length]
    stats.too_long = len(too_long)
    stats.longest_dropped = max(too_long, default=0)
    kept = encoded.filter(lambda n: n <= max_length, input_columns="length", num_proc=num_proc,
                          desc="Dropping traces longer than max_length") if too_long else encoded
    stats.kept = len(kept)
    stats.longest_kept = max((n for n in lengths if n <= max_length), default=0)
    stats.tokens = sum(n for n in lengths if n <= max_length)
    stats.loss_tokens = sum(k for k, n in zip(encoded["loss_tokens"], lengths) if n <= max_length)
    if stats.too_long:
        log.warning("%s: dropped %d of %d traces longer than max_length=%d tokens (longest %d); none was cut",
                    path, stats.too_long, stats.read, max_length, stats.longest_dropped)
    if stats.kept == 0:
        raise ConfigError(f"{path}: all {stats.read} traces are longer than max_length={max_length} tokens "
                         f"(shortest {min(lengths)}); raise max_length (with the rope settings) or filter with max_tokens")
    log.info("%s: %d traces, %d tokens (%d under the loss), longest %d", path, stats.kept, stats.tokens,
             stats.loss_tokens, stats.longest_kept)
    return kept.remove_columns(["length", "loss_tokens"]), stats
