"""Orders through the API on the paper account: fills, resting orders, stops, cancels, OCO
protection, idempotency, validation and ownership."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from cryptoorchestrator.testing.api import assert_error, register_user
from cryptoorchestrator.testing.ownership import OwnedRoute, assert_owner_only

pytestmark = pytest.mark.integration

START = Decimal(10000)


async def balances(trading, headers) -> dict[str, dict[str, Decimal]]:
    body = (await trading.http.get("/api/v1/balance", headers=headers)).json()
    return {b["asset"]: {k: Decimal(b[k]) for k in ("free", "locked", "total")} for b in body["balances"]}


async def place(trading, headers, **body):
    response = await trading.http.post("/api/v1/orders", headers=headers, json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def test_market_buy_fills_books_fee_and_position(trading):
    user = await register_user(trading.http, "buyer")
    price = await trading.price()
    order = await place(trading, user.headers, symbol="BTCUSDT", side="buy", type="market", quantity="0.01")
    assert order["status"] == "filled"
    assert Decimal(order["filled_quantity"]) == Decimal("0.01")
    average = Decimal(order["average_price"])
    assert average > price  # bought at the ask plus slippage, never below the last price
    fee = order["fees"]["USDT"]
    assert Decimal(fee) == average * Decimal("0.01") * Decimal("0.001")
    held = await balances(trading, user.headers)
    assert held["BTC"]["free"] == Decimal("0.01")
    assert held["USDT"]["locked"] == 0
    assert held["USDT"]["free"] == START - average * Decimal("0.01") - Decimal(fee)
    trades = (await trading.http.get("/api/v1/trades", headers=user.headers)).json()
    assert trades["total"] == 1 and trades["summary"]["trades"] == 1
    positions = (await trading.http.get("/api/v1/positions", headers=user.headers)).json()
    assert [(p["symbol"], p["side"], p["quantity"]) for p in positions["items"]] == [
        ("BTC/USDT", "long", "0.01")
    ]


async def test_resting_limit_sell_fills_when_the_replayed_price_crosses(trading):
    user = await register_user(trading.http, "seller")
    await place(trading, user.headers, symbol="BTC/USDT", side="buy", quantity="0.02")
    price = await trading.price()
    limit = (price * Decimal("1.02")).quantize(Decimal("0.01"))
    order = await place(
        trading, user.headers, symbol="BTC-USDT", side="sell", type="limit", quantity="0.02", price=str(limit)
    )
    assert order["status"] == "new"
    held = await balances(trading, user.headers)
    assert held["BTC"]["locked"] == Decimal("0.02") and held["BTC"]["free"] == 0
    await trading.bar(low=price * Decimal("0.99"), high=price * Decimal("1.01"))  # not yet
    assert (await trading.http.get(f"/api/v1/orders/{order['id']}", headers=user.headers)).json()[
        "status"
    ] == "new"
    await trading.bar(low=price, high=limit * Decimal("1.001"))
    filled = (await trading.http.get(f"/api/v1/orders/{order['id']}", headers=user.headers)).json()
    assert filled["status"] == "filled"
    assert Decimal(filled["average_price"]) == limit  # a resting order fills at its price (maker)
    held = await balances(trading, user.headers)
    assert held.get("BTC", {"total": Decimal(0)})["total"] == 0
    trades = (await trading.http.get("/api/v1/trades", headers=user.headers)).json()
    closing = [t for t in trades["items"] if t["realized_pnl"] is not None]
    assert len(closing) == 1 and Decimal(closing[0]["realized_pnl"]) > 0
    assert trades["summary"]["winning_trades"] == 1 and trades["summary"]["win_rate"] == 100.0


async def test_stop_market_triggers(trading):
    user = await register_user(trading.http, "stopper")
    await place(trading, user.headers, symbol="BTC/USDT", side="buy", quantity="0.01")
    price = await trading.price()
    stop = (price * Decimal("0.97")).quantize(Decimal("0.01"))
    order = await place(
        trading,
        user.headers,
        symbol="BTC/USDT",
        side="sell",
        type="stop_market",
        quantity="0.01",
        stop_price=str(stop),
    )
    assert order["status"] == "new" and order["triggered"] is False
    await trading.bar(low=stop * Decimal("0.99"), high=price, open_=price, close=stop)
    done = (await trading.http.get(f"/api/v1/orders/{order['id']}", headers=user.headers)).json()
    assert done["status"] == "filled" and done["triggered"] is True
    assert Decimal(done["average_price"]) <= stop  # the stop price less slippage


async def test_cancel_releases_the_lock(trading):
    user = await register_user(trading.http, "canceller")
    price = await trading.price()
    limit = (price * Decimal("0.9")).quantize(Decimal("0.01"))
    order = await place(
        trading, user.headers, symbol="BTC/USDT", side="buy", type="limit", quantity="0.1", price=str(limit)
    )
    held = await balances(trading, user.headers)
    assert held["USDT"]["locked"] == Decimal("0.1") * limit * Decimal("1.001")
    assert held["USDT"]["total"] == START
    canceled = await trading.http.delete(f"/api/v1/orders/{order['id']}", headers=user.headers)
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
    held = await balances(trading, user.headers)
    assert held["USDT"] == {"free": START, "locked": 0, "total": START}
    again = await trading.http.delete(f"/api/v1/orders/{order['id']}", headers=user.headers)
    assert_error(again, 400, "ORDER_NOT_OPEN")


async def test_close_all_flattens_every_position(trading):
    user = await register_user(trading.http, "closer")
    await place(trading, user.headers, symbol="BTC/USDT", side="buy", quantity="0.01")
    await place(trading, user.headers, symbol="ETH/USDT", side="buy", quantity="0.5")
    result = await trading.http.post("/api/v1/positions/close-all", headers=user.headers)
    assert result.status_code == 200, result.text
    assert result.json()["closed"] == 2
    assert all(o["status"] == "filled" and o["reduce_only"] for o in result.json()["orders"])
    positions = (await trading.http.get("/api/v1/positions", headers=user.headers)).json()
    assert positions["items"] == []
    none_left = await trading.http.post("/api/v1/positions/BTCUSDT/close", headers=user.headers)
    assert_error(none_left, 404, "POSITION_NOT_FOUND")


async def test_stop_loss_and_take_profit_form_an_oco_pair(trading):
    user = await register_user(trading.http, "protected")
    price = await trading.price()
    stop, target = (
        (price * Decimal("0.95")).quantize(Decimal("0.01")),
        (price * Decimal("1.05")).quantize(Decimal("0.01")),
    )
    parent = await place(
        trading,
        user.headers,
        symbol="BTC/USDT",
        side="buy",
        quantity="0.01",
        stop_loss=str(stop),
        take_profit=str(target),
    )
    assert parent["status"] == "filled"
    listed = (await trading.http.get("/api/v1/orders?status=new", headers=user.headers)).json()["items"]
    children = {o["type"]: o for o in listed}
    assert set(children) == {"stop_market", "limit"}
    assert {o["oco_group"] for o in listed} == {parent["id"]} and all(o["reduce_only"] for o in listed)
    position = (await trading.http.get("/api/v1/positions", headers=user.headers)).json()["items"][0]
    assert Decimal(position["stop_loss"]) == stop and Decimal(position["take_profit"]) == target
    await trading.bar(low=price, high=target * Decimal("1.001"))
    tp = (await trading.http.get(f"/api/v1/orders/{children['limit']['id']}", headers=user.headers)).json()
    sl = (
        await trading.http.get(f"/api/v1/orders/{children['stop_market']['id']}", headers=user.headers)
    ).json()
    assert tp["status"] == "filled" and sl["status"] == "canceled" and sl["reason"] == "oco"
    held = await balances(trading, user.headers)
    assert held.get("BTC", {"locked": Decimal(0)})["locked"] == 0
    assert held["USDT"]["locked"] == 0


async def test_client_order_id_is_idempotent_and_conflicts_on_a_different_body(trading):
    user = await register_user(trading.http, "repeater")
    body = {
        "symbol": "BTCUSDT",
        "side": "BUY",
        "type": "MARKET",
        "quantity": "0.001",
        "client_order_id": "mine-1",
    }
    first = await place(trading, user.headers, **body)
    second = await place(trading, user.headers, **body)
    assert first["id"] == second["id"]
    conflict = await trading.http.post(
        "/api/v1/orders", headers=user.headers, json={**body, "quantity": "0.002"}
    )
    assert_error(conflict, 409, "CONFLICT")
    listed = (await trading.http.get("/api/v1/orders", headers=user.headers)).json()
    assert listed["total"] == 1


async def test_twenty_concurrent_identical_posts_create_one_order(trading):
    user = await register_user(trading.http, "racer")
    body = {"symbol": "BTC/USDT", "side": "buy", "quantity": "0.001", "client_order_id": "race-1"}
    responses = await asyncio.gather(
        *(trading.http.post("/api/v1/orders", headers=user.headers, json=body) for _ in range(20))
    )
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["id"] for r in responses}) == 1
    listed = (await trading.http.get("/api/v1/orders", headers=user.headers)).json()
    assert listed["total"] == 1
    trades = (await trading.http.get("/api/v1/trades", headers=user.headers)).json()
    assert trades["total"] == 1
    held = await balances(trading, user.headers)
    assert held["BTC"]["total"] == Decimal("0.001")


async def test_insufficient_balance_stores_nothing(trading):
    user = await register_user(trading.http, "poor")
    response = await trading.http.post(
        "/api/v1/orders", headers=user.headers, json={"symbol": "BTC/USDT", "side": "buy", "quantity": "10"}
    )
    error = assert_error(response, 400, "INSUFFICIENT_BALANCE")
    assert error["details"]["asset"] == "USDT"
    assert Decimal(error["details"]["required"]) > Decimal(error["details"]["available"]) == START
    assert (await trading.http.get("/api/v1/orders", headers=user.headers)).json()["total"] == 0
    sell = await trading.http.post(
        "/api/v1/orders", headers=user.headers, json={"symbol": "BTC/USDT", "side": "sell", "quantity": "1"}
    )
    assert_error(sell, 400, "INSUFFICIENT_BALANCE")


async def test_order_validation_errors(trading):
    user = await register_user(trading.http, "sloppy")
    post = trading.http.post
    no_price = await post(
        "/api/v1/orders",
        headers=user.headers,
        json={"symbol": "BTC/USDT", "side": "buy", "type": "limit", "quantity": "1"},
    )
    assert_error(no_price, 422, "VALIDATION_ERROR")
    unknown = await post(
        "/api/v1/orders", headers=user.headers, json={"symbol": "NOPE/USDT", "side": "buy", "quantity": "1"}
    )
    assert_error(unknown, 404, "INVALID_SYMBOL")
    tiny = await post(
        "/api/v1/orders",
        headers=user.headers,
        json={"symbol": "BTC/USDT", "side": "buy", "quantity": "0.00000001"},
    )
    assert_error(tiny, 400, "ORDER_REJECTED")
    reduce = await post(
        "/api/v1/orders",
        headers=user.headers,
        json={"symbol": "BTC/USDT", "side": "sell", "quantity": "0.01", "reduce_only": True},
    )
    assert_error(reduce, 400, "ORDER_REJECTED")
    bad_side = await post(
        "/api/v1/orders", headers=user.headers, json={"symbol": "BTC/USDT", "side": "hold", "quantity": "1"}
    )
    assert_error(bad_side, 422, "VALIDATION_ERROR")
    bad_status = await trading.http.get("/api/v1/orders?status=sleeping", headers=user.headers)
    assert_error(bad_status, 422, "VALIDATION_ERROR")
    assert (await trading.http.get("/api/v1/orders", headers=user.headers)).json()["total"] == 0


async def test_numbers_are_read_as_exact_decimals(trading):
    user = await register_user(trading.http, "exact")
    price = await trading.price()
    limit = (price * Decimal("0.5")).quantize(Decimal("0.01"))
    response = await trading.http.post(
        "/api/v1/orders",
        headers={**user.headers, "content-type": "application/json"},
        content='{"symbol": "BTC/USDT", "side": "buy", "type": "limit", "quantity": 0.12345678, '
        f'"price": {limit}}}',
    )
    assert response.status_code == 201, response.text
    assert response.json()["quantity"] == "0.12345678"
    assert Decimal(response.json()["price"]) == limit


async def test_trading_alias_and_filters(trading):
    user = await register_user(trading.http, "aliased")
    created = await trading.http.post(
        "/api/v1/trading/orders",
        headers=user.headers,
        json={"symbol": "ETHUSDT", "side": "buy", "amount": "0.1"},
    )
    assert created.status_code == 201, created.text
    listed = (
        await trading.http.get("/api/trading/orders?symbol=ETH-USDT&status=filled", headers=user.headers)
    ).json()
    assert [o["id"] for o in listed["items"]] == [created.json()["id"]]
    none = (await trading.http.get("/api/v1/orders?symbol=BTCUSDT", headers=user.headers)).json()
    assert none["total"] == 0


async def test_orders_and_trades_are_owner_only(trading):
    alice = await register_user(trading.http, "alice")
    bob = await register_user(trading.http, "bob")
    price = await trading.price()
    resting = await place(
        trading,
        alice.headers,
        symbol="BTC/USDT",
        side="buy",
        type="limit",
        quantity="0.01",
        price=str((price * Decimal("0.8")).quantize(Decimal("0.01"))),
    )
    await assert_owner_only(
        trading.http,
        owner_headers=alice.headers,
        intruder_headers=bob.headers,
        object_id=resting["id"],
        missing_id="00000000-0000-0000-0000-000000000000",
        routes=[OwnedRoute("GET", "/api/v1/orders/{id}"), OwnedRoute("DELETE", "/api/v1/orders/{id}")],
        check=OwnedRoute("GET", "/api/v1/orders/{id}"),
    )
    await place(trading, alice.headers, symbol="BTC/USDT", side="buy", quantity="0.001")
    trade = (await trading.http.get("/api/v1/trades", headers=alice.headers)).json()["items"][0]
    await assert_owner_only(
        trading.http,
        owner_headers=alice.headers,
        intruder_headers=bob.headers,
        object_id=trade["id"],
        missing_id="00000000-0000-0000-0000-000000000000",
        routes=[OwnedRoute("GET", "/api/v1/trades/{id}")],
        check=OwnedRoute("GET", "/api/v1/trades/{id}"),
    )
    foreign_account = await trading.http.get(
        f"/api/v1/account?account_id={resting['account_id']}", headers=bob.headers
    )
    assert_error(foreign_account, 404, "NOT_FOUND")
    assert (await trading.http.get("/api/v1/orders", headers=bob.headers)).json()["total"] == 0
