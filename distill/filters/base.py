"""The filter contract shared by every filter in `distill.filters`.

A filter is a small dataclass with `check(trace) -> str | None`: None keeps the trace, a string
drops it and is the readable reason written to rejects.jsonl. `__call__` returns a bool, so a
filter also works with the built-in `filter()`. Its `name` is the label in reports and YAML.
"""

from __future__ import annotations

from typing import ClassVar

from distill.trace import Trace


class TraceFilter:
    name: ClassVar[str] = "filter"

    def check(self, trace: Trace) -> str | None:
        """None to keep; otherwise why the trace is dropped."""
        raise NotImplementedError

    def __call__(self, trace: Trace) -> bool:
        return self.check(trace) is None
