"""Per-provider limits: a requests-per-minute rate limiter, a cool-down after repeated failures,
and the retry policy (exponential backoff with jitter, honouring Retry-After).

Time comes from an injected clock and sleep, so tests are fast and exact. Standard library only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from random import Random

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class RateLimiter:
    """A token bucket: at most `per_minute` requests a minute, `burst` of them back to back.

    `per_minute=0` means no limit. Waiters are served in arrival order.
    """

    def __init__(
        self,
        per_minute: float = 0.0,
        *,
        burst: int = 1,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._rate = per_minute / 60.0
        self._capacity = float(max(1, burst))
        self._tokens = self._capacity
        self._clock = clock
        self._sleep = sleep
        self._last = clock()
        self._lock = asyncio.Lock()

    async def acquire(self) -> float:
        """Wait for a free slot; returns how many seconds it waited."""
        if self._rate <= 0:
            return 0.0
        waited = 0.0
        async with self._lock:
            while True:
                now = self._clock()
                self._tokens = min(self._capacity, self._tokens + (now - self._last) * self._rate)
                self._last = now
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                    return waited
                wait = (1.0 - self._tokens) / self._rate
                await self._sleep(wait)
                waited += wait


class Health:
    """Consecutive failures of one provider; after `failures_before_cooldown` of them in a row
    the provider is skipped for `cooldown_s`. After the cool-down one call is let through: a
    success closes the count, another failure starts a new cool-down."""

    def __init__(
        self,
        *,
        failures_before_cooldown: int = 3,
        cooldown_s: float = 300.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self.failures_before_cooldown = failures_before_cooldown
        self.cooldown_s = cooldown_s
        self._clock = clock
        self.failures = 0
        self._until = 0.0

    def cooling_for(self) -> float:
        """Seconds of cool-down left; 0 when the provider may be called."""
        return max(0.0, self._until - self._clock())

    def succeeded(self) -> None:
        self.failures = 0
        self._until = 0.0

    def failed(self) -> bool:
        """Count a failure; True when it starts a cool-down."""
        self.failures += 1
        if self.failures >= self.failures_before_cooldown and self.cooldown_s > 0:
            self._until = self._clock() + self.cooldown_s
            return True
        return False


@dataclass(frozen=True)
class RetryPolicy:
    """How often one provider is tried for one call, and how long to wait in between."""

    attempts: int = 3
    backoff_s: float = 1.0
    backoff_max_s: float = 30.0
    #: a fraction of the delay added at random, so callers do not retry in step
    jitter: float = 0.5
    #: a Retry-After longer than this is not waited for: the chain moves to the next provider
    retry_after_max_s: float = 60.0

    def delay(self, attempt: int, retry_after: float | None, rng: Random) -> float | None:
        """Seconds to wait before attempt `attempt + 1`, or None to give up on this provider."""
        backoff = min(self.backoff_max_s, self.backoff_s * 2.0 ** (attempt - 1))
        backoff += backoff * self.jitter * rng.random()
        if retry_after is None:
            return backoff
        if retry_after > self.retry_after_max_s:
            return None
        return max(retry_after, min(backoff, self.retry_after_max_s))
