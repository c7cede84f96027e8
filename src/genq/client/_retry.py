"""When to retry a request and how long to wait first (pure functions, no I/O).

Only requests that are safe to repeat are retried: idempotent methods, and a POST
that carries an `Idempotency-Key`. A request that never reached the server (the
connection could not be opened) is safe to repeat whatever its method.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable, Mapping

import httpx

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
INITIAL_BACKOFF_S = 0.5
MAX_BACKOFF_S = 8.0
# A server asking for a longer pause than this is better answered by raising
# (RateLimitError.retry_after tells the caller) than by a silent long sleep.
MAX_RETRY_AFTER_S = 60.0


def is_replayable(request: httpx.Request) -> bool:
    """May this request be sent again after a 429, a 5xx or a lost response?"""
    return request.method in IDEMPOTENT_METHODS or "idempotency-key" in request.headers


def is_retryable_status(status_code: int) -> bool:
    return status_code == 429 or status_code >= 500


def never_sent(exc: httpx.TransportError) -> bool:
    """True when the request cannot have reached the server."""
    return isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)


def parse_retry_after(
    headers: Mapping[str, str], now: Callable[[], float] = time.time
) -> float | None:
    """`Retry-After` in seconds (delta-seconds or an HTTP date), or None."""
    value = headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now())


def backoff(attempt: int, jitter: float) -> float:
    """Exponential backoff for retry number `attempt` (0-based); `jitter` in [0, 1)
    takes up to a quarter off so that many clients do not retry in step."""
    delay = min(MAX_BACKOFF_S, INITIAL_BACKOFF_S * 2.0**attempt)
    return delay * (1.0 - 0.25 * jitter)


def next_retry(
    request: httpx.Request,
    outcome: httpx.Response | httpx.TransportError,
    *,
    attempt: int,
    max_retries: int,
    jitter: float,
) -> float | None:
    """Seconds to wait before retry number `attempt` (0-based) of a failed request, or
    None to give up. A `Retry-After` longer than `MAX_RETRY_AFTER_S` gives up too."""
    if attempt >= max_retries:
        return None
    if isinstance(outcome, httpx.TransportError):
        return backoff(attempt, jitter) if never_sent(outcome) or is_replayable(request) else None
    if not (is_retryable_status(outcome.status_code) and is_replayable(request)):
        return None
    advised = parse_retry_after(outcome.headers)
    if advised is None:
        return backoff(attempt, jitter)
    return advised if advised <= MAX_RETRY_AFTER_S else None
