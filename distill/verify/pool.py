"""Ordered chunked process pool with per-item time limits, shared by `verify.score_many` and the filters.

Two layers of time limits, because answer checking can hang in two ways:

- Python-level hangs (sympy simplifying `2^{10^{10}}` for a minute) are cut by `alarm_after`, a
  SIGALRM timer around one item. Signals are delivered only to a process's main thread, which is
  where pebble runs tasks in its worker processes (math-verify's own `signal.alarm` timeouts raise
  when called from a thread: that is why this is processes, not threads).
- C-level hangs (a huge integer power inside gmpy/CPython) never return to the interpreter, so no
  signal handler runs. pebble kills the whole worker when a chunk overruns its deadline; the chunk
  is then redone one item per task, so only the item that hangs is lost and reported as a timeout.

pebble is used instead of `concurrent.futures` because the standard pool cannot kill one stuck
worker (it can only break the whole executor).
"""

from __future__ import annotations

import collections
import contextlib
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class ItemTimeout(BaseException):
    """Raised inside an item that ran past its limit.

    A BaseException on purpose: math-verify and sympy wrap their work in `except Exception`,
    which would swallow an ordinary exception and turn a timeout into 'unparsable' or 'wrong'.
    """


@contextlib.contextmanager
def alarm_after(seconds: float | None) -> Iterator[None]:
    """Raise `ItemTimeout` in this block after `seconds` (main thread only; elsewhere no limit)."""
    if not seconds or seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum: int, frame: Any) -> None:
        raise ItemTimeout(f"ran past {seconds:g}s")

    previous = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def chunked(items: Iterable[T], size: int) -> Iterator[list[T]]:
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def imap_chunks(
    fn: Callable[[list[T]], list[R]],
    chunks: Iterable[list[T]],
    *,
    workers: int,
    item_deadline: float,
    on_lost: Callable[[T, str], R],
    initializer: Callable[..., None] | None = None,
    initargs: tuple = (),
    grace: float = 5.0,
) -> Iterator[list[R]]:
    """Yield `fn(chunk)` for each chunk, in input order, computed by `workers` processes.

    `fn` must be a module-level function (it runs in another process). At most `2 * workers`
    chunks are in flight, so a long input streams with bounded memory. A chunk whose worker is
    killed (it ran past `item_deadline * len(chunk) + grace` seconds) or dies is redone one item at a
    time; an item that is lost again becomes `on_lost(item, why)`.
    With `workers == 0` everything runs inline in this process (the initializer too).
    """
    if workers <= 0:
        if initializer is not None:
            initializer(*initargs)
        for chunk in chunks:
            yield fn(chunk)
        return

    from pebble import ProcessPool

    pool = ProcessPool(max_workers=workers, initializer=initializer, initargs=initargs)
    pending: collections.deque = collections.deque()
    try:
        for chunk in chunks:
            pending.append((chunk, pool.schedule(fn, args=(chunk,), timeout=item_deadline * len(chunk) + grace)))
            while len(pending) >= 2 * workers:
                yield _collect(pool, fn, *pending.popleft(), item_deadline + grace, on_lost)
        while pending:
            yield _collect(pool, fn, *pending.popleft(), item_deadline + grace, on_lost)
    finally:
        for _, future in pending:
            future.cancel()
        pool.stop()
        # join() waits for pebble's manager thread, which polls every 0.1 s, and only then
        # stops the workers: up to 0.1 s after the last result, a tenth of a 2-second filter
        # run. Every result is in, so the caller goes on and the join finishes behind it.
        threading.Thread(target=pool.join, name="distill-pool-join", daemon=True).start()


def _collect(pool: Any, fn: Callable, chunk: list, future: Any, deadline: float, on_lost: Callable) -> list:
    from pebble import ProcessExpired

    try:
        return future.result()
    except (FutureTimeout, ProcessExpired):
        pass
    # Redo the chunk one item per task so only the item that hangs (or crashes the worker) is lost.
    singles = [pool.schedule(fn, args=([item],), timeout=deadline) for item in chunk]
    out = []
    for item, single in zip(chunk, singles):
        try:
            out.extend(single.result())
        except FutureTimeout:
            out.append(on_lost(item, f"killed after {deadline:g}s (hung outside Python)"))
        except ProcessExpired as e:
            out.append(on_lost(item, f"worker died ({e})"))
    return out
