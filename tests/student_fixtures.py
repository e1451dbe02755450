"""Helpers for the student-trainer tests (test_student_*.py): clean.jsonl files and tiny-run overrides."""

from __future__ import annotations

import random
from pathlib import Path

from distill.trace import Trace, trace_id, write_traces


def arithmetic_traces(n: int, seed: int = 0, teacher: str = "tiny-teacher") -> list[Trace]:
    """`n` short, learnable traces: 'What is a + b?' with a one-line sum in the reasoning."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        out.append(Trace(
            id=trace_id(f"p{i}", 0, "test"), prompt_id=f"p{i}",
            messages=[{"role": "user", "content": f"What is {a} + {b}?"}],
            reasoning=f"We add {a} and {b}. {a} + {b} = {a + b}.", answer=f"The answer is \\boxed{{{a + b}}}.",
            finish_reason="stop", teacher={"model": teacher, "backend": "hf"}, reference=str(a + b)))
    return out


def write_clean(path: Path, traces: list[Trace]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_traces(path, traces)
    return path


def tiny_overrides(base: Path, *extra: str) -> list[str]:
    """students/tiny.yaml on a fixture model: few steps, one thread, a loss logged every step."""
    return [f"base={base}", "torch_threads=1", "logging_steps=1", *extra]
