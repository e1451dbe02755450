"""Multiple-choice answer checking (GPQA-style: the gold answer is a letter A-J).

    from distill.verify.choice import score
    score("... so the answer is (C).", "C")   # Verdict(correct=True, extracted='C', ...)

The letter is taken from the answer part, in this order: the last `\\boxed{}` holding a letter
(`\\boxed{C}`, `\\boxed{\\text{(C)}}`), the last "answer is (C)" / "Answer: C", a bare letter
answer ("C", "(C)", "**C**"), the last parenthesised capital letter "(C)".
"""

from __future__ import annotations

import re
from typing import Any

from distill.verify.math import last_boxed
from distill.verify.types import Verdict

LETTERS = "ABCDEFGHIJ"
_L = f"[{LETTERS}]"
_LETTER_ONLY = re.compile(rf"^\W*(?:\\text\{{\s*)?\(?\s*({_L})\s*\)?(?:\s*\}})?\W*$")
_ANSWER_IS = re.compile(
    rf"(?:answer\s*(?:is|:)|answer\s+is\s*:?|correct\s+(?:option|choice)\s+is)\s*[*\s]*"
    rf"(?:\\boxed\{{)?(?:\\text\{{)?\(?({_L})\)?(?![A-Za-z])",
    re.IGNORECASE,
)
_PAREN = re.compile(rf"\(({_L})\)")


def gold_letter(reference: Any) -> str | None:
    """'C', '(C)', 'C) 42', 'c' -> 'C'; anything else (the option text itself) -> None."""
    if not isinstance(reference, str):
        return None
    m = re.match(rf"^\s*\(?\s*([{LETTERS}{LETTERS.lower()}])\s*(?:\)|\.|:|$)", reference)
    return m.group(1).upper() if m else None


def extract_letter(answer_text: str) -> tuple[str | None, str]:
    """(letter, method): method is 'boxed', 'answer_is', 'whole', 'paren' or 'none'."""
    boxed = last_boxed(answer_text)
    if boxed is not None:
        m = _LETTER_ONLY.match(boxed)
        if m:
            return m.group(1), "boxed"
    matches = list(_ANSWER_IS.finditer(answer_text))
    if matches:
        return matches[-1].group(1).upper(), "answer_is"
    m = _LETTER_ONLY.match(answer_text.strip())
    if m:
        return m.group(1), "whole"
    parens = _PAREN.findall(answer_text)
    if parens:
        return parens[-1], "paren"
    return None, "none"


def score(answer_text: str, reference: Any) -> Verdict:
    """Check a multiple-choice answer against the gold letter."""
    if reference is None:
        return Verdict(None, None, "no_reference", detail="the trace has no reference answer")
    gold = gold_letter(reference)
    letter, method = extract_letter(answer_text or "")
    if gold is None:
        return Verdict(None, letter, "gold_unparsable", method,
                       detail=f"the gold answer {reference!r:.60} is not a choice letter {LETTERS[0]}-{LETTERS[-1]}")
    if letter is None:
        return Verdict(False, None, "no_answer", method, detail="no choice letter in the answer part")
    ok = letter == gold
    return Verdict(ok, letter, "correct" if ok else "wrong", method,
                   detail="" if ok else f"chose {letter}, gold is {gold}")
