"""Retries for server requests: exponential backoff with jitter, Retry-After honoured.

The openai client's own retries are switched off (`max_retries=0` in openai_backend), so every
retry happens here, is counted by kind, and obeys one budget per request.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from distill.teachers.base import TeacherError

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


async def call_with_retries(
    fn: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    on_retry: Callable[[TeacherError, int, float], None] | None = None,
) -> tuple[T, int]:
    """Await `fn()` until it succeeds; return (result, attempts).

    Retries a `TeacherError` with `retryable=True`; raises it (with `.attempts` set) when it is
    not retryable, is fatal, or the budget is spent. `on_retry(error, attempt, wait)` sees each retry.
    """
    attempt = 0
    while True:
        attempt += 1
        try:
            return await fn(), attempt
        except TeacherError as e:
            e.attempts = attempt  # type: ignore[attr-defined]
            if e.fatal or not e.retryable or attempt > policy.max_retries:
                raise
            wait = policy.delay(attempt - 1, e.retry_after)
            if on_retry is not None:
                on_retry(e, attempt, wait)
            await asyncio.sleep(wait)
