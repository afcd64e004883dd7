"""The paper venue on live market data (the fake exchange through the real ccxt code path):
the venue's rules apply, and a market order walks the real book, filling partly when it is thin."""

from __future__ import annotations

from decimal import Decimal

import pytest

from cryptoorchestrator.exchanges.client import CcxtExchangeClient
from cryptoorchestrator.exchanges.ratelimit import RateBudgetRegistry
from cryptoorchestrator.testing.api import assert_error, register_user
from cryptoorchestrator.testing.fake_exchange import FakeBinance
from cryptoorchestrator.testing.fake_exchange_venue import SimulatedBinanceSpot
from tests.conftest import client_for

pytestmark = pytest.mark.integration


@pytest.fixture
async def live_prices(app_factory, clock):
    venue = SimulatedBinanceSpot(clock=clock)
    registry = RateBudgetRegistry()

    def factory(name: str) -> CcxtExchangeClient:
        return CcxtExchangeClient(FakeBinance(venue=venue), budget_registry=registry)

    app, _ = await app_factory(
        market_data_live=True,
        exchange_factory=factory,
        paper_poll_seconds=0,
        paper_starting_balances={"USDT": Decimal(1_000_000)},
    )
    async with client_for(app) as http:
        yield http, venue


async def test_a_market_order_walks_the_book_and_fills_partly_when_thin(live_prices):
    http, venue = live_prices
    user = await register_user(http, "walker")
    small = await http.post(
        "/api/v1/orders",
        headers=user.headers,
        json={"symbol": "BTCUSDT", "side": "buy", "quantity": "0.0005"},
    )
    assert small.status_code == 201, small.text
    assert small.json()["status"] == "filled"
    assert Decimal(small.json()["average_price"]) > venue.price("BTCUSDT")  # the ask plus slippage
    big = await http.post(
        "/api/v1/orders", headers=user.headers, json={"symbol": "BTCUSDT", "side": "buy", "quantity": "5"}
    )
    assert big.status_code == 201, big.text
    order = big.json()
    assert order["status"] == "canceled" and "liquidity" in order["reason"]
    assert Decimal(0) < Decimal(order["filled_quantity"]) < Decimal(5)
    balance = (await http.get("/api/v1/balance", headers=user.headers)).json()
    usdt = {row["asset"]: row for row in balance["balances"]}["USDT"]
    assert Decimal(usdt["locked"]) == 0  # the unfilled rest gave its lock back
    off_step = await http.post(
        "/api/v1/orders",
        headers=user.headers,
        json={"symbol": "BTCUSDT", "side": "buy", "quantity": "0.00004"},
    )
    assert_error(off_step, 400, "ORDER_REJECTED")  # the venue's 5 USDT minimum order value
