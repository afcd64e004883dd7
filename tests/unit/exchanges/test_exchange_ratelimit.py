"""The shared rate budget, its penalty box and the retry helper, on fake time."""

from __future__ import annotations

import asyncio
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cryptoorchestrator.core.errors import (
    CryptoOrchestratorError,
    ExchangeRateLimited,
    ExchangeTimeout,
    ExchangeUnavailable,
    InsufficientBalance,
)
from cryptoorchestrator.exchanges.ratelimit import (
    BackoffPolicy,
    BudgetKey,
    PenaltyPolicy,
    RateBudget,
    RateBudgetRegistry,
    RetryPolicy,
    credential_fingerprint,
    is_retryable,
    requests_per_second_from_ccxt,
    retry_async,
)
from tests.unit.exchanges.exchange_testkit import VirtualTime

KEY = BudgetKey("binance", "public")


def budget(
    vtime: VirtualTime, *, rate: float = 2.0, burst: float | None = None, **kwargs: object
) -> RateBudget:
    return RateBudget(
        key=KEY,
        requests_per_second=rate,
        burst=burst,
        clock=vtime.clock,
        sleep=vtime.sleep,
        rng=random.Random(1),
        **kwargs,  # type: ignore[arg-type]
    )


async def test_bucket_allows_a_burst_then_paces_at_the_rate(vtime: VirtualTime) -> None:
    bucket = budget(vtime, rate=2.0)  # burst defaults to one second's worth: 2 requests
    start = vtime.monotonic()
    assert await bucket.acquire() == 0.0
    assert await bucket.acquire() == 0.0
    assert await bucket.acquire() == pytest.approx(0.5)
    assert await bucket.acquire() == pytest.approx(0.5)
    assert vtime.monotonic() - start == pytest.approx(1.0)


async def test_heavy_requests_wait_for_their_weight(vtime: VirtualTime) -> None:
    bucket = budget(vtime, rate=10.0, burst=10.0)
    await bucket.acquire(10.0)
    assert await bucket.acquire(5.0) == pytest.approx(0.5)
    # Heavier than the whole bucket: takes a full bucket instead of waiting forever.
    assert await bucket.acquire(50.0) == pytest.approx(1.0)


async def test_concurrent_callers_are_served_in_order_at_the_rate(vtime: VirtualTime) -> None:
    bucket = budget(vtime, rate=4.0, burst=1.0)
    finished: list[tuple[int, float]] = []

    async def caller(number: int) -> None:
        await bucket.acquire()
        finished.append((number, vtime.monotonic()))

    start = vtime.monotonic()
    await asyncio.gather(*(caller(number) for number in range(5)))
    assert [number for number, _ in finished] == [0, 1, 2, 3, 4]
    assert [round(at - start, 6) for _, at in finished] == [0.0, 0.25, 0.5, 0.75, 1.0]


async def test_penalty_with_retry_after_blocks_every_caller(vtime: VirtualTime) -> None:
    bucket = budget(vtime, rate=100.0)
    start = vtime.monotonic()
    assert bucket.penalize(retry_after=5.0) == pytest.approx(5.0)
    assert bucket.penalty_remaining() == pytest.approx(5.0)
    released: list[float] = []

    async def caller() -> None:
        await bucket.acquire()
        released.append(vtime.monotonic() - start)

    await asyncio.gather(caller(), caller(), caller())
    assert len(released) == 3
    assert min(released) >= 5.0
    assert bucket.penalty_remaining() == 0.0


async def test_penalty_empties_the_bucket_so_traffic_restarts_at_the_refill_rate(vtime: VirtualTime) -> None:
    bucket = budget(vtime, rate=2.0, burst=2.0)
    assert bucket.available == pytest.approx(2.0)
    bucket.penalize(retry_after=0.25)
    start = vtime.monotonic()
    # After 0.25 s only half a token has come back: a full one needs another 0.25 s.
    await bucket.acquire()
    assert vtime.monotonic() - start == pytest.approx(0.5)


def test_penalty_without_retry_after_backs_off_exponentially_and_caps(vtime: VirtualTime) -> None:
    policy = PenaltyPolicy(
        rate_limited=BackoffPolicy(base_seconds=1.0, max_seconds=6.0, jitter=0.0),
        banned=BackoffPolicy(base_seconds=60.0, max_seconds=600.0, jitter=0.0),
    )
    bucket = budget(vtime, penalty=policy)
    waits = []
    for _ in range(5):
        waits.append(bucket.penalize())
        vtime.clock.advance(waits[-1])
    assert waits == [1.0, 2.0, 4.0, 6.0, 6.0]
    bucket.record_success()
    assert bucket.penalize() == 1.0
    vtime.clock.advance(1.0)
    bucket.record_success()
    assert bucket.penalize(banned=True) == 60.0


def test_a_longer_penalty_is_never_shortened(vtime: VirtualTime) -> None:
    bucket = budget(vtime)
    bucket.penalize(retry_after=30.0)
    assert bucket.penalize(retry_after=2.0) == pytest.approx(30.0)


