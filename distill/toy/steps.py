"""The toy's process check: every line of a toy scratchpad is a right step, not only the final answer.

    from distill.toy.steps import ToySteps, wrong_step

    wrong_step("Compute 7-3+5.", "7-3+5\\n=4+5\\n=9")    # None: every step right
    wrong_step("Compute 7-3+5.", "7-3+5\\n=3+5\\n=9")    # "wrong step: line 2 '=3+5' ..., 7-3 is 4"

`math_correct` keeps a trace whose boxed answer is right. On the toy that is not enough: the tiny
teacher often reaches the right answer through wrong lines (`7-3+5-2-5+1` -> `=3+5-2-5+1` ...
-> `=3`), and a student trained on such traces learns those wrong facts with the right ones.
Measured on one teacher's 12,000 samples (docs/toy.md): 4,094 pass the R1 recipe, and 1,123 are
right at every line and in the answer. A student trained on those 1,123 reached 72.4% held-out
pass@1 (k=8), against 44.1% on the 4,094 and 36.5% for the teacher.

It is a process check in the sense of step-level verification (Lightman et al. 2023, "Let's
Verify Step by Step"), possible here because each toy step can be computed exactly; a real
trace's steps cannot be, which is why the R1 recipe does not have one. It is switched on by name:
`make filter TEACHER=tiny PROMPTS=toy ARGS="toy_steps=true"`, or `distill demo prompts=12000
filter.toy_steps=true` (it keeps ~1 trace in 10, so the demo's 3,000 prompts leave too few: a
student on those 409 traces reached 32%).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import pairwise
from typing import ClassVar

from distill.filters.base import TraceFilter
from distill.trace import Trace

_PROBLEM = re.compile(r"Compute (\d+(?:[+-]\d+)+)\.")
_LINE = re.compile(r"=?(\d+)([+-])(\d+)(.*)")


def problem_expression(prompt: str) -> str | None:
    """'7-3+5' from a toy prompt ('Compute 7-3+5.\\n\\nPlease reason ...'), else None."""
    m = _PROBLEM.search(prompt)
    return m.group(1) if m else None


def wrong_step(prompt: str, reasoning: str) -> str | None:
    """None when `reasoning` is the toy scratchpad of `prompt` with every line right, else why not.

    The scratchpad (distill.toy.task.reasoning_text) starts with the expression, then each line
    evaluates the first operation of the line above and copies the rest: `7-3+5`, `=4+5`, `=9`.
    """
    expr = problem_expression(prompt)
    if expr is None:
        return "not a toy problem: the prompt has no 'Compute <expression>.'"
    lines = reasoning.strip().split("\n")
    if lines[0].strip() != expr:
        return f"wrong step: line 1 {lines[0][:40]!r} is not the problem {expr!r}"
    for n, (above, line) in enumerate(pairwise(lines), start=2):
        m = _LINE.fullmatch(above.strip())
        if m is None:
            return f"wrong step: line {n} {line[:40]!r} follows a line with nothing left to compute"
        a, op, b, rest = int(m[1]), m[2], int(m[3]), m[4]
        value = a + b if op == "+" else a - b
        if line.strip() != f"={value}{rest}":
            return f"wrong step: line {n} {line[:40]!r} should be '={value}{rest}' ({a}{op}{b} is {value})"
    if _LINE.fullmatch(lines[-1].strip()):
        return f"unfinished: the last line {lines[-1][:40]!r} still has an operation"
    return None


@dataclass(frozen=True)
class ToySteps(TraceFilter):
    """Drop toy traces with a wrong scratchpad line, even when their final answer is right."""

    name: ClassVar[str] = "toy_steps"

    def judge(self, trace: Trace) -> str | None:
        prompt = next((m["content"] for m in reversed(trace.messages) if m.get("role") == "user"), "")
        return wrong_step(prompt, trace.reasoning)


__all__ = ["ToySteps", "problem_expression", "wrong_step"]
