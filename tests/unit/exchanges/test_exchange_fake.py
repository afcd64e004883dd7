"""The fake Binance itself, driven through plain ccxt calls (no adapter in between)."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import ccxt
import pytest

from cryptoorchestrator.testing.fake_exchange import FakeBinance, FaultKind
from cryptoorchestrator.testing.fake_exchange_data import DEFAULT_MARKETS, FakeMarket
from cryptoorchestrator.testing.fake_exchange_records import VenueError
from cryptoorchestrator.testing.fake_exchange_venue import SimulatedBinanceSpot
from tests.unit.exchanges.exchange_testkit import VirtualTime


async def test_ccxt_exceptions_come_from_ccxt_itself(fake: FakeBinance) -> None:
    await fake.load_markets()
    fake.inject(FaultKind.TIMEOUT, path_contains="/ticker")
    fake.inject(FaultKind.RATE_LIMITED, path_contains="/ticker", retry_after=2)
    fake.inject(FaultKind.IP_BANNED, path_contains="/ticker")
    fake.inject(FaultKind.SERVER_ERROR, path_contains="/ticker", status=504)
    fake.inject(FaultKind.CONNECTION_REFUSED, path_contains="/ticker")
    expected = [
        ccxt.RequestTimeout,
        ccxt.DDoSProtection,
        ccxt.DDoSProtection,
        ccxt.RequestTimeout,
        ccxt.ExchangeNotAvailable,
    ]
    for vendor_class in expected:
        with pytest.raises(vendor_class):
            await fake.fetch_ticker("BTC/USDT")
    assert fake.last_response_headers == {"Content-Type": "text/html"}  # the 504 page
    assert fake.pending_faults() == []


async def test_plain_ccxt_swallows_a_malformed_body(fake: FakeBinance) -> None:
    """Why the client installs its response guard: ccxt parses the raw text into Nones."""
    await fake.load_markets()
    fake.inject(FaultKind.MALFORMED_JSON, path_contains="/ticker")
    ticker = await fake.fetch_ticker("BTC/USDT")
    assert ticker["last"] is None
    assert isinstance(ticker["info"], str)


async def test_faults_match_on_path_method_and_count(fake: FakeBinance) -> None:
    await fake.load_markets()
    fault = fake.inject(FaultKind.SERVER_ERROR, times=2, path_contains="/depth", method="GET")
    await fake.fetch_ticker("BTC/USDT")  # another path: untouched
    for _ in range(2):
        with pytest.raises(ccxt.ExchangeNotAvailable):
            await fake.fetch_order_book("BTC/USDT")
    assert fault.exhausted
    await fake.fetch_order_book("BTC/USDT")
    forever = fake.inject(FaultKind.TIMEOUT, times=None, path_contains="/klines")
    for _ in range(3):
        with pytest.raises(ccxt.RequestTimeout):
            await fake.fetch_ohlcv("BTC/USDT")
    assert forever.fired == 3 and not forever.exhausted
    fake.clear_faults()
    assert len(await fake.fetch_ohlcv("BTC/USDT", limit=2)) == 2


async def test_request_log_keeps_parameters_but_not_the_signature(fake: FakeBinance) -> None:
    await fake.load_markets()
    await fake.fetch_balance()
    request = fake.requests_to("/account")[0]
    assert request.method == "GET"
    assert request.authenticated
    assert "signature" not in request.params
    assert "timestamp" in request.params
    assert [entry.path for entry in fake.request_log()] == ["/api/v3/exchangeInfo", "/api/v3/account"]
    fake.clear_request_log()
    assert fake.request_log() == []


async def test_signed_requests_are_checked(vtime: VirtualTime) -> None:
    tampered = FakeBinance({"secret": "wrong-secret-value"}, clock=vtime.clock)
    try:
        with pytest.raises(ccxt.AuthenticationError, match="Signature"):
            await tampered.fetch_balance()
    finally:
        await tampered.close()


async def test_market_buy_by_cost_uses_quote_order_qty(fake: FakeBinance) -> None:
    await fake.load_markets()
    # ccxt turns a market buy with a price into quoteOrderQty = amount * price.
    order = await fake.create_order("SOL/USDT", "market", "buy", 2, 150, {"clientOrderId": "by-cost"})
    assert fake.requests_to("/api/v3/order")[0].params["quoteOrderQty"] == "300"
    assert order["filled"] == 2.0
    assert order["cost"] == 300.0


async def test_partial_fill_then_cancel(fake: FakeBinance) -> None:
    await fake.load_markets()
    order = await fake.create_order("ETH/USDT", "limit", "buy", 2, 2900, {"clientOrderId": "partial"})
    fake.venue.fill_order(int(order["id"]), Decimal("0.5"))
    partial = await fake.fetch_order(order["id"], "ETH/USDT")
    assert (partial["status"], partial["filled"], partial["remaining"]) == ("open", 0.5, 1.5)
    canceled = await fake.cancel_order(order["id"], "ETH/USDT")
    assert canceled["status"] == "canceled"
    free, locked = fake.venue.balance("USDT")
    assert locked == 0
    assert free == Decimal("100000") - Decimal("0.5") * Decimal("2900")
    assert fake.venue.balance("ETH")[0] == Decimal("10") + Decimal("0.5") - Decimal("0.0005")


async def test_marketable_limit_fills_as_taker_with_price_improvement(fake: FakeBinance) -> None:
    await fake.load_markets()
    order = await fake.create_order("BTC/USDT", "limit", "buy", 0.1, 61000, {"clientOrderId": "cross"})
    assert order["status"] == "closed"
    assert order["average"] == 60000.0
    assert fake.venue.balance("USDT") == (Decimal("94000"), Decimal("0"))


async def test_ioc_and_limit_maker_follow_binance(fake: FakeBinance) -> None:
    await fake.load_markets()
    ioc = await fake.create_order("BTC/USDT", "limit", "buy", 0.1, 50000, {"timeInForce": "IOC"})
    assert ioc["status"] == "expired"
    assert fake.venue.balance("USDT") == (Decimal("100000"), Decimal("0"))
    with pytest.raises(ccxt.OrderImmediatelyFillable):
        await fake.create_order("BTC/USDT", "limit", "buy", 0.1, 61000, {"postOnly": True})


async def test_stop_orders_rest_untriggered_and_trigger_like_binance(fake: FakeBinance) -> None:
    """ccxt's unified trigger orders (a limit or market order with ``stopPrice``) become
    STOP_LOSS_LIMIT / STOP_LOSS on spot: funds locked, not working until the price reaches the
    stop (at or below it for a sell, at or above it for a buy), then a limit or market order."""
    await fake.load_markets()
    sell = await fake.create_order("BTC/USDT", "limit", "sell", 0.1, 54000, {"stopPrice": 55000})
    buy = await fake.create_order("BTC/USDT", "market", "buy", 0.01, None, {"stopPrice": 65000})
    venue = fake.venue
    by_id = {order.order_id: order for order in venue.orders("BTC/USDT")}
    resting_sell, resting_buy = by_id[int(sell["id"])], by_id[int(buy["id"])]
    assert (resting_sell.type, resting_sell.working) == ("STOP_LOSS_LIMIT", False)
    assert (resting_buy.type, resting_buy.working) == ("STOP_LOSS", False)
    assert venue.balance("BTC") == (Decimal("0.9"), Decimal("0.1"))
    assert venue.balance("USDT") == (Decimal("99350"), Decimal("650"))  # the buy at its stop
    assert venue.set_price("BTC/USDT", "56000") == []  # above the sell's stop: nothing
    [sold] = venue.set_price("BTC/USDT", "54500")  # the sell triggers, marketable at 54500
    assert (sold.order_id, sold.price, sold.is_maker) == (resting_sell.order_id, Decimal("54500"), False)
    [bought] = venue.set_price("BTC/USDT", "65100")
    assert (bought.order_id, bought.price) == (resting_buy.order_id, Decimal("65100"))
    fetched = await fake.fetch_order(buy["id"], "BTC/USDT")
    assert fetched["status"] == "closed" and fetched["triggerPrice"] == 65000
    assert venue.balance("USDT")[1] == 0 and venue.balance("BTC")[1] == 0
    with pytest.raises(ccxt.InvalidOrder, match="trigger immediately"):
        await fake.create_order("BTC/USDT", "market", "sell", 0.1, None, {"stopPrice": 70000})


async def test_a_market_without_stop_market_orders_refuses_them(vtime: VirtualTime) -> None:
    no_stop_market = ("LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT")
    market = dataclasses.replace(DEFAULT_MARKETS[0], order_types=no_stop_market)  # BTC/USDT at 60000
    fake = FakeBinance(venue=SimulatedBinanceSpot(clock=vtime.clock, markets=[market]))
    try:
        await fake.load_markets()
        with pytest.raises(ccxt.InvalidOrder, match="not allowed"):  # ccxt checks orderTypes
            await fake.create_order("BTC/USDT", "market", "sell", 0.1, None, {"stopPrice": 50000})
        params = {"side": "SELL", "type": "STOP_LOSS", "quantity": "0.1", "stopPrice": "50000"}
        with pytest.raises(VenueError, match="not supported") as refused:  # sent past ccxt
            fake.venue.account.place(market, params)
        assert refused.value.code == -1013
    finally:
        await fake.close()


async def test_client_order_id_reuse_rules(vtime: VirtualTime) -> None:
    for scope, reuse_allowed in (("open", True), ("all", False)):
        fake = FakeBinance(clock=vtime.clock, client_order_id_scope=scope)
        try:
            await fake.load_markets()
            await fake.create_order("BTC/USDT", "market", "buy", 0.001, None, {"clientOrderId": "again"})
            if reuse_allowed:  # Binance: unique among open orders only
                await fake.create_order("BTC/USDT", "market", "buy", 0.001, None, {"clientOrderId": "again"})
                assert len(fake.venue.orders_with_client_id("again")) == 2
            else:
                with pytest.raises(ccxt.InvalidOrder, match="Duplicate order sent"):
                    await fake.create_order(
                        "BTC/USDT", "market", "buy", 0.001, None, {"clientOrderId": "again"}
                    )
        finally:
            await fake.close()


async def test_custom_markets_and_legacy_min_notional_filter(vtime: VirtualTime) -> None:
    venue = SimulatedBinanceSpot(
        clock=vtime.clock,
        markets=[
            FakeMarket(
                base="DOGE",
                quote="USDT",
                price=Decimal("0.08123"),
                tick_size=Decimal("0.00001"),
                step_size=Decimal("1"),
                min_qty=Decimal("1"),
                min_notional=Decimal("1"),
                notional_filter="MIN_NOTIONAL",
                status="BREAK",
            )
        ],
        balances={"USDT": 10, "DOGE": 0},
    )
    fake = FakeBinance(venue=venue)
    try:
        markets = await fake.load_markets()
        doge = markets["DOGE/USDT"]
        assert doge["active"] is False
        assert doge["precision"] == {"amount": 1.0, "price": 1e-05, "base": 1e-08, "quote": 1e-08}
        assert doge["limits"]["cost"]["min"] == 1.0
        with pytest.raises(ccxt.InsufficientFunds):
            await fake.create_order("DOGE/USDT", "market", "buy", 1000)
    finally:
        await fake.close()


async def test_price_moves_fill_resting_orders_on_both_sides(fake: FakeBinance) -> None:
    await fake.load_markets()
    buy = await fake.create_order("SOL/USDT", "limit", "buy", 1, 140)
    sell = await fake.create_order("SOL/USDT", "limit", "sell", 1, 160)
    assert fake.venue.set_price("SOL/USDT", "150.5") == []
    [fill] = fake.venue.set_price("SOL/USDT", "139")
    assert fill.order_id == int(buy["id"]) and fill.price == Decimal("140") and fill.is_maker
    [fill] = fake.venue.set_price("SOL/USDT", "161")
    assert fill.order_id == int(sell["id"])
    assert [o.status for o in fake.venue.orders("SOL/USDT")] == ["FILLED", "FILLED"]


async def test_unknown_routes_fail_loudly(fake: FakeBinance) -> None:
    with pytest.raises(ccxt.ExchangeError, match="no route"):
        await fake.fapiPublicGetPremiumIndex()


async def test_a_closed_fake_refuses_requests(vtime: VirtualTime) -> None:
    fake = FakeBinance(clock=vtime.clock)
    await fake.close()
    with pytest.raises(ccxt.ExchangeClosedByUser):
        await fake.fetch_ticker("BTC/USDT")
