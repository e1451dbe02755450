"""The filter contract shared by every filter in `distill.filters`: annotate, then judge.

A filter is a small dataclass that looks at a trace in two steps:

- `annotate(trace) -> Annotation`: what the filter learns about the trace, returned as data and
  changing nothing: `{"meta": {...}}` entries to merge into `trace.meta` (math_correct's verdict,
  code_correct's test results) and field replacements (think_format splitting a raw completion
  into `reasoning` and `answer`). The expensive work (math-verify, the code sandbox) lives here.
  Default: nothing to add.
- `judge(trace) -> str | None`: reads only. None keeps the trace; a string drops it and is the
  readable reason written to rejects.jsonl. Reasons start with a short category and a colon
  ("wrong: '7' != gold '5'"); the report counts drops per filter and per category.

`apply_filters` runs each filter's annotate, applies the annotation (a worker process sends it
back as data, so nothing is compared or copied wholesale), then its judge. `check(trace)` does
the same for one trace by hand, and `__call__` returns a bool so a filter also works with the
built-in `filter()`. Its `name` is the label in reports and YAML.

Every other hook the pipeline calls is declared here with its default:
- `prepare()` runs once before any trace (load a tokenizer, build a benchmark index), so a bad
  config fails before a 100k-trace file is half read, and worker processes inherit the result.
- `stateful = True` marks a filter that remembers earlier traces (dedup) or decides over several
  (select). Such filters run in the main process, in input order, through `stream(items)`; the
  others may run in worker processes, so their annotate and judge depend on the trace alone.
- `precompute(trace)`: the per-trace part of a stateful filter's work (dedup's hashing), which the
  workers of the segment before it run; `judge_with(trace, pre)` then judges with its result.
- `deadline()`: seconds one trace may take in this filter (a worker past it counts as hung).
- `skipped`: what `prepare` could not load and left out (decontaminate's benchmarks), for the report.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar

from distill.trace import Trace

Annotation = dict[str, Any]
"""{"meta": {key: value}} merged into trace.meta, any other key a Trace field replaced."""


def apply_annotation(trace: Trace, annotation: Annotation) -> None:
    for key, value in annotation.items():
        if key == "meta":
            trace.meta.update(value)
        else:
            setattr(trace, key, value)


def merge_annotations(first: Annotation, then: Annotation) -> Annotation:
    """One annotation with the effect of applying `first`, then `then`."""
    out = {**first, **{k: v for k, v in then.items() if k != "meta"}}
    if "meta" in first or "meta" in then:
        out["meta"] = {**first.get("meta", {}), **then.get("meta", {})}
    return out


@dataclass
class Item:
    """A trace on its way through `apply_filters`. A dropped item keeps flowing (so order is kept
    and select counts a prompt's failed samples), with the name of the filter that dropped it."""

    trace: Trace
    dropped_by: str | None = None
    reason: str | None = None
    pre: dict[str, Any] | None = None
    """Stateful filter name -> what its `precompute` returned for this trace (computed in a worker)."""

    @property
    def alive(self) -> bool:
        return self.dropped_by is None

    def drop(self, name: str, reason: str) -> None:
        self.dropped_by, self.reason = name, reason


class TraceFilter:
    name: ClassVar[str] = "filter"
    stateful: ClassVar[bool] = False
    skipped: Mapping[str, str] = MappingProxyType({})

    def prepare(self) -> None:
        """Load what annotate and judge need; called once before the first trace."""

    def annotate(self, trace: Trace) -> Annotation:
        """What this filter learns about `trace`, as data (see the module doc); must not change it."""
        return {}

    def judge(self, trace: Trace) -> str | None:
        """None to keep; otherwise why the trace is dropped. Reads the trace (and its annotations) only."""
        raise NotImplementedError

    def check(self, trace: Trace) -> str | None:
        """One trace by hand: annotate it (applied to `trace`), then judge it."""
        apply_annotation(trace, self.annotate(trace))
        return self.judge(trace)

    def __call__(self, trace: Trace) -> bool:
        return self.check(trace) is None

    def precompute(self, trace: Trace) -> Any:
        """Stateful filters: the per-trace part of the work, run in worker processes; None: nothing."""
        return None

    def judge_with(self, trace: Trace, pre: Any) -> str | None:
        """Stateful filters: judge with what `precompute` returned (None when it did not run)."""
        return self.judge(trace)

    def stream(self, items: Iterator[Item]) -> Iterator[Item]:
        """Stateful filters, in the main process and input order: judge each live item."""
        for item in items:
            if item.alive:
                apply_annotation(item.trace, self.annotate(item.trace))
                reason = self.judge_with(item.trace, (item.pre or {}).get(self.name))
                if reason is not None:
                    item.drop(self.name, reason)
            yield item

    def deadline(self) -> float:
        """Seconds one trace may take in this filter; filters with a per-item `timeout` use it."""
        return float(getattr(self, "timeout", None) or 0.0)

    @property
    def has_precompute(self) -> bool:
        return type(self).precompute is not TraceFilter.precompute
