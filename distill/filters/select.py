"""Rejection sampling per prompt: which correct samples to keep, and a pass-rate window."""

from __future__ import annotations

import collections
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from distill.filters.base import Item, TraceFilter, apply_annotation
from distill.trace import Trace


@dataclass
class Select(TraceFilter):
    """Per prompt: keep all, the first `k` or the `k` shortest surviving samples; optionally only
    prompts whose pass rate lies in `pass_rate` = [lo, hi].

    The pass rate of a prompt is the share of its samples with `meta['correct']` True, over all
    of its samples in the input, including those earlier filters dropped (a truncated sample
    is a failed attempt). So it needs `math_correct` (or `code_correct`) earlier in the recipe;
    a surviving sample without `meta['correct']` raises. A window such as [0.1, 0.9] keeps
    problems the teacher solves sometimes but not always: informative ones (open-r1's pass-rate
    filtering). Kept traces get `meta['pass_rate']` and `meta['n_samples']`.

    How it streams: `apply_filters` hands it every sample, dropped ones included, in file order.
    It holds the samples of up to `window` prompts at once; a prompt's group is complete when it
    has `n` samples (if `n` is set) or when it is the oldest of more than `window` open groups,
    or at the end of the input. The sampler writes the samples of a prompt close together, so a
    small window suffices; a prompt seen again after its group was closed is an error naming the
    prompt (sort the file by prompt_id, or raise `window`). Memory: `window` groups of traces.
    Stateful and needs whole groups, so it goes last and runs in the main process; it has no
    per-trace `check`.
    """

    name: ClassVar[str] = "select"
    stateful: ClassVar[bool] = True
    keep: Literal["all", "first", "shortest"] = "all"
    k: int = 1
    pass_rate: tuple[float, float] | None = None
    n: int | None = None
    """Samples per prompt, when known: a group is complete (and leaves memory) as soon as it has n."""
    window: int = 256

    _closed: set[str] = field(default_factory=set, init=False, repr=False)

    def prepare(self) -> None:
        if self.k < 1:
            raise ValueError(f"select: k must be >= 1, got {self.k}")
        if self.pass_rate is not None:
            lo, hi = self.pass_rate
            if not 0 <= lo <= hi <= 1:
                raise ValueError(f"select: pass_rate must be [lo, hi] with 0 <= lo <= hi <= 1, got {list(self.pass_rate)}")

    def judge(self, trace: Trace) -> str | None:
        raise TypeError("select decides per prompt, not per trace: use it through apply_filters(...)")

    def stream(self, items: Iterator[Item]) -> Iterator[Item]:
        """Yields the items back, grouped per prompt, with the selections applied."""
        groups: collections.OrderedDict[str, list] = collections.OrderedDict()
        for item in items:
            pid = item.trace.prompt_id
            if pid in self._closed:
                raise ValueError(
                    f"select: samples of prompt {pid!r} are not together in the input: it came back after "
                    f"its group was closed (more than window={self.window} other prompts in between). "
                    "Sort the traces by prompt_id or raise select.window."
                )
            groups.setdefault(pid, []).append(item)
            if self.n is not None and len(groups[pid]) >= self.n:
                yield from self._decide(pid, groups.pop(pid))
            elif len(groups) > self.window:
                old, group = groups.popitem(last=False)
                yield from self._decide(old, group)
        while groups:
            old, group = groups.popitem(last=False)
            yield from self._decide(old, group)

    def _decide(self, pid: str, group: list) -> list:
        self._closed.add(pid)
        alive = [item for item in group if item.alive]
        for item in alive:
            if "correct" not in item.trace.meta:
                raise ValueError(f"select: trace {item.trace.id} has no meta['correct']; put math_correct "
                                 "(or code_correct) before select in the recipe")
        n_correct = sum(1 for item in group if item.trace.meta.get("correct") is True)
        rate = n_correct / len(group)
        if self.pass_rate is not None:
            lo, hi = self.pass_rate
            if not lo <= rate <= hi:
                for item in alive:
                    item.drop(self.name,
                              f"pass rate out of window: {n_correct}/{len(group)} = {rate:.2f} not in [{lo:g}, {hi:g}]")
                return group
        ranked = alive
        if self.keep == "first":
            ranked = sorted(alive, key=lambda item: item.trace.sample_index)
        elif self.keep == "shortest":
            ranked = sorted(alive, key=lambda item: _length(item.trace))
        chosen = ranked if self.keep == "all" else ranked[:self.k]
        chosen_ids = {id(item) for item in chosen}
        for item in alive:
            if id(item) in chosen_ids:
                apply_annotation(item.trace, {"meta": {"pass_rate": rate, "n_samples": len(group)}})
            else:
                item.drop(self.name, f"not selected: keep={self.keep} k={self.k} of {len(alive)} correct samples")
        return group


def _length(trace: Trace) -> int:
    return trace.completion_tokens if trace.completion_tokens is not None else len(trace.reasoning) + len(trace.answer)
