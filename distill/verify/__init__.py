"""Answer checking shared by the filters (stage 2) and the eval (stage 4), so both score alike.

    from distill import verify

    v = verify.score("math", "... so the answer is \\boxed{5}.", "5")
    v.correct, v.extracted, v.status            # True, '5', 'correct'

    verdicts = verify.score_many([("math", text, gold), ("choice", text2, "C")], workers=2, timeout=5)

`task` picks the checker: 'math' (math-verify, `distill.verify.math`), 'choice' (a multiple-choice
letter, `distill.verify.choice`) or 'code' (tests in a sandbox, `distill.verify.code`, imported
only when a code item comes). `text` is the answer part of a completion, after the reasoning:
the final answer is looked for there only.

A `Verdict` has `correct` True/False, or None when the item could not be judged (gold answer
missing or unparsable, timeout): count those apart, never as wrong.

Time limits: `score` cuts an item after `timeout` seconds with SIGALRM when called from the main
thread (there is no limit in other threads: use `score_many`). `score_many` runs items in worker
processes, where the same alarm works, and kills a worker stuck in C code (see `pool.py`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from distill.verify.pool import ItemTimeout, alarm_after, chunked, imap_chunks
from distill.verify.types import Verdict

log = logging.getLogger(__name__)

TASKS = ("math", "choice", "code")
DEFAULT_TIMEOUT = 5.0
"""Seconds per item. math-verify checks take ~1 ms; a few adversarial answers take minutes."""

__all__ = ["TASKS", "Verdict", "score", "score_many"]


def score(task: str, text: str, reference: Any, timeout: float | None = DEFAULT_TIMEOUT,
          fallback: str = "distill") -> Verdict:
    """Check one answer `text` against `reference` with the checker for `task`. `fallback`: how a
    math answer without a box is read ('distill' or 'last_number', see `distill.verify.math`)."""
    if task == "code":
        # The code checker runs tests in its own sandbox with its own limits; an alarm here
        # would interrupt its subprocess handling and leave the sandbox behind.
        from distill.verify import code

        return code.score(text, reference)
    if task == "math":
        from distill.verify.math import check_fallback
        from distill.verify.math import score as math_score

        check_fallback(fallback)  # before the try: a bad setting is the caller's error, not the item's

        def check(text: str, reference: Any) -> Verdict:
            return math_score(text, reference, fallback)
    elif task == "choice":
        from distill.verify.choice import score as check
    else:
        raise ValueError(f"Unknown task {task!r}: distill.verify checks {', '.join(TASKS)}. "
                         "Set the prompt set's `task` to one of them.")
    try:
        with alarm_after(timeout):
            return check(text, reference)
    except ItemTimeout:
        return Verdict(None, None, "timeout", detail=f"checking took more than {timeout:g}s")
    except Exception as e:  # a checker bug on one odd answer must not stop a 100k-trace run
        log.debug("verify %s failed on %r", task, text[-200:], exc_info=True)
        return Verdict(None, None, "error", detail=f"{type(e).__name__}: {e}"[:200])


def _score_chunk(chunk: list[tuple[str, str, Any, float | None, str]]) -> list[Verdict]:
    return [score(task, text, ref, timeout, fallback) for task, text, ref, timeout, fallback in chunk]


def _lost(item: tuple, why: str) -> Verdict:
    return Verdict(None, None, "timeout", detail=why)


def score_many(
    items: Iterable[tuple[str, str, Any]],
    workers: int = 2,
    timeout: float | None = DEFAULT_TIMEOUT,
    chunk_size: int = 32,
    fallback: str = "distill",
) -> list[Verdict]:
    """Score `(task, text, reference)` items in `workers` processes (0: in this process); order kept.

    Each item gets `timeout` seconds; an item that hangs where no signal reaches (inside C code)
    costs its worker, which is killed and replaced, and comes back as status 'timeout'.
    """
    from distill.verify.math import check_fallback

    check_fallback(fallback)
    deadline = (timeout or 60.0) + 1.0
    todo = ((task, text, ref, timeout, fallback) for task, text, ref in items)
    out: list[Verdict] = []
    for verdicts in imap_chunks(_score_chunk, chunked(todo, chunk_size), workers=workers,
                                item_deadline=deadline, on_lost=_lost):
        out.extend(verdicts)
    return out
