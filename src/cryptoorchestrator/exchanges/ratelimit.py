"""One request budget per (exchange, credential), shared by every caller in the process.

Why one budget: a venue counts requests per IP and per API key, not per caller. Two bots and a
market-data poller on the same key spend one allowance, so they must draw from one bucket, and
when the venue answers 429 (slow down) or 418 (banned) everyone must stop, not just the caller
that was told. The budget is therefore:

* an async token bucket refilled at the venue's rate (ccxt's ``rateLimit`` in ms per request,
  or a configured rate), with a burst of one second's worth of requests;
* a penalty box: after a 429/418 the budget blocks all callers until ``Retry-After`` elapses,
  or, when the venue gives none, for an exponential back-off with jitter, capped;
* injectable time (``clock.monotonic()`` and an async ``sleep``) so tests run on fake time.

``retry_async`` is the retry helper. It retries only what is safe to retry: ``ExchangeTimeout``
means "the outcome is unknown", and a state-changing call (order submission) whose outcome is
unknown must be resolved by looking the order up, never by sending it again.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Protocol, TypeVar

from cryptoorchestrator.core.clock import LiveClock
from cryptoorchestrator.core.errors import (
    CryptoOrchestratorError,
    ExchangeRateLimited,
    ExchangeTimeout,
    ExchangeUnavailable,
)

T = TypeVar("T")
SleepFunction = Callable[[float], Awaitable[None]]

#: Token arithmetic on floats: a bucket this close to the weight counts as full enough.
_EPSILON = 1e-6
#: Shortest wait: with epoch-sized clock values (1.7e9 s) a float cannot hold a step below
#: ~2.4e-7 s, so a shorter sleep might not move the clock and the wait would never end.
_MIN_DELAY = 1e-5


class MonotonicClock(Protocol):
    """The part of ``core.clock.Clock`` the budget needs (``SimClock`` and ``LiveClock`` fit)."""

    def monotonic(self) -> float: ...


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """Exponential back-off: ``base * multiplier**(attempt-1)``, capped, with +/- ``jitter``."""

    base_seconds: float = 0.5
    max_seconds: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.2

    def delay(self, attempt: int, rng: random.Random) -> float:
        """The wait before retry number ``attempt`` (1-based), never above ``max_seconds``."""
        raw = min(self.max_seconds, self.base_seconds * self.multiplier ** max(0, attempt - 1))
        spread = 1.0 + self.jitter * (2.0 * rng.random() - 1.0)
        return max(0.0, min(self.max_seconds, raw * spread))


@dataclass(frozen=True, slots=True)
class PenaltyPolicy:
    """How long to block when the venue throttles without saying for how long."""

    rate_limited: BackoffPolicy = field(
        default_factory=lambda: BackoffPolicy(base_seconds=1.0, max_seconds=120.0)
    )
    #: HTTP 418 means the IP is banned already: back off much harder.
    banned: BackoffPolicy = field(default_factory=lambda: BackoffPolicy(base_seconds=60.0, max_seconds=900.0))


@dataclass(frozen=True, slots=True)
class BudgetKey:
    """Identifies one allowance at one venue: the exchange id and a credential fingerprint."""

    exchange_id: str
    credential: str


def credential_fingerprint(api_key: str | None) -> str:
    """A short, non-reversible name for an API key (``"public"`` without one).

    The key itself is never stored in the registry nor logged; twelve hex digits of SHA-256
    tell keys apart without revealing them.
    """
    if not api_key:
        return "public"
    return "key-" + hashlib.sha256(api_key.encode("utf-8")).hexdigest()[:12]


class RateBudget:
    """An async token bucket with a penalty box; safe to share between tasks of one loop."""

    def __init__(
        self,
        *,
        key: BudgetKey,
        requests_per_second: float,
        burst: float | None = None,
        clock: MonotonicClock | None = None,
        sleep: SleepFunction | None = None,
        penalty: PenaltyPolicy | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if requests_per_second <= 0:
            raise ValueError("requests_per_second must be positive")
        self.key = key
        self.rate = float(requests_per_second)
        self.capacity = float(burst) if burst is not None else max(1.0, self.rate)
        self._clock: MonotonicClock = clock or LiveClock()
        self._sleep: SleepFunction = sleep or asyncio.sleep
        self._penalty = penalty or PenaltyPolicy()
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._tokens = self.capacity
        self._updated = self._clock.monotonic()
        self._blocked_until = float("-inf")
        self._strikes = 0
        self._lock = asyncio.Lock()

    @property
    def blocked_until(self) -> float:
        """Monotonic time until which every caller waits (in the past when not blocked)."""
        return self._blocked_until

    def penalty_remaining(self) -> float:
        """Seconds left in the penalty box (0 when open)."""
        return max(0.0, self._blocked_until - self._clock.monotonic())

    @property
    def available(self) -> float:
        """Tokens in the bucket now (refilled lazily)."""
        self._refill(self._clock.monotonic())
        return self._tokens

    def _refill(self, now: float) -> None:
        elapsed = now - self._updated
        if elapsed > 0:
            self._tokens = min(self.capacity, self._tokens + elapsed * self.rate)
            self._updated = now

    async def acquire(self, weight: float = 1.0) -> float:
        """Wait until ``weight`` tokens are free and the penalty box is open; return the wait.

        Callers are served first come, first served: the lock is held while waiting, so a
        light request cannot overtake a heavy one and starve it.
        """
        if weight <= 0:
            return 0.0
        # A request heavier than the whole bucket could never pass: let it take a full bucket.
        needed = min(float(weight), self.capacity)
        waited = 0.0
        async with self._lock:
            while True:
                now = self._clock.monotonic()
                self._refill(now)
                if now < self._blocked_until:
                    delay = self._blocked_until - now
                elif self._tokens + _EPSILON >= needed:
                    self._tokens = max(0.0, self._tokens - needed)
                    return waited
                else:
                    delay = max(_MIN_DELAY, (needed - self._tokens) / self.rate)
                await self._sleep(delay)
                waited += delay

    def penalize(self, *, retry_after: float | None = None, banned: bool = False) -> float:
        """Block every caller after a 429/418; return the seconds blocked from now.

        ``retry_after`` is what the venue asked for; without it the block grows exponentially
        with consecutive penalties (harder for a ban). The bucket is emptied too, so traffic
        resumes at the refill rate instead of with a burst that would trip the limit again.
        """
        now = self._clock.monotonic()
        self._strikes += 1
        if retry_after is not None:
            wait = max(0.0, float(retry_after))
        else:
            policy = self._penalty.banned if banned else self._penalty.rate_limited
            wait = policy.delay(self._strikes, self._rng)
        self._blocked_until = max(self._blocked_until, now + wait)
        self._refill(now)
        self._tokens = 0.0
        return self._blocked_until - now

    def record_success(self) -> None:
        """A request went through: the next penalty starts the back-off from the beginning."""
        self._strikes = 0


class RateBudgetRegistry:
    """Hands out one ``RateBudget`` per ``BudgetKey``: the same object for the same key."""

    def __init__(
        self,
        *,
        clock: MonotonicClock | None = None,
        sleep: SleepFunction | None = None,
        penalty: PenaltyPolicy | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.clock: MonotonicClock = clock or LiveClock()
        self.sleep: SleepFunction = sleep or asyncio.sleep
        self._penalty = penalty
        self._rng = rng
        self._budgets: dict[BudgetKey, RateBudget] = {}

    def get(
        self,
        exchange_id: str,
        credential: str,
        *,
        requests_per_second: float,
        burst: float | None = None,
    ) -> RateBudget:
        """The budget for this venue and credential; the first caller's rate configures it."""
        key = BudgetKey(exchange_id=exchange_id, credential=credential)
        budget = self._budgets.get(key)
        if budget is None:
            budget = RateBudget(
                key=key,
                requests_per_second=requests_per_second,
                burst=burst,
                clock=self.clock,
                sleep=self.sleep,
                penalty=self._penalty,
                rng=self._rng,
            )
            self._budgets[key] = budget
        return budget

    def __len__(self) -> int:
        return len(self._budgets)

    def __contains__(self, key: object) -> bool:
        return key in self._budgets


