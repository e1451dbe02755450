"""Math answer checking with math-verify: extract the final answer, compare it with the gold answer.

    from distill.verify.math import score
    score("The answer is \\boxed{\\frac{1}{2}}.", "0.5")   # Verdict(correct=True, extracted='\\frac{1}{2}', ...)

What counts as the final answer (from the answer part only, never the reasoning: a model that
boxes a guess while thinking and then states something else has answered the something else):

1. the content of the last `\\boxed{}` (or `\\fbox{}`, `\\framebox{}`), nested boxes unwrapped;
2. else the text after the last "final answer is" / "answer is" / "Answer:", GSM8K's "#### 18" or a
   line "A: 18" (the GSM8K few-shot format);
3. else the last `$...$`, `\\(...\\)` or `\\[...\\]` of the answer;
4. else the whole answer when it is a bare value ("42", "\\frac12"), not a short sentence.

`fallback="last_number"` replaces 3 and 4 with the last number of the text (commas dropped), the
convention of the Qwen2.5-Math evaluation parser that SkyThought and many model cards use. It is
looser (a truncated thought scores when its last number happens to be the answer), so it is not
our default; use it to reproduce numbers from those harnesses (`make eval ... answer_fallback=last_number`).

The extracted text is wrapped in `\\boxed{}` and parsed by math-verify, which then compares it
with the gold answer symbolically and numerically. A gold answer is wrapped in `$...$` when bare:
math-verify's LaTeX extractor needs delimiters (`\\frac{\\sqrt{2}}{2}` alone parses to nothing).
A gold answer that still does not parse gets status 'gold_unparsable' and `correct=None`: the
trace is not wrong, we just cannot tell.

Time limits are the caller's: math-verify's own are switched off (they use `signal.alarm`, which
raises outside the main thread) and `distill.verify.score`/`score_many` enforce one per item.
"""

from __future__ import annotations

import functools
import logging
import re
from typing import Any

from distill.verify.types import Verdict

log = logging.getLogger(__name__)

_BOX = re.compile(r"\\(?:boxed|fbox|framebox)\s*(?=[{\s\d\w])")
_ANSWER_IS = re.compile(
    r"(?:final\s+answer\s*(?:is|:)|the\s+answer\s+is|\banswer\s*:|####|^[ \t]*A[ \t]*:)\s*(?:\*\*)?\s*(?P<rest>[^\n]+)",
    re.IGNORECASE | re.MULTILINE,
)
"""Stated answers: 'The final answer is', 'Answer:', GSM8K's own '#### 18', and a line starting 'A: 18'."""
_MATH = re.compile(r"\$\$(.+?)\$\$|\$(.+?)\$|\\\((.+?)\\\)|\\\[(.+?)\\\]", re.DOTALL)
_UNESCAPED_DOLLAR = re.compile(r"(?<!\\)\$")  # `\$36` is a price, not math mode
_SHORT_ANSWER = 40  # characters: a bare answer longer than this is prose, not an answer
_NUMBER = re.compile(r"-?\d*\.?\d+")  # the Qwen2.5-Math parser's pattern, kept as is for compatibility
FALLBACKS = ("distill", "last_number")
"""How an answer without a \\boxed{} is read: ours (see module doc) or the last number of the text."""


def check_fallback(fallback: str, name: str = "answer fallback") -> None:
    """Raise a ValueError naming `name` unless `fallback` is one of FALLBACKS (every entry point
    checks up front, so a typo fails before any item is scored, not as a per-item error)."""
    if fallback not in FALLBACKS:
        raise ValueError(f"{name} {fallback!r}: use one of {', '.join(FALLBACKS)}")


def last_boxed(text: str) -> str | None:
    """Content of the last top-level `\\boxed{...}` in `text` (braces balanced), nested boxes unwrapped."""
    last, end = None, -1
    for m in _BOX.finditer(text):
        if m.start() < end:
            continue  # a box inside the previous box: the outer one is the answer
        found = _box_content(text, m.end())
        if found is not None:
            last, end = found
    if last is None:
        return None
    inner = last_boxed(last)
    # `\boxed{\boxed{5}}` -> 5, but `\boxed{x = \boxed{5}}` keeps its whole content
    if inner is not None and _BOX.match(last.strip()) and last.strip().endswith("}"):
        return inner
    return last.strip()


def _box_content(text: str, pos: int) -> tuple[str, int] | None:
    """(content, end offset) of the box whose argument starts at `pos`; None when cut mid-box."""
    while pos < len(text) and text[pos] == " ":
        pos += 1
    if pos >= len(text):
        return None
    if text[pos] != "{":
        # `\boxed 5`: a single token up to whitespace or `$`
        m = re.match(r"[^\s$]+", text[pos:])
        return (m.group(0), pos + m.end()) if m else None
    depth = 0
    for i in range(pos, len(text)):
        c = text[i]
        if c == "{" and (i == 0 or text[i - 1] != "\\"):
            depth += 1
        elif c == "}" and text[i - 1] != "\\":
            depth -= 1
            if depth == 0:
                return text[pos + 1 : i], i + 1
    return None  # unbalanced: the answer was cut mid-box


