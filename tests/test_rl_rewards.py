"""The GRPO rewards (distill.rl.rewards): hand-computed values, the TRL call signature, and real traces.

Real traces: the Sky-T1 and Qwen2.5-14B-Instruct outputs in ../shared/data/traces/skythought, with
SkyThought's own grader's verdict (`score`). A right answer must get 1, a wrong one 0, and an
output without a closed reasoning block the format penalty (and no correctness reward when it was cut).
"""

from __future__ import annotations

import time

import pytest
from filters_fixtures import SKY_THINK, skythought_traces

from distill.rl import rewards
from distill.rl.rewards import correctness, format_penalty, overlong_penalty, reward_functions, unscorable
from distill.trace import split_reasoning
from distill.verify.math import last_boxed

GOOD = "<think>\n2+3=5\n</think>\n\nThe sum is \\boxed{5}."


@pytest.mark.parametrize("text, expected", [
    (GOOD, 1.0),
    (GOOD.replace("{5}", "{6}"), 0.0),                  # wrong
    ("<think>\n2+3=5\n</think>\n\nfive", 0.0),            # no answer to read
    ("<think>\n... \\boxed{5}", 0.0),                     # never closed its thinking: the boxed guess is reasoning
])
def test_correctness_reads_the_answer_part(text, expected):
    finished = "</think>" in text
    assert correctness("math", text, "5", finished=finished) == expected


def test_correctness_of_choice_and_code():
    assert correctness("choice", "<think>\nB fits\n</think>\n\n\\boxed{B}", "B") == 1.0
    assert correctness("choice", "<think>\nB fits\n</think>\n\n\\boxed{C}", "B") == 0.0
    tests = {"cases": [{"input": "2 3\n", "output": "5\n"}], "timeout": 2}
    right = "<think>\nadd\n</think>\n\n```python\na, b = map(int, input().split())\nprint(a + b)\n```"
    assert correctness("code", right, tests) == 1.0
    assert correctness("code", right.replace("a + b", "a - b"), tests) == 0.0


@pytest.mark.parametrize("text, expected", [
    (GOOD, 0.0),
    ("The sum is \\boxed{5}.", -1.0),                                   # no reasoning block
    ("<think>\n2+3=5\n</think>\n\n", -1.0),                             # empty answer
    ("<think>\n2+3=5\n</think>\n\n<think>again</think>\n\\boxed{5}", -1.0),  # two blocks
    ("<think>\n2+3=5 and it goes on", -1.0),                            # unclosed
    ("<think>\n\n</think>\n\n\\boxed{5}", -1.0),                        # empty reasoning
])
def test_format_penalty(text, expected):
    assert format_penalty(text) == expected


def test_overlong_penalty_is_dapo_eq_13():
    # L_max = 100, L_cache = 20: free up to 80 tokens, then (80 - n) / 20, then -1.
    assert [overlong_penalty(n, 100, 20) for n in (10, 80, 81, 90, 100, 101, 500)] == \
        [0.0, 0.0, -0.05, -0.5, -1.0, -1.0, -1.0]
    assert overlong_penalty(100, 100, 0) == 0.0 and overlong_penalty(101, 100, 0) == -1.0


