"""Row -> Prompt: how one row of a prompt set or benchmark becomes a `Prompt` (distill.prompts).

    from distill.prompt_rows import make_prompt
    prompt = make_prompt(load_prompt_config("gpqa-diamond"), row, "row 3")

The columns a `PromptSetConfig` names are read here (`a.b` reads row["a"]["b"]); a missing one
raises `ColumnError` with the row's column that looks like it. References are normalised
(`normalize_reference`), multiple-choice options lettered and shuffled with a per-prompt seed,
and code tests turned into the dict `distill.verify.code` runs (decoding in
`distill.verify.code_data`). The schema is in distill/prompts.py's docstring.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from distill.config import ConfigError
from distill.verify.code_data import lcb_reference

if TYPE_CHECKING:  # prompts.py imports this module; only the type is needed here
    from distill.prompts import PromptSetConfig

LETTERS = "ABCDEFGHIJ"


@dataclass
class Prompt:
    """One problem, ready to send: the chat messages built with the set's instruction."""

    id: str
    """Stable id: the set's id column when it has one, else a hash of the problem text."""
    messages: list[dict[str, str]]
    reference: Any = None
    """Gold answer, normalised (AIME '023' -> '23'); a dict of tests for code."""
    task: str = "math"
    """'math', 'choice' or 'code'."""
    meta: dict[str, Any] = field(default_factory=dict)
    """Source set, level, problem text without instruction, ..."""


class ColumnError(ConfigError):
    """A row lacks the column `columns.<key>` names; `guess` is the row's column that looks like it.

    Callers add the command-line spelling: `prompts.columns.problem=...` for `distill traces`,
    `columns.<benchmark>.problem=...` for `distill eval`.
    """

    def __init__(self, message: str, key: str, guess: str | None):
        super().__init__(message)
        self.key, self.guess = key, guess


# Usual names of a column, best first, for the did-you-mean of a missing column.
COLUMN_NAMES = {
    "problem": ["problem", "question", "prompt", "query", "input", "instruction", "text", "content"],
    "answer": ["answer", "final_answer", "expected_answer", "gold", "ground_truth", "target", "label",
               "correct answer", "solution"],
    "id": ["id", "record id", "unique_id", "uid", "idx", "problem_id", "task_id", "question_id"],
    "choices": ["choices", "options"],
}


def guess_column(row: dict[str, Any], key: str) -> str | None:
    """The row's column that looks like `columns.<key>`: a usual name, else (for the problem) the longest text."""
    lower = {str(c).lower(): c for c in row}
    for name in COLUMN_NAMES.get(key, []):
        if name in lower:
            return lower[name]
    if key == "problem":
        texts = {c: len(v) if isinstance(v, str) else len(str(_last_user(v) or "")) for c, v in row.items()}
        best = max(texts, key=texts.get, default=None)
        return best if best is not None and texts[best] else None
    return None


def _get(row: dict[str, Any], col: str) -> tuple[bool, Any]:
    """(found, value): a column, or a nested field as `a.b` (verl-style `reward_model.ground_truth`)."""
    if col in row:
        return True, row[col]
    node: Any = row
    for part in col.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _column(row: dict[str, Any], col: str, key: str, where: str) -> Any:
    found, value = _get(row, col)
    if not found:
        guess = guess_column(row, key)
        hint = (f" The {key} looks like it is in '{guess}': set columns.{key}={guess}" if guess and guess != col
                else f" Set columns.{key}= to one of them")
        raise ColumnError(f"{where}: no column '{col}' (set by columns.{key}); the row has {sorted(row)}.{hint}",
                          key, guess)
    return value


def _last_user(value: Any) -> str | None:
    """The content of the last user turn of a chat-message list, else None."""
    if isinstance(value, list) and value and all(isinstance(m, dict) and "role" in m for m in value):
        users = [m.get("content") for m in value if m.get("role") == "user"]
        return users[-1] if users and isinstance(users[-1], str) else None
    return None


def _problem(value: Any, col: str, where: str) -> tuple[list[dict[str, str]], str]:
    """(turns before the problem, problem text): a text column, or a chat-message list whose last user
    turn is the problem (a system turn before it is kept; an assistant turn after it, the solution, is not)."""
    if isinstance(value, list):
        text = _last_user(value)
        if text is None or not text.strip():
            raise ConfigError(f"{where}: column '{col}' (columns.problem) is a list but not chat messages with a "
                              f"non-empty user turn ([{{role: user, content: ...}}]), got {value!r:.80}")
        last = max(i for i, m in enumerate(value) if m.get("role") == "user")
        before = [{"role": str(m["role"]), "content": str(m.get("content", ""))} for m in value[:last]]
        return before, text.strip()
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: column '{col}' (columns.problem) must be non-empty text or chat messages, "
                          f"got {value!r:.60}")
    return [], value.strip()


