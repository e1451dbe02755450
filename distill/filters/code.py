"""`code_correct`: keep code traces whose final Python block passes the prompt's tests.

    from distill.filters.code import CodeCorrect
    f = CodeCorrect()                        # all tests must pass
    f.check(trace)                           # None (keep) or the reason, e.g. 'wrong_answer on case 2/5: ...'
    trace.meta["correct"], trace.meta["pass_rate"]

    CodeCorrect(min_pass_rate=0.8)           # keep partial solutions (runs every case)
    CodeCorrect().annotate_all(traces, workers=2)  # verify a batch in parallel first; judge() then only reads

The tests come from `trace.reference` in the shape documented in `distill.verify.code`; the
program runs in that module's sandbox. Traces of other tasks pass untouched (another filter
checks math answers). A code trace without tests is dropped unless `keep_unverified=True`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

from distill.filters.base import Annotation, TraceFilter, apply_annotation
from distill.trace import Trace
from distill.verify.code import CodeResult, parse_tests, verify_code, verify_many
from distill.verify.sandbox import Limits

ANNOTATION = "code_result"
"""meta key holding the verification summary (status, pass_rate, excerpt, cases run), so a rerun skips it."""


@dataclass
class CodeCorrect(TraceFilter):
    """Drop code traces whose answer fails its tests; writes meta['correct'] and meta['pass_rate']."""

    name: ClassVar[str] = "code_correct"

    min_pass_rate: float = 1.0
    """Keep when at least this fraction of cases pass. Below 1.0 every case is run, to know the fraction."""
    timeout: float | None = None
    """Seconds per test case; None: the tests' own `timeout`, else 6."""
    memory_mb: int | None = None
    mode: str = "auto"
    """Sandbox: 'auto' (bubblewrap when present), 'bwrap' or 'fallback'."""
    keep_unverified: bool = False
    """Keep code traces that carry no tests (reference is None) instead of dropping them."""

    def __post_init__(self) -> None:
        if not 0.0 < self.min_pass_rate <= 1.0:
            raise ValueError(f"code_correct: min_pass_rate must be in (0, 1], got {self.min_pass_rate!r}")

    def _limits(self) -> Limits | None:
        if self.timeout is None and self.memory_mb is None:
            return None
        base = Limits()
        return Limits(timeout=self.timeout or base.timeout, memory_mb=self.memory_mb or base.memory_mb)

    @property
    def _run_all(self) -> bool:
        return self.min_pass_rate < 1.0

    def _annotation(self, result: CodeResult) -> Annotation:
        summary = {
            "status": result.status,
            "passed": result.num_passed,
            "cases": result.num_cases,
            "excerpt": result.excerpt,
            "run_all": self._run_all,
        }
        return {"meta": {"correct": result.passed, "pass_rate": result.pass_rate, ANNOTATION: summary}}

    def _needs_run(self, trace: Trace) -> bool:
        if trace.task != "code" or trace.reference is None:
            return False
        done = trace.meta.get(ANNOTATION)
        # A stop-at-first-failure result cannot answer a pass-rate question.
        return not (isinstance(done, dict) and (done.get("run_all") or not self._run_all))

    def annotate_all(self, traces: Iterable[Trace], workers: int = 2) -> list[Trace]:
        """Verify every code trace that needs it, `workers` sandboxes at a time, and annotate it;
        returns the traces. Then `judge` (or `check`, which finds nothing left to run) only reads."""
        traces = list(traces)
        todo = [t for t in traces if self._needs_run(t)]
        specs = [parse_tests(t.reference, where=f"trace {t.id}: reference") for t in todo]
        results = verify_many(
            [t.answer for t in todo],
            specs,
            workers=workers,
            run_all=self._run_all,
            mode=self.mode,
            limits=self._limits(),
        )
        for trace, result in zip(todo, results, strict=True):
            apply_annotation(trace, self._annotation(result))
        return traces

    def annotate(self, trace: Trace) -> Annotation:
        if not self._needs_run(trace):
            return {}
        spec = parse_tests(trace.reference, where=f"trace {trace.id}: reference")
        return self._annotation(
            verify_code(trace.answer, spec, run_all=self._run_all, mode=self.mode, limits=self._limits())
        )

    def judge(self, trace: Trace) -> str | None:
        if trace.task != "code":
            return None
        if trace.reference is None:
            return None if self.keep_unverified else "code_correct: no tests in the trace's reference"
        done = trace.meta[ANNOTATION]
        rate = trace.meta["pass_rate"]
        if rate >= self.min_pass_rate and (self.min_pass_rate < 1.0 or trace.meta["correct"]):
            return None
        if self.min_pass_rate < 1.0:
            share = f"{rate:.0%} < {self.min_pass_rate:.0%}"
            return f"code_correct: passed {done['passed']}/{done['cases']} cases ({share})"
        return f"code_correct: {done['excerpt'] or done['status']}"