def _math_spans(text: str) -> list[re.Match]:
    """`$...$`, `\\(...\\)` and `\\[...\\]` spans, without currency read as math: in "costs $93 - $15"
    the second `$` opens an amount (a digit follows it), so "$93 - $" is not a formula."""
    return [
        m
        for m in _MATH.finditer(text)
        if not (m.group(2) is not None and m.end() < len(text) and text[m.end()].isdigit())
    ]


def extract_answer(answer_text: str, fallback: str = "distill") -> tuple[str | None, str]:
    """(final answer, how it was found): method is 'boxed', 'answer_is', 'last_math', 'whole',
    'last_number' (with fallback='last_number') or 'none'."""
    check_fallback(fallback)
    boxed = last_boxed(answer_text)
    if boxed is not None:
        return boxed, "boxed"
    matches = list(_ANSWER_IS.finditer(answer_text))
    if matches:
        rest = matches[-1].group("rest").strip()
        while inner := list(_ANSWER_IS.finditer(rest)):  # "A: The answer is 18"
            rest = inner[-1].group("rest").strip()
        math = _math_spans(rest)
        if math:
            rest = next(g for g in math[0].groups() if g is not None)
        rest = rest.strip().rstrip(".").strip("*").strip()
        if rest:
            return rest, "answer_is"
    if fallback == "last_number":
        numbers = _NUMBER.findall(answer_text.replace(",", ""))
        return (numbers[-1], "last_number") if numbers else (None, "none")
    math = _math_spans(answer_text)
    if math:
        content = next(g for g in math[-1].groups() if g is not None).strip()
        if content:
            return content, "last_math"
    stripped = answer_text.strip().rstrip(".")
    # A bare short answer ("42", "\\frac12", "Evelyn"), not a short sentence ("I could not finish").
    if (
        stripped
        and len(stripped) <= _SHORT_ANSWER
        and (re.search(r"[\d\\]", stripped) or len(stripped.split()) <= 2)
    ):
        return stripped, "whole"
    return None, "none"


_ORDINAL = re.compile(r"\^\{?\\(?:text|mathrm)\{\s*(?:st|nd|rd|th)\s*\}\}?|\^\{(?:st|nd|rd|th)\}")
_TEXT_WORDS = re.compile(r"\\(?:text|mathrm|textbf)\{\s*[A-Za-z][A-Za-z .]*\}\s*$")


def _strip_words(answer: str) -> str:
    """Drop ordinal suffixes and trailing words: `12^{\\text{th}}\\text{ grade}` -> `12`."""
    return _TEXT_WORDS.sub("", _ORDINAL.sub("", answer)).strip()


_BRACED_COMMANDS = re.compile(r"\\(?:[dtc]?frac|[dt]?binom|sqrt)(?![A-Za-z])")
_DIGIT_GROUPS = re.compile(r"(?<=\d)(?:,\\!|\{,\}|\\,|\\!|\\ )(?=\d{3}(?!\d))")


def normalize_latex(text: str) -> str:
    r"""Brace the arguments of `\frac`, `\sqrt` and `\binom` and join digit groups, so that
    math-verify reads the whole expression.

    math-verify brace-fills `\frac12` itself, but mangles an argument after a space or a control
    word: `\frac \pi4 + 2 - \sqrt2` becomes `\frac{\}{p}i4 + ...` and parses as 2, so a wrong `2`
    would match it. Here it becomes `\frac{\pi}{4} + 2 - \sqrt{2}`. Digit groups written with a
    separator (`5,\!525`, `1{,}000`, `3\,000`) would not parse, or parse as a product.
    """
    text = _DIGIT_GROUPS.sub("", text)
    out: list[str] = []
    i = 0
    while i < len(text):
        m = _BRACED_COMMANDS.match(text, i) if text[i] == "\\" else None
        if m is None:
            out.append(text[i])
            i += 1
            continue
        out.append(m.group(0))
        i = m.end()
        if m.group(0) == "\\sqrt":
            j = i
            while j < len(text) and text[j] == " ":
                j += 1
            if j < len(text) and text[j] == "[":  # \sqrt[3]{x}: the index stays as written
                end = text.find("]", j)
                if end > 0:
                    out.append(text[j : end + 1])
                    i = end + 1
        for _ in range(1 if m.group(0) == "\\sqrt" else 2):
            while i < len(text) and text[i] == " ":
                i += 1
            if i >= len(text) or text[i] in "}$":
                break
            if text[i] == "{":
                found = _box_content(text, i)
                if found is None:
                    break
                inner, i = found
                out.append("{" + normalize_latex(inner) + "}")
            else:
                word = re.match(r"\\[A-Za-z]+|\\.|.", text[i:], re.DOTALL).group(0)
                out.append("{" + word + "}")
                i += len(word)
    return "".join(out)