def make_prompt(cfg: PromptSetConfig, row: dict[str, Any], where: str = "row") -> Prompt | None:
    """One row -> one Prompt (None when `skip_references` drops it); errors name `where` and the column."""
    cols = cfg.columns
    turns, problem = _problem(_column(row, cols.problem, "problem", where), cols.problem, where)
    id_col = cols.id if cols.id is not None else ("id" if cfg.source == "toy" else None)
    if id_col is not None:
        raw_id = _column(row, id_col, "id", where)
        local_id = str(raw_id).strip()
        if not local_id:
            raise ConfigError(f"{where}: empty id in column '{id_col}' (columns.id)")
    else:
        local_id = hashlib.sha256(problem.encode()).hexdigest()[:16]
    pid = f"{cfg.name}/{local_id}"
    meta: dict[str, Any] = {"source": cfg.name, "problem": problem}
    keep = cols.keep or (["level"] if cfg.source == "toy" else [])
    for col in keep:
        meta[col] = _column(row, col, "keep", where)

    text = problem
    if cfg.task == "choice":
        text, reference, meta["choices"] = _choice(cfg, row, problem, pid, where)
    elif cfg.task == "code":
        reference = _code_reference(cfg, row, where, meta)
        starter = row.get(cols.starter_code) if cols.starter_code else None
        if starter:
            meta["starter_code"] = starter
            text += f"\n\nComplete this starter code:\n```python\n{starter.rstrip()}\n```"
        elif cfg.reference_format == "lcb":
            text += "\n\nRead the input from standard input and write the answer to standard output."
    else:
        raw = _column(row, cols.answer, "answer", where) if cols.answer else None
        try:
            reference = normalize_reference(raw, cfg.reference_format)
        except ValueError as e:
            raise ConfigError(f"{where}: column '{cols.answer}': {e}") from None
        if reference is not None and reference in cfg.skip_references:
            return None
    instruction = cfg.instruction_text
    content = f"{text}\n\n{instruction}" if instruction else text
    return Prompt(id=pid, messages=[*turns, {"role": "user", "content": content}], reference=reference,
                  task=cfg.task, meta=meta)


_INT = re.compile(r"[+-]?\d+")
_INT_POINT_ZERO = re.compile(r"([+-]?\d+)\.0*")
_THOUSANDS = re.compile(r"[+-]?\d{1,3}(,\d{3})+(\.\d+)?")


def normalize_reference(value: Any, fmt: str = "auto") -> str | None:
    """A gold answer as a canonical string, so '023', 23 and 23.0 all become '23'.

    auto:  numbers lose leading zeros, a trailing '.0' and thousands commas ('1,234' -> '1234');
           anything else (LaTeX like '\\frac{14}{3}') is kept, stripped.
    gsm8k: the text after the last '####', then as auto.
    text:  stripped, nothing else.
    """
    if value is None:
        return None
    if fmt == "gsm8k":
        if not isinstance(value, str) or "####" not in value:
            raise ValueError(f"expected a GSM8K solution ending in '#### <answer>', got {value!r:.80}")
        value = value.rsplit("####", 1)[1]
    if isinstance(value, bool):
        raise ValueError(f"expected an answer, got the boolean {value}")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if not isinstance(value, str):
        value = json.dumps(value, ensure_ascii=False) if isinstance(value, (list, dict)) else str(value)
    text = value.strip()
    if fmt == "text":
        return text
    if _THOUSANDS.fullmatch(text):
        text = text.replace(",", "")
    if _INT.fullmatch(text):
        return str(int(text))
    m = _INT_POINT_ZERO.fullmatch(text)
    if m:
        return str(int(m.group(1)))
    return text


