"""Text-quality filters: language consistency, degenerate repetition, readability (R1 section 2.3.3)."""

from __future__ import annotations

import collections
import re
from dataclasses import dataclass
from typing import ClassVar

import regex

from distill.filters.base import TraceFilter
from distill.trace import Trace

# ---------------------------------------------------------------------------------------------
# Language

# Unicode scripts, read from the `regex` module's \p{Script} tables (the Unicode database, kept
# current with each release). A script is what DeepSeek's "language mixing" looks like in practice
# (R1-Zero drifting into Chinese on English prompts). A statistical language-ID model was not used:
# fastText's lid.176 must be downloaded (no hub here), pure-Python detectors (langdetect) are slow
# on 100 kB traces and non-deterministic, and all of them label a whole text where we need a
# count of foreign words inside it. The cost: two languages of one script (English vs French) are
# not told apart.
# Greek is not a language signal here: theta, pi and sigma fill English math.
_SCRIPTS = {
    "cjk": regex.compile(r"[\p{Han}\p{Hiragana}\p{Katakana}]"),  # one unit per character (no spaces)
    "hangul": regex.compile(r"\p{Hangul}+"),
    "latin": regex.compile(r"\p{Latin}+"),
    "cyrillic": regex.compile(r"\p{Cyrillic}+"),
    "arabic": regex.compile(r"\p{Arabic}+"),
    "hebrew": regex.compile(r"\p{Hebrew}+"),
    "devanagari": regex.compile(r"\p{Devanagari}+"),
    "thai": regex.compile(r"\p{Thai}+"),
}
# A Latin word of 3 letters or fewer inside non-Latin text is a variable or a function name
# (x, ab, sin, log), which Chinese math writes in Latin letters.
_LATIN_WORD_IN_OTHER = regex.compile(r"\p{Latin}{4,}")
# Math and code are not prose in any language: LaTeX commands (\frac), math spans, code fences.
_NOT_PROSE = re.compile(r"```.*?```|\$\$.*?\$\$|\$[^$\n]*\$|\\\(.*?\\\)|\\\[.*?\\\]|\\[A-Za-z]+", re.DOTALL)


def script_units(text: str) -> collections.Counter[str]:
    """Count words per script (CJK: characters) in the prose of `text`."""
    prose = _NOT_PROSE.sub(" ", text)
    return collections.Counter({s: len(p.findall(prose)) for s, p in _SCRIPTS.items()})


def dominant_script(text: str, default: str = "latin") -> str:
    units = script_units(text)
    script, n = units.most_common(1)[0]
    return script if n else default


@dataclass(frozen=True)
class Language(TraceFilter):
    """DeepSeek's language-consistency criterion: the reasoning stays in the prompt's language.

    The prompt's language is the dominant script of its last user turn. In the reasoning and the
    answer, words of other scripts (CJK counted per character) are foreign; the trace is dropped
    when they exceed `max_foreign` of all words and number at least `min_foreign` (so one quoted
    character in a 5,000-word trace is not mixing).
    """

    name: ClassVar[str] = "language"
    max_foreign: float = 0.01
    min_foreign: int = 5

    def judge(self, trace: Trace) -> str | None:
        prompt = next((m["content"] for m in reversed(trace.messages) if m.get("role") == "user"), "")
        target = dominant_script(prompt)
        text = f"{trace.reasoning}\n{trace.answer}"
        units = script_units(text)
        if target != "latin":
            units["latin"] = len(_LATIN_WORD_IN_OTHER.findall(_NOT_PROSE.sub(" ", text)))
        total = sum(units.values())
        foreign = total - units[target]
        if total and foreign >= self.min_foreign and foreign / total > self.max_foreign:
            mix = ", ".join(f"{s} {n}" for s, n in units.most_common() if n and s != target)
            return (f"mixed languages: {foreign / total:.1%} of {total} words are not {target} "
                    f"(the prompt's script) > {self.max_foreign:.1%}: {mix}")
        return None


# ---------------------------------------------------------------------------------------------
# Repetition

_WORDS_OF_LETTERS = re.compile(r"[A-Za-z]{3,}|[^\x00-\x7f]")


def _z_function(s: list[int]) -> list[int]:
    """z[i] = length of the longest common prefix of s and s[i:] (Gusfield), O(len(s))."""
    n = len(s)
    z = [0] * n
    left = right = 0
    for i in range(1, n):
        if i < right:
            z[i] = min(right - i, z[i - left])
        while i + z[i] < n and s[z[i]] == s[i + z[i]]:
            z[i] += 1
        if i + z[i] > right:
            left, right = i, i + z[i]
    return z


