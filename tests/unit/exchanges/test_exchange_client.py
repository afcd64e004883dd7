"""CcxtExchangeClient round trips against the fake Binance (ccxt's real parse path)."""

from __future__ import annotations

import itertools
from decimal import Decimal

import ccxt.async_support as ccxt_async
import pytest

from cryptoorchestrator.core.errors import (
    ExchangeAuthenticationError,
    ExchangeNotSupported,
    InsufficientBalance,
    InvalidSymbol,
    OrderNotFoundOnExchange,
    OrderRejected,
    ValidationFailed,
)
from cryptoorchestrator.domain.market import MarketInfo
from cryptoorchestrator.exchanges.client import CcxtExchangeClient, ExchangeClient
from cryptoorchestrator.exchanges.ratelimit import RateBudgetRegistry, credential_fingerprint
from cryptoorchestrator.testing.fake_exchange import FakeBinance
from tests.unit.exchanges.exchange_testkit import VirtualTime, make_client


async def test_client_satisfies_the_port(client: CcxtExchangeClient) -> None:
    assert isinstance(client, ExchangeClient)
    assert client.exchange_id == "binance"


async def test_markets_come_through_ccxts_parse_path(client: CcxtExchangeClient, fake: FakeBinance) -> None:
    markets = await client.load_markets()
    assert sorted(markets) == ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
    btc = markets["BTC/USDT"]
    assert btc == MarketInfo(
        symbol="BTC/USDT",
        base="BTC",
        quote="USDT",
        type="spot",
        active=True,
        price_tick=Decimal("0.01"),
        amount_step=Decimal("0.00001"),
        min_amount=Decimal("0.00001"),
        min_notional=Decimal("5.0"),
        maker_fee=Decimal("0.001"),
        taker_fee=Decimal("0.001"),
        exchange_symbol="BTCUSDT",
        settle=None,
    )
    assert markets["SOL/USDT"].amount_step == Decimal("0.001")
    # Spot only: one exchangeInfo request, no futures, margin or currency endpoints.
    assert [request.path for request in fake.request_log()] == ["/api/v3/exchangeInfo"]


async def test_markets_are_cached_for_their_ttl(
    fake: FakeBinance, registry: RateBudgetRegistry, vtime: VirtualTime
) -> None:
    client = CcxtExchangeClient(fake, budget_registry=registry, markets_ttl_seconds=60.0)
    try:
        first = await client.load_markets()
        assert await client.markets() is first
        vtime.clock.advance(59.0)
        await client.resolve_symbol("BTCUSDT")
        assert len(fake.requests_to("/exchangeInfo")) == 1
        vtime.clock.advance(2.0)
        await client.markets()
        assert len(fake.requests_to("/exchangeInfo")) == 2
        await client.load_markets(reload=True)
        assert len(fake.requests_to("/exchangeInfo")) == 3
    finally:
        await client.close()


async def test_resolve_symbol_accepts_user_spellings(client: CcxtExchangeClient) -> None:
    assert await client.resolve_symbol("ethusdt") == "ETH/USDT"
    assert await client.resolve_symbol("SOL-USDT") == "SOL/USDT"
    with pytest.raises(InvalidSymbol) as caught:
        await client.resolve_symbol("DOGEUSDT")
    assert caught.value.details["supported"] == ["BTC/USDT", "ETH/USDT", "SOL/USDT"]


async def test_ticker_round_trip(client: CcxtExchangeClient, fake: FakeBinance) -> None:
    fake.venue.set_price("BTC/USDT", "61234.56")
    ticker = await client.fetch_ticker("BTCUSDT")
    assert ticker.symbol == "BTC/USDT"
    assert ticker.last == Decimal("61234.56")
    assert ticker.bid == Decimal("61234.55")
    assert ticker.ask == Decimal("61234.57")
    assert ticker.mid == Decimal("61234.56")
    assert ticker.high is not None and ticker.high >= ticker.last
    assert ticker.low is not None and ticker.low <= ticker.last
    assert ticker.base_volume is not None and ticker.base_volume > 0
    assert ticker.timestamp == fake.venue.now_ms()
    assert ticker.source == "binance"
    assert fake.requests_to("/ticker/24hr")[-1].params == {"symbol": "BTCUSDT"}


