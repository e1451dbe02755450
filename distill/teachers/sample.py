"""Stage 1: sample reasoning traces from a teacher into raw.jsonl, resumably.

    make traces TEACHER=r1 PROMPTS=openr1-math ARGS="limit=1000"
    distill traces --teacher r1 --prompts openr1-math teacher.sampling.temperature=0.7 teacher.concurrency=128
    distill traces --teacher r1 --prompts openr1-math n=4 temperature=0.6     # short forms of teacher.sampling.*
    distill traces --teacher qwq --prompts numinamath --shard 3/8      # machine 3 of 8
    distill traces --teacher r1 --prompts aime24 prompts.path=../shared/data/benchmarks/aime24.jsonl

`key=value` arguments are dotted paths into `TracesConfig` (distill.teachers.config): `teacher.<key>`
into the teacher YAML (`teacher.model=`, `teacher.base_url=`, `teacher.sampling.max_tokens=`),
`prompts.<key>` into the prompt-set YAML (`prompts.split=test`), and the run keys `limit=`,
`log_every=`, `allow_mixed=`. `n`, `temperature`, `top_p`, `max_tokens` and `seed` are short for
`teacher.sampling.<key>` (`ALIASES`, the one alias table).

Files in out_dir (out/traces/<teacher>/<prompts>/):
    raw.jsonl       one Trace per line, appended as each sample finishes
    failures.jsonl  samples that failed after every retry, with the reason; the next run retries them
    traces.log      this stage's log
    run.json        the configs of the latest run (the key's variable name, never its value)
    summary.json    the summary of the latest run

What holds, because teacher tokens cost money:
- Rerunning the same command skips every sample already in raw.jsonl and does the rest.
- kill -9 at any moment loses only the requests in flight, never duplicates: each trace is one
  `os.write` (distill.trace.JsonlWriter), ids are read back on start, a lock stops two runs
  writing one folder, and a torn last line is set aside.
- Prompts are streamed; memory holds only 8-byte keys of finished samples and seen prompts in
  sorted arrays (`KeySet`): ~16 bytes per prompt, 16 MB for a million.
- Every sample ends as a trace or a failure record; nothing is dropped silently.

This module is the run loop and where samples land (`Sink`); what is already done and what is
left (`distill.teachers.resume`) and the counters, progress bar and summary
(`distill.teachers.progress`) live beside it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from distill.config import ConfigError, to_dict
from distill.prompts import ColumnError, Prompt, PromptSetConfig, load_prompts, parse_shard
from distill.teachers import loop
from distill.teachers.base import BatchTeacher, Completion, RequestTeacher, SamplingParams, TeacherError
from distill.teachers.config import Redactor, TeacherConfig, load_traces_config
from distill.teachers.progress import Progress, Stats, account, format_summary, run_summary
from distill.teachers.render import conversation
from distill.teachers.resume import RunLock, check_same_teacher, compact_failures, id_key, plan, read_done_ids
from distill.trace import JsonlWriter, Trace, atomic_write_text, read_jsonl, with_provenance

log = logging.getLogger(__name__)


TRACE_FIELDS = tuple(f.name for f in dataclasses.fields(Trace))


class SamplingStopped(ConfigError):
    """The run stopped on purpose (server refuses us, or keeps failing). A ConfigError, so the CLI
    prints the message instead of a traceback; rerunning the same command resumes."""


# ---------------------------------------------------------------------------------------------
# Where finished samples go: raw.jsonl or failures.jsonl


class Sink:
    """Turns each finished sample into a raw.jsonl line or a failures.jsonl line, and counts."""

    def __init__(self, out_dir: Path, cfg: TeacherConfig, stats: Stats, progress: Progress,
                 earlier_failures: set[str], redact: Redactor):
        self.raw = JsonlWriter(out_dir / "raw.jsonl")
        self.failures = JsonlWriter(out_dir / "failures.jsonl")
        self.cfg, self.record, self.stats, self.progress = cfg, cfg.record(), stats, progress
        self.earlier_failures, self.recovered_ids = earlier_failures, set()
        self.redact = redact
        self.consecutive_failures = 0
        self.last_error = ""

    def ok(self, prompt: Prompt, k: int, tid: str, c: Completion, attempts: int = 1, latency: float | None = None) -> None:
        if c.finish_reason == "error":  # a backend's generate() gave up on this sample
            self.fail(prompt, k, tid, str(c.raw.get("error", "error")), str(c.raw.get("kind", "error")), attempts)
            return
        meta = dict(prompt.meta)
        meta["attempts"] = attempts
        if latency is not None:
            meta["latency_s"] = round(latency, 3)
        teacher, response = with_provenance(self.record, c.raw)
        if response:
            meta["response"] = response
        # The conversation as the teacher got it: the backends add the same system turn (distill.teachers.render).
        messages = conversation(prompt.messages, self.cfg.system_prompt)
        trace = Trace(id=tid, prompt_id=prompt.id, sample_index=k, messages=messages,
                      reasoning=c.reasoning, answer=c.answer, finish_reason=c.finish_reason,
                      prompt_tokens=c.prompt_tokens, completion_tokens=c.completion_tokens,
                      reasoning_tokens=c.reasoning_tokens, teacher=teacher, reference=prompt.reference,
                      task=prompt.task, meta=meta)
        # A shallow dict: Trace.to_dict (dataclasses.asdict) deep-copies every field, ~10% of the
        # client's CPU at hundreds of requests per second.
        self.raw.write({name: getattr(trace, name) for name in TRACE_FIELDS})
        self.stats.written += 1
        self.stats.prompt_tokens += c.prompt_tokens or 0
        self.stats.completion_tokens += c.completion_tokens or 0
        if tid in self.earlier_failures:
            self.recovered_ids.add(tid)
            self.stats.recovered += 1
        self.consecutive_failures = 0
        self.progress.update(self.stats)

    def fail(self, prompt: Prompt, k: int, tid: str, reason: str, kind: str, attempts: int) -> None:
        reason = self.redact(reason)
        self.failures.write({"id": tid, "prompt_id": prompt.id, "sample_index": k, "kind": kind, "reason": reason,
                             "attempts": attempts, "teacher": self.record["name"],
                             "time": time.strftime("%Y-%m-%dT%H:%M:%S")})
        self.stats.failed += 1
        self.stats.failures_by_kind[kind] += 1
        self.consecutive_failures += 1
        self.last_error = reason
        log.warning("sample %s of %s failed after %d attempt(s): %s", k, prompt.id, attempts, reason)
        self.progress.update(self.stats)
        if self.consecutive_failures >= self.cfg.max_consecutive_failures:
            raise SamplingStopped(
                f"teacher '{self.cfg.label}': the last {self.consecutive_failures} samples all failed after retries "
                f"(last: {reason}). Stopped rather than fill failures.jsonl; check the server, then rerun the "
                "same command to resume."
            )

    def close(self) -> None:
        self.raw.close()
        self.failures.close()


async def sample_requests(teacher: RequestTeacher, work: Iterator[tuple[Prompt, list[tuple[int, str]], int]],
                          sink: Sink, cfg: TeacherConfig, params: SamplingParams) -> None:
    """A server: each sample is one request through the shared request loop (`distill.teachers.loop`)."""
    stats = sink.stats

    def requests(item: tuple[Prompt, list[tuple[int, str]], int]) -> Iterator[loop.Request]:
        prompt, todo, already = item
        account(stats, sink.progress, already)
        for k, tid in todo:
            one = dataclasses.replace(params, n=1, seed=None if params.seed is None else params.seed + k)
            yield loop.Request(prompt.messages, one, (prompt, k, tid))

    def finish(request: loop.Request, result: Completion | TeacherError, attempts: int, seconds: float) -> None:
        prompt, k, tid = request.tag
        if isinstance(result, TeacherError):
            sink.fail(prompt, k, tid, str(result), result.kind, attempts)
        else:
            sink.ok(prompt, k, tid, result, attempts, seconds)

    def on_retry(e: TeacherError, attempt: int, wait: float) -> None:
        stats.retries[e.kind] += 1
        log.debug("retry %d after %s (%s), waiting %.2f s", attempt, e.kind, sink.redact(str(e)), wait)

    policy = loop.RetryPolicy(cfg.max_retries, cfg.backoff, cfg.max_backoff)
    try:
        await loop.run_requests(teacher, work, requests, finish, concurrency=cfg.concurrency, policy=policy,
                                on_retry=on_retry)
    except TeacherError as e:  # fatal: a refused key, an unknown model
        raise SamplingStopped(f"teacher '{cfg.label}': {sink.redact(str(e))}. Nothing else was sent; fix this and "
                              "rerun the same command to resume.") from None


def sample_batches(teacher: BatchTeacher, work: Iterator[tuple[Prompt, list[tuple[int, str]], int]], sink: Sink,
                   cfg: TeacherConfig, params: SamplingParams) -> None:
    """A local engine: gather the sequences it asks for per call (`sequences_per_call`), one generate
    call per gathering; a kill loses at most one gathering."""
    batch: list[tuple[Prompt, list[tuple[int, str]]]] = []
    size = 0
    gather = teacher.sequences_per_call(cfg)
    for prompt, todo, already in work:
        account(sink.stats, sink.progress, already)
        if todo:
            batch.append((prompt, todo))
            size += len(todo)
        if size >= gather:
            _run_batch(teacher, batch, sink, params)
            batch, size = [], 0
    if batch:
        _run_batch(teacher, batch, sink, params)


def _run_batch(teacher: BatchTeacher, batch: list[tuple[Prompt, list[tuple[int, str]]]], sink: Sink,
               params: SamplingParams) -> None:
    # One generate call per distinct number of samples still to do (after a resume it varies).
    by_n: dict[int, list[tuple[Prompt, list[tuple[int, str]]]]] = {}
    for prompt, todo in batch:
        by_n.setdefault(len(todo), []).append((prompt, todo))
    for n, group in by_n.items():
        _generate_halving(teacher, group, dataclasses.replace(params, n=n), sink)


def _generate_halving(teacher: BatchTeacher, group: list[tuple[Prompt, list[tuple[int, str]]]],
                      params: SamplingParams, sink: Sink) -> None:
    """Generate; if the batch fails (out of memory, one bad prompt), halve it until one prompt fails alone."""
    start = time.monotonic()
    try:
        results = teacher.generate([p.messages for p, _ in group], params)
    except Exception as e:  # noqa: BLE001 - whatever the engine raised, the other prompts should still run
        if len(group) > 1:
            log.warning("a batch of %d prompts failed (%s: %s); retrying it in halves", len(group), type(e).__name__, e)
            half = len(group) // 2
            _generate_halving(teacher, group[:half], params, sink)
            _generate_halving(teacher, group[half:], params, sink)
            return
        for k, tid in group[0][1]:
            sink.fail(group[0][0], k, tid, f"{type(e).__name__}: {e}", type(e).__name__, 1)
        return
    latency = (time.monotonic() - start) / max(1, len(group))  # per prompt, averaged over the batch
    if len(results) != len(group):
        results = list(results) + [[]] * (len(group) - len(results))
    for (prompt, todo), completions in zip(group, results):
        for (k, tid), completion in zip(todo, completions):
            sink.ok(prompt, k, tid, completion, 1, latency)
        for k, tid in todo[len(completions):]:  # a backend that returned fewer than asked: say so
            sink.fail(prompt, k, tid, f"backend returned {len(completions)} of {len(todo)} completions", "missing", 1)


# ---------------------------------------------------------------------------------------------
# Run


def run(teacher: str | Path | TeacherConfig, prompts: str | Path | PromptSetConfig, out_dir: str | Path,
        shard: str | tuple[int, int] | None = None, overrides: list[str] | None = None) -> dict[str, Any]:
    """Sample `n` traces per prompt into out_dir/raw.jsonl; return (and print) the summary."""
    # ---- Configs: fail on a bad key, a missing API key or a bad shard before any work
    cfg = load_traces_config(teacher, prompts, overrides)
    tcfg, pcfg = cfg.teacher, cfg.prompts
    shard_pair = parse_shard(shard)
    redact = Redactor(tcfg.api_key())  # a missing key variable fails here, before any work
    stream = load_prompts(pcfg, limit=cfg.limit, shard=shard_pair)
    # Read the first prompt before the teacher loads (minutes) or any file is written: an empty or
    # unreadable prompt file is an error, not a run that writes 0 traces.
    try:
        first = next(iter(stream), None)
    except ColumnError as e:
        raise ConfigError(f"{e} (on the command line: prompts.columns.{e.key}={e.guess or '<column>'})") from None
    if first is None:
        where = f"shard {shard_pair[0]}/{shard_pair[1]} of " if shard_pair else ""
        raise ConfigError(f"{where}prompt set '{pcfg.name}' ({stream.where}) has no prompts; check the file "
                          "(prompts.path=...) and its columns, or the set's skip_references")
    params = tcfg.sampling
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    # ---- Logging: a file log of this stage, with the key scrubbed from every handler's output
    for noisy in ("httpx", "httpx2", "openai", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)  # one INFO line per request otherwise
    file_log = logging.FileHandler(out_dir / "traces.log")
    file_log.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    handlers = [file_log, *root.handlers]
    for h in handlers:
        h.addFilter(redact)
    root.addHandler(file_log)
    root_level = root.level
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)  # the log file gets INFO lines even when the caller set no level

    stats = Stats()
    started = time.time()
    summary: dict[str, Any] = {}
    try:
        with RunLock(out_dir / ".lock"):
            check_same_teacher(out_dir, tcfg, cfg.allow_mixed)
            atomic_write_text(out_dir / "run.json", json.dumps({
                "teacher": {**tcfg.record(), "api_key_env": tcfg.api_key_env, "endpoints": len(tcfg.base_url),
                            "concurrency": tcfg.concurrency, "timeout": tcfg.timeout, "max_retries": tcfg.max_retries},
                "prompts": to_dict(pcfg), "shard": list(shard_pair) if shard_pair else None,
                "run": {k: getattr(cfg, k) for k in ("limit", "log_every", "allow_mixed")},
                "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
            }, indent=2, ensure_ascii=False) + "\n")

            # ---- Resume state: open the writers first (they set aside a torn last line), then read ids
            earlier_failures = {r["id"] for _, r in read_jsonl(out_dir / "failures.jsonl")
                                if isinstance(r.get("id"), str)} if (out_dir / "failures.jsonl").exists() else set()
            total = stream.total * params.n if stream.total is not None else None
            progress = Progress(total, cfg.log_every)
            sink = Sink(out_dir, tcfg, stats, progress, earlier_failures, redact)
            done = read_done_ids(out_dir / "raw.jsonl")
            log.info("sampling %s x %d from teacher '%s' (%s, %s) into %s: %d samples already there%s",
                     pcfg.name, params.n, tcfg.label, tcfg.backend, tcfg.model, out_dir, len(done),
                     f", retrying {len(earlier_failures)} earlier failures" if earlier_failures else "")

            # ---- Sample
            try:
                work = plan(stream, params.n, tcfg.fingerprint(), done)
                from distill.teachers import load_teacher

                backend = load_teacher(tcfg)
                if backend.batching == "requests":
                    asyncio.run(sample_requests(backend, work, sink, tcfg, params))
                else:
                    sample_batches(backend, work, sink, tcfg, params)
            finally:
                sink.close()
                progress.close()
                resolved = {tid for tid in earlier_failures if id_key(tid) in done} | sink.recovered_ids
                remaining = compact_failures(out_dir / "failures.jsonl", resolved)
                summary = run_summary(tcfg, pcfg, out_dir, shard_pair, stats, len(done), remaining,
                                   time.time() - started)
                atomic_write_text(out_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
                print(format_summary(summary), flush=True)
                for line in format_summary(summary).splitlines():
                    log.info("%s", line)
    finally:
        root.removeHandler(file_log)
        root.setLevel(root_level)
        file_log.close()
        for h in handlers:
            h.removeFilter(redact)
    return summary