def _choice(cfg: PromptSetConfig, row: dict[str, Any], problem: str, pid: str,
            where: str) -> tuple[str, str, dict[str, str]]:
    """(text with the options, gold letter, {letter: option}).

    With `distractors`, the options are shuffled with a seed of (choice_seed, prompt id): stable per
    prompt, not row order. With `choices`, or options lettered in the text, the source's letters stay.
    """
    cols = cfg.columns
    if cols.answer is None:
        raise ConfigError(f"{where}: task 'choice' needs columns.answer (the correct option, or its letter)")
    answer = _column(row, cols.answer, "answer", where)
    if cols.distractors and not cols.choices:  # `choices` wins: a copy of a set declared with distractors
        correct = str(answer).strip()
        options = [correct] + [str(_column(row, c, "distractors", where)).strip() for c in cols.distractors]
        if len(options) > len(LETTERS):
            raise ConfigError(f"prompt set '{cfg.name}': at most {len(LETTERS)} options, got {len(options)}")
        order = list(range(len(options)))
        # A str seed is hashed with sha512 by `random`, so the shuffle is the same on every machine.
        random.Random(f"{cfg.choice_seed}:{pid}").shuffle(order)
        choices = {LETTERS[i]: options[k] for i, k in enumerate(order)}
        gold = LETTERS[order.index(0)]
        text = problem + "\n\n" + "\n".join(f"{letter}) {option}" for letter, option in choices.items())
        return text, gold, choices
    if cols.choices:
        choices = _options(_column(row, cols.choices, "choices", where), f"{where}: column '{cols.choices}'")
    else:
        choices = lettered_options(problem)
        if len(choices) < 2:
            raise ConfigError(f"{where}: task 'choice' found no options: set columns.choices (one column with every "
                              "option) or columns.distractors (the wrong options' columns), or letter the options "
                              "in the problem text (lines 'A) ...', 'B) ...')")
    gold = _gold_letter(answer, choices, f"{where}: column '{cols.answer}' (columns.answer)")
    text = problem if len(lettered_options(problem)) >= len(choices) else (
        problem + "\n\n" + "\n".join(f"{letter}) {option}" for letter, option in choices.items()))
    return text, gold, choices


_OPTION_LINE = re.compile(rf"^[ \t]*(?:\(([{LETTERS}])\)|([{LETTERS}])[).:])[ \t]+(\S.*)$", re.MULTILINE)


def lettered_options(text: str) -> dict[str, str]:
    """Options the text already lists one per line ('A) x', '(B) y', 'C. z', 'D: w'), in order from A."""
    found: dict[str, str] = {}
    for m in _OPTION_LINE.finditer(text):
        letter = m.group(1) or m.group(2)
        if letter == LETTERS[len(found)]:
            found[letter] = m.group(3).strip()
        elif letter == "A":  # a second list starts: the last one is the options
            found = {"A": m.group(3).strip()}
    return found


def _options(value: Any, where: str) -> dict[str, str]:
    """{letter: text} from {"A": t, ...}, {"label": [...], "text": [...]}, a list of texts, or their JSON."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise ConfigError(f"{where}: options given as text but not JSON: {value!r:.80}") from None
    if isinstance(value, dict) and isinstance(value.get("text"), list):
        labels = value.get("label") or list(LETTERS[:len(value["text"])])
        value = dict(zip(labels, value["text"]))
    if isinstance(value, list):
        value = dict(zip(LETTERS, value))
    if not isinstance(value, dict) or not 2 <= len(value) <= len(LETTERS):
        raise ConfigError(f"{where}: expected 2-{len(LETTERS)} options as {{A: text, ...}}, {{label: [...], "
                          f"text: [...]}} or a list of texts, got {value!r:.80}")
    out = {}
    for label, text in value.items():
        letter = str(label).strip().strip("()").upper()
        if letter not in LETTERS:
            raise ConfigError(f"{where}: option label {label!r} is not a letter {LETTERS[0]}-{LETTERS[-1]}")
        out[letter] = str(text).strip()
    return out


def _gold_letter(answer: Any, choices: dict[str, str], where: str) -> str:
    """The gold letter from a letter ('C', '(C)'), a 0-based index, or the correct option's text."""
    if isinstance(answer, int) and not isinstance(answer, bool):
        letters = list(choices)
        if 0 <= answer < len(letters):
            return letters[answer]
    elif isinstance(answer, str):
        m = re.fullmatch(rf"\s*\(?([{LETTERS}])\)?[.:]?\s*", answer.upper())
        if m and m.group(1) in choices:
            return m.group(1)
        wanted = answer.strip().casefold()
        for letter, option in choices.items():
            if option.casefold() == wanted:
                return letter
    raise ConfigError(f"{where}: gold answer {answer!r:.60} is neither an option letter ({', '.join(choices)}), "
                      "a 0-based index nor the text of an option")


def _code_reference(cfg: PromptSetConfig, row: dict[str, Any], where: str, meta: dict[str, Any]) -> Any:
    """The tests dict `distill.verify.code` runs (its module docstring has the shapes)."""
    cols = cfg.columns
    if cfg.reference_format == "tests":
        value = _column(row, cols.tests[0], "tests", where)
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise ConfigError(f"{where}: column '{cols.tests[0]}' is text but not JSON") from None
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: column '{cols.tests[0]}' must hold a tests dict, got {type(value).__name__}")
        return value
    if cfg.reference_format == "check":
        ref = {"check": _column(row, cols.tests[0], "tests", where)}
        if len(cols.tests) > 1:
            ref["entry_point"] = _column(row, cols.tests[1], "tests", where)
        return ref
    # LiveCodeBench: its encodings are decoded beside the code verifier.
    columns = {col: _column(row, col, "tests", where) for col in cols.tests}
    ref, meta["num_public_tests"] = lcb_reference(columns, row.get("metadata"), where)
    return ref
