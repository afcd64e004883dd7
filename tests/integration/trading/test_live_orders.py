"""Live orders through the real ccxt code path against the fake exchange: a submission whose
answer is lost ends as exactly one order at the exchange and in the database, whichever way
the answer was lost; a refused order is rejected, never left unknown."""

from __future__ import annotations

from decimal import Decimal

import pytest

from cryptoorchestrator.exchanges.client import CcxtExchangeClient
from cryptoorchestrator.exchanges.ratelimit import RateBudgetRegistry
from cryptoorchestrator.testing.api import register_user
from cryptoorchestrator.testing.fake_exchange import FakeBinance, FaultKind
from cryptoorchestrator.testing.fake_exchange_venue import SimulatedBinanceSpot
from tests.conftest import client_for

pytestmark = pytest.mark.integration


@pytest.fixture
async def live(app_factory, clock):
    venue = SimulatedBinanceSpot(clock=clock)
    fake = FakeBinance(venue=venue)
    registry = RateBudgetRegistry()

    def venue_factory(account, credentials):
        return CcxtExchangeClient(fake, budget_registry=registry, owns_exchange=False)

    app, container = await app_factory(venue_factory=venue_factory, paper_poll_seconds=0)
    async with client_for(app) as http:
        user = await register_user(http, "live")
        account = await container.accounts.create_exchange_account(
            user.id, name="binance-main", exchange="binance", credentials_encrypted=None
        )
        await container.orders.sync_balances(account)
        yield http, container, venue, fake, user, account
    await fake.close()


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
