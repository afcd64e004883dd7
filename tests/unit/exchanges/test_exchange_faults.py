"""Injected faults through the whole stack: fake venue -> ccxt -> client -> core errors.

Time is virtual: back-off and Retry-After waits move a SimClock (shared by the budget and the
fake venue, so the request log shows when each request really reached the venue).
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from cryptoorchestrator.core.errors import (
    CryptoOrchestratorError,
    ExchangeRateLimited,
    ExchangeTimeout,
    ExchangeUnavailable,
)
from cryptoorchestrator.exchanges.client import CcxtExchangeClient
from cryptoorchestrator.exchanges.ratelimit import RateBudgetRegistry, RetryPolicy
from cryptoorchestrator.testing.fake_exchange import FakeBinance, FaultKind
from tests.unit.exchanges.exchange_testkit import VirtualTime, make_client

NO_RETRIES = RetryPolicy.no_retries()
ORDER_PATH = "/api/v3/order"


@pytest.fixture
async def single_shot(fake: FakeBinance, registry: RateBudgetRegistry) -> CcxtExchangeClient:
    """A client that never retries, to see each translated error as it comes."""
    client = make_client(fake, registry, retry_policy=NO_RETRIES)
    await client.load_markets()
    return client


def market_buy(client: CcxtExchangeClient, client_order_id: str):  # type: ignore[no-untyped-def]
    return client.create_order("BTC/USDT", "buy", "market", Decimal("0.01"), client_order_id=client_order_id)


@pytest.mark.parametrize(
    ("kind", "status", "expected", "retry_after"),
    [
        (FaultKind.TIMEOUT, None, ExchangeTimeout, None),
        (FaultKind.DROPPED_RESPONSE, None, ExchangeTimeout, None),
        (FaultKind.RATE_LIMITED, None, ExchangeRateLimited, 7.0),
        (FaultKind.IP_BANNED, None, ExchangeRateLimited, 120.0),
        (FaultKind.SERVER_ERROR, 500, ExchangeUnavailable, None),
        (FaultKind.SERVER_ERROR, 502, ExchangeUnavailable, None),
        (FaultKind.SERVER_ERROR, 503, ExchangeUnavailable, None),
        (FaultKind.MALFORMED_JSON, None, ExchangeUnavailable, None),
        (FaultKind.CONNECTION_REFUSED, None, ExchangeUnavailable, None),
    ],
)
async def test_each_fault_on_a_read_becomes_the_right_core_error(
    single_shot: CcxtExchangeClient,
    fake: FakeBinance,
    kind: FaultKind,
    status: int | None,
    expected: type[CryptoOrchestratorError],
    retry_after: float | None,
) -> None:
    fake.inject(kind, path_contains="/ticker", status=status, retry_after=retry_after)
    with pytest.raises(CryptoOrchestratorError) as caught:
        await single_shot.fetch_ticker("BTC/USDT")
    error = caught.value
    assert type(error) is expected
    assert error.retryable
    assert error.details["operation"] == "fetch_ticker"
    assert error.details["symbol"] == "BTC/USDT"
    if isinstance(error, ExchangeRateLimited):
        assert error.retry_after == retry_after
        assert error.details["http_status"] == (418 if kind is FaultKind.IP_BANNED else 429)
    # The fault fired once; the next call goes through.
    assert (await single_shot.fetch_ticker("BTC/USDT")).last == Decimal("60000")


@pytest.mark.parametrize(
    ("kind", "expected", "unknown_outcome"),
    [
        (FaultKind.TIMEOUT, ExchangeTimeout, True),
        (FaultKind.DROPPED_RESPONSE, ExchangeTimeout, True),
        (FaultKind.SERVER_ERROR, ExchangeTimeout, True),
        (FaultKind.MALFORMED_JSON, ExchangeTimeout, True),
        (FaultKind.RATE_LIMITED, ExchangeRateLimited, False),
        (FaultKind.IP_BANNED, ExchangeRateLimited, False),
        (FaultKind.CONNECTION_REFUSED, ExchangeUnavailable, False),
    ],
)
async def test_each_fault_on_an_order_submission_says_whether_the_outcome_is_known(
    single_shot: CcxtExchangeClient,
    fake: FakeBinance,
    kind: FaultKind,
    expected: type[CryptoOrchestratorError],
    unknown_outcome: bool,
) -> None:
    fake.inject(kind, method="POST", path_contains=ORDER_PATH, retry_after=3.0)
    with pytest.raises(CryptoOrchestratorError) as caught:
        await market_buy(single_shot, "fault-order")
    assert type(caught.value) is expected
    assert caught.value.details.get("outcome_unknown", False) is unknown_outcome
    assert caught.value.details["client_order_id"] == "fault-order"


async def test_transient_read_errors_are_retried_with_back_off(
    client: CcxtExchangeClient, fake: FakeBinance, vtime: VirtualTime
) -> None:
    await client.load_markets()
    fake.inject(FaultKind.SERVER_ERROR, times=2, path_contains="/ticker")
    start_ms = fake.venue.now_ms()
    ticker = await client.fetch_ticker("BTC/USDT")
    assert ticker.last == Decimal("60000")
    attempts = fake.requests_to("/ticker")
    assert [request.fault for request in attempts] == [FaultKind.SERVER_ERROR, FaultKind.SERVER_ERROR, None]
    # Exponential back-off, no jitter in this policy: 0.5 s, then 1 s.
    assert [request.time_ms - start_ms for request in attempts] == [0, 500, 1500]
    assert vtime.sleeps == [0.5, 1.0]


async def test_retries_are_bounded(client: CcxtExchangeClient, fake: FakeBinance) -> None:
    fake.inject(FaultKind.CONNECTION_REFUSED, times=None, path_contains="/depth")
    with pytest.raises(ExchangeUnavailable):
        await client.fetch_order_book("BTC/USDT")
    assert len(fake.requests_to("/depth")) == 3


async def test_a_read_that_timed_out_is_simply_asked_again(
    client: CcxtExchangeClient, fake: FakeBinance
) -> None:
    fake.inject(FaultKind.TIMEOUT, path_contains="/account")
    balances = await client.fetch_balance()
    assert balances["USDT"].free == Decimal("100000")
    assert [request.fault for request in fake.requests_to("/account")] == [FaultKind.TIMEOUT, None]


async def test_a_malformed_body_is_refused_not_parsed_into_nothing(
    client: CcxtExchangeClient, fake: FakeBinance
) -> None:
    fake.inject(FaultKind.MALFORMED_JSON, path_contains="/ticker")
    ticker = await client.fetch_ticker("ETH/USDT")
    assert ticker.last == Decimal("3000")
    assert [request.fault for request in fake.requests_to("/ticker")] == [FaultKind.MALFORMED_JSON, None]


async def test_retry_after_is_honoured_and_shared_by_every_client_of_the_budget(
    fake: FakeBinance, registry: RateBudgetRegistry, vtime: VirtualTime
) -> None:
    second_fake = FakeBinance(clock=vtime.clock)
    first = make_client(fake, registry, retry_policy=NO_RETRIES)
    second = make_client(second_fake, registry)
    try:
        assert first.budget is second.budget
        await first.load_markets()
        await second.load_markets()
        fake.inject(FaultKind.RATE_LIMITED, retry_after=7.0)
        with pytest.raises(ExchangeRateLimited) as caught:
            await first.fetch_ticker("BTC/USDT")
        assert caught.value.retry_after == 7.0
        throttled_at = fake.requests_to("/ticker")[0].time_ms
        # The other client was never told to slow down, yet it waits out the same 7 s.
        await second.fetch_order_book("BTC/USDT", 5)
        assert second_fake.requests_to("/depth")[0].time_ms - throttled_at == 7000
        assert 7.0 in vtime.sleeps
    finally:
        await first.close()
        await second.close()


async def test_a_rate_limited_call_is_retried_after_retry_after(
    client: CcxtExchangeClient, fake: FakeBinance
) -> None:
    await client.load_markets()
    fake.inject(FaultKind.RATE_LIMITED, retry_after=4.0, path_contains="/klines")
    start_ms = fake.venue.now_ms()
    candles = await client.fetch_ohlcv("BTC/USDT", "1m", None, 5)
    assert len(candles) == 5
    first, second = fake.requests_to("/klines")
    assert first.status == 429
    assert second.time_ms - start_ms == 4000


async def test_without_retry_after_the_budget_backs_off_on_its_own(
    single_shot: CcxtExchangeClient, fake: FakeBinance, vtime: VirtualTime
) -> None:
    fake.inject(FaultKind.RATE_LIMITED, path_contains="/ticker")
    with pytest.raises(ExchangeRateLimited) as caught:
        await single_shot.fetch_ticker("BTC/USDT")
    assert caught.value.retry_after is None
    blocked = single_shot.budget.penalty_remaining()
    assert 0.8 <= blocked <= 1.2  # 1 s +/- 20 % jitter
    start = vtime.monotonic()
    await single_shot.fetch_ticker("BTC/USDT")
    assert vtime.monotonic() - start == pytest.approx(blocked)


async def test_an_ip_ban_blocks_the_budget_and_is_not_waited_out_inline(
    client: CcxtExchangeClient, fake: FakeBinance
) -> None:
    await client.load_markets()
    fake.inject(FaultKind.IP_BANNED, retry_after=300.0, path_contains="/depth")
    with pytest.raises(ExchangeRateLimited) as caught:
        await client.fetch_order_book("BTC/USDT")
    assert caught.value.retry_after == 300.0
    assert len(fake.requests_to("/depth")) == 1  # longer than the policy's 60 s: not retried
    assert client.budget.penalty_remaining() == pytest.approx(300.0)


async def test_an_order_submission_that_timed_out_is_never_sent_again(
    client: CcxtExchangeClient, fake: FakeBinance, vtime: VirtualTime
) -> None:
    await client.load_markets()
    fake.inject(FaultKind.TIMEOUT, times=2, method="POST", path_contains=ORDER_PATH)
    with pytest.raises(ExchangeTimeout) as caught:
        await market_buy(client, "timeout-1")
    assert caught.value.details["outcome_unknown"] is True
    assert len(fake.requests_to(ORDER_PATH, method="POST")) == 1
    assert vtime.sleeps == []
    # This timeout happened before the venue saw the order: there is none to find.
    assert await client.fetch_order_by_client_id("timeout-1", "BTC/USDT") is None


async def test_a_dropped_response_resolves_to_exactly_one_order(
    client: CcxtExchangeClient, fake: FakeBinance
) -> None:
    await client.load_markets()
    fake.inject(FaultKind.DROPPED_RESPONSE, method="POST", path_contains=ORDER_PATH)
    with pytest.raises(ExchangeTimeout):
        await market_buy(client, "dropped-1")
    # The venue did place it; the client only lost the answer.
    assert len(fake.requests_to(ORDER_PATH, method="POST")) == 1
    resolved = await client.fetch_order_by_client_id("dropped-1", "BTC/USDT")
    assert resolved is not None
    assert (resolved.client_order_id, resolved.status, resolved.filled) == (
        "dropped-1",
        "closed",
        Decimal("0.01"),
    )
    assert len(fake.venue.orders_with_client_id("dropped-1")) == 1
    assert len(fake.venue.orders()) == 1
    assert len(fake.requests_to(ORDER_PATH, method="POST")) == 1


async def test_a_5xx_on_submission_is_resolved_then_safely_resubmitted(
    client: CcxtExchangeClient, fake: FakeBinance
) -> None:
    await client.load_markets()
    fake.inject(FaultKind.SERVER_ERROR, status=502, method="POST", path_contains=ORDER_PATH)
    with pytest.raises(ExchangeTimeout):
        await market_buy(client, "gateway-1")
    assert len(fake.requests_to(ORDER_PATH, method="POST")) == 1
    assert await client.fetch_order_by_client_id("gateway-1", "BTC/USDT") is None
    order = await market_buy(client, "gateway-1")
    assert order.status == "closed"
    assert len(fake.venue.orders_with_client_id("gateway-1")) == 1


async def test_a_garbled_submission_answer_is_an_unknown_outcome_that_lookup_resolves(
    client: CcxtExchangeClient, fake: FakeBinance
) -> None:
    await client.load_markets()
    fake.inject(FaultKind.MALFORMED_JSON, method="POST", path_contains=ORDER_PATH)
    with pytest.raises(ExchangeTimeout):
        await client.create_order(
            "ETH/USDT", "buy", "limit", Decimal("1"), Decimal("2900"), client_order_id="garbled-1"
        )
    resolved = await client.fetch_order_by_client_id("garbled-1", "ETH/USDT")
    assert resolved is not None and resolved.status == "open"
    assert len(fake.requests_to(ORDER_PATH, method="POST")) == 1


async def test_a_refused_connection_on_submission_is_retried_because_nothing_was_sent(
    client: CcxtExchangeClient, fake: FakeBinance
) -> None:
    await client.load_markets()
    fake.inject(FaultKind.CONNECTION_REFUSED, method="POST", path_contains=ORDER_PATH)
    order = await market_buy(client, "refused-1")
    assert order.status == "closed"
    posts = fake.requests_to(ORDER_PATH, method="POST")
    assert [(request.fault, request.processed) for request in posts] == [
        (FaultKind.CONNECTION_REFUSED, False),
        (None, True),
    ]
    assert len(fake.venue.orders_with_client_id("refused-1")) == 1


async def test_a_rate_limited_submission_is_retried_because_the_venue_refused_it(
    client: CcxtExchangeClient, fake: FakeBinance
) -> None:
    await client.load_markets()
    fake.inject(FaultKind.RATE_LIMITED, retry_after=2.0, method="POST", path_contains=ORDER_PATH)
    start_ms = fake.venue.now_ms()
    order = await market_buy(client, "throttled-1")
    assert order.client_order_id == "throttled-1"
    posts = fake.requests_to(ORDER_PATH, method="POST")
    assert [request.status for request in posts] == [429, 200]
    assert posts[1].time_ms - start_ms >= 2000
    assert len(fake.venue.orders_with_client_id("throttled-1")) == 1


async def test_a_cancel_that_timed_out_is_not_repeated(client: CcxtExchangeClient, fake: FakeBinance) -> None:
    order = await client.create_order(
        "BTC/USDT", "sell", "limit", Decimal("0.1"), Decimal("70000"), client_order_id="cancel-me"
    )
    fake.inject(FaultKind.DROPPED_RESPONSE, method="DELETE", path_contains=ORDER_PATH)
    with pytest.raises(ExchangeTimeout):
        await client.cancel_order(order.id, "BTC/USDT")
    assert len(fake.requests_to(ORDER_PATH, method="DELETE")) == 1
    assert (await client.fetch_order(order.id, "BTC/USDT")).status == "canceled"
