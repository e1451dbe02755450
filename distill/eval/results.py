"""Per-sample results: generate what is missing, score it with `distill.verify`, append it, resume.

One JSONL file per (model, benchmark), one line per sample, appended with `JsonlWriter` right
after each generate call, so a killed eval loses at most the call in flight. A rerun reads the
file and asks the backend only for the (prompt, sample index) pairs that are not there yet;
raising k from 4 to 8 reuses the first 4 samples.

A line counts for a run only when its `run_key` (model identity + sampling protocol) and its
`prompt_hash` (the exact messages sent) match the current ones: results of another model
version, temperature, max_tokens or instruction stay in the file but are never mixed in.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from distill import verify
from distill.config import ConfigError
from distill.eval.metrics import Sample
from distill.prompts import Prompt
from distill.teachers.base import Completion, SamplingParams, Teacher
from distill.trace import JsonlWriter, read_jsonl

log = logging.getLogger(__name__)


def prompt_hash(prompt: Prompt) -> str:
    """Hash of what the model is shown (and of the reference it is checked against)."""
    blob = json.dumps([prompt.messages, prompt.reference], sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def run_key(model_identity: dict[str, Any], params: SamplingParams) -> str:
    """Results of the same model under the same sampling protocol share this key (n is left out)."""
    blob = json.dumps({"model": model_identity, "temperature": params.temperature, "top_p": params.top_p,
                       "max_tokens": params.max_tokens, "stop": list(params.stop)},
                      sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def scored_text(reasoning: str, answer: str, finish_reason: str | None) -> str:
    """The text the final answer is looked for in.

    The answer part when the model closed its thinking. A model that never opens a thinking
    block (an original base model writing plain chain of thought) has all its text in
    `reasoning` and stopped by itself: score all of it. A sample cut by max_tokens before it
    closed its thinking has no answer: a boxed guess mid-thought does not count.
    """
    if answer.strip():
        return answer
    if finish_reason == "length":
        return ""
    return reasoning


def to_sample(record: dict[str, Any]) -> Sample:
    """The metrics view of a result line. An unjudged sample (checker timeout) counts as wrong."""
    extracted = record.get("extracted")
    return Sample(correct=bool(record.get("correct")),
                  answer=" ".join(extracted.split()) if isinstance(extracted, str) and extracted.strip() else None,
                  truncated=record.get("finish_reason") == "length")


@dataclass
class Progress:
    """What one `evaluate` call did, for the log line and the report notes."""

    generated: int = 0
    reused: int = 0
    failed: int = 0
    """Samples the backend returned as errors (after its retries): not written, redone next run."""
    completion_tokens: int = 0
    seconds: float = 0.0


class ResultStore:
    """The result lines of one (model, benchmark) file that belong to the current run."""

    def __init__(self, path: str | Path, key: str):
        self.path = Path(path)
        self.key = key
        self.records: dict[tuple[str, int], dict[str, Any]] = {}
        self.other_runs = 0
        if self.path.exists():
            for lineno, rec in read_jsonl(self.path):
                if not isinstance(rec, dict) or "prompt_id" not in rec or "sample_index" not in rec:
                    raise ConfigError(f"{self.path}:{lineno}: not an eval result line (needs prompt_id and "
                                     "sample_index); move the file away or point the eval at another --out")
                if rec.get("run_key") != key:
                    self.other_runs += 1
                    continue
                # First line wins: two evals appending to one file at once can only duplicate.
                self.records.setdefault((rec["prompt_id"], rec["sample_index"]), _slim(rec))
        if self.other_runs:
            log.info("%s: %d line(s) from another model version or sampling protocol are kept but not used",
                     self.path, self.other_runs)

    def get(self, prompt: Prompt, index: int, phash: str) -> dict[str, Any] | None:
        rec = self.records.get((prompt.id, index))
        return rec if rec is not None and rec.get("prompt_hash") == phash else None

    def missing(self, prompt: Prompt, k: int) -> list[int]:
        phash = prompt_hash(prompt)
        return [i for i in range(k) if self.get(prompt, i, phash) is None]

    def add(self, rec: dict[str, Any]) -> None:
        self.records[(rec["prompt_id"], rec["sample_index"])] = _slim(rec)

    def scored_otherwise(self, prompts: Sequence[Prompt], k: int, fallback: str) -> bool:
        """Whether some stored sample of `prompts` was judged with another answer fallback (lines
        written before the field existed were judged with 'distill')."""
        ids = {p.id for p in prompts}
        return any(rec.get("fallback", "distill") != fallback
                   for (pid, i), rec in self.records.items() if pid in ids and i < k)

    def rescore(self, prompts: Sequence[Prompt], k: int, workers: int, timeout: float = verify.DEFAULT_TIMEOUT,
                fallback: str = "distill") -> int:
        """Re-check the stored samples of `prompts` with the current checker (in memory; the file keeps
        the verdicts it was written with). Returns how many verdicts changed."""
        by_id = {p.id: p for p in prompts}
        wanted = {key for key in self.records if key[0] in by_id and key[1] < k}
        if not wanted:
            return 0
        # The texts are not kept in memory (see _slim): read them back from the file.
        texts: dict[tuple[str, int], Completion] = {}
        for _, rec in read_jsonl(self.path):
            key = (rec.get("prompt_id"), rec.get("sample_index"))
            if key in wanted and key not in texts and rec.get("run_key") == self.key:
                texts[key] = Completion(rec.get("reasoning", ""), rec.get("answer", ""), rec.get("finish_reason"))
        keys = list(texts)
        items = [(by_id[pid], texts[(pid, i)]) for pid, i in keys]
        changed = 0
        for key, v in zip(keys, score_completions(items, workers, timeout, fallback)):
            old = self.records[key]
            changed += old.get("correct") != v.correct
            self.records[key] = {**old, "correct": v.correct, "extracted": v.extracted, "status": v.status,
                                 "method": v.method, "fallback": fallback}
        log.info("%s: re-scored %d samples, %d verdicts changed", self.path, len(keys), changed)
        return changed

    def table(self, prompts: Sequence[Prompt], k: int) -> tuple[dict[str, list[Sample]], list[str]]:
        """(prompt id -> its first k samples, unscorable prompt ids), in benchmark order.

        Problems whose reference could not be used are left out: no answer can be right there.
        Problems with fewer than k samples (a cached teacher run with a smaller k) keep what they have.
        """
        out: dict[str, list[Sample]] = {}
        unscorable: list[str] = []
        for p in prompts:
            phash = prompt_hash(p)
            recs = [r for i in range(k) if (r := self.get(p, i, phash)) is not None]
            if any(r.get("status") in UNSCORABLE for r in recs):
                unscorable.append(p.id)
            elif recs:
                out[p.id] = [to_sample(r) for r in recs]
        return out, unscorable


def _slim(rec: dict[str, Any]) -> dict[str, Any]:
    """A result line without its texts: 64 samples x 30 AIME problems of 32k-token thinking are
    ~200 MB of text, and the scores need none of it."""
    return {k: v for k, v in rec.items() if k not in ("reasoning", "answer")}


UNSCORABLE = ("gold_unparsable", "no_reference")
"""Verdict statuses that say the problem, not the sample, cannot be scored."""


_warm = False


def score_completions(items: Sequence[tuple[Prompt, Completion]], workers: int,
                      timeout: float = verify.DEFAULT_TIMEOUT, fallback: str = "distill") -> list[verify.Verdict]:
    """Verdicts from `distill.verify`, the checker the filters use, in worker processes.

    `timeout` is seconds per item; an item past it is unjudged (status 'timeout') and counts as wrong.
    `fallback` is how a math answer without a box is read (`distill.verify.math.FALLBACKS`).
    """
    global _warm
    if not items:
        return []
    if not _warm and workers > 0:
        # One check here first: it imports math-verify and sympy (~1 s) in this process, so the
        # forked workers of every later `score_many` call start warm (0.1 s instead of 2 s per chunk).
        verify.score("math", "\\boxed{1}", "1")
        _warm = True
    todo = [(p.task, scored_text(c.reasoning, c.answer, c.finish_reason), p.reference) for p, c in items]
    return verify.score_many(todo, workers=workers, timeout=timeout, fallback=fallback)


def evaluate(
    store: ResultStore,
    prompts: Sequence[Prompt],
    k: int,
    params: SamplingParams,
    backend: Callable[[], Teacher],
    meta: dict[str, Any],
    chunk: int = 64,
    score_workers: int = 1,
    seed: int = 0,
    score_timeout: float = verify.DEFAULT_TIMEOUT,
    fallback: str = "distill",
) -> Progress:
    """Make sure every prompt has k scored samples in `store`, generating only what is missing.

    `backend` is called (it loads the model) only when something is missing, so a finished or
    cached run never loads a model. `chunk` is sequences per generate call (at least one
    problem's n samples). `meta` goes into every line (model label, role, benchmark).
    """
    progress = Progress()
    todo: dict[int, list[tuple[Prompt, list[int]]]] = {}
    for p in prompts:
        missing = store.missing(p, k)
        progress.reused += k - len(missing)
        if missing:
            # Group by how many samples are missing, so one generate call asks n of each prompt.
            todo.setdefault(len(missing), []).append((p, missing))
    if not todo:
        return progress
    model = backend()
    start = time.monotonic()
    total = sum(len(v) for v in todo.values())
    done = 0
    with JsonlWriter(store.path) as writer:
        for n, group in sorted(todo.items(), reverse=True):
            per_call = max(1, chunk // n)  # `chunk` counts sequences; n of them per problem
            for lo in range(0, len(group), per_call):
                batch = group[lo:lo + per_call]
                # A seed per (prompts, first index): topping up k=4 to k=8 must not replay samples 0-3.
                call_seed = _seed(seed, [p.id for p, _ in batch], batch[0][1][0])
                outs = model.generate([p.messages for p, _ in batch], replace(params, n=n, seed=call_seed))
                if len(outs) != len(batch):
                    raise RuntimeError(f"backend {getattr(model, 'name', model)!r} returned {len(outs)} completion "
                                       f"lists for {len(batch)} prompts; it must keep prompt order and count")
                _write(store, writer, batch, outs, meta, score_workers, score_timeout, progress, fallback)
                done += len(batch)
                elapsed = time.monotonic() - start
                log.info("%s %s: %d/%d problems, %d samples, %.0f tokens/s", meta.get("role"), meta.get("benchmark"),
                         done, total, progress.generated, progress.completion_tokens / max(elapsed, 1e-9))
    progress.seconds = time.monotonic() - start
    return progress


def _seed(seed: int, ids: list[str], first_index: int) -> int:
    h = hashlib.sha256(json.dumps([seed, ids, first_index]).encode()).digest()
    return int.from_bytes(h[:4], "big") & 0x7FFFFFFF


def _write(store: ResultStore, writer: JsonlWriter, batch: list[tuple[Prompt, list[int]]],
           outs: list[list[Completion]], meta: dict[str, Any], score_workers: int, score_timeout: float,
           progress: Progress, fallback: str = "distill") -> None:
    items: list[tuple[Prompt, int, Completion]] = []
    for (p, indices), comps in zip(batch, outs):
        for index, c in zip(indices, comps):
            if c.finish_reason == "error":  # the backend gave up on this request: redo it next run
                progress.failed += 1
                log.warning("%s %s: %s sample %d failed: %s", meta.get("role"), meta.get("benchmark"), p.id, index,
                            str(c.raw.get("error", ""))[:200])
                continue
            items.append((p, index, c))
        progress.failed += max(0, len(indices) - len(comps))
    verdicts = score_completions([(p, c) for p, _, c in items], score_workers, score_timeout, fallback)
    for (p, index, c), v in zip(items, verdicts):
        rec = {
            **meta,
            "run_key": store.key,
            "prompt_id": p.id,
            "sample_index": index,
            "prompt_hash": prompt_hash(p),
            "correct": v.correct,
            "extracted": v.extracted,
            "status": v.status,
            "method": v.method,
            "fallback": fallback,
            "reference": p.reference if p.task != "code" else None,  # code tests can be megabytes
            "finish_reason": c.finish_reason,
            "prompt_tokens": c.prompt_tokens,
            "completion_tokens": c.completion_tokens,
            "reasoning": c.reasoning,
            "answer": c.answer,
        }
        writer.write(rec)
        store.add(rec)
        progress.generated += 1
        progress.completion_tokens += c.completion_tokens or 0