def test_registry_returns_one_budget_per_exchange_and_credential(vtime: VirtualTime) -> None:
    registry = RateBudgetRegistry(clock=vtime.clock, sleep=vtime.sleep)
    first = registry.get("binance", credential_fingerprint("key-a"), requests_per_second=20)
    again = registry.get("binance", credential_fingerprint("key-a"), requests_per_second=1)
    other_key = registry.get("binance", credential_fingerprint("key-b"), requests_per_second=20)
    other_venue = registry.get("kraken", credential_fingerprint("key-a"), requests_per_second=20)
    assert first is again
    assert first.rate == 20  # the first configuration wins
    assert first is not other_key
    assert first is not other_venue
    assert len(registry) == 3
    assert BudgetKey("binance", credential_fingerprint("key-a")) in registry


def test_fingerprint_is_short_stable_and_does_not_reveal_the_key() -> None:
    key = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
    fingerprint = credential_fingerprint(key)
    assert fingerprint == credential_fingerprint(key)
    assert fingerprint != credential_fingerprint(key + "x")
    assert key not in fingerprint
    assert len(fingerprint) <= 16
    assert credential_fingerprint(None) == credential_fingerprint("") == "public"


def test_ccxt_rate_limit_converts_to_requests_per_second() -> None:
    assert requests_per_second_from_ccxt(50) == 20.0
    assert requests_per_second_from_ccxt(1000) == 1.0
    assert requests_per_second_from_ccxt(None, fallback=3.0) == 3.0


@given(attempt=st.integers(min_value=1, max_value=30), seed=st.integers(min_value=0, max_value=10_000))
def test_backoff_stays_within_jitter_bounds_and_cap(attempt: int, seed: int) -> None:
    policy = BackoffPolicy(base_seconds=0.5, max_seconds=20.0, multiplier=2.0, jitter=0.25)
    delay = policy.delay(attempt, random.Random(seed))
    nominal = min(20.0, 0.5 * 2.0 ** (attempt - 1))
    assert 0.0 <= delay <= 20.0
    assert nominal * 0.75 - 1e-9 <= delay <= min(20.0, nominal * 1.25) + 1e-9


# --- retry_async ----------------------------------------------------------------------------


class Flaky:
    """Fails with the given errors, then answers ``"ok"``."""

    def __init__(self, *errors: CryptoOrchestratorError) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


EXACT = RetryPolicy(max_attempts=4, backoff=BackoffPolicy(base_seconds=0.5, max_seconds=8.0, jitter=0.0))


async def test_transient_errors_are_retried_with_exponential_back_off(vtime: VirtualTime) -> None:
    operation = Flaky(ExchangeUnavailable(), ExchangeUnavailable(), ExchangeUnavailable())
    start = vtime.monotonic()
    assert await retry_async(operation, policy=EXACT, idempotent=True, sleep=vtime.sleep) == "ok"
    assert operation.calls == 4
    assert vtime.sleeps == [0.5, 1.0, 2.0]
    assert vtime.monotonic() - start == pytest.approx(3.5)


async def test_attempts_are_bounded(vtime: VirtualTime) -> None:
    operation = Flaky(*(ExchangeUnavailable() for _ in range(10)))
    with pytest.raises(ExchangeUnavailable):
        await retry_async(operation, policy=EXACT, idempotent=True, sleep=vtime.sleep)
    assert operation.calls == 4
    assert len(vtime.sleeps) == 3


async def test_timeouts_are_retried_only_for_idempotent_calls(vtime: VirtualTime) -> None:
    read = Flaky(ExchangeTimeout())
    assert await retry_async(read, policy=EXACT, idempotent=True, sleep=vtime.sleep) == "ok"
    assert read.calls == 2
    submission = Flaky(ExchangeTimeout())
    with pytest.raises(ExchangeTimeout):
        await retry_async(submission, policy=EXACT, idempotent=False, sleep=vtime.sleep)
    assert submission.calls == 1


async def test_user_errors_are_never_retried(vtime: VirtualTime) -> None:
    operation = Flaky(InsufficientBalance())
    with pytest.raises(InsufficientBalance):
        await retry_async(operation, policy=EXACT, idempotent=True, sleep=vtime.sleep)
    assert operation.calls == 1
    assert vtime.sleeps == []


async def test_rate_limited_retry_waits_what_the_venue_asked(vtime: VirtualTime) -> None:
    operation = Flaky(ExchangeRateLimited(retry_after=7.0))
    seen: list[tuple[int, float]] = []
    result = await retry_async(
        operation,
        policy=EXACT,
        idempotent=False,
        sleep=vtime.sleep,
        on_retry=lambda attempt, _error, delay: seen.append((attempt, delay)),
    )
    assert result == "ok"
    assert seen == [(1, 7.0)]
    assert vtime.sleeps == [7.0]


async def test_a_ban_longer_than_the_policy_allows_is_raised_at_once(vtime: VirtualTime) -> None:
    operation = Flaky(ExchangeRateLimited(retry_after=3600.0))
    with pytest.raises(ExchangeRateLimited):
        await retry_async(operation, policy=EXACT, idempotent=True, sleep=vtime.sleep)
    assert operation.calls == 1
    assert vtime.sleeps == []


def test_retryable_classification() -> None:
    assert is_retryable(ExchangeUnavailable(), idempotent=False)
    assert is_retryable(ExchangeRateLimited(), idempotent=False)
    assert is_retryable(ExchangeTimeout(), idempotent=True)
    assert not is_retryable(ExchangeTimeout(), idempotent=False)
    assert not is_retryable(InsufficientBalance(), idempotent=True)
    assert not is_retryable(ValueError(), idempotent=True)
