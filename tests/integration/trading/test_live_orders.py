"""Live orders through the real ccxt code path against the fake exchange: a submission whose
answer is lost ends as exactly one order at the exchange and in the database, whichever way
the answer was lost; a refused order is rejected, never left unknown; what happens to an open
order at the exchange (a fill, a cancel there) is booked by the server's live order poller."""

from __future__ import annotations

import asyncio
import contextlib
from decimal import Decimal

import pytest

from cryptoorchestrator.exchanges.client import CcxtExchangeClient
from cryptoorchestrator.exchanges.ratelimit import RateBudgetRegistry
from cryptoorchestrator.testing.api import register_user
from cryptoorchestrator.testing.fake_exchange import FakeBinance, FaultKind
from cryptoorchestrator.testing.fake_exchange_venue import SimulatedBinanceSpot
from tests.conftest import client_for

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def live_app(app_factory, clock, **settings):
    venue = SimulatedBinanceSpot(clock=clock)
    fake = FakeBinance(venue=venue)
    registry = RateBudgetRegistry()

    def venue_factory(account, credentials):
        return CcxtExchangeClient(fake, budget_registry=registry, owns_exchange=False)

    app, container = await app_factory(venue_factory=venue_factory, paper_poll_seconds=0, **settings)
    async with client_for(app) as http:
        user = await register_user(http, "live")
        account = await container.accounts.create_exchange_account(
            user.id, name="binance-main", exchange="binance", credentials_encrypted=None
        )
        await container.orders.sync_balances(account)
        yield http, container, venue, fake, user, account
    await fake.close()


@pytest.fixture
async def live(app_factory, clock):
    async with live_app(app_factory, clock) as parts:
        yield parts


async def order_body(account, **extra):
    return {"account_id": account.id, "symbol": "BTC/USDT", "side": "buy", "quantity": "0.01", **extra}


@pytest.mark.parametrize("fault", [FaultKind.DROPPED_RESPONSE, FaultKind.TIMEOUT, FaultKind.SERVER_ERROR])
async def test_a_lost_answer_ends_as_exactly_one_order(live, fault):
    http, container, venue, fake, user, account = live
    fake.inject(fault, method="POST", path_contains="/api/v3/order")
    response = await http.post(
        "/api/v1/orders", headers=user.headers, json=await order_body(account, client_order_id="lost-1")
    )
    assert response.status_code == 201, response.text
    order = response.json()
    assert order["status"] == "unknown"  # never "rejected" on a guess
    stored = await container.orders.get(user.id, order["id"])
    resolved = await container.orders.resolve_unknown(account, stored)
    assert resolved.status.value == "filled"
    assert len(venue.orders_with_client_id("lost-1")) == 1
    listed = (await http.get(f"/api/v1/orders?account_id={account.id}", headers=user.headers)).json()
    assert listed["total"] == 1 and listed["items"][0]["status"] == "filled"
    trades = (await http.get(f"/api/v1/trades?account_id={account.id}", headers=user.headers)).json()
    assert trades["total"] == len(venue.trades("BTCUSDT")) >= 1
    # Resolving again books nothing twice.
    again = await container.orders.resolve_unknown(account, resolved)
    assert again.filled_quantity == Decimal("0.01")
    assert (await http.get(f"/api/v1/trades?account_id={account.id}", headers=user.headers)).json()[
        "total"
    ] == (trades["total"])
    async with container.uow_factory() as uow:
        sums = await uow.ledger.entry_sums(account.id)
        balances = await uow.ledger.balances(account.id)
    for asset, balance in balances.items():
        assert sums[asset] == (balance.free, balance.locked)
    btc_free, _ = venue.balance("BTC")
    assert balances["BTC"].total == btc_free


async def test_a_refused_order_is_rejected(live):
    http, _, venue, _, user, account = live
    response = await http.post(
        "/api/v1/orders",
        headers=user.headers,
        json=await order_body(account, quantity="0.5", side="sell", type="limit", price="1000000"),
    )
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "new"
    venue.set_balance("BTC", 0)  # the exchange no longer has the coins the next order needs
    refused = await http.post(
        "/api/v1/orders",
        headers=user.headers,
        json=await order_body(account, quantity="0.4", side="sell", type="limit", price="1000000"),
    )
    assert refused.status_code == 201, refused.text
    assert refused.json()["status"] == "rejected"
    canceled = await http.delete(f"/api/v1/orders/{response.json()['id']}", headers=user.headers)
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
    assert venue.orders("BTCUSDT")[0].status == "CANCELED"


async def test_the_live_poller_books_what_happened_at_the_exchange(live):
    """A resting sell that fills at the exchange and a buy canceled there (on the exchange's
    own website, say) are booked by the next round: fills, released funds, balances that match
    the exchange's; a second round books nothing again."""
    http, container, venue, _, user, account = live
    price = venue.price("BTC/USDT")
    sell = await http.post(
        "/api/v1/orders",
        headers=user.headers,
        json=await order_body(account, side="sell", type="limit", quantity="0.2", price=str(price * 2)),
    )
    buy = await http.post(
        "/api/v1/orders",
        headers=user.headers,
        json=await order_body(account, type="limit", quantity="0.1", price=str(price / 2)),
    )
    assert sell.json()["status"] == buy.json()["status"] == "new"
    runtime = container.trading
    assert await runtime.refresh_live_once() == {}  # nothing happened yet
    venue.set_price("BTC/USDT", price * 3)  # crosses the sell: it fills at its limit
    (resting_buy,) = venue.orders_with_client_id(buy.json()["client_order_id"])
    venue.account.cancel(resting_buy, {})
    changed = await runtime.refresh_live_once()
    assert {order_id: o.status.value for order_id, o in changed.items()} == {
        sell.json()["id"]: "filled",
        buy.json()["id"]: "canceled",
    }
    got = (await http.get(f"/api/v1/orders/{sell.json()['id']}", headers=user.headers)).json()
    assert got["status"] == "filled" and Decimal(got["average_price"]) == price * 2
    trades = (await http.get(f"/api/v1/trades?account_id={account.id}", headers=user.headers)).json()
    assert trades["total"] == 1 and Decimal(trades["items"][0]["quantity"]) == Decimal("0.2")
    async with container.uow_factory() as uow:
        sums = await uow.ledger.entry_sums(account.id)
        balances = await uow.ledger.balances(account.id)
    for asset, balance in balances.items():
        assert sums[asset] == (balance.free, balance.locked)
        assert balance.locked == 0  # the sell's coins are gone, the buy's cash released
    assert balances["BTC"].free == venue.balance("BTC")[0]
    assert balances["USDT"].free == venue.balance("USDT")[0]
    assert await runtime.refresh_live_once() == {}


