"""GRPO rewards from `distill.verify`: the checker the filters and the eval use, so RL optimises what eval measures.

    from distill.rl import rewards

    rewards.correctness("math", "<think>\\n2+3=5\\n</think>\\n\\n\\boxed{5}", "5")    # 1.0 (wrong: 0.0)
    rewards.format_penalty("no think block, just \\boxed{5}")                        # -1.0 (well formed: 0.0)
    rewards.overlong_penalty(1900, max_tokens=2048, cache=512)                      # -0.72 (DAPO Eq. 13)

A completion's reward is the weighted sum of the terms the `rl:` preset lists (default weights 1):

- `correct`: 1.0 when `distill.verify.score(task, answer part, reference)` says right, else 0.0
  (wrong, no answer, unclosed thinking, checker timeout). The answer part is what eval scores
  (`distill.eval.results.scored_text`): the text after `</think>`; a completion cut by the length
  limit before it closed its thinking has none. Code answers run their tests in the sandbox, in
  the verify process pool (`score_many`), so a program that hangs costs its item, not the step.
- `format`: 0.0 for exactly one reasoning block and a non-empty answer after it (the
  `think_format` filter, `distill.filters.ThinkFormat`), else -1.0 (`format_penalty`).
- `overlong`: DAPO's soft overlong punishment (Yu et al. 2025, arXiv:2503.14476, Eq. 13), as
  open-r1's `soft_overlong_punishment`: 0 up to `max_tokens - cache` completion tokens, then
  falling linearly to -1 at `max_tokens`, and -1 beyond. It penalises length only near the
  limit, so the student is not pushed to think less on problems that need it.

So a right, well-formed answer scores 1, a wrong one 0, a malformed one -1 (plus 1 if its answer
part is still right). GRPO normalises rewards within each prompt's group, so only differences
between the group's completions move the policy.

The TRL side: `reward_functions(cfg, tokenizer)` returns one callable per term with the
signature `GRPOTrainer` calls (`completions`, `completion_ids`, and the dataset columns
`task` and `reference` as keyword lists). Completions are decoded from their token ids with the
special tokens kept: `<think>` is a special token in R1-Distill-style vocabularies (and the toy's),
and the text TRL decodes for the reward functions drops it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

from distill import verify
from distill.trace import THINK, Trace, split_reasoning

log = logging.getLogger(__name__)

REWARDS = ("correct", "format", "overlong")
"""The reward terms an `rl:` preset can list."""
FORMAT_PENALTY = -1.0


# ---------------------------------------------------------------------------------------------
# The terms, on plain text


def answer_part(text: str, finished: bool = True, think: tuple[str, str] = THINK) -> str:
    """The text a completion's final answer is read from, as eval reads it (`scored_text`)."""
    from distill.eval.results import scored_text

    reasoning, answer, _ = split_reasoning(text, think)
    return scored_text(reasoning, answer, "stop" if finished else "length")


def correctness(task: str, text: str, reference: Any, finished: bool = True, think: tuple[str, str] = THINK,
                timeout: float | None = verify.DEFAULT_TIMEOUT) -> float:
    """1.0 when the completion's answer is right by `distill.verify`, else 0.0 (unjudged counts as 0)."""
    return 1.0 if verify.score(task, answer_part(text, finished, think), reference, timeout).correct else 0.0


def correctness_many(tasks: Sequence[str], texts: Sequence[str], references: Sequence[Any],
                     finished: Sequence[bool] | None = None, think: tuple[str, str] = THINK, workers: int = 0,
                     timeout: float | None = verify.DEFAULT_TIMEOUT) -> list[float]:
    """`correctness` for a batch. `workers` > 0 scores in the verify pool; code items always go there
    (a program stuck in C code would otherwise stall the training step: the pool kills its worker)."""
    finished = list(finished) if finished is not None else [True] * len(texts)
    items = [(task, answer_part(text, done, think), ref) for task, text, ref, done in
             zip(tasks, texts, references, finished, strict=True)]
    pooled = [i for i, (task, _, _) in enumerate(items) if workers > 0 or task == "code"]
    out: list[float] = [0.0] * len(items)
    if pooled:
        verdicts = verify.score_many([items[i] for i in pooled], workers=max(1, workers), timeout=timeout)
        for i, v in zip(pooled, verdicts):
            out[i] = 1.0 if v.correct else 0.0
    for i, (task, answer, ref) in enumerate(items):
        if task != "code" and workers <= 0:
            out[i] = 1.0 if verify.score(task, answer, ref, timeout).correct else 0.0
    return out


