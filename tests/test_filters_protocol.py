"""The filter contract: annotate returns facts as data, judge only reads, the pipeline ships annotations.

Every built-in filter is run on traces that make it annotate (a raw completion to split, a math
answer to verify, code to run): neither step may change the trace it is given, and what
apply_filters returns from worker processes must equal what one process computes.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import ClassVar

import pytest

from distill.filters import apply_filters
from distill.filters.base import Item, TraceFilter, apply_annotation
from distill.filters.recipe import FILTERS, filter_class
from distill.trace import Trace

CODE_TESTS = {"check": "def check(candidate):\n    assert candidate(3) == 9\n", "entry_point": "square"}


def _traces(make_trace) -> list[Trace]:
    return [
        make_trace(prompt_id="a"),  # right math answer
        make_trace(prompt_id="b", answer="\\boxed{6}"),  # wrong
        make_trace(prompt_id="c", reasoning="", answer="<think>\nso 2+3=5\n</think>\n\n\\boxed{5}"),  # raw completion
        make_trace(prompt_id="d", task="code", reference=CODE_TESTS,
                   answer="```python\ndef square(x):\n    return x * x\n```"),
    ]


def _built_in(name: str) -> TraceFilter:
    cls = filter_class(name)  # code_correct and toy_steps are named by import path
    f = cls(texts=["an unrelated benchmark problem about seven apples and a pear"]) if name == "decontaminate" else cls()
    f.prepare()
    return f


@pytest.mark.parametrize("name", [n for n in FILTERS if n != "select"])
def test_annotate_and_judge_never_change_the_trace_they_are_given(make_trace, name):
    f = _built_in(name)
    for trace in _traces(make_trace):
        before = copy.deepcopy(vars(trace))
        annotation = f.annotate(trace)
        assert vars(trace) == before, f"{name}.annotate changed the trace"
        apply_annotation(trace, annotation)
        after_annotation = copy.deepcopy(vars(trace))
        f.judge(trace)
        assert vars(trace) == after_annotation, f"{name}.judge changed the trace"


def test_correctness_lives_in_annotations_and_the_verdict_only_reads_them(make_trace):
    math, think = _built_in("math_correct"), _built_in("think_format")
    right, wrong, raw, code = _traces(make_trace)
    assert math.annotate(right)["meta"]["correct"] is True and math.annotate(wrong)["meta"]["correct"] is False
    assert think.annotate(raw) == {"reasoning": "so 2+3=5", "answer": "\\boxed{5}"}
    assert _built_in("code_correct").annotate(code)["meta"]["correct"] is True
    # The verdict follows the annotation it reads, not a fresh check.
    apply_annotation(wrong, {"meta": {"correct": True, "verify": {"status": "correct"}}})
    assert math.judge(wrong) is None


@dataclass(frozen=True)
class Words(TraceFilter):
    """A user's own filter: annotates the word count, drops short reasoning."""

    name: ClassVar[str] = "words"
    min_words: int = 2

    def annotate(self, trace: Trace) -> dict:
        return {"meta": {"words": len(trace.reasoning.split())}}

    def judge(self, trace: Trace) -> str | None:
        return None if trace.meta["words"] >= self.min_words else f"short: {trace.meta['words']} words"


@pytest.mark.parametrize("workers", [0, 2])
def test_workers_ship_annotations_back_as_data(make_trace, workers):
    traces = _traces(make_trace) + [make_trace(prompt_id="e", reasoning="one")]
    recipe = [_built_in("think_format"), _built_in("math_correct"), Words()]
    rejects: list[tuple[str, str]] = []
    kept = list(apply_filters(copy.deepcopy(traces), recipe, workers=workers,
                              on_reject=lambda t, name, why: rejects.append((t.prompt_id, name))))
    assert [t.prompt_id for t in kept] == ["a", "c", "d"]
    assert rejects == [("b", "math_correct"), ("e", "words")]
    by_id = {t.prompt_id: t for t in kept}
    assert by_id["c"].reasoning == "so 2+3=5" and by_id["c"].meta["correct"] is True  # split in a worker, shipped back
    assert by_id["a"].meta["words"] == len(traces[0].reasoning.split())


def test_item_is_a_dataclass_with_its_verdict():
    item = Item(Trace(id="x", prompt_id="p"))
    assert item.alive
    item.drop("words", "short")
    assert (item.alive, item.dropped_by, item.reason) == (False, "words", "short")
