"""Resume bookkeeping of stage 1 (distill.teachers.sample): what raw.jsonl already holds, what is
left to do, one writer per folder, one teacher per file, and the failures still open.

Memory stays near flat at millions of prompts: finished samples and seen prompts are 8-byte keys
in sorted arrays (`KeySet`), ~16 bytes per prompt.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distill.config import ConfigError
from distill.prompts import Prompt
from distill.teachers.config import TeacherConfig
from distill.trace import atomic_jsonl, read_jsonl, trace_id

log = logging.getLogger(__name__)


class KeySet:
    """A set of 64-bit keys in ~8 bytes each: a sorted numpy array plus a small Python set of
    recent additions, merged into the array when it fills.

    A Python set of ints costs ~70 bytes per key (the int object and the hash slot): 70 MB of
    bookkeeping at a million prompts, growing with the prompt count. Sorted arrays keep memory
    near flat; a lookup is a set probe plus a binary search (~2 us), nothing next to a request.
    Keys are 64-bit hashes of ids: two ids share one with odds of ~1e-8 at 10 million ids.
    """

    _BUFFER = 1 << 14

    def __init__(self) -> None:
        import numpy as np

        self._np = np
        self._sorted = np.empty(0, dtype=np.uint64)
        self._recent: set[int] = set()

    def add(self, key: int) -> None:
        self._recent.add(key)
        if len(self._recent) >= self._BUFFER:
            self._merge()

    def __contains__(self, key: int) -> bool:
        if key in self._recent:
            return True
        a = self._sorted
        i = int(a.searchsorted(self._np.uint64(key)))
        return i < len(a) and int(a[i]) == key

    def __len__(self) -> int:
        self._merge()
        return len(self._sorted)

    def _merge(self) -> None:
        if self._recent:
            np = self._np
            fresh = np.fromiter(self._recent, dtype=np.uint64, count=len(self._recent))
            # concatenate + sort + drop repeats, not np.union1d: its hash-based unique grew RSS by
            # ~80 bytes per key over 400k keys here (allocator growth), this by ~10.
            merged = np.concatenate((self._sorted, fresh))
            merged.sort(kind="mergesort")  # two sorted runs: a merge
            keep = np.empty(len(merged), dtype=bool)
            keep[:1] = True
            np.not_equal(merged[1:], merged[:-1], out=keep[1:])
            self._sorted = merged[keep]
            self._recent = set()


def id_key(tid: str) -> int:
    """A trace id as a 64-bit key (its first 16 hex digits; other ids are hashed)."""
    if len(tid) == 24:
        try:
            return int(tid[:16], 16)
        except ValueError:
            pass
    return int.from_bytes(hashlib.sha256(tid.encode()).digest()[:8], "big")


def read_done_ids(path: Path) -> KeySet:
    """Ids of the traces in raw.jsonl, reading only each line's first bytes when it can.

    JsonlWriter writes `{"id": "<24 hex>", ...` first, so the id is at a fixed place; other
    lines (traces made elsewhere) are parsed. A bad line is logged and its sample redone.
    """
    done = KeySet()
    if not path.exists():
        return done
    prefix = b'{"id": "'
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.endswith(b"\n"):
                break  # JsonlWriter set a torn tail aside before we got here; a racing reader stops
            if line.startswith(prefix) and line[32:33] == b'"':
                done.add(id_key(line[8:32].decode()))
                continue
            try:
                tid = json.loads(line).get("id")
            except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
                tid = None
            if isinstance(tid, str) and tid:
                done.add(id_key(tid))
            elif line.strip():
                log.warning("%s:%d: not a trace (no id); its sample, if any, will be redone", path, lineno)
    return done


def plan(prompts: Iterable[Prompt], n: int, fingerprint: str,
         done: KeySet | set[int]) -> Iterator[tuple[Prompt, list[tuple[int, str]], int]]:
    """(prompt, [(sample index, trace id) still to do], samples already done), streamed.

    A prompt id seen before in this stream (the same problem twice in a pool) is skipped, so
    one run can never write one id twice; it comes out with an empty to-do list and -1 done.
    """
    seen = KeySet()
    for p in prompts:
        h = int.from_bytes(hashlib.sha256(p.id.encode()).digest()[:8], "big")
        if h in seen:
            yield p, [], -1
            continue
        seen.add(h)
        todo = [(k, tid) for k in range(n) if id_key(tid := trace_id(p.id, k, fingerprint)) not in done]
        yield p, todo, n - len(todo)


@dataclass
class RunLock:
    """One `distill traces` per output folder: two would sample the same ids and duplicate them."""

    path: Path
    fd: int = -1

    def __enter__(self) -> RunLock:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(self.fd, 32, 0).decode(errors="replace").strip()
            os.close(self.fd)
            raise ConfigError(f"another `distill traces` (pid {other or '?'}) is writing to {self.path.parent}; "
                              "wait for it to finish or stop it (a second run would duplicate samples)") from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, str(os.getpid()).encode(), 0)
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)  # closing releases the flock; the kernel does the same on kill -9


def check_same_teacher(out_dir: Path, cfg: TeacherConfig, allow_mixed: bool) -> None:
    previous = out_dir / "run.json"
    raw = out_dir / "raw.jsonl"
    if allow_mixed or not previous.exists() or not raw.exists() or raw.stat().st_size == 0:
        return
    try:
        before = json.loads(previous.read_text())["teacher"]
    except (json.JSONDecodeError, KeyError, OSError):
        return
    if before.get("fingerprint") != cfg.fingerprint():
        now = cfg.record()
        changed = [f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in ("model", "backend", "sampling", "system_prompt",
                                                                       "prefill", "extra_body")
                   if before.get(k) != now.get(k)]
        raise ConfigError(
            f"{raw} holds traces from another teacher config ({'; '.join(changed) or 'fingerprint differs'}). "
            "Mixing them in one file mixes distributions: use another --out, or pass allow_mixed=true"
        )


def compact_failures(path: Path, resolved: set[str]) -> int:
    """Keep the latest failure of each sample that is still missing; return how many remain."""
    if not path.exists():
        return 0
    latest: dict[str, dict[str, Any]] = {}
    for _, record in read_jsonl(path):
        if isinstance(record, dict) and isinstance(record.get("id"), str) and record["id"] not in resolved:
            latest[record["id"]] = record
    with atomic_jsonl(path) as w:
        for record in latest.values():
            w.write(record)
    return len(latest)