async def test_the_live_poller_resolves_an_unknown_submission_once_it_is_old_enough(live, clock):
    http, container, venue, fake, user, account = live
    fake.inject(FaultKind.DROPPED_RESPONSE, method="POST", path_contains="/api/v3/order")
    response = await http.post(
        "/api/v1/orders", headers=user.headers, json=await order_body(account, client_order_id="late-1")
    )
    assert response.json()["status"] == "unknown"
    runtime = container.trading
    assert await runtime.refresh_live_once() == {}  # its sender may still be waiting for the answer
    clock.advance(61)
    changed = await runtime.refresh_live_once()
    assert changed[response.json()["id"]].status.value == "filled"
    assert len(venue.orders_with_client_id("late-1")) == 1  # found, never sent twice


async def test_the_server_polls_live_orders_by_itself(app_factory, clock):
    async with live_app(app_factory, clock, live_poll_seconds=0.05) as live:
        http, _, venue, _, user, account = live
        price = venue.price("BTC/USDT")
        sell = await http.post(
            "/api/v1/orders",
            headers=user.headers,
            json=await order_body(account, side="sell", type="limit", price=str(price * 2)),
        )
        assert sell.json()["status"] == "new"
        venue.set_price("BTC/USDT", price * 3)
        status = "new"
        for _ in range(100):
            await asyncio.sleep(0.05)
            got = await http.get(f"/api/v1/orders/{sell.json()['id']}", headers=user.headers)
            status = got.json()["status"]
            if status == "filled":
                break
        assert status == "filled"


async def test_live_stop_orders_rest_at_the_exchange_as_its_trigger_orders_until_the_price_reaches_them(live):
    """A stop-limit sell below the price and a stop-market buy above it go to Binance spot as
    STOP_LOSS_LIMIT and STOP_LOSS (through ccxt's unified trigger orders), rest there untriggered,
    and fill once the price reaches them; the poller books the fills."""
    http, container, venue, _, user, account = live
    price = venue.price("BTC/USDT")
    stop_sell = await http.post(
        "/api/v1/orders",
        headers=user.headers,
        json=await order_body(
            account, side="sell", type="stop_limit", quantity="0.1",
            stop_price=str(price * Decimal("0.9")), price=str(price * Decimal("0.89")),
        ),
    )  # fmt: skip
    stop_buy = await http.post(
        "/api/v1/orders",
        headers=user.headers,
        json=await order_body(
            account, type="stop_market", quantity="0.01", stop_price=str(price * Decimal("1.1"))
        ),
    )
    assert stop_sell.json()["status"] == stop_buy.json()["status"] == "new", (stop_sell.text, stop_buy.text)
    (at_venue_sell,) = venue.orders_with_client_id(stop_sell.json()["client_order_id"])
    (at_venue_buy,) = venue.orders_with_client_id(stop_buy.json()["client_order_id"])
    assert (at_venue_sell.type, at_venue_sell.stop_price, at_venue_sell.working) == (
        "STOP_LOSS_LIMIT",
        price * Decimal("0.9"),
        False,
    )
    assert (at_venue_buy.type, at_venue_buy.stop_price) == ("STOP_LOSS", price * Decimal("1.1"))
    runtime = container.trading
    venue.set_price("BTC/USDT", price * Decimal("1.05"))  # reaches neither
    assert await runtime.refresh_live_once() == {}
    venue.set_price("BTC/USDT", price * Decimal("1.12"))  # the buy's trigger: it fills at the price
    venue.set_price("BTC/USDT", price * Decimal("0.895"))  # the sell's trigger, above its limit
    changed = await runtime.refresh_live_once()
    assert {o.status.value for o in changed.values()} == {"filled"} and len(changed) == 2
    assert changed[stop_buy.json()["id"]].average_price == price * Decimal("1.12")
    assert changed[stop_sell.json()["id"]].average_price == price * Decimal("0.895")
    async with container.uow_factory() as uow:
        balances = await uow.ledger.balances(account.id)
    assert balances["BTC"].total == venue.balance("BTC")[0]
    assert balances["USDT"].total == venue.balance("USDT")[0]


async def test_a_stop_that_would_trigger_at_once_is_rejected_with_the_exchanges_reason(live):
    http, _, venue, _, user, account = live
    price = venue.price("BTC/USDT")
    response = await http.post(
        "/api/v1/orders",
        headers=user.headers,
        json=await order_body(account, side="sell", type="stop_market", stop_price=str(price * 2)),
    )
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "rejected"
    assert "trigger immediately" in response.json()["reason"]
