"""The result of checking one answer; shared by math, multiple choice and code."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Verdict:
    """Whether an answer is right, and what was checked.

    `correct` is None when the answer could not be judged at all (no or unparsable gold answer,
    timeout): such a trace is reported apart, never counted as wrong.
    """

    correct: bool | None
    extracted: str | None
    """The final answer found in the text (None when there was none)."""
    status: str
    """'correct', 'wrong', 'no_answer', 'unparsable_answer', 'gold_unparsable', 'no_reference', 'timeout' or 'error'."""
    method: str = ""
    """How the answer was found: 'boxed', 'answer_is', 'last_math', 'whole', 'letter', ... ('' when not applicable)."""
    detail: str = ""
    """A readable one-liner for rejects.jsonl and reports."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
