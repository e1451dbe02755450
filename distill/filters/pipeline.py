"""`apply_filters`: stream traces through a list of filters, in worker processes where possible.

    from distill.filters import apply_filters, FilterReport, Finished, MathCorrect
    report = FilterReport()
    clean = list(apply_filters(traces, [Finished(), MathCorrect()], workers=2, report=report))

Every trace travels as an `Item` (distill.filters.base). A dropped item keeps flowing (its
filter name set) instead of vanishing, so order is kept, rejects are written in input order,
and `select` can count a prompt's failed samples in its pass rate. A trace is dropped by the
first filter that rejects it; later filters do not look at it.

Filters run in segments: a run of per-trace filters goes to `workers` processes in chunks (with
the per-item time limits of `distill.verify.pool`), a stateful filter (dedup, select) runs here,
in order. The per-trace part of a stateful filter's work (`precompute`: dedup's hashing and
MinHash of a 100k-character trace) runs in the workers of the segment before it, so what stays
in this process is a set lookup per trace. Each filter annotates, then judges (see base.py);
workers send back the verdict and the annotations, not the trace: this process is the serial part
of the pipeline, and unpickling every long trace twice made 2 workers barely faster than 1.
With `workers=0` everything runs in this process.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Iterator


from distill.filters.base import Annotation, Item, TraceFilter, apply_annotation, merge_annotations
from distill.filters.report import FilterReport
from distill.trace import Trace
from distill.verify.pool import chunked, imap_chunks

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
            yield Item(trace)

    stream: Iterator[Item] = source()
    for segment, pre in _plan(filters, workers):
        if segment and segment[0].stateful:
            stream = _run_stateful(segment[0], stream)
        else:
            stream = _run_parallel(segment, stream, workers, chunk_size, pre)
    for item in stream:
        if item.alive:
            report.add_kept(item.trace)
            yield item.trace
        else:
            report.add_dropped(item.dropped_by, item.reason)
            if on_reject is not None:
                on_reject(item.trace, item.dropped_by, item.reason)


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
        if f.stateful and workers > 0 and f.has_precompute:
            previous = plan[-1][0] if plan else []
            if not previous or previous[0].stateful:  # no per-trace segment right before it
                plan.append(([], []))
            plan[-1][1].append(f)
        plan.append((segment, []))
    return plan


def _judge(filters: list[TraceFilter], trace: Trace) -> tuple[str | None, str | None, Annotation]:
    """(dropped_by, reason, the annotations applied to `trace`) after each filter annotates, then judges."""
    applied: Annotation = {}
    for f in filters:
        annotation = f.annotate(trace)
        if annotation:
            apply_annotation(trace, annotation)
            applied = merge_annotations(applied, annotation)
        reason = f.judge(trace)
        if reason is not None:
            return f.name, reason, applied
    return None, None, applied


def _init_worker(filters: list[TraceFilter], pre: list[TraceFilter]) -> None:
    global _WORKER_FILTERS, _WORKER_PRE
    _WORKER_FILTERS, _WORKER_PRE = filters, pre


Result = tuple  # (dropped_by, reason, annotation, {stateful filter: precomputed} or None)


def _check_chunk(chunk: list[Trace]) -> list[Result]:
    out = []
    for trace in chunk:
        dropped_by, reason, annotation = _judge(_WORKER_FILTERS, trace)
        pre = {f.name: f.precompute(trace) for f in _WORKER_PRE} if dropped_by is None and _WORKER_PRE else None
        out.append((dropped_by, reason, annotation, pre))
    return out


def _lost(trace: Trace, why: str) -> Result:
    return ("timeout", f"hung in the filters and its worker was killed: {why}", {}, None)


def _run_parallel(filters: list[TraceFilter], items: Iterator[Item], workers: int, chunk_size: int,
                  pre: list[TraceFilter] | None = None) -> Iterator[Item]:
    if workers <= 0:
        for item in items:
            if item.alive:
                dropped_by, reason, _ = _judge(filters, item.trace)
                if dropped_by is not None:
                    item.drop(dropped_by, reason)
            yield item
        return
    # A chunk's deadline: every item may use the math timeout plus slack for the cheap filters.
    per_item = _SLACK_PER_ITEM + sum(f.deadline() for f in filters)
    # Only live traces go to the workers; the items stay here and get the results back in order.
    sent: collections.deque[list[Item]] = collections.deque()

    def live_chunks() -> Iterator[list[Trace]]:
        for group in chunked(items, chunk_size):
            sent.append(group)
            yield [item.trace for item in group if item.alive]

    for results in imap_chunks(_check_chunk, live_chunks(), workers=workers, item_deadline=per_item,
                               on_lost=_lost, initializer=_init_worker, initargs=(filters, pre or [])):
        group = sent.popleft()
        back = iter(results)
        for item in group:
            if item.alive:
                dropped_by, reason, annotation, item.pre = next(back)
                apply_annotation(item.trace, annotation)
                if dropped_by is not None:
                    item.drop(dropped_by, reason)
            yield item


def _run_stateful(f: TraceFilter, items: Iterator[Item]) -> Iterator[Item]:
    yield from f.stream(items)
