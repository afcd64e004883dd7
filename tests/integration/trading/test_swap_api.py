"""A linear perpetual on the paper account: long and short positions with margin, leverage,
liquidation price and realised P&L; reduce-only exits."""

from __future__ import annotations

from decimal import Decimal

import pytest

from cryptoorchestrator.testing.api import assert_error, register_user
from tests.conftest import client_for
from tests.integration.trading.conftest import Trading

pytestmark = pytest.mark.integration
SWAP = "BTC/USDT:USDT"


@pytest.fixture
async def swaps(app_factory):
    app, container = await app_factory(synthetic_data=True, synthetic_symbols=[SWAP], paper_poll_seconds=0)
    async with client_for(app) as http:
        yield Trading(http, container)


async def place(trading, headers, **body):
    response = await trading.http.post("/api/v1/orders", headers=headers, json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def test_leveraged_long_then_short(swaps):
    user = await register_user(swaps.http, "futures")
    leverage = await swaps.http.put(f"/api/v1/leverage/{SWAP}", headers=user.headers, json={"leverage": 5})
    assert leverage.status_code == 200, leverage.text
    assert leverage.json()["leverage"] == "5" and leverage.json()["max_leverage"] == "125"
    long = await place(swaps, user.headers, symbol=SWAP, side="buy", quantity="0.1")
    assert long["status"] == "filled"
    entry = Decimal(long["average_price"])
    position = (await swaps.http.get("/api/v1/positions", headers=user.headers)).json()["items"][0]
    assert position["side"] == "long" and position["kind"] == "swap"
    assert Decimal(position["margin"]) >= Decimal("0.1") * entry / 5
    liquidation = Decimal(position["liquidation_price"])
    assert entry * Decimal("0.79") < liquidation < entry
    balance = (await swaps.http.get("/api/v1/balance", headers=user.headers)).json()
    usdt = {row["asset"]: row for row in balance["balances"]}["USDT"]
    assert Decimal(usdt["locked"]) == Decimal(position["margin"])
    # Flip: sell 0.3 closes the long and opens a 0.2 short.
    flip = await place(swaps, user.headers, symbol=SWAP, side="sell", quantity="0.3")
    assert flip["status"] == "filled"
    position = (await swaps.http.get("/api/v1/positions", headers=user.headers)).json()["items"][0]
    assert position["side"] == "short" and position["quantity"] == "0.2"
    trades = (await swaps.http.get("/api/v1/trades", headers=user.headers)).json()
    assert trades["summary"]["closing_trades"] == 1
    too_big = await swaps.http.post(
        "/api/v1/orders",
        headers=user.headers,
        json={"symbol": SWAP, "side": "buy", "quantity": "0.3", "reduce_only": True},
    )
    assert_error(too_big, 400, "ORDER_REJECTED")
    closed = await swaps.http.post("/api/v1/positions/close-all", headers=user.headers)
    assert closed.json()["closed"] == 1
    balance = (await swaps.http.get("/api/v1/balance", headers=user.headers)).json()
    usdt = {row["asset"]: row for row in balance["balances"]}["USDT"]
    assert Decimal(usdt["locked"]) == 0
    assert Decimal(usdt["total"]) < 10000  # fees and slippage, no price move