def repeated_tail(words: list[str], min_repeats: float, min_words: int, window: int) -> tuple[int, int]:
    """(period, span) of the longest loop the text ends in, in words; (0, 0) when none.

    On the reversed last `window` words, z[p] counts how many words keep equalling the word p
    places earlier, so the text ends in a block of p words repeated (p + z[p]) / p times.
    """
    tail = words[-window:][::-1]
    ids: dict[str, int] = {}
    seq = [ids.setdefault(w, len(ids)) for w in tail]
    z = _z_function(seq)
    best = (0, 0)
    for p in range(1, len(seq) // 2 + 1):
        span = p + z[p]
        if span >= min_words and span >= min_repeats * p and span > best[1]:
            best = (p, span)
    return best


@dataclass(frozen=True)
class Repetition(TraceFilter):
    """Degenerate loops, as long-CoT models produce them when they get stuck.

    Three signs, any one drops the trace:
    - the text ends in a block repeated `tail_repeats` times over at least `min_tail_words` words
      (greedy decoding looping until max_tokens);
    - a prose line or paragraph (at least `min_line_words` words of letters, so a table row or an
      equation restated is not counted) appears `line_repeats` times;
    - more than `max_ngram_dup` of the word `ngram`-grams are repeats (a loop that started late
      and whose repeats vary a little).
    Defaults were set on Sky-T1 outputs (../shared/data/traces/skythought): no closed, finished
    trace there crosses them; truncated loops do (see tests/test_filters_real.py).
    """

    name: ClassVar[str] = "repetition"
    tail_repeats: float = 3.0
    min_tail_words: int = 50
    tail_window: int = 3000
    line_repeats: int = 5
    min_line_words: int = 5
    ngram: int = 10
    max_ngram_dup: float = 0.5

    def judge(self, trace: Trace) -> str | None:
        for part in ("reasoning", "answer"):  # a loop cut by max_tokens ends the reasoning, not the trace
            words = getattr(trace, part).split()
            period, span = repeated_tail(words, self.tail_repeats, self.min_tail_words, self.tail_window)
            if period:
                block = " ".join(words[-period:])
                return (f"looping tail: the last {span} words of the {part} repeat a {period}-word block "
                        f"{span / period:.1f} times: {block[:80]!r}")
        text = f"{trace.reasoning}\n\n{trace.answer}"
        words = text.split()
        units: collections.Counter[str] = collections.Counter()
        for line in text.splitlines():
            line = line.strip()
            if len(_WORDS_OF_LETTERS.findall(line)) >= self.min_line_words:
                units[line] += 1
        for para in re.split(r"\n\s*\n", text):
            para = para.strip()
            if "\n" in para and len(_WORDS_OF_LETTERS.findall(para)) >= self.min_line_words:
                units[para] += 1
        if units:
            unit, count = units.most_common(1)[0]
            if count >= self.line_repeats:
                return f"repeated line: {count} times: {unit[:80]!r}"
        n = self.ngram
        if len(words) >= 4 * n:
            grams = [" ".join(words[i:i + n]) for i in range(len(words) - n + 1)]
            dup = 1 - len(set(grams)) / len(grams)
            if dup > self.max_ngram_dup:
                return f"repeated n-grams: {dup:.0%} of word {n}-grams are repeats > {self.max_ngram_dup:.0%}"
        return None


# ---------------------------------------------------------------------------------------------
# Readability

_FENCED = re.compile(r"^[ \t]*```[ \t]*([\w+#-]*)[^\n]*\n(.*?)^[ \t]*```", re.MULTILINE | re.DOTALL)
_CODE_LANGS = {"python", "py", "python3", "c", "cpp", "c++", "java", "javascript", "js", "ts", "typescript",
               "bash", "sh", "shell", "go", "rust", "ruby", "julia", "matlab", "r", "sql", "sage", "mathematica"}
_CODE_LINE = re.compile(
    r"^\s*(?:def \w+\(.*\):|import \w+|from [\w.]+ import |for \w+ in range\(|while .*:$|print\(|return\b|class \w+)",
    re.MULTILINE,
)


@dataclass(frozen=True)
class Readability(TraceFilter):
    """DeepSeek's other two criteria: no over-long paragraphs, no code blocks inside math reasoning.

    A paragraph is text between blank lines; one longer than `max_paragraph_words` is a wall of
    text a student learns to imitate (finished Sky-T1 traces stay under 160 words). Code counts
    as a fenced block tagged with a programming language or holding a line of code, or
    `min_code_lines` lines that read as Python, and only for math traces: code belongs in code
    traces. An untagged fence around a long division or a column sum is layout, not code
    (gemma-2 writes those on MATH-500), and is kept.
    """

    name: ClassVar[str] = "readability"
    max_paragraph_words: int = 300
    code_in_math: bool = False
    """True keeps math traces with code blocks."""
    min_code_lines: int = 2

    def judge(self, trace: Trace) -> str | None:
        text = f"{trace.reasoning}\n\n{trace.answer}"
        for para in re.split(r"\n\s*\n", text):
            n = len(para.split())
            if n > self.max_paragraph_words:
                return f"long paragraph: {n} words > {self.max_paragraph_words}: {para.strip()[:60]!r}"
        if trace.task == "math" and not self.code_in_math:
            for lang, body in _FENCED.findall(text):
                if lang.lower() in _CODE_LANGS or _CODE_LINE.search(body):
                    return f"code block in math reasoning: a ```{lang} block"
            lines = _CODE_LINE.findall(text)
            if len(lines) >= self.min_code_lines:
                return f"code block in math reasoning: {len(lines)} lines of Python, e.g. {lines[0].strip()[:40]!r}"
        return None