@lru_cache(maxsize=1)
def default_registry() -> RateBudgetRegistry:
    """The process-wide registry on live time, built on first use (never at import)."""
    return RateBudgetRegistry()


def requests_per_second_from_ccxt(rate_limit_ms: float | None, *, fallback: float = 5.0) -> float:
    """ccxt's ``rateLimit`` (milliseconds between requests) as requests per second."""
    if not rate_limit_ms or rate_limit_ms <= 0:
        return fallback
    return 1000.0 / float(rate_limit_ms)


# --- retries --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded retries of transient exchange errors.

    ``max_attempts`` counts the first try. A rate-limited error waits what the venue asked
    (``retry_after``) when that is at most ``max_rate_limit_wait_seconds``; a longer ban is
    raised to the caller instead of holding it for minutes.
    """

    max_attempts: int = 3
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    max_rate_limit_wait_seconds: float = 60.0

    @classmethod
    def no_retries(cls) -> RetryPolicy:
        return cls(max_attempts=1)


def is_retryable(error: BaseException, *, idempotent: bool) -> bool:
    """Whether trying ``error``'s call again is safe.

    A timeout leaves the outcome unknown: only an idempotent call (a read) may be repeated.
    """
    if isinstance(error, ExchangeTimeout):
        return idempotent
    return isinstance(error, ExchangeUnavailable | ExchangeRateLimited)


async def retry_async(
    operation: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy,
    idempotent: bool,
    sleep: SleepFunction | None = None,
    rng: random.Random | None = None,
    on_retry: Callable[[int, CryptoOrchestratorError, float], None] | None = None,
) -> T:
    """Run ``operation``, retrying retryable errors with back-off, at most ``max_attempts`` times.

    ``on_retry(attempt, error, delay)`` is called before each wait (for logging and tests).
    """
    pause = sleep or asyncio.sleep
    jitter = rng or random.Random()  # noqa: S311 - jitter, not cryptography
    attempt = 1
    while True:
        try:
            return await operation()
        except CryptoOrchestratorError as error:
            if attempt >= policy.max_attempts or not is_retryable(error, idempotent=idempotent):
                raise
            delay = policy.backoff.delay(attempt, jitter)
            if isinstance(error, ExchangeRateLimited) and error.retry_after is not None:
                if error.retry_after > policy.max_rate_limit_wait_seconds:
                    raise
                delay = max(delay, error.retry_after)
            if on_retry is not None:
                on_retry(attempt, error, delay)
            await pause(delay)
            attempt += 1
