"""The filter contract shared by every filter in `distill.filters`.

A filter is a small dataclass with `check(trace) -> str | None`: None keeps the trace, a string
drops it and is the readable reason written to rejects.jsonl. `__call__` returns a bool, so a
filter also works with the built-in `filter()`. Its `name` is the label in reports and YAML.

Reasons start with a short category and a colon ("wrong: '7' != gold '5'"); the report counts
drops per filter and per category.

Two optional hooks, used by `apply_filters`:
- `prepare()` runs once before any trace (load a tokenizer, build a benchmark index), so a bad
  config fails before a 100k-trace file is half read, and worker processes inherit the result.
- `stateful = True` marks a filter that remembers earlier traces (dedup) or needs several
  (select). Such filters run in the main process, in input order; the others may run in
  worker processes, so their `check` must depend on the trace alone.
"""

from __future__ import annotations

from typing import ClassVar

from distill.trace import Trace


class TraceFilter:
    name: ClassVar[str] = "filter"
    stateful: ClassVar[bool] = False

    def check(self, trace: Trace) -> str | None:
        """None to keep; otherwise why the trace is dropped."""
        raise NotImplementedError

    def prepare(self) -> None:
        """Load what `check` needs; called once before the first trace."""

    def __call__(self, trace: Trace) -> bool:
        return self.check(trace) is None