async def test_order_book_round_trip(client: CcxtExchangeClient, fake: FakeBinance) -> None:
    book = await client.fetch_order_book("ETH/USDT", 5)
    assert book.symbol == "ETH/USDT"
    assert len(book.bids) == len(book.asks) == 5
    assert book.best_bid == Decimal("2999.99")
    assert book.best_ask == Decimal("3000.01")
    assert [price for price, _ in book.bids] == sorted((price for price, _ in book.bids), reverse=True)
    assert [price for price, _ in book.asks] == sorted(price for price, _ in book.asks)
    assert all(isinstance(amount, Decimal) and amount > 0 for _, amount in book.bids + book.asks)
    assert fake.requests_to("/depth")[-1].params == {"symbol": "ETHUSDT", "limit": "5"}


async def test_ohlcv_round_trip_from_a_configured_series(
    client: CcxtExchangeClient, fake: FakeBinance
) -> None:
    rows = [
        [1_700_000_000_000 + index * 60_000, 100 + index, 101 + index, 99 + index, 100.5 + index, 10]
        for index in range(10)
    ]
    fake.venue.set_candles("SOL/USDT", "1m", rows)
    candles = await client.fetch_ohlcv("SOL/USDT", "1m", 1_700_000_120_000, 3)
    assert candles == [
        [1_700_000_120_000, 102.0, 103.0, 101.0, 102.5, 10.0],
        [1_700_000_180_000, 103.0, 104.0, 102.0, 103.5, 10.0],
        [1_700_000_240_000, 104.0, 105.0, 103.0, 104.5, 10.0],
    ]
    assert all(isinstance(value, float) for row in candles for value in row[1:])


async def test_default_candles_are_deterministic_and_consistent(client: CcxtExchangeClient) -> None:
    candles = await client.fetch_ohlcv("BTC/USDT", "1h", limit=48)
    again = await client.fetch_ohlcv("BTC/USDT", "1h", limit=48)
    assert candles == again
    assert len(candles) == 48
    assert all(later[0] - earlier[0] == 3_600_000 for earlier, later in itertools.pairwise(candles))
    for _, open_, high, low, close, volume in candles:
        assert low <= min(open_, close) <= max(open_, close) <= high
        assert volume > 0


async def test_balance_round_trip(client: CcxtExchangeClient, fake: FakeBinance) -> None:
    fake.venue.set_balance("BNB", 0)
    balances = await client.fetch_balance()
    assert set(balances) == {"BTC", "ETH", "SOL", "USDT"}  # zero balances are left out
    assert balances["USDT"].free == Decimal("100000")
    assert balances["USDT"].used == 0
    assert balances["BTC"].total == Decimal("1")


async def test_market_order_round_trip(client: CcxtExchangeClient, fake: FakeBinance) -> None:
    order = await client.create_order(
        "BTC/USDT", "buy", "market", Decimal("0.01"), client_order_id="co-market-1"
    )
    assert order.client_order_id == "co-market-1"
    assert order.status == "closed"
    assert order.side == "buy"
    assert order.type == "market"
    assert order.amount == order.filled == Decimal("0.01")
    assert order.remaining == 0
    assert order.average == Decimal("60000")
    assert order.cost == Decimal("600")
    assert order.fee is not None and order.fee.currency == "BTC" and order.fee.cost == Decimal("0.00001")
    sent = fake.requests_to("/api/v3/order", method="POST")[0].params
    assert sent["newClientOrderId"] == "co-market-1"
    assert sent["quantity"] == "0.01"
    assert sent["type"] == "MARKET"
    balances = await client.fetch_balance()
    assert balances["USDT"].free == Decimal("99400")
    assert balances["BTC"].free == Decimal("1.00999")
    trades = await client.fetch_my_trades("BTC/USDT")
    assert len(trades) == 1
    trade = trades[0]
    assert trade.order_id == order.id
    assert (trade.side, trade.price, trade.amount) == ("buy", Decimal("60000"), Decimal("0.01"))
    assert (trade.fee_cost, trade.fee_currency, trade.taker_or_maker) == (Decimal("0.00001"), "BTC", "taker")


