"""distill.verify: final-answer extraction, math-verify comparison, gold handling, choice letters, timeouts."""

from __future__ import annotations

import time

import pytest

from distill import verify
from distill.verify.choice import extract_letter, gold_letter
from distill.verify.math import extract_answer, gold_text, last_boxed
from distill.verify.math import score as math_score


@pytest.mark.parametrize("text, expected", [
    (r"so \boxed{5}.", "5"),
    (r"first \boxed{3}, then finally \boxed{\frac{1}{2}}", r"\frac{1}{2}"),
    (r"\boxed{\boxed{7}}", "7"),                           # nested box unwrapped
    (r"\boxed{x = \boxed{2}}", r"x = \boxed{2}"),          # inner box is part of the answer
    (r"\boxed{\left( 3, \frac{\pi}{2} \right)}", r"\left( 3, \frac{\pi}{2} \right)"),  # braces balanced
    (r"\boxed 9 is it", "9"),
    (r"\fbox{12}", "12"),
    (r"\boxed{2} and then cut off \boxed{3", "2"),         # an unclosed last box is no answer
    ("no box here", None),
])
def test_last_boxed(text, expected):
    assert last_boxed(text) == expected


@pytest.mark.parametrize("text, expected", [
    (r"Therefore the final answer is $\frac{3}{4}$.", (r"\frac{3}{4}", "answer_is")),
    ("**Answer:** 42", ("42", "answer_is")),
    (r"Hence the value is $x = 7$ as computed", ("x = 7", "last_math")),
    ("17", ("17", "whole")),
    ("A long explanation that never states any final value at all, in plain words.", (None, "none")),
    # Dollar amounts are not math: "$93 - $" is not a formula (a digit follows its closing "$").
    ("She paid $93 - $15 = $78 after the coupon, which is what the receipt says", (None, "none")),
    (r"Hence $x = 7$ while the shop charged $12 for it", ("x = 7", "last_math")),
])
def test_extract_answer_fallbacks(text, expected):
    assert extract_answer(text) == expected


def test_gold_normalisation():
    assert gold_text("023") == "$023$"
    assert gold_text(27.0) == "$27$"                 # AMC stores floats
    assert gold_text(r"\frac{\sqrt{2}}{2}") == r"$\frac{\sqrt{2}}{2}$"   # bare LaTeX parses to [] unwrapped
    assert gold_text(r"\$18.90") == r"$\$18.90$"     # an escaped dollar is a price, not math mode
    assert gold_text("Natalia sold ... #### 72") == "$72$"
    assert gold_text(None) is None and gold_text("  ") is None


@pytest.mark.parametrize("answer, gold, correct", [
    (r"\boxed{23}", "023", True),                     # AIME zero padding
    (r"\boxed{27}", 27.0, True),                      # AMC float
    (r"\boxed{\frac{1}{\sqrt{2}}}", r"\frac{\sqrt{2}}{2}", True),   # needs the $...$ wrap
    (r"\boxed{0.5}", r"\frac12", True),
    (r"\boxed{(3, \frac{\pi}{2})}", r"\left( 3, \frac{\pi}{2} \right)", True),
    (r"\boxed{12^{\text{th}}\text{ grade}}", "12", True),  # ordinal and trailing words
    (r"\boxed{\text{Evelyn}}", r"\text{Evelyn}", True),
    (r"\boxed{1+x^2}", r"x^2+1", True),
    (r"\boxed{24}", "023", False),
    (r"\boxed{\left(\frac{3}{5}, \frac{8}{3}\right)}", r"\left(\frac{3}{5},\frac{8}{3}\right]", False),  # open vs half-open
])
def test_math_score(answer, gold, correct):
    v = verify.score("math", answer, gold)
    assert v.correct is correct, v
    assert v.status == ("correct" if correct else "wrong")


def test_unjudgeable_is_not_wrong():
    v = verify.score("math", r"\boxed{5}", r"\begin{pmatrix")     # only math-verify's raw-string fallback
    assert (v.correct, v.status) == (None, "gold_unparsable")
    assert "cannot parse the gold answer" in v.detail
    v = verify.score("math", r"\boxed{5}", None)
    assert (v.correct, v.status) == (None, "no_reference")
    v = verify.score("math", "I could not finish.", "5")
    assert (v.correct, v.status, v.extracted) == (False, "no_answer", None)


def test_unknown_task_raises():
    with pytest.raises(ValueError, match="Unknown task 'proof'.*math, choice, code"):
        verify.score("proof", "x", "y")