def format_penalty(text: str, think: tuple[str, str] = THINK, penalty: float = FORMAT_PENALTY) -> float:
    """0.0 for one reasoning block and a non-empty answer after it (the think_format filter), else `penalty`."""
    from distill.filters.basic import ThinkFormat

    trace = Trace(id="rl", prompt_id="rl", answer=text)  # ThinkFormat splits a raw completion held in `answer`
    return 0.0 if ThinkFormat(think=think).check(trace) is None else penalty


def overlong_penalty(num_tokens: int, max_tokens: int, cache: int) -> float:
    """DAPO's soft overlong punishment (Eq. 13): 0 up to max_tokens - cache, linear to -1 at max_tokens, -1 past it."""
    if cache <= 0:
        return -1.0 if num_tokens > max_tokens else 0.0
    if num_tokens <= max_tokens - cache:
        return 0.0
    if num_tokens <= max_tokens:
        return (max_tokens - cache - num_tokens) / cache
    return -1.0


# ---------------------------------------------------------------------------------------------
# Checks before training: every prompt must be scorable


def unscorable(tasks: Sequence[str], references: Sequence[Any], workers: int = 0) -> list[tuple[int, str]]:
    """(index, why) for each prompt whose answer the `correct` reward cannot score.

    An empty answer is scored against each reference: the checker then says 'no_answer' when the
    reference is usable, and 'no_reference' / 'gold_unparsable' / 'error' when it is not (a math
    gold math-verify cannot read, a choice gold that is not a letter, a tests dict of the wrong
    shape). A task with no checker is reported without scoring.
    """
    bad: list[tuple[int, str]] = []
    todo: list[int] = []
    for i, task in enumerate(tasks):
        if task not in verify.TASKS:
            bad.append((i, f"task {task!r} has no checker in distill.verify ({', '.join(verify.TASKS)})"))
        elif references[i] is None or references[i] == "":
            bad.append((i, "no reference answer"))
        else:
            todo.append(i)
    verdicts = verify.score_many([(tasks[i], "", references[i]) for i in todo], workers=workers)
    for i, v in zip(todo, verdicts):
        if v.status in ("no_reference", "gold_unparsable", "error"):
            bad.append((i, f"{v.status}: {v.detail}"))
    return sorted(bad)


# ---------------------------------------------------------------------------------------------
# GRPOTrainer reward functions


class CompletionDecoder:
    """Token ids -> (text, finished), keeping special tokens such as <think>, dropping end-of-turn and padding."""

    def __init__(self, tokenizer: Any, stop_ids: Sequence[int] = ()):
        self.tokenizer = tokenizer
        self.stop = {i for i in (*stop_ids, tokenizer.eos_token_id, tokenizer.pad_token_id) if i is not None}

    def __call__(self, ids: Sequence[int]) -> tuple[str, bool]:
        ids = list(ids)
        finished = bool(ids) and ids[-1] in self.stop  # TRL keeps the eos it stopped on, then cuts
        while ids and ids[-1] in self.stop:
            ids.pop()
        return self.tokenizer.decode(ids, skip_special_tokens=False), finished


def _reference(value: Any) -> Any:
    """References travel through the dataset as JSON text (code tests are dicts of varying shape)."""
    return json.loads(value) if isinstance(value, str) else value


def reward_functions(names: Sequence[str], tokenizer: Any, *, max_completion_length: int, overlong_cache: int,
                     stop_ids: Sequence[int] = (), workers: int = 0,
                     timeout: float | None = verify.DEFAULT_TIMEOUT) -> list[Callable[..., list[float]]]:
    """The GRPOTrainer reward callables for `names` (from REWARDS), in that order."""
    decode = CompletionDecoder(tokenizer, stop_ids)

    def correct(completion_ids, task, reference, **_: Any) -> list[float]:
        decoded = [decode(ids) for ids in completion_ids]
        return correctness_many(task, [t for t, _ in decoded], [_reference(r) for r in reference],
                                [f for _, f in decoded], workers=workers, timeout=timeout)

    def format(completion_ids, **_: Any) -> list[float]:  # noqa: A001 - the name TRL logs (rewards/format/mean)
        return [format_penalty(decode(ids)[0]) for ids in completion_ids]

    def overlong(completion_ids, **_: Any) -> list[float]:
        return [overlong_penalty(len(ids), max_completion_length, overlong_cache) for ids in completion_ids]

    table = {"correct": correct, "format": format, "overlong": overlong}
    unknown = [n for n in names if n not in table]
    if unknown:
        raise ValueError(f"unknown reward(s) {unknown}; the rewards are {', '.join(REWARDS)}")
    return [table[n] for n in names]


__all__ = ["REWARDS", "CompletionDecoder", "answer_part", "correctness", "correctness_many", "format_penalty",
           "overlong_penalty", "reward_functions", "unscorable"]
