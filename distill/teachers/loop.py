"""The request loop of every server-backed teacher: requests in flight, retries, what a failure means.

`sample.py` (traces) and `OpenAITeacher.generate` (eval) both send their requests through
`run_requests`, so both keep the same number in flight, retry the same way and stop on the same
errors. The backend only sends one request (`acomplete`) and classifies what went wrong as a
`TeacherError`; this module decides what to do about it:

    retryable (429, 5xx, timeout, dropped connection, empty content): wait, try again, up to
        `max_retries` times, honouring Retry-After; then the request has failed
    fatal (refused key, unknown model): stop everything; no other request can succeed
    otherwise (400, 413: this prompt): the request has failed, the others go on

The openai client's own retries are off (`max_retries=0` in openai_backend), so every retry
happens here, is counted by kind, and obeys one budget per request.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from itertools import islice
from typing import Any, TypeVar

from distill.teachers.base import Completion, RequestTeacher, SamplingParams, TeacherError

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry one request."""

    max_retries: int = 8
    """Retries after the first attempt; the request fails after 1 + max_retries attempts."""
    backoff: float = 1.0
    """Base wait in seconds; attempt k waits between backoff*2^k/2 and backoff*2^k."""
    max_backoff: float = 60.0
    max_retry_after: float = 600.0
    """Cap on a server's Retry-After, so a bogus header cannot park a worker for a day."""

    def delay(self, retry: int, retry_after: float | None = None, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number `retry` (0-based)."""
        rng = rng or random
        if retry_after is not None and retry_after >= 0:
            # Wait what the server asked, plus up to 10%: a burst of 429s must not return at one instant.
            wait = min(retry_after, self.max_retry_after)
            return wait + rng.uniform(0, 0.1 * wait)
        # "Equal jitter": half fixed, half random, so waits grow but workers spread out.
        cap = min(self.max_backoff, self.backoff * 2 ** min(retry, 30))
        return cap / 2 + rng.uniform(0, cap / 2)


def parse_retry_after(headers: object) -> float | None:
    """Seconds from `retry-after-ms` or `Retry-After` (seconds or an HTTP date); None if absent or bad."""
    get = getattr(headers, "get", None)
    if get is None:
        return None
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        value = get(name)
        if value is None:
            continue
        try:
            seconds = float(value) * scale
        except ValueError:
            parsed = email.utils.parsedate_tz(value) if name == "retry-after" else None
            if parsed is None:
                continue
            seconds = email.utils.mktime_tz(parsed) - time.time()
        if not math.isnan(seconds) and seconds >= 0:
            return seconds
    return None


@dataclass(frozen=True)
class Request:
    """One completion to ask for (`params.n` is 1), and the caller's handle to match the answer to."""

    messages: list[dict[str, str]]
    params: SamplingParams
    tag: Any = None


Finish = Callable[[Request, "Completion | TeacherError", int, float], None]
"""Called once per request: (request, completion or the final error, attempts, seconds since the first)."""


async def run_requests(teacher: RequestTeacher, work: Iterable[T], requests: Callable[[T], Iterable[Request]],
                       finish: Finish, *, concurrency: int, policy: RetryPolicy,
                       on_retry: Callable[[TeacherError, int, float], None] | None = None) -> None:
    """Send every request of `work`, `concurrency` at a time, each with its own retries.

    `work` is read `64` items at a time off the event loop (a prompt stream may block on the
    network); `requests(item)` turns an item into its requests on the loop, so a caller can count
    items there. Every request ends in exactly one `finish` call. A fatal error is raised once the
    requests in flight are cancelled; so is anything `finish` raises (a run that decides to stop).
    The teacher's connections are closed on the way out.
    """
    queue: asyncio.Queue = asyncio.Queue(maxsize=concurrency)
    it: Iterator[T] = iter(work)

    async def produce() -> None:
        while chunk := await asyncio.to_thread(lambda: list(islice(it, 64))):
            for item in chunk:
                for request in requests(item):
                    await queue.put(request)
        for _ in range(concurrency):
            await queue.put(None)

    async def worker() -> None:
        while (request := await queue.get()) is not None:
            start = time.monotonic()
            attempt = 0
            while True:
                attempt += 1
                try:
                    result: Completion | TeacherError = await teacher.acomplete(request.messages, request.params)
                except TeacherError as e:
                    if e.fatal:
                        raise
                    if e.retryable and attempt <= policy.max_retries:
                        wait = policy.delay(attempt - 1, e.retry_after)
                        if on_retry is not None:
                            on_retry(e, attempt, wait)
                        await asyncio.sleep(wait)
                        continue
                    result = e
                break
            finish(request, result, attempt, time.monotonic() - start)

    tasks = [asyncio.ensure_future(produce())] + [asyncio.ensure_future(worker()) for _ in range(concurrency)]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await teacher.aclose()


def generate(teacher: RequestTeacher, prompts: list[list[dict[str, str]]], params: SamplingParams,
             concurrency: int, policy: RetryPolicy) -> list[list[Completion]]:
    """The Teacher protocol's `generate` for a request backend: `params.n` completions per prompt.

    With a seed, sample k gets seed + k so the n samples differ. A sample that still fails after
    the retries is a Completion with finish_reason 'error' and raw['error'] (one bad prompt does
    not end an evaluation); a fatal error is raised.
    """
    out: list[list[Completion | None]] = [[None] * params.n for _ in prompts]

    def each(i: int) -> Iterator[Request]:
        for k in range(params.n):
            seed = None if params.seed is None else params.seed + k
            yield Request(prompts[i], replace(params, n=1, seed=seed), (i, k))

    def finish(request: Request, result: Completion | TeacherError, attempts: int, seconds: float) -> None:
        i, k = request.tag
        out[i][k] = result if isinstance(result, Completion) else Completion(
            reasoning="", answer="", finish_reason="error", raw={"error": str(result), "kind": result.kind})

    asyncio.run(run_requests(teacher, range(len(prompts)), each, finish, concurrency=concurrency, policy=policy))
    return out  # type: ignore[return-value]  # every slot was filled by `finish`
