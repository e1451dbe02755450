"""`apply_filters`: stream traces through a list of filters, in worker processes where possible.

    from distill.filters import apply_filters, FilterReport, Finished, MathCorrect
    report = FilterReport()
    clean = list(apply_filters(traces, [Finished(), MathCorrect()], workers=2, report=report))

Every trace travels as an item `[trace, dropped_by, reason, precomputed]`. A dropped item keeps flowing (its
filter name set) instead of vanishing, so order is kept, rejects are written in input order,
and `select` can count a prompt's failed samples in its pass rate. A trace is dropped by the
first filter that rejects it; later filters do not look at it.

Filters run in segments: a run of per-trace filters goes to `workers` processes in chunks (with
the per-item time limits of `distill.verify.pool`), a stateful filter (dedup, select) runs here,
in order. The per-trace part of a stateful filter's work (`precompute`: dedup's hashing and
MinHash of a 100k-character trace) runs in the workers of the segment before it, so what stays
in this process is a set lookup per trace. Workers send back only what they changed (verdict,
meta, a text a filter rewrote), not the whole trace: this process is the serial part of the
pipeline, and unpickling every long trace twice made 2 workers barely faster than 1.
With `workers=0` everything runs in this process.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from distill.filters.base import TraceFilter
from distill.filters.report import FilterReport
from distill.trace import Trace
from distill.verify.pool import chunked, imap_chunks

Item = list  # [trace, dropped_by: str | None, reason: str | None, precomputed: dict | None]
OnReject = Callable[[Trace, str, str], None]

_SLACK_PER_ITEM = 30.0
"""Seconds a trace may take in the cheap filters before its worker counts as hung."""

_WORKER_FILTERS: list[TraceFilter] = []
_WORKER_PRE: list[TraceFilter] = []


def apply_filters(
    traces: Iterable[Trace],
    filters: list[TraceFilter],
    *,
    workers: int = 0,
    report: FilterReport | None = None,
    on_reject: OnReject | None = None,
    chunk_size: int = 32,
) -> Iterator[Trace]:
    """Yield the traces that pass every filter, in input order (grouped per prompt after `select`).

    `report` counts input, kept and drops per filter and category, with lengths before and
    after; `on_reject(trace, filter_name, reason)` sees each dropped trace (run.py writes
    rejects.jsonl with it). `workers` > 0 runs the per-trace filters in that many processes,
    `chunk_size` traces per task: 32 rather than 8 cut this process's CPU by a third on real long
    traces (fewer pool round trips), which is what decides the speed-up of a second worker.
    """
    for f in filters:
        if not isinstance(f, TraceFilter):
            raise TypeError(f"apply_filters: {f!r} is not a filter (distill.filters.base.TraceFilter)")
        f.prepare()
    report = report if report is not None else FilterReport()
    report.start([f.name for f in filters])

    def source() -> Iterator[Item]:
        for trace in traces:
            report.add_input(trace)
            yield [trace, None, None, None]

    stream: Iterator[Item] = source()
    for segment, pre in _plan(filters, workers):
        if segment and segment[0].stateful:
            stream = _run_stateful(segment[0], stream)
        else:
            stream = _run_parallel(segment, stream, workers, chunk_size, pre)
    for trace, dropped_by, reason, _ in stream:
        if dropped_by is None:
            report.add_kept(trace)
            yield trace
        else:
            report.add_dropped(dropped_by, reason)
            if on_reject is not None:
                on_reject(trace, dropped_by, reason)


def _segments(filters: list[TraceFilter]) -> list[list[TraceFilter]]:
    """[[per-trace, per-trace], [stateful], [per-trace]]: maximal runs of per-trace filters."""
    out: list[list[TraceFilter]] = []
    for f in filters:
        if f.stateful or not out or out[-1][0].stateful:
            out.append([f])
        else:
            out[-1].append(f)
    return out


def _plan(filters: list[TraceFilter], workers: int) -> list[tuple[list[TraceFilter], list[TraceFilter]]]:
    """(segment, stateful filters whose `precompute` its workers run). With workers, a stateful
    filter with nothing per-trace before it gets an empty segment just for its precompute."""
    plan: list[tuple[list[TraceFilter], list[TraceFilter]]] = []
    for segment in _segments(filters):
        f = segment[0]
        if f.stateful and workers > 0 and hasattr(f, "precompute"):
            previous = plan[-1][0] if plan else []
            if not previous or previous[0].stateful:  # no per-trace segment right before it
                plan.append(([], []))
            plan[-1][1].append(f)
        plan.append((segment, []))
    return plan


def _check(filters: list[TraceFilter], item: Item) -> Item:
    if item[1] is None:
        for f in filters:
            reason = f.check(item[0])
            if reason is not None:
                item[1], item[2] = f.name, reason
                break
    return item


def _init_worker(filters: list[TraceFilter], pre: list[TraceFilter]) -> None:
    global _WORKER_FILTERS, _WORKER_PRE
    _WORKER_FILTERS, _WORKER_PRE = filters, pre


Result = tuple  # (dropped_by, reason, {changed field: value}, precomputed)


def _check_chunk(chunk: list[Trace]) -> list[Result]:
    out = []
    for trace in chunk:
        before = dict(vars(trace))
        item = _check(_WORKER_FILTERS, [trace, None, None, None])
        # Only what a filter replaced goes back (identity, not equality: comparing two 100k-char
        # strings costs what sending one does); meta is mutated in place, so it always goes.
        changed = {k: v for k, v in vars(trace).items() if v is not before.get(k)}
        changed["meta"] = trace.meta
        pre = {f.name: f.precompute(trace) for f in _WORKER_PRE} if item[1] is None and _WORKER_PRE else None
        out.append((item[1], item[2], changed, pre))
    return out


def _lost(trace: Trace, why: str) -> Result:
    return ("timeout", f"hung in the filters and its worker was killed: {why}", {}, None)


def _run_parallel(filters: list[TraceFilter], items: Iterator[Item], workers: int, chunk_size: int,
                  pre: list[TraceFilter] | None = None) -> Iterator[Item]:
    if workers <= 0:
        for item in items:
            yield _check(filters, item)
        return
    # A chunk's deadline: every item may use the math timeout plus slack for the cheap filters.
    # A filter may state its own worst case per trace (`item_deadline`), else its `timeout` counts.
    per_item = _SLACK_PER_ITEM + sum(getattr(f, "item_deadline", None) or getattr(f, "timeout", 0.0) or 0.0
                                     for f in filters)
    # Only live traces go to the workers; the items stay here and get the results back in order.
    sent: collections.deque[list[Item]] = collections.deque()

    def live_chunks() -> Iterator[list[Trace]]:
        for group in chunked(items, chunk_size):
            sent.append(group)
            yield [item[0] for item in group if item[1] is None]

    for results in imap_chunks(_check_chunk, live_chunks(), workers=workers, item_deadline=per_item,
                               on_lost=_lost, initializer=_init_worker, initargs=(filters, pre or [])):
        group = sent.popleft()
        back = iter(results)
        for item in group:
            if item[1] is None:
                item[1], item[2], changed, item[3] = next(back)
                for key, value in changed.items():
                    setattr(item[0], key, value)
            yield item


def _run_stateful(f: Any, items: Iterator[Item]) -> Iterator[Item]:
    if hasattr(f, "stream"):
        yield from f.stream(items)
        return
    for item in items:
        if item[1] is None:
            pre = (item[3] or {}).get(f.name)
            reason = f.check(item[0], pre) if pre is not None else f.check(item[0])
            if reason is not None:
                item[1], item[2] = f.name, reason
        yield item
