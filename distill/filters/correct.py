"""Answer correctness: the filter face of `distill.verify` (math-verify and multiple-choice letters)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from distill import verify
from distill.filters.base import Annotation, TraceFilter
from distill.trace import Trace


@dataclass(frozen=True)
class MathCorrect(TraceFilter):
    """Keep traces whose final answer equals the reference (rejection sampling, R1 section 2.3.3).

    The answer is checked with `distill.verify.score(trace.task, trace.answer, trace.reference)`,
    the same call the eval stage makes: 'math' through math-verify (last `\\boxed{}` of the answer
    part, with fallbacks), 'choice' by the option letter. Code traces pass untouched
    (`code_correct` checks them). Writes `meta['correct']` (True/False/None) and
    `meta['verify']` (status, extracted answer, method, detail) on every trace it checks (its
    annotation); the verdict only reads them.

    A trace that cannot be judged (no reference, a gold answer math-verify cannot parse, a
    timeout) gets `correct=None` and a reason starting with 'unverifiable', counted apart from
    wrong answers; `keep_unverifiable=True` keeps such traces instead.
    `answer_fallback` reads an unboxed answer as the eval does ('distill', or 'last_number' to
    match harnesses built on the Qwen2.5-Math parser); keep it equal to the eval's setting.
    Run it under `apply_filters(..., workers=N)`: each item gets `timeout` seconds in a worker.
    """

    name: ClassVar[str] = "math_correct"
    timeout: float = verify.DEFAULT_TIMEOUT
    keep_unverifiable: bool = False
    answer_fallback: str = "distill"

    def __post_init__(self) -> None:
        from distill.verify.math import check_fallback

        check_fallback(self.answer_fallback, "math_correct: answer_fallback")

    def annotate(self, trace: Trace) -> Annotation:
        if trace.task not in ("math", "choice"):
            return {}
        v = verify.score(trace.task, trace.answer, trace.reference, timeout=self.timeout, fallback=self.answer_fallback)
        return {"meta": {"correct": v.correct,
                         "verify": {"status": v.status, "extracted": v.extracted, "method": v.method,
                                    "detail": v.detail}}}

    def judge(self, trace: Trace) -> str | None:
        if trace.task not in ("math", "choice"):
            return None
        correct, v = trace.meta.get("correct"), trace.meta.get("verify") or {}
        if correct:
            return None
        if correct is None:
            return None if self.keep_unverifiable else f"unverifiable ({v.get('status')}): {v.get('detail', '')}"
        return f"{v.get('status')}: {v.get('detail', '')}"
