"""Filters on real third-party data: Sky-T1 long-CoT outputs, MATH-500 / AIME / GSM8K for decontamination.

The Sky-T1 files record their own grader's verdict (`score`, Qwen2.5-Math's evaluator): math_correct
must agree on >= 98% of the rows whose answer part holds a boxed answer. The disagreements are
printed (`pytest -s`) and discussed in the filters' report to the lead.
"""

from __future__ import annotations

import json

import pytest
from filters_fixtures import SKY_SOLUTION, SKY_THINK, skythought_traces

from distill.filters import (
    Decontaminate,
    Finished,
    Language,
    MathCorrect,
    Readability,
    Repetition,
    ThinkFormat,
    apply_filters,
)
from distill.trace import Trace, split_reasoning
from distill.verify.math import last_boxed

SKY = ThinkFormat(think=SKY_THINK, solution=SKY_SOLUTION)


@pytest.fixture(scope="module")
def sky(shared_data) -> dict[str, list[Trace]]:
    folder = shared_data / "traces" / "skythought"
    return {p.stem: skythought_traces(p) for p in sorted(folder.glob("*.jsonl"))}


def test_truncated_and_looping_outputs_are_caught(sky):
    long_cot = [t for name, ts in sky.items() if name.startswith("sky-t1") for t in ts]
    unclosed = {t.id for t in long_cot if SKY_THINK[1] not in t.answer}
    assert len(unclosed) > 300   # the data is what the README says: many outputs never close
    dropped: dict[str, str] = {}
    kept = list(apply_filters(long_cot, [Finished(), SKY, Repetition()],
                              on_reject=lambda t, name, reason: dropped.setdefault(t.id, name)))
    assert unclosed <= set(dropped), "an unclosed (truncated) output was kept"
    assert all(SKY_THINK[1] not in t.answer and t.reasoning for t in kept)

    # Repetition on its own recognises the loops among the truncated outputs, and flags no
    # output that closed its thought: its defaults were set on these files.
    loops, false_alarms = [], []
    for t in skythought_copy(long_cot):
        t.reasoning, t.answer, closed = split_reasoning(t.answer, SKY_THINK)
        reason = Repetition().check(t)
        if reason:
            (false_alarms if closed else loops).append((t.prompt_id, reason))
    print(f"\nrepetition: {len(loops)} of {len(unclosed)} truncated outputs loop; e.g. {loops[0]}")
    assert len(loops) >= 100 and not false_alarms, false_alarms
    assert any(r.startswith("looping tail") for _, r in loops) and any(r.startswith("repeated line") for _, r in loops)


def skythought_copy(traces: list[Trace]) -> list[Trace]:
    return [Trace.from_dict(json.loads(t.to_json())) for t in traces]


def test_language_and_readability_keep_finished_english_traces(sky):
    closed = []
    for t in skythought_copy([t for n, ts in sky.items() if n.startswith("sky-t1") for t in ts]):
        if SKY(t) is True:
            closed.append(t)
    assert len(closed) > 150
    assert [t.prompt_id for t in closed if not Language()(t)] == []
    flagged = [(t.prompt_id, Readability().check(t)) for t in closed if not Readability()(t)]
    assert len(flagged) <= 2, flagged   # one Sky-T1 output writes a ```python block in a math answer


@pytest.mark.slow
def test_math_correct_agrees_with_recorded_score(sky):
    rows = []
    for name, ts in sky.items():
        for t in skythought_copy(ts):
            if name.startswith("sky-t1") and not SKY(t):
                continue
            if last_boxed(t.answer) is not None:   # the grader's prediction came from a boxed answer
                rows.append(t)
    assert len(rows) > 700
    wrong: list[Trace] = []
    # Workers send the annotated traces back: collect the kept and the dropped ones.
    checked = list(apply_filters(rows, [MathCorrect(timeout=10, keep_unverifiable=True)], workers=2,
                                 on_reject=lambda t, name, reason: wrong.append(t)))
    checked += wrong
    assert len(checked) == len(rows) and len(wrong) > 100
    disagree = [t for t in checked if t.meta["correct"] is not t.meta["score"]]
    print(f"\nmath_correct vs recorded score: {len(rows) - len(disagree)}/{len(rows)} agree")
    for t in disagree:
        v = t.meta["verify"]
        print(f"  {t.prompt_id}: recorded {t.meta['score']} (pred {t.meta['pred']!r:.40}), ours {t.meta['correct']} "
              f"({v['status']}, extracted {v['extracted']!r:.60}, gold {t.reference!r:.40})")
    assert 1 - len(disagree) / len(rows) >= 0.98


# ---- decontamination ------------------------------------------------------------------------

def _prompt(i: int, text: str) -> Trace:
    return Trace(id=f"t{i}", prompt_id=f"p{i}", messages=[{"role": "user", "content": text}])


def test_every_math500_problem_is_flagged_against_itself(shared_data):
    path = shared_data / "benchmarks" / "math500.jsonl"
    dc = Decontaminate(files=[str(path)])
    problems = [json.loads(line)["problem"] for line in path.read_text().splitlines()]
    missed = [p for i, p in enumerate(problems) if dc(_prompt(i, p + "\n\nPlease reason step by step."))]
    assert missed == []


def test_benchmark_problem_embedded_in_a_longer_prompt(shared_data):
    aime = [json.loads(line) for line in (shared_data / "benchmarks" / "aime24.jsonl").read_text().splitlines()]
    dc = Decontaminate(files=[str(shared_data / "benchmarks" / "aime24.jsonl")])
    problem = aime[7]["problem"]
    middle = len(problem) // 2
    # Copied with its LaTeX spacing changed, cut in two, inside a longer prompt.
    wrapped = ("You are a helpful tutor. A student sent this, please help:\n\n"
               + problem[:middle].replace("$", " $ ") + "\n" + problem[middle:] + "\n\nThanks, and show your work.")
    assert dc.check(_prompt(0, wrapped)).startswith("contaminated: aime24: shares")
    # Two thirds of the problem only, still inside other text.
    part = problem[:2 * len(problem) // 3]
    assert not dc(_prompt(2, "Homework 3. " + part + " (the rest is on the next page)"))
    assert dc(_prompt(1, "You are a helpful tutor. A student sent this, please help: what is 2 + 2?"))


def test_no_gsm8k_train_prompt_is_flagged_against_aime(shared_data):
    dc = Decontaminate(files=[str(shared_data / "benchmarks" / "aime24.jsonl"),
                              str(shared_data / "prompts" / "aime_1983_2023.json")])
    gsm = [json.loads(line)["question"] for line in (shared_data / "prompts" / "gsm8k_train.jsonl").read_text().splitlines()]
    flagged = [(q, dc.check(_prompt(i, q))) for i, q in enumerate(gsm) if not dc(_prompt(i, q))]
    assert len(gsm) == 7473 and flagged == []
    # AIME 1983-2023 does not overlap AIME 2024 (data README); the 8-gram check agrees.
    dc24 = Decontaminate(files=[str(shared_data / "benchmarks" / "aime24.jsonl")])
    old = json.loads((shared_data / "prompts" / "aime_1983_2023.json").read_text())
    assert [r["problem"][:60] for i, r in enumerate(old) if not dc24(_prompt(i, r["problem"]))] == []
    # open-r1's rule (any one shared 8-gram) flags AIME's boilerplate: why min_coverage exists.
    strict = Decontaminate(files=[str(shared_data / "benchmarks" / "aime24.jsonl")], min_coverage=0)
    assert sum(1 for i, r in enumerate(old) if not strict(_prompt(i, r["problem"]))) > 50