def test_reward_functions_take_trls_arguments_and_keep_special_tokens(tiny_tokenizer_path):
    """GRPOTrainer passes completion_ids and the dataset columns; <think> is a special token in this
    vocabulary, so text decoded without special tokens would have no reasoning block at all."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_tokenizer_path)
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    texts = [GOOD, GOOD.replace("{5}", "{7}"), "The sum is \\boxed{5}."]
    ids = [tok.encode(t, add_special_tokens=False) + [eos] for t in texts]
    ids.append(tok.encode(GOOD, add_special_tokens=False))  # cut by the length limit: no eos at the end
    assert "<think>" not in tok.decode(ids[0], skip_special_tokens=True)

    longest = max(len(i) for i in ids)
    correct, fmt, overlong = reward_functions(["correct", "format", "overlong"], tok, max_completion_length=longest,
                                              overlong_cache=2, stop_ids=[eos])
    kwargs = dict(prompts=[[]] * 4, completions=[[{"role": "assistant", "content": "x"}]] * 4,
                  completion_ids=ids, task=["math"] * 4, reference=['"5"'] * 4, trainer_state=None)
    assert correct(**kwargs) == [1.0, 0.0, 1.0, 1.0]   # the last closed its thinking before the cut
    assert fmt(**kwargs) == [0.0, 0.0, -1.0, 0.0]
    expected = [overlong_penalty(len(i), longest, 2) for i in ids]
    assert overlong(**kwargs) == expected and min(expected) < 0 and max(expected) == 0.0
    assert [f.__name__ for f in (correct, fmt, overlong)] == ["correct", "format", "overlong"]
    with pytest.raises(ValueError, match="unknown reward"):
        reward_functions(["corect"], tok, max_completion_length=8, overlong_cache=0)


def test_a_stuck_program_costs_its_item_not_the_step():
    """Code runs in the sandbox through the verify pool: an endless loop is cut by the test's time
    limit and scores 0, while the other answers in the batch are scored."""
    tests = {"cases": [{"input": "", "output": "1\n"}], "timeout": 1}
    loop = "<think>\nx\n</think>\n\n```python\nwhile True:\n    pass\n```"
    right = "<think>\nx\n</think>\n\n```python\nprint(1)\n```"
    start = time.monotonic()
    got = rewards.correctness_many(["code", "code", "math"], [loop, right, GOOD], [tests, tests, "5"], workers=1)
    assert got == [0.0, 1.0, 1.0]
    assert time.monotonic() - start < 30


def test_unscorable_prompts_are_named():
    bad = unscorable(["math", "math", "essay", "choice", "code", "math"],
                     ["5", None, "x", "forty-two", {"cases": "nope"}, "\\frac{1}{2}"])
    assert [i for i, _ in bad] == [1, 2, 3, 4]
    why = dict(bad)
    assert why[1] == "no reference answer"
    assert "no checker" in why[2] and "gold_unparsable" in why[3] and why[4].startswith("error")


# ---------------------------------------------------------------------------------------------
# Real traces


@pytest.fixture(scope="module")
def sky(shared_data):
    folder = shared_data / "traces" / "skythought"
    return {p.stem: skythought_traces(p) for p in sorted(folder.glob("*.jsonl"))}


def test_real_long_cot_traces_right_1_wrong_0_malformed_penalised(sky):
    closed, unclosed = [], []
    for name, traces in sky.items():
        if name.startswith("sky-t1"):
            for t in traces:
                (closed if SKY_THINK[1] in t.answer else unclosed).append(t)
    assert len(closed) > 150 and len(unclosed) > 300

    # Closed outputs with a boxed answer: the correctness reward is SkyThought's recorded verdict (their
    # grader), within 2% (the one difference seen: a gold '3 \\pm 2\\sqrt{2}' we match and they did not).
    # Without a box the two parsers read different spans (4 of 247 rows), as in the filters' test.
    boxed = [t for t in closed if last_boxed(split_reasoning(t.answer, SKY_THINK)[1])]
    got = rewards.correctness_many(["math"] * len(boxed), [t.answer for t in boxed],
                                   [t.reference for t in boxed], think=SKY_THINK, workers=2)
    agree = sum(g == float(bool(t.meta["score"])) for g, t in zip(got, boxed))
    assert got.count(1.0) > 200 and got.count(0.0) > 20
    assert agree >= 0.98 * len(boxed) and len(boxed) > 230, f"{agree}/{len(boxed)} agree with the recorded score"
    assert all(format_penalty(t.answer, think=SKY_THINK) == 0.0 for t in closed)

    # Outputs that never closed their thought were cut: format penalty, and no reward for a boxed guess.
    assert all(format_penalty(t.answer, think=SKY_THINK) == -1.0 for t in unclosed)
    got = rewards.correctness_many(["math"] * len(unclosed), [t.answer for t in unclosed],
                                   [t.reference for t in unclosed], finished=[False] * len(unclosed),
                                   think=SKY_THINK, workers=2)
    assert set(got) == {0.0}


def test_real_short_cot_traces_have_no_think_block(sky):
    """Qwen2.5-14B-Instruct writes plain chain of thought: every output gets the format penalty, and
    its answers are still scored (as eval scores an original base) in line with the recorded verdicts."""
    traces = [t for name, ts in sky.items() if name.startswith("qwen2.5") for t in ts]
    assert len(traces) == 70
    assert {format_penalty(t.answer) for t in traces} == {-1.0}
    got = rewards.correctness_many(["math"] * len(traces), [t.answer for t in traces], [t.reference for t in traces])
    agree = sum(g == float(bool(t.meta["score"])) for g, t in zip(got, traces))
    assert {1.0, 0.0} <= set(got) and agree >= 0.95 * len(traces), f"{agree}/{len(traces)}"