async def test_limit_order_rests_then_fills_when_the_price_crosses(
    client: CcxtExchangeClient, fake: FakeBinance
) -> None:
    order = await client.create_order(
        "ETH/USDT", "sell", "limit", Decimal("1.5"), Decimal("3100"), client_order_id="co-limit-1"
    )
    assert order.status == "open"
    assert order.price == Decimal("3100")
    assert order.filled == 0
    assert [o.id for o in await client.fetch_open_orders("ETH/USDT")] == [order.id]
    assert [o.id for o in await client.fetch_open_orders()] == [order.id]
    assert (await client.fetch_balance())["ETH"].used == Decimal("1.5")
    fake.venue.set_price("ETH/USDT", "3105")
    filled = await client.fetch_order(order.id, "ETH/USDT")
    assert filled.status == "closed"
    assert filled.filled == Decimal("1.5")
    assert filled.average == Decimal("3100")
    assert await client.fetch_open_orders("ETH/USDT") == []
    trades = await client.fetch_my_trades("ETH/USDT")
    assert [trade.taker_or_maker for trade in trades] == ["maker"]


async def test_cancel_round_trip_keeps_the_orders_own_client_id(
    client: CcxtExchangeClient, fake: FakeBinance
) -> None:
    order = await client.create_order(
        "BTC/USDT", "buy", "limit", Decimal("0.1"), Decimal("50000"), client_order_id="co-cancel-1"
    )
    assert (await client.fetch_balance())["USDT"].used == Decimal("5000")
    canceled = await client.cancel_order(order.id, "BTC/USDT")
    assert canceled.status == "canceled"
    assert canceled.client_order_id == "co-cancel-1"
    assert (await client.fetch_balance())["USDT"].free == Decimal("100000")
    with pytest.raises(OrderNotFoundOnExchange):
        await client.cancel_order(order.id, "BTC/USDT")


async def test_duplicate_client_order_id_is_rejected_like_binance(
    client: CcxtExchangeClient, fake: FakeBinance
) -> None:
    await client.create_order(
        "BTC/USDT", "buy", "limit", Decimal("0.01"), Decimal("50000"), client_order_id="dup-1"
    )
    with pytest.raises(OrderRejected) as caught:
        await client.create_order(
            "BTC/USDT", "buy", "limit", Decimal("0.01"), Decimal("50000"), client_order_id="dup-1"
        )
    assert caught.value.details["reason"] == "duplicate_client_order_id"
    assert "Duplicate order sent" in caught.value.message
    assert len(fake.venue.orders_with_client_id("dup-1")) == 1
    assert len(fake.requests_to("/api/v3/order", method="POST")) == 2  # a rejection is not retried


async def test_fetch_order_by_client_id(client: CcxtExchangeClient, fake: FakeBinance) -> None:
    placed = await client.create_order(
        "SOL/USDT", "buy", "limit", Decimal("2"), Decimal("140"), client_order_id="lookup-1"
    )
    found = await client.fetch_order_by_client_id("lookup-1", "SOL/USDT")
    assert found is not None
    assert (found.id, found.client_order_id, found.status) == (placed.id, "lookup-1", "open")
    assert fake.requests_to("/api/v3/order", method="GET")[-1].params["origClientOrderId"] == "lookup-1"
    assert await client.fetch_order_by_client_id("never-sent", "SOL/USDT") is None


async def test_unknown_order_id(client: CcxtExchangeClient) -> None:
    with pytest.raises(OrderNotFoundOnExchange):
        await client.fetch_order("42", "BTC/USDT")


async def test_insufficient_balance(client: CcxtExchangeClient) -> None:
    with pytest.raises(InsufficientBalance):
        await client.create_order("BTC/USDT", "buy", "market", Decimal("5"), client_order_id="too-big")


async def test_order_below_the_minimum_notional_is_rejected(client: CcxtExchangeClient) -> None:
    with pytest.raises(OrderRejected) as caught:
        await client.create_order(
            "ETH/USDT", "buy", "limit", Decimal("0.001"), Decimal("3000"), client_order_id="tiny"
        )
    assert "NOTIONAL" in caught.value.message


async def test_order_below_the_minimum_amount_is_rejected(client: CcxtExchangeClient) -> None:
    with pytest.raises(OrderRejected) as caught:
        await client.create_order("SOL/USDT", "sell", "market", Decimal("0.0001"), client_order_id="dust")
    assert "LOT_SIZE" in caught.value.message or "amount" in caught.value.message


@pytest.mark.parametrize(
    ("side", "amount", "client_order_id"),
    [("hold", Decimal("1"), "x"), ("buy", Decimal("0"), "x"), ("buy", Decimal("1"), "")],
)
async def test_invalid_order_input_is_refused_before_any_request(
    client: CcxtExchangeClient, fake: FakeBinance, side: str, amount: Decimal, client_order_id: str
) -> None:
    with pytest.raises(ValidationFailed):
        await client.create_order("BTC/USDT", side, "market", amount, client_order_id=client_order_id)  # type: ignore[arg-type]
    assert fake.requests_to("/api/v3/order") == []


