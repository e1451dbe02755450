"""The Trace record and its JSONL IO: the contract between the stages.

One Trace per line of `raw.jsonl` / `clean.jsonl`. Reasoning and answer are kept apart (the
DeepSeek API returns `reasoning_content` separately; local models write `<think>...</think>`),
and the training text is rendered from them in one place, `assistant_text`.

IO guarantees, because stage 1 spends real money:
- `JsonlWriter` appends whole lines with one `os.write` each, so a killed process leaves at most
  one torn (unterminated) last line. The next writer to open the file moves that tail to
  `<file>.torn`, counts it and logs it: never read as a trace, never dropped silently.
- `read_traces` names file, line and field for a bad line, and can route bad lines to a rejects
  file instead of stopping.
- `atomic_jsonl` writes a finished output to a temporary file and renames it into place.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
THINK = ("<think>", "</think>")


class TraceError(ValueError):
    """A line that is not a valid Trace; the message names file, line and field."""


@dataclass
class Trace:
    """One teacher completion for one prompt, with everything later stages need."""

    id: str
    """Stable key: hash of prompt id, sample index and teacher config (see `trace_id`). Resume and dedup use it."""
    prompt_id: str
    sample_index: int = 0
    messages: list[dict[str, str]] = field(default_factory=list)
    """The prompt conversation as sent to the teacher (user turn, optional system turn)."""
    reasoning: str = ""
    """The chain of thought, without the think delimiters."""
    answer: str = ""
    """What follows the reasoning: the final solution shown to the user."""
    finish_reason: str | None = None
    """'stop' when the model ended by itself, 'length' when max_tokens cut it."""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    reasoning_tokens: int | None = None
    teacher: dict[str, Any] = field(default_factory=dict)
    """Model, backend and sampling params. Never secrets: `teachers.config` strips key values. Plus, per
    sample, what actually answered (`with_provenance`): `served_model` and `system_fingerprint` as the
    server reported them (an alias such as deepseek-reasoner moves to newer models), or the loaded model."""
    reference: Any = None
    """Gold answer when the prompt set has one (a string for math and multiple choice, a dict of tests for code)."""
    task: str = "math"
    """'math', 'choice' (multiple choice) or 'code': decides how `distill.verify` checks the answer."""
    meta: dict[str, Any] = field(default_factory=dict)
    """Annotations added by later stages: `correct`, `pass_rate`, source dataset, ..."""
    schema: int = SCHEMA_VERSION

    @property
    def completion(self) -> str:
        """The teacher output in R1's format, as a model would have written it."""
        return assistant_text(self.reasoning, self.answer)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "<dict>") -> Trace:
        """Validate and build; errors name `where` (file:line) and the field."""
        if not isinstance(data, dict):
            raise TraceError(f"{where}: expected a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise TraceError(f"{where}: unknown field(s) {unknown}; a Trace has {sorted(known)}")
        for name in ("id", "prompt_id"):
            if not isinstance(data.get(name), str) or not data.get(name):
                raise TraceError(f"{where}: field '{name}' must be a non-empty string, got {data.get(name)!r}")
        checks: dict[str, tuple[type, ...]] = {
            "sample_index": (int,),
            "messages": (list,),
            "reasoning": (str,),
            "answer": (str,),
            "finish_reason": (str, type(None)),
            "prompt_tokens": (int, type(None)),
            "completion_tokens": (int, type(None)),
            "reasoning_tokens": (int, type(None)),
            "teacher": (dict,),
            "task": (str,),
            "meta": (dict,),
            "schema": (int,),
        }
        for name, types in checks.items():
            if name in data and (not isinstance(data[name], types) or isinstance(data[name], bool)):
                want = " or ".join("null" if t is type(None) else t.__name__ for t in types)
                raise TraceError(f"{where}: field '{name}' must be {want}, got {data[name]!r:.80}")
        for i, m in enumerate(data.get("messages", [])):
            if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
                raise TraceError(f"{where}: field 'messages[{i}]' must be {{'role': str, 'content': str}}, got {m!r:.80}")
        if data.get("schema", SCHEMA_VERSION) > SCHEMA_VERSION:
            raise TraceError(
                f"{where}: field 'schema' is {data['schema']}, newer than this distill ({SCHEMA_VERSION}); upgrade distill"
            )
        return cls(**data)


PROVENANCE = {"model": "served_model", "system_fingerprint": "system_fingerprint"}
"""Completion.raw keys (as an OpenAI-compatible server names them) -> Trace.teacher keys."""


def with_provenance(teacher: dict[str, Any], raw: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the teacher record of one sample, the rest of the backend's raw extras for meta['response']).

    Both provenance keys are always written (None when the backend did not say), so a reader can
    tell "not reported" from "not recorded" in every trace.
    """
    served = {ours: raw.get(theirs) for theirs, ours in PROVENANCE.items()}
    return {**teacher, **served}, {k: v for k, v in raw.items() if k not in PROVENANCE}


def trace_id(prompt_id: str, sample_index: int, teacher_key: str) -> str:
    """Stable id of one sample: the same prompt, index and teacher config always give the same id."""
    h = hashlib.sha256(f"{prompt_id}\x1f{sample_index}\x1f{teacher_key}".encode()).hexdigest()
    return h[:24]


def assistant_text(reasoning: str, answer: str, think: tuple[str, str] = THINK) -> str:
    """Render reasoning + answer as R1 writes them: `<think>\\n...\\n</think>\\n\\n answer`."""
    return f"{think[0]}\n{reasoning.strip()}\n{think[1]}\n\n{answer.strip()}"


def split_reasoning(text: str, think: tuple[str, str] = THINK) -> tuple[str, str, bool]:
    """Split a raw completion into (reasoning, answer, closed).

    Handles the R1-Distill / QwQ case where the chat template prefilled the opening tag, so the
    completion holds only the closing one. With no closing tag the whole text is reasoning
    (the model never finished thinking) and `closed` is False.
    """
    open_tag, close_tag = think
    body = text.lstrip()
    if body.startswith(open_tag):
        body = body[len(open_tag):]
    end = body.find(close_tag)
    if end < 0:
        return body.strip(), "", False
    return body[:end].strip(), body[end + len(close_tag):].strip(), True


# ---------------------------------------------------------------------------------------------
# JSONL writing


class JsonlWriter:
    """Append-only JSONL writer that survives kill -9.

    Each record is encoded first and written with one `os.write` on an O_APPEND descriptor (with
    a loop for the rare short write), so a killed process leaves at most one unterminated line.
    Python's buffered files would split a long trace (tens of kB) into several writes.
    On open, an unterminated tail left by an earlier crash is moved to `<path>.torn` and counted
    in `self.torn`. `fsync_every` seconds bounds what a power cut (not a kill) can lose.
    """

    def __init__(self, path: str | Path, fsync_every: float = 5.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.torn = set_aside_torn_tail(self.path)
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.fsync_every = fsync_every
        self._last_sync = time.monotonic()
        self.written = 0

    def write(self, record: dict[str, Any] | Trace) -> None:
        obj = record.to_dict() if isinstance(record, Trace) else record
        data = (json.dumps(obj, ensure_ascii=False) + "\n").encode()
        view = memoryview(data)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]
        self.written += 1
        if self.fsync_every >= 0 and time.monotonic() - self._last_sync >= self.fsync_every:
            os.fsync(self.fd)
            self._last_sync = time.monotonic()

    def close(self) -> None:
        if self.fd >= 0:
            os.fsync(self.fd)
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def set_aside_torn_tail(path: Path) -> int:
    """Move an unterminated last line of `path` to `path.torn`; return how many lines were moved (0 or 1)."""
    if not path.exists() or path.stat().st_size == 0:
        return 0
    with open(path, "rb+") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return 0
        # Walk back to the last newline: the tail after it is the torn line.
        block, pos, tail_start = 65536, size, 0
        while pos > 0:
            start = max(0, pos - block)
            f.seek(start)
            chunk = f.read(pos - start)
            nl = chunk.rfind(b"\n")
            if nl >= 0:
                tail_start = start + nl + 1
                break
            pos = start
        f.seek(tail_start)
        tail = f.read()
        with open(path.with_name(path.name + ".torn"), "ab") as torn:
            torn.write(tail + b"\n")
        f.truncate(tail_start)
    log.warning("%s: set aside 1 torn last line (%d bytes) to %s.torn; its sample will be redone",
                path, len(tail), path.name)
    return 1


@contextlib.contextmanager
def atomic_jsonl(path: str | Path) -> Iterator[JsonlWriter]:
    """Write a finished output (clean.jsonl, results) so readers see the old file or the whole new one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    writer = JsonlWriter(tmp, fsync_every=-1)
    try:
        yield writer
        writer.close()
        os.replace(tmp, path)
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Replace a small text output (report.json, card.md) atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# JSONL reading


@dataclass
class ReadStats:
    """What a reader skipped: `bad` lines (routed to rejects) and a `torn` unterminated last line."""

    lines: int = 0
    bad: int = 0
    torn: int = 0


def read_jsonl(
    path: str | Path, rejects: JsonlWriter | None = None, stats: ReadStats | None = None
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Stream (line_number, object) from a JSONL file.

    A line that is not JSON raises `TraceError` naming file and line, or, when `rejects` is
    given, is written there with the reason and skipped. An unterminated last line (a writer was
    killed mid-line) is never parsed: it is counted in `stats.torn` and logged.
    """
    path = Path(path)
    stats = stats if stats is not None else ReadStats()
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if not raw.endswith(b"\n"):
                stats.torn += 1
                log.warning("%s:%d: unterminated last line (%d bytes) skipped: a writer was killed mid-line",
                            path, lineno, len(raw))
                break
            if not raw.strip():
                continue
            stats.lines += 1
            try:
                obj = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                _bad(path, lineno, raw, f"not valid JSON ({e})", rejects, stats)
                continue
            yield lineno, obj


def _bad(path: Path, lineno: int, raw: bytes, reason: str, rejects: JsonlWriter | None, stats: ReadStats) -> None:
    message = f"{path}:{lineno}: {reason}"
    if rejects is None:
        raise TraceError(message)
    _reject(rejects, stats, message, raw.decode("utf-8", "replace").rstrip("\n"))


WARN_BAD_LINES = 10
"""Unreadable lines named one by one in the log; the rest are counted (ReadStats.bad) and all go to rejects."""


def _reject(rejects: JsonlWriter, stats: ReadStats, message: str, raw: Any) -> None:
    stats.bad += 1
    if stats.bad <= WARN_BAD_LINES:
        log.warning("%s: line skipped (sent to rejects)%s", message,
                    "; further unreadable lines are only counted" if stats.bad == WARN_BAD_LINES else "")
    rejects.write({"filter": "read", "reason": message, "raw": raw})


def read_traces(
    path: str | Path, rejects: JsonlWriter | None = None, stats: ReadStats | None = None
) -> Iterator[Trace]:
    """Stream Traces from a JSONL file; see `read_jsonl` for bad and torn lines."""
    path = Path(path)
    stats = stats if stats is not None else ReadStats()
    for lineno, obj in read_jsonl(path, rejects, stats):
        try:
            yield Trace.from_dict(obj, where=f"{path}:{lineno}")
        except TraceError as e:
            if rejects is None:
                raise
            _reject(rejects, stats, str(e), obj)
        except TypeError as e:  # a missing required field
            if rejects is None:
                raise TraceError(f"{path}:{lineno}: {e}") from e
            _reject(rejects, stats, f"{path}:{lineno}: {e}", obj)


def write_traces(path: str | Path, traces: Iterable[Trace]) -> int:
    """Atomically write a whole trace file; return the count."""
    n = 0
    with atomic_jsonl(path) as w:
        for t in traces:
            w.write(t)
            n += 1
    return n
