"""Helpers for the exchange adapter tests: fake time and a client factory."""

from __future__ import annotations

import asyncio
import random

from cryptoorchestrator.core.clock import SimClock
from cryptoorchestrator.exchanges.client import CcxtExchangeClient
from cryptoorchestrator.exchanges.ratelimit import BackoffPolicy, RateBudgetRegistry, RetryPolicy
from cryptoorchestrator.testing.fake_exchange import FakeBinance
from cryptoorchestrator.testing.fake_exchange_data import DEFAULT_START_SECONDS


class VirtualTime:
    """Fake time for async code: ``sleep`` records the wait and moves the clock, no real wait.

    The deadline is fixed when ``sleep`` is called, so concurrent sleepers wake at the right
    virtual time (the clock only ever moves forward to the latest deadline reached).
    """

    def __init__(self, start: float = DEFAULT_START_SECONDS) -> None:
        self.clock = SimClock(start)
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.clock.monotonic()

    def now(self) -> float:
        return self.clock.timestamp()

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        deadline = self.clock.monotonic() + max(0.0, seconds)
        await asyncio.sleep(0)
        if deadline > self.clock.monotonic():
            self.clock.set(deadline)


#: Retries without jitter so that back-off timing can be asserted exactly.
EXACT_RETRIES = RetryPolicy(
    max_attempts=3, backoff=BackoffPolicy(base_seconds=0.5, max_seconds=8.0, multiplier=2.0, jitter=0.0)
)


def make_client(
    exchange: FakeBinance,
    registry: RateBudgetRegistry,
    *,
    retry_policy: RetryPolicy = EXACT_RETRIES,
    requests_per_second: float | None = None,
) -> CcxtExchangeClient:
    return CcxtExchangeClient(
        exchange,
        budget_registry=registry,
        retry_policy=retry_policy,
        requests_per_second=requests_per_second,
        rng=random.Random(3),
    )