@pytest.mark.parametrize("text, letter, method", [
    (r"so the answer is \boxed{C}", "C", "boxed"),
    (r"\boxed{\text{(B)}}", "B", "boxed"),
    ("Therefore, the answer is (D).", "D", "answer_is"),
    ("Answer: a", "A", "answer_is"),
    ("(B)", "B", "whole"),
    ("Between (A) and (C), (C) fits", "C", "paren"),
    ("no letter", None, "none"),
])
def test_choice_extraction(text, letter, method):
    assert extract_letter(text) == (letter, method)


def test_choice_score():
    assert gold_letter("(c)") == "C" and gold_letter("B) 42") == "B" and gold_letter("42") is None
    assert verify.score("choice", r"\boxed{C}", "C").correct is True
    assert verify.score("choice", r"\boxed{A}", "C").status == "wrong"
    assert verify.score("choice", r"\boxed{A}", "The mitochondria").status == "gold_unparsable"


def test_score_many_keeps_order_and_times_out_a_hang():
    # `2^{10^{10}}` makes sympy evaluate a 3-billion-digit power: minutes without a limit.
    items = [("math", r"\boxed{2}", "2"), ("math", r"\boxed{5}", r"2^{10^{10}}"),
             ("choice", "(B)", "B"), ("math", r"\boxed{3}", "4")]
    start = time.monotonic()
    verdicts = verify.score_many(items, workers=2, timeout=1.0, chunk_size=1)
    assert time.monotonic() - start < 20
    assert [v.status for v in verdicts] == ["correct", "timeout", "correct", "wrong"]
    assert verdicts[1].correct is None


def test_score_many_inline_matches_pool():
    items = [("math", rf"\boxed{{{i}}}", str(i % 3)) for i in range(12)]
    assert verify.score_many(items, workers=0) == verify.score_many(items, workers=2, chunk_size=5)


def test_pool_kills_a_worker_stuck_outside_python():
    # A hang that no signal interrupts (simulated by ignoring SIGALRM) costs only its worker.
    from distill.verify.pool import chunked, imap_chunks

    out = [r for chunk in imap_chunks(_sleepy, chunked([0.0, 30.0, 0.0], 3), workers=1, item_deadline=0.5, grace=0.5,
                                      on_lost=lambda item, why: f"lost {item}")
           for r in chunk]
    assert out == ["ok 0.0", "lost 30.0", "ok 0.0"]


def test_pool_workers_stop_after_the_last_result_and_when_abandoned():
    # The join runs behind the caller (pebble's manager polls every 0.1 s); the workers must still go.
    import multiprocessing

    from distill.verify.pool import chunked, imap_chunks

    def workers_gone() -> bool:
        deadline = time.monotonic() + 5
        while multiprocessing.active_children() and time.monotonic() < deadline:
            time.sleep(0.02)
        return not multiprocessing.active_children()

    out = [r for chunk in imap_chunks(_sleepy, chunked([0.0] * 6, 2), workers=2, item_deadline=5,
                                      on_lost=lambda item, why: why) for r in chunk]
    assert out == ["ok 0.0"] * 6 and workers_gone()
    stream = imap_chunks(_sleepy, chunked([0.0] * 40, 2), workers=2, item_deadline=5, on_lost=lambda item, why: why)
    assert next(stream) == ["ok 0.0"] * 2
    stream.close()  # a caller that stops reading early
    assert workers_gone()


def _sleepy(chunk):
    import signal

    signal.signal(signal.SIGALRM, signal.SIG_IGN)
    for seconds in chunk:
        time.sleep(seconds)
    return [f"ok {s}" for s in chunk]


@pytest.mark.parametrize("text, expected", [
    ("The answer is \\boxed{12}, not 13.", ("12", "boxed")),  # a box wins over any number
    ("The final answer is 3/4.", ("3/4", "answer_is")),
    ("Adding 1,200 and 34 gives 1,234 in all", ("1234", "last_number")),  # commas dropped, as theirs
    ("so x = -2.5 at the end", ("-2.5", "last_number")),
    ("I could not finish.", (None, "none")),
])
def test_last_number_fallback_reads_unboxed_answers_as_the_qwen_math_parser(text, expected):
    assert extract_answer(text, fallback="last_number") == expected


def test_last_number_fallback_scores_and_bad_fallback_is_refused():
    text = "Adding the numbers of the problem together, the total comes to 1,234 exactly"
    assert math_score(text, "1234").correct is False  # ours: no box, no answer line, no math span
    assert math_score(text, "1234", fallback="last_number").correct is True
    with pytest.raises(ValueError, match="answer fallback 'last'"):
        extract_answer(text, fallback="last")

    with pytest.raises(ValueError, match="use one of distill, last_number"):
        verify.score_many([("math", text, "1234")], workers=0, fallback="lastnumber")
    assert verify.score("math", text, "1234", fallback="last_number").correct is True
