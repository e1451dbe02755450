"""Golds math-verify would misread, and GSM8K's own answer markers read by the default fallback.

A gold that parses to a fragment of itself would accept an answer equal to that fragment: the gold
`\\frac \\pi4 + 2 - \\sqrt2` read as 2 scored a bare 2 right and the right answer wrong.
"""

from __future__ import annotations

import json

import pytest

from distill.verify.math import extract_answer, gold_fragment, normalize_latex, score


@pytest.mark.parametrize(
    "text, expected",
    [
        (r"\frac \pi4 + 2 - \sqrt2", r"\frac{\pi}{4} + 2 - \sqrt{2}"),
        (r"\frac{12}{5,\!525}", r"\frac{12}{5525}"),
        (r"\dfrac 59", r"\dfrac{5}{9}"),
        (r"\sqrt[3]2+1", r"\sqrt[3]{2}+1"),
        (r"\tbinom 42", r"\tbinom{4}{2}"),
        (r"1{,}000 + 3\,000", r"1000 + 3000"),
        (r"\frac{\sqrt{2}}{2}", r"\frac{\sqrt{2}}{2}"),
        (r"\frac{1}{\frac 12}", r"\frac{1}{\frac{1}{2}}"),
        (r"(1,234)", r"(1,234)"),  # a pair, not a thousands separator
        (r"\fracture", r"\fracture"),
    ],
)
def test_normalize_latex(text, expected):
    assert normalize_latex(text) == expected


@pytest.mark.parametrize(
    "answer, gold, correct",
    [
        (r"\boxed{2}", r"\frac \pi4 + 2 - \sqrt2", False),
        (r"\boxed{\frac{\pi}{4}+2-\sqrt{2}}", r"\frac \pi4 + 2 - \sqrt2", True),
        (r"\boxed{2-\sqrt{2}+\frac{\pi}{4}}", r"\frac \pi4 + 2 - \sqrt2", True),
        (r"\boxed{\frac \pi4 + 2 - \sqrt2}", r"\frac \pi4 + 2 - \sqrt2", True),
        (r"\boxed{\frac{12}{5525}}", r"\frac{12}{5,\!525}", True),
        (r"\boxed{12}", r"\frac{12}{5,\!525}", False),
        (r"\boxed{\frac \pi4}", r"\frac{\pi}{4}", True),  # the answer gets the same bracing
    ],
)
def test_misparsed_golds_are_read_whole(answer, gold, correct):
    assert score(answer, gold).correct is correct


@pytest.mark.parametrize(
    "gold, fragment", [(r"\operatorname{f}(2) + 3", r"\boxed{3}"), (r"\mathbb{R} + 2", r"\boxed{2}")]
)
def test_a_gold_read_as_one_of_its_terms_is_unverifiable(gold, fragment):
    v = score(fragment, gold)
    assert v.correct is None and v.status == "gold_unparsable" and "reads the gold answer" in v.detail


def test_fragment_check_leaves_whole_golds_alone():
    from math_verify import parse

    for gold in ("$-2$", "$x - 1$", "$2 + 3i$", r"$\frac{1}{2}$", r"$1\frac{4}{5}$", r"$(1, 2)$"):
        assert gold_fragment(gold, tuple(parse(gold, parsing_timeout=None))) is None, gold


def test_every_benchmark_gold_still_verifies_against_itself(shared_data):
    """No real gold of MATH-500, AIME24, AMC23 or GSM8K is flagged or misread by the normalisation."""
    failed, total = [], 0
    for name in ("math500", "aime24", "amc23", "gsm8k_test"):
        for line in (shared_data / "benchmarks" / f"{name}.jsonl").read_text().splitlines():
            gold = json.loads(line)["answer"]
            answer = gold.rsplit("####", 1)[-1].strip() if isinstance(gold, str) else gold
            total += 1
            if score(f"\\boxed{{{answer}}}", gold).correct is not True:
                failed.append((name, gold))
    assert total == 1889 and not failed, failed[:10]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("She sold 48/2 = <<48/2=24>>24 clips.\nAltogether 48+24 = <<48+24=72>>72 clips.\n#### 72", "72"),
        ("Q: How many apples?\nA: 18", "18"),
        ("Q: How many?\nA: The answer is 18.", "18"),
        ("#### 1,000", "1,000"),
    ],
)
def test_gsm8k_markers_are_read_by_the_default_fallback(text, expected):
    assert extract_answer(text) == (expected, "answer_is")
    # 'A:' inside a line is not the marker
    assert extract_answer("We took plan A: buy 3 apples, eat 1, then count the rest.")[1] != "answer_is"


def test_gsm8k_marker_scores():
    assert score("48 + 24 = 72\n#### 72", "Natalia sold 72.\n#### 72").correct is True
    assert score("48 + 24 = 70\n#### 70", "#### 72").correct is False
