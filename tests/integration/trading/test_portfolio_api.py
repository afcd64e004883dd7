"""Account, balances, portfolio, performance, P&L, rebalancing, leverage and the paper reset."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from cryptoorchestrator.domain.accounts import EquitySnapshot
from cryptoorchestrator.testing.api import assert_error, register_user

pytestmark = pytest.mark.integration


async def place(trading, headers, **body):
    response = await trading.http.post("/api/v1/orders", headers=headers, json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def test_account_balance_and_portfolio(trading):
    user = await register_user(trading.http, "holder")
    account = (await trading.http.get("/api/v1/account", headers=user.headers)).json()
    assert account["kind"] == "paper" and account["mode"] == "paper" and account["currency"] == "USDT"
    assert account["starting_balances"] == {"USDT": "10000"}
    await place(trading, user.headers, symbol="BTC/USDT", side="buy", quantity="0.05")
    price = await trading.price()
    balance = (await trading.http.get("/api/v1/balance", headers=user.headers)).json()
    rows = {row["asset"]: row for row in balance["balances"]}
    assert Decimal(rows["BTC"]["value"]) == Decimal("0.05") * price
    assert Decimal(balance["total_equity"]) == Decimal(rows["BTC"]["value"]) + Decimal(rows["USDT"]["total"])
    assert Decimal(balance["total_equity"]) < 10000  # fees and slippage were paid
    only_btc = (await trading.http.get("/api/v1/balance?asset=btc", headers=user.headers)).json()
    assert [row["asset"] for row in only_btc["balances"]] == ["BTC"]
    portfolio = (await trading.http.get("/api/v1/portfolio", headers=user.headers)).json()
    assert portfolio["open_positions"] == 1 and portfolio["open_orders"] == 0
    assert Decimal(portfolio["total_value"]) == Decimal(balance["total_equity"])
    weights = {row["asset"]: row["weight"] for row in portfolio["allocation"]}
    assert abs(sum(weights.values()) - 1) < 1e-9
    positions = (await trading.http.get("/api/v1/portfolio/positions", headers=user.headers)).json()
    assert positions["items"][0]["mark_price"] == str(price)
    seed = (await trading.http.get("/api/portfolio/balance", headers=user.headers)).json()
    assert seed["currency"] == "USDT"


async def test_performance_and_pnl(trading):
    user = await register_user(trading.http, "performer")
    await place(trading, user.headers, symbol="BTC/USDT", side="buy", quantity="0.05")
    price = await trading.price()
    await trading.bar(low=price, high=price * Decimal("1.1"), close=price * Decimal("1.1"))
    closed = await trading.http.post("/api/v1/positions/BTC-USDT/close", headers=user.headers)
    assert closed.status_code == 200, closed.text
    pnl = (await trading.http.get("/api/v1/pnl?period=all", headers=user.headers)).json()
    assert pnl["trades"] == 2 and pnl["winning_trades"] == 1 and pnl["win_rate"] == 100.0
    assert Decimal(pnl["realized_pnl"]) > 0
    assert pnl["by_symbol"][0]["symbol"] == "BTC/USDT" and pnl["by_symbol"][0]["trades"] == 1
    assert pnl["by_strategy"][0]["strategy"] == "manual"
    today = (await trading.http.get("/api/v1/pnl", headers=user.headers)).json()
    assert today["period"] == "daily" and today["trades"] == 2
    bad = await trading.http.get("/api/v1/pnl?period=hourly", headers=user.headers)
    assert_error(bad, 422, "VALIDATION_ERROR")
    first = (await trading.http.get("/api/v1/portfolio/performance?period=7d", headers=user.headers)).json()
    assert Decimal(first["initial_balance"]) == 10000
    # Yesterday's close, as the hourly snapshot task would have stored it.
    account = await trading.container.accounts.paper_account(user.id)
    now = trading.container.clock.now()
    async with trading.container.uow_factory() as uow:
        await uow.equity.upsert(
            EquitySnapshot(account.id, (now - timedelta(days=1)).date(), Decimal(9900), "USDT", now)
        )
        await uow.commit()
    perf = (await trading.http.get("/api/v1/portfolio/performance?period=all", headers=user.headers)).json()
    assert len(perf["daily_returns"]) == 2
    assert Decimal(perf["final_balance"]) > 10000
    assert perf["metrics"]["win_rate"] == 100.0
    assert perf["metrics"]["max_drawdown"] is not None and perf["metrics"]["max_drawdown"] <= 0


async def test_rebalance_plans_then_executes(trading):
    user = await register_user(trading.http, "balancer")
    body = {"targets": {"BTC": "0.5", "ETH/USDT": "0.25"}}
    plan = await trading.http.post("/api/v1/portfolio/rebalance", headers=user.headers, json=body)
    assert plan.status_code == 200, plan.text
    planned = plan.json()
    assert planned["dry_run"] is True and planned["orders"] == []
    assert {(t["asset"], t["side"]) for t in planned["trades"]} == {("BTC", "buy"), ("ETH", "buy")}
    assert (await trading.http.get("/api/v1/orders", headers=user.headers)).json()["total"] == 0
    done = await trading.http.post(
        "/api/v1/portfolio/rebalance", headers=user.headers, json={**body, "dry_run": False}
    )
    assert done.status_code == 200, done.text
    assert [o["status"] for o in done.json()["orders"]] == ["filled", "filled"]
    portfolio = (await trading.http.get("/api/v1/portfolio", headers=user.headers)).json()
    weights = {row["asset"]: row["weight"] for row in portfolio["allocation"]}
    assert abs(weights["BTC"] - 0.5) < 0.01 and abs(weights["ETH"] - 0.25) < 0.01
    # Selling down: BTC to zero (not named), ETH kept.
    again = await trading.http.post(
        "/api/v1/portfolio/rebalance",
        headers=user.headers,
        json={"targets": {"ETH": "0.25"}, "dry_run": False},
    )
    assert [(t["asset"], t["side"]) for t in again.json()["trades"]] == [("BTC", "sell")]
    too_much = await trading.http.post(
        "/api/v1/portfolio/rebalance", headers=user.headers, json={"targets": {"BTC": "0.8", "ETH": "0.3"}}
    )
    assert_error(too_much, 422, "VALIDATION_ERROR")


async def test_leverage_and_paper_reset(trading):
    user = await register_user(trading.http, "resetter")
    spot = await trading.http.put("/api/v1/leverage/BTCUSDT", headers=user.headers, json={"leverage": 10})
    assert_error(spot, 400, "ORDER_REJECTED")
    price = await trading.price()
    await place(trading, user.headers, symbol="BTC/USDT", side="buy", quantity="0.01")
    await place(
        trading,
        user.headers,
        symbol="BTC/USDT",
        side="buy",
        type="limit",
        quantity="0.01",
        price=str((price * Decimal("0.5")).quantize(Decimal("0.01"))),
    )
    reset = await trading.http.post(
        "/api/v1/account/reset", headers=user.headers, json={"balances": {"usdt": "5000", "BTC": "0.1"}}
    )
    assert reset.status_code == 200, reset.text
    assert reset.json()["starting_balances"] == {"USDT": "5000", "BTC": "0.1"}
    balance = (await trading.http.get("/api/v1/balance", headers=user.headers)).json()
    rows = {row["asset"]: (row["free"], row["locked"]) for row in balance["balances"]}
    assert rows == {"USDT": ("5000", "0"), "BTC": ("0.1", "0")}
    open_orders = (await trading.http.get("/api/v1/orders?status=new", headers=user.headers)).json()
    assert open_orders["total"] == 0
    assert (await trading.http.get("/api/v1/positions", headers=user.headers)).json()["items"] == []
    negative = await trading.http.post(
        "/api/v1/account/reset", headers=user.headers, json={"balances": {"USDT": "-1"}}
    )
    assert_error(negative, 422, "VALIDATION_ERROR")


async def test_selling_coins_from_the_starting_balance(trading):
    user = await register_user(trading.http, "inheritor")
    await trading.http.post(
        "/api/v1/account/reset", headers=user.headers, json={"balances": {"USDT": "100", "BTC": "0.1"}}
    )
    sold = await place(trading, user.headers, symbol="BTC/USDT", side="sell", quantity="0.05")
    assert sold["status"] == "filled"
    trade = (await trading.http.get("/api/v1/trades", headers=user.headers)).json()["items"][0]
    assert Decimal(trade["realized_pnl"]) == 0  # their cost is unknown: nothing is realised
    balance = (await trading.http.get("/api/v1/balance?asset=BTC", headers=user.headers)).json()
    assert balance["balances"][0]["free"] == "0.05"


async def test_hourly_snapshots_cover_accounts_that_did_not_trade_since_the_start(trading):
    """After a restart nothing has traded in this process yet, but a holder's equity still moves
    with prices: the snapshot round values every account that holds something."""
    holder = await register_user(trading.http, "quietholder")
    await place(trading, holder.headers, symbol="BTC/USDT", side="buy", quantity="0.05")
    account = await trading.container.accounts.paper_account(holder.id)
    runtime = trading.container.trading
    runtime.touched.clear()  # what a freshly started process knows
    price = await trading.price()
    await trading.bar(low=price, high=price * Decimal("1.2"), close=price * Decimal("1.2"))
    assert await runtime.snapshot_all() >= 1
    async with trading.container.uow_factory() as uow:
        snapshots = await uow.equity.list(account.id)
    assert [s.day for s in snapshots] == [trading.container.clock.now().date()]
    valuation = await trading.container.portfolio.value_account(account)
    assert snapshots[0].equity == valuation.equity > 10000  # the BTC at the new price