_TOP_LEVEL_SIGN = re.compile(r"(?<=[\w}).!])\s*[+-]\s*(?=[\w\\({.])")


def _top_level_terms(text: str) -> int:
    """Binary + and - outside any brackets in a gold answer's LaTeX (its leading sign excluded)."""
    depth, flat = 0, []
    for c in text:
        depth += c in "{([" and 1 or (-1 if c in "})]" else 0)
        flat.append(c if depth == 0 else "x")
    return len(_TOP_LEVEL_SIGN.findall("".join(flat)))


def gold_fragment(gold: str, parsed: tuple) -> str | None:
    r"""Why the parsed gold accounts for only part of the gold text (None when it accounts for all).

    math-verify returns what it could read, so a gold with a piece it cannot read (an
    `\operatorname`, a `\mathbb`, a mangled argument) can come back as one of its terms: the gold
    `\operatorname{f}(2) + 3` parses as 3, and a wrong 3 would be scored right. A gold that has
    terms joined by + or - but parses to a bare number or symbol is such a fragment."""
    exprs = [g for g in parsed if not isinstance(g, str)]
    strings = [g for g in parsed if isinstance(g, str)]
    if any(re.search(r"\{\\\}", t) for t in strings):
        return "math-verify mangled an argument of the gold answer"
    if not exprs:
        return None
    expr = exprs[0]
    inner = gold.strip().strip("$").strip()
    if getattr(expr, "is_Atom", False) and _top_level_terms(inner) > 0:
        return f"math-verify reads the gold answer {inner!r:.80} as just {expr}"
    return None


def gold_text(reference: Any) -> str | None:
    """The gold answer as LaTeX math-verify can parse: numbers normalised, bare LaTeX wrapped in `$...$`."""
    if reference is None:
        return None
    if isinstance(reference, bool):
        return None
    if isinstance(reference, float):
        reference = int(reference) if reference.is_integer() else reference  # AMC's 27.0 -> 27
    text = str(reference).strip()
    if "####" in text:  # GSM8K keeps its final answer after '#### '
        text = text.rsplit("####", 1)[1].strip()
    if not text:
        return None
    text = normalize_latex(text)
    if _UNESCAPED_DOLLAR.search(text) or "\\boxed" in text or "\\(" in text or "\\[" in text:
        return text
    return f"${text}$"


@functools.lru_cache(maxsize=4096)
def _parse_gold(text: str) -> tuple:
    # n samples of one prompt share the gold answer: parse it once per process.
    from math_verify import parse

    return tuple(parse(text, parsing_timeout=None))


def score(answer_text: str, reference: Any, fallback: str = "distill") -> Verdict:
    """Check the answer part of a trace against the gold `reference`; no time limit here (see module doc).
    `fallback` says how an answer without a box is read (see FALLBACKS)."""
    from math_verify import parse, verify

    gold = gold_text(reference)
    if gold is None:
        return Verdict(None, None, "no_reference", detail="the trace has no reference answer")
    extracted, method = extract_answer(answer_text or "", fallback)
    gold_parsed = list(_parse_gold(gold))
    # math-verify falls back to the raw string when it cannot build an expression; a gold answer
    # with no expression can only be string-matched, which is not a check we can vouch for.
    if not any(not isinstance(g, str) for g in gold_parsed):
        return Verdict(
            None,
            extracted,
            "gold_unparsable",
            method,
            detail=f"math-verify cannot parse the gold answer {gold!r:.80}",
        )
    fragment = gold_fragment(gold, tuple(gold_parsed))
    if fragment:
        # Never score against a piece of the gold: an answer equal to that piece would pass.
        return Verdict(None, extracted, "gold_unparsable", method, detail=fragment)
    if extracted is None:
        return Verdict(
            False, None, "no_answer", method, detail="no boxed or stated final answer in the answer part"
        )
    pred = parse(f"\\boxed{{{normalize_latex(extracted)}}}", parsing_timeout=None)
    if not pred:
        return Verdict(
            False,
            extracted,
            "unparsable_answer",
            method,
            detail=f"math-verify cannot parse the answer {extracted!r:.80}",
        )
    ok = verify(gold_parsed, pred, timeout_seconds=None)
    plain = _strip_words(extracted)
    if not ok and plain != extracted and plain and "\\text" not in gold:
        # `12^{\text{th}} \text{ grade}` for gold 12: math-verify drops known units, not ordinals
        # or arbitrary trailing words; retry on the bare value when the gold is not itself text.
        pred = parse(f"\\boxed{{{plain}}}", parsing_timeout=None)
        ok = bool(pred) and verify(gold_parsed, pred, timeout_seconds=None)
    return Verdict(
        ok,
        extracted,
        "correct" if ok else "wrong",
        method,
        detail="" if ok else f"{extracted!r:.60} != gold {gold!r:.60}",
    )


# math-verify logs a warning on every call when its own timeouts are off; we enforce ours instead.
logging.getLogger("math_verify").setLevel(logging.ERROR)