async def test_unknown_symbol_on_a_call(client: CcxtExchangeClient, fake: FakeBinance) -> None:
    with pytest.raises(InvalidSymbol):
        await client.fetch_ticker("DOGE/USDT")
    assert fake.requests_to("/ticker") == []


async def test_withdraw_permission_is_read_from_the_key_restrictions(
    registry: RateBudgetRegistry, vtime: VirtualTime
) -> None:
    for enabled in (False, True):
        client = make_client(FakeBinance(clock=vtime.clock, withdrawals_enabled=enabled), registry)
        try:
            assert await client.has_withdraw_permission() is enabled
        finally:
            await client.close()


async def test_withdraw_permission_is_unknown_without_a_key(
    registry: RateBudgetRegistry, vtime: VirtualTime
) -> None:
    client = make_client(FakeBinance({"apiKey": "", "secret": ""}, clock=vtime.clock), registry)
    try:
        assert await client.has_withdraw_permission() is None
    finally:
        await client.close()


async def test_wrong_api_key_is_an_authentication_error(
    registry: RateBudgetRegistry, vtime: VirtualTime
) -> None:
    wrong_key = "this-is-not-the-venues-key-123456"
    client = make_client(FakeBinance({"apiKey": wrong_key}, clock=vtime.clock), registry)
    try:
        with pytest.raises(ExchangeAuthenticationError) as caught:
            await client.fetch_balance()
    finally:
        await client.close()
    assert caught.value.needs_operator
    assert wrong_key not in caught.value.message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


async def test_wrong_secret_fails_the_signature_check(
    registry: RateBudgetRegistry, vtime: VirtualTime
) -> None:
    client = make_client(FakeBinance({"secret": "not-the-venues-secret"}, clock=vtime.clock), registry)
    try:
        with pytest.raises(ExchangeAuthenticationError) as caught:
            await client.fetch_open_orders("BTC/USDT")
    finally:
        await client.close()
    assert "Signature" in caught.value.message
    assert "not-the-venues-secret" not in caught.value.message


async def test_clients_with_the_same_key_share_one_budget(
    fake: FakeBinance, registry: RateBudgetRegistry, vtime: VirtualTime
) -> None:
    other = FakeBinance(clock=vtime.clock)
    first, second = make_client(fake, registry), make_client(other, registry)
    third = make_client(FakeBinance({"apiKey": "another-key-abcdef"}, clock=vtime.clock), registry)
    try:
        assert first.budget is second.budget
        assert first.budget is not third.budget
        assert first.budget.key.credential.startswith("key-")
        assert fake.venue.api_key not in first.budget.key.credential
    finally:
        for exchange_client in (first, second, third):
            await exchange_client.close()


@pytest.mark.parametrize("exchange_id", ["kraken", "okx"])
async def test_create_builds_any_ccxt_exchange_with_its_rate(exchange_id: str) -> None:
    registry = RateBudgetRegistry()
    client = CcxtExchangeClient.create(
        exchange_id, api_key="k" * 24, secret="c2VjcmV0c2VjcmV0", password="pw", budget_registry=registry
    )
    try:
        rate_limit_ms = getattr(ccxt_async, exchange_id)().rateLimit
        assert client.exchange_id == exchange_id
        assert client.budget.rate == pytest.approx(1000 / rate_limit_ms)
        assert client.budget.key.credential == credential_fingerprint("k" * 24)
        assert len(registry) == 1
    finally:
        await client.close()


async def test_create_in_sandbox_mode_has_no_key_restrictions_endpoint() -> None:
    client = CcxtExchangeClient.create(
        "binance", api_key="k" * 24, secret="s" * 24, sandbox=True, budget_registry=RateBudgetRegistry()
    )
    try:
        # Binance's testnet has no sapi endpoints: permission unknown, and no request is sent.
        assert await client.has_withdraw_permission() is None
    finally:
        await client.close()


async def test_create_refuses_unknown_exchanges() -> None:
    with pytest.raises(ExchangeNotSupported):
        CcxtExchangeClient.create("no-such-exchange")


async def test_close_is_idempotent(fake: FakeBinance, registry: RateBudgetRegistry) -> None:
    client = make_client(fake, registry)
    await client.close()
    await client.close()
    assert fake.closed_by_user
