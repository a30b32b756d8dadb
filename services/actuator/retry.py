"""Retries with exponential backoff and jitter, for transient backend errors only."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from services.actuator.backends.base import BackendError
from services.actuator.config import RetryConfig

T = TypeVar("T")

Sleep = Callable[[float], Awaitable[None]]
OnRetry = Callable[[int, BackendError, float], None]


def backoff_delay(attempt: int, policy: RetryConfig, rng: random.Random) -> float:
    """Delay before retry number ``attempt + 1``: "equal jitter" over an exponentially growing ceiling.

    The ceiling is ``min(max_delay, base_delay * 2**attempt)``; the delay is uniform in
    ``[ceiling / 2, ceiling]``, so retries spread out (no thundering herd) yet still back off.
    """
    ceiling = min(policy.max_delay_seconds, policy.base_delay_seconds * (2.0**attempt))
    return ceiling / 2 + rng.uniform(0.0, ceiling / 2)


async def call_with_retry(
    call: Callable[[], Awaitable[T]],
    policy: RetryConfig,
    *,
    rng: random.Random,
    sleep: Sleep = asyncio.sleep,
    on_retry: OnRetry | None = None,
) -> T:
    """Run ``call``; retry a retryable :class:`BackendError` up to ``policy.attempts`` attempts in all.

    A permanent error, or the last transient one, propagates unchanged.
    """
    attempt = 0
    while True:
        try:
            return await call()
        except BackendError as exc:
            if not exc.retryable or attempt + 1 >= policy.attempts:
                raise
            delay = backoff_delay(attempt, policy, rng)
            if exc.retry_after is not None:
                delay = min(max(delay, exc.retry_after), policy.max_delay_seconds)
            if on_retry is not None:
                on_retry(attempt + 1, exc, delay)
            await sleep(delay)
            attempt += 1
