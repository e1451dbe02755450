"""Counting and showing stage 1 (distill.teachers.sample): the run's counters, the progress bar and
log lines, and the summary printed and written to summary.json."""

from __future__ import annotations

import logging
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distill.prompts import PromptSetConfig
from distill.teachers.config import TeacherConfig

log = logging.getLogger(__name__)


@dataclass
class Stats:
    prompts: int = 0
    duplicates: int = 0
    already_done: int = 0
    written: int = 0
    failed: int = 0
    recovered: int = 0
    retries: Counter = field(default_factory=Counter)
    failures_by_kind: Counter = field(default_factory=Counter)
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Progress:
    """A tqdm bar on a terminal (done, failed, rate, tokens, ETA), and a log line every `every` s."""

    def __init__(self, total: int | None, every: float):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, unit="sample", dynamic_ncols=True, smoothing=0.05, disable=None,
                        file=sys.stderr)
        self.every, self.start = every, time.monotonic()
        self.last_log = self.last_postfix = self.start
        self.total = total
        self.count = 0

    def update(self, stats: Stats, n: int = 1) -> None:
        self.count += n
        self.bar.update(n)
        now = time.monotonic()
        if now - self.last_postfix >= 0.5 or self.count == self.total:
            self.last_postfix = now
            elapsed = max(now - self.start, 1e-9)
            self.bar.set_postfix(done=stats.written, failed=stats.failed,
                                 tok_s=f"{stats.completion_tokens / elapsed:.0f}", refresh=False)
        if now - self.last_log >= self.every:
            self.last_log = now
            elapsed = now - self.start
            rate = stats.written / elapsed if elapsed else 0.0
            left = (self.total - self.count) / rate if self.total and rate else None
            log.info("progress: %d/%s samples (%d written, %d failed, %d already done), %.2f samples/s, "
                     "%.0f tokens/s, ETA %s", self.count, self.total or "?", stats.written, stats.failed,
                     stats.already_done, rate, stats.completion_tokens / elapsed if elapsed else 0.0,
                     f"{left / 60:.1f} min" if left is not None else "?")

    def close(self) -> None:
        self.bar.close()


def account(stats: Stats, progress: Progress, already: int) -> None:
    if already < 0:
        stats.duplicates += 1
        return
    stats.prompts += 1
    if already:
        stats.already_done += already
        progress.update(stats, already)


def run_summary(tcfg: TeacherConfig, pcfg: PromptSetConfig, out_dir: Path, shard: tuple[int, int] | None, stats: Stats,
             before: int, failures_left: int, wall: float) -> dict[str, Any]:
    return {
        "teacher": tcfg.label, "model": tcfg.model, "backend": tcfg.backend, "prompts": pcfg.name,
        "shard": f"{shard[0]}/{shard[1]}" if shard else None, "samples_per_prompt": tcfg.sampling.n,
        "out_dir": str(out_dir), "prompts_seen": stats.prompts, "duplicate_prompts": stats.duplicates,
        "already_done": stats.already_done, "written": stats.written, "failed": stats.failed,
        "recovered_failures": stats.recovered, "failures_left": failures_left,
        "traces_in_file": before + stats.written, "retries": dict(stats.retries),
        "failures_by_kind": dict(stats.failures_by_kind), "prompt_tokens": stats.prompt_tokens,
        "completion_tokens": stats.completion_tokens, "wall_s": round(wall, 2),
        "samples_per_s": round(stats.written / wall, 3) if wall > 0 else None,
    }


def format_summary(s: dict[str, Any]) -> str:
    retries = ", ".join(f"{k} x{v}" for k, v in sorted(s["retries"].items())) or "none"
    lines = [
        f"traces: {s['prompts_seen']} prompts x {s['samples_per_prompt']} from {s['teacher']} -> {s['out_dir']}/raw.jsonl"
        + (f" (shard {s['shard']})" if s["shard"] else ""),
        (f"  this run: {s['written']} written, {s['failed']} failed, {s['already_done']} already done, "
         f"{s['duplicate_prompts']} duplicate prompts skipped; raw.jsonl now holds {s['traces_in_file']}"),
        (f"  tokens: {s['prompt_tokens']:,} prompt, {s['completion_tokens']:,} completion; "
         f"{s['samples_per_s'] or 0:.2f} samples/s over {s['wall_s']:.1f} s; retries: {retries}"),
    ]
    if s["failures_left"]:
        lines.append(f"  {s['failures_left']} samples failed (failures.jsonl, with reasons): rerun the same command "
                     "to retry them")
    return "\n".join(lines)
