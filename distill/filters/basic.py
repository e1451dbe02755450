"""Structural filters: the trace finished, has one well-formed reasoning block, and a sane length."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, ClassVar

from distill.filters.base import Annotation, TraceFilter
from distill.trace import THINK, Trace, split_reasoning


@dataclass(frozen=True)
class Finished(TraceFilter):
    """Drop truncated traces: the teacher stopped for a reason other than its own end of text.

    'length' means max_tokens cut the output; its reasoning never reached an answer. A trace with
    no finish_reason (imported from elsewhere) is kept unless `require_reason`, and `think_format`
    still catches an unclosed reasoning block.
    """

    name: ClassVar[str] = "finished"
    require_reason: bool = False

    def judge(self, trace: Trace) -> str | None:
        reason = trace.finish_reason
        if reason == "stop":
            return None
        if reason is None:
            return "unknown finish: the source did not record finish_reason" if self.require_reason else None
        if reason == "length":
            return "truncated: finish_reason='length' (max_tokens cut the output)"
        return f"not finished: finish_reason={reason!r}"


@dataclass(frozen=True)
class ThinkFormat(TraceFilter):
    """Exactly one well-formed reasoning block and a non-empty answer after it.

    Delimiters are configurable: R1/QwQ write `<think>...</think>`; Sky-T1 and Bespoke-Stratos
    write `<|begin_of_thought|>...<|end_of_thought|>` and wrap the answer in
    `<|begin_of_solution|>...<|end_of_solution|>` (`solution`).

    A trace whose reasoning is empty and whose answer holds the raw completion (traces imported
    from elsewhere, or a backend that did not split) is split here with `think`, and the solution
    delimiters are removed from the answer: its annotation replaces `reasoning` and `answer`.
    """

    name: ClassVar[str] = "think_format"
    think: tuple[str, str] = THINK
    solution: tuple[str, str] | None = None
    min_answer_chars: int = 1

    def _normalized(self, trace: Trace) -> tuple[str, str, str | None]:
        """(reasoning, answer, problem): the trace's parts after splitting a raw completion held in
        `answer` and unwrapping the solution delimiters; `problem` when that cannot be done."""
        open_tag, close_tag = self.think
        reasoning, answer = trace.reasoning, trace.answer
        if not reasoning.strip() and (open_tag in answer or close_tag in answer):
            reasoning, answer, closed = split_reasoning(answer, self.think)
            if not closed:
                return trace.reasoning, trace.answer, (
                    f"unclosed reasoning: no {close_tag!r} (truncated or never finished thinking)")
        if self.solution is not None:
            sol_open, sol_close = self.solution
            stripped = answer.strip()
            if stripped.startswith(sol_open):
                if sol_close not in stripped:
                    return reasoning, answer, f"unclosed answer: {sol_open!r} without {sol_close!r} (truncated)"
                body, _, after = stripped[len(sol_open):].partition(sol_close)
                if after.strip():
                    return reasoning, answer, f"text after the answer: {after.strip()[:60]!r} follows {sol_close!r}"
                answer = body.strip()
        return reasoning, answer, None

    def annotate(self, trace: Trace) -> Annotation:
        reasoning, answer, problem = self._normalized(trace)
        if problem is not None:
            return {}
        return {k: v for k, v in (("reasoning", reasoning), ("answer", answer)) if v != getattr(trace, k)}

    def judge(self, trace: Trace) -> str | None:
        open_tag, close_tag = self.think
        reasoning, answer, problem = self._normalized(trace)
        if problem is not None:
            return problem
        if not reasoning.strip():
            if reasoning or open_tag in answer:
                return "empty reasoning: the reasoning block holds nothing"
            return f"no reasoning block: no {open_tag}...{close_tag} before the answer"
        for tag in (open_tag, close_tag):
            if tag in reasoning:
                return f"several reasoning blocks: {tag!r} inside the reasoning"
            if tag in answer:
                return f"several reasoning blocks: {tag!r} after the reasoning ended"
        if len(answer.strip()) < self.min_answer_chars:
            return "empty answer: nothing after the reasoning block"
        return None


@functools.lru_cache(maxsize=4)
def load_tokenizer(name: str) -> Any:
    """AutoTokenizer by hub name or local path; offline machines need a local path."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as e:
        raise ValueError(
            f"length: cannot load tokenizer {name!r} ({e}). Give a local tokenizer folder "
            "(e.g. ../shared/data/tokenizers/qwen2.5) or leave `tokenizer` unset to count characters."
        ) from e


@dataclass(frozen=True)
class Length(TraceFilter):
    """Minimum and maximum length of the reasoning and of the answer.

    Counted in tokens of `tokenizer` (a hub name or a local folder) when given, else characters.
    Very long traces dominate SFT cost and get cut by the student's max_length; very short
    reasoning is usually a model that skipped thinking.
    """

    name: ClassVar[str] = "length"
    tokenizer: str | None = None
    min_reasoning: int = 0
    max_reasoning: int | None = None
    min_answer: int = 0
    max_answer: int | None = None

    @property
    def unit(self) -> str:
        return "tokens" if self.tokenizer else "chars"

    def prepare(self) -> None:
        if self.tokenizer:
            load_tokenizer(self.tokenizer)

    def count(self, text: str) -> int:
        if not self.tokenizer:
            return len(text)
        tok = load_tokenizer(self.tokenizer)
        return len(tok(text, add_special_tokens=False)["input_ids"])

    def judge(self, trace: Trace) -> str | None:
        for part, lo, hi in (("reasoning", self.min_reasoning, self.max_reasoning),
                             ("answer", self.min_answer, self.max_answer)):
            if not lo and hi is None:
                continue
            n = self.count(getattr(trace, part))
            if n < lo:
                return f"{part} too short: {n} {self.unit} < min {lo}"
            if hi is not None and n > hi:
                return f"{part} too long: {n} {self.unit} > max {hi}"
        return None
