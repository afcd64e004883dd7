"""A live bot on the fake exchange (ccxt's real Binance code over an in-memory venue): trading,
and reconciling after it was down (bot_reconcile C1-C5): an order filled while it was down, one
cancelled outside it, an unknown order carrying its prefix, a partial fill older than the
look-back, an unreachable exchange, balances that moved; and a venue that refuses stops (R8)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from cryptoorchestrator.core.clock import SimClock
from cryptoorchestrator.domain.accounts import TradingAccount
from cryptoorchestrator.domain.bots import Bot
from cryptoorchestrator.domain.orders import Order, OrderType
from cryptoorchestrator.exchanges.client import CcxtExchangeClient
from cryptoorchestrator.exchanges.ratelimit import RateBudgetRegistry
from cryptoorchestrator.services.bot_orders import bot_prefix
from cryptoorchestrator.services.bot_reconcile import LOOKBACK
from cryptoorchestrator.testing.fake_exchange import FakeBinance, FaultKind
from cryptoorchestrator.testing.fake_exchange_data import FakeMarket
from cryptoorchestrator.testing.fake_exchange_venue import SimulatedBinanceSpot
from tests.integration.bots.conftest import SYMBOL, BotsEnv, from_closes, next_slot_ms

pytestmark = pytest.mark.integration

MARKET = FakeMarket(
    base="BTC",
    quote="USDT",
    price=Decimal("100.00"),
    tick_size=Decimal("0.01"),
    step_size=Decimal("0.00001"),
    min_qty=Decimal("0.00001"),
    min_notional=Decimal("5"),
    # Like many Binance spot symbols: stop-limit orders but no stop-market (STOP_LOSS) ones, so
    # a bot's stop-market protection is refused (test_a_venue_that_refuses_stops_...).
    order_types=("LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"),
)
TARGET = {"risk_per_trade": "0.3", "take_profit": "0.05"}


@dataclass
class Live:
    env: BotsEnv
    venue: SimulatedBinanceSpot
    fake: FakeBinance
    account: TradingAccount

    async def bot(self, risk: dict[str, Any] | None = None, **script: list[int]) -> Bot:
        self.env.script(**(script or {"entry_long": [1]}))
        bot = await self.env.create(
            "live", strategy_type="scripted", params={}, risk=risk or TARGET, account_id=self.account.id
        )
        await self.env.start(bot)
        await self.env.subscribed()
        await self.env.step(bot, count=2)
        return bot

    async def restart(self, bot: Bot, *statuses: str) -> Bot:
        """Start the runner again (it was stopped) and wait for the bot to settle."""
        await self.env.runner.start()
        await self.env.runner.wait_ready(bot.id)
        return await self.env.wait_status(bot, *(statuses or ("running",)))

    async def take_profit(self, bot: Bot) -> Order:
        [order] = [o for o in await self.env.open_orders(bot) if o.type is OrderType.LIMIT]
        return order

    async def agrees_with_the_venue(self) -> None:
        """The ledger's totals are the venue's, and every balance is the sum of its entries."""
        await self.env.ledger_consistent(self.account.id)
        async with self.env.container.uow_factory() as uow:
            balances = await uow.ledger.balances(self.account.id)
        for asset in ("USDT", "BTC"):
            free, locked = self.venue.balance(asset)
            ours = balances[asset].total if asset in balances else Decimal(0)
            assert ours == free + locked, asset


@pytest.fixture
async def live(bots_env_factory) -> Live:
    clock = SimClock(start=1_800_000_000.0)
    venue = SimulatedBinanceSpot(clock=clock, markets=[MARKET], balances={"USDT": "10000", "BTC": "0"})
    fake = FakeBinance(venue=venue)
    registry = RateBudgetRegistry()

    def venue_factory(account: Any, credentials: Any) -> CcxtExchangeClient:
        return CcxtExchangeClient(fake, budget_registry=registry, owns_exchange=False)

    frame = from_closes([100.0] * 40, start_ms=next_slot_ms(clock))
    env: BotsEnv = await bots_env_factory({SYMBOL: frame}, clock=clock, venue_factory=venue_factory)
    env.on_release = lambda symbol, row: venue.set_price(symbol, Decimal(str(round(row.close, 2))))
    account = await env.container.accounts.create_exchange_account(
        env.user.id, name="binance-main", exchange="binance", credentials_encrypted=None
    )
    await env.container.orders.sync_balances(account)
    yield Live(env, venue, fake, account)
    await fake.close()


async def test_a_live_bot_trades_at_the_exchange_under_its_client_ids(live: Live) -> None:
    bot = await live.bot(entry_long=[1], exit_long=[4])
    take = await live.take_profit(bot)
    assert take.exchange_order_id is not None and take.price == Decimal("105.00")
    await live.env.step(bot, count=3)
    orders = await live.env.orders(bot)
    for order in orders:
        assert order.client_order_id.startswith(bot_prefix(bot.id))
        assert len(live.venue.orders_with_client_id(order.client_order_id)) == 1
    assert {o.client_order_id.rsplit("-", 1)[1] for o in orders} == {"el", "tp", "x"}
    assert await live.env.position(account_id=live.account.id) < MARKET.step_size  # the base fee's dust
    await live.agrees_with_the_venue()


async def test_an_order_filled_while_the_bot_was_down_is_booked(live: Live) -> None:
    bot = await live.bot()
    take = await live.take_profit(bot)
    await live.env.runner.stop()
    live.venue.set_price(SYMBOL, "106")  # the take profit fills at the exchange
    await live.restart(bot)
    filled = await live.env.container.orders.get(live.env.user.id, take.id)
    assert filled.status.value == "filled" and filled.filled_quantity == take.quantity
    reconciled = (await live.env.events(bot, "reconcile"))[-1]
    assert take.client_order_id in reconciled.data["resolved"]
    await live.agrees_with_the_venue()


async def test_an_order_cancelled_outside_the_bot_is_booked_cancelled(live: Live) -> None:
    bot = await live.bot()
    take = await live.take_profit(bot)
    await live.env.runner.stop()
    await live.fake.cancel_order(take.exchange_order_id, SYMBOL)
    await live.restart(bot)
    cancelled = await live.env.container.orders.get(live.env.user.id, take.id)
    assert cancelled.status.value == "canceled" and cancelled.locked_amount == 0
    await live.agrees_with_the_venue()


async def test_an_unknown_order_with_the_bots_prefix_is_cancelled_and_others_are_left(live: Live) -> None:
    bot = await live.bot()
    await live.env.runner.stop()
    orphan = await live.fake.create_order(
        SYMBOL, "limit", "buy", 0.1, 90, {"newClientOrderId": f"{bot_prefix(bot.id)}zz-BTCUSDT-el"}
    )
    users = await live.fake.create_order(SYMBOL, "limit", "buy", 0.1, 80, {"newClientOrderId": "mine-1"})
    await live.restart(bot)
    statuses = {order.client_order_id: order.status for order in live.venue.orders(SYMBOL)}
    assert statuses[orphan["clientOrderId"]] == "CANCELED"
    assert statuses[users["clientOrderId"]] == "NEW"
    reconciled = (await live.env.events(bot, "reconcile"))[-1]
    assert reconciled.data["cancelled_unknown"] == [orphan["clientOrderId"]]
    await live.agrees_with_the_venue()


async def test_a_partial_fill_older_than_the_look_back_is_booked(live: Live) -> None:
    bot = await live.bot()
    take = await live.take_profit(bot)
    await live.env.runner.stop()
    half = (take.quantity / 2).quantize(MARKET.step_size)
    live.venue.fill_order(int(take.exchange_order_id or 0), half)
    live.env.clock.advance((LOOKBACK + timedelta(hours=1)).total_seconds())
    await live.restart(bot)
    partial = await live.env.container.orders.get(live.env.user.id, take.id)
    assert partial.status.value == "partially_filled" and partial.filled_quantity == half
    async with live.env.container.uow_factory() as uow:
        assert len(await uow.fills.for_order(take.id)) == 1
    await live.agrees_with_the_venue()


async def test_an_unreachable_exchange_stops_the_bot_with_the_reason(live: Live) -> None:
    bot = await live.bot()
    await live.env.runner.stop()
    live.fake.inject(FaultKind.CONNECTION_REFUSED, times=None)
    failed = await live.restart(bot, "error")
    assert failed.error is not None and "reconciled" in failed.error
    live.fake.clear_faults()
    await live.env.container.bots.start(live.env.user.id, bot.id)  # the user tries again
    await live.env.wait_status(bot, "running")


async def test_money_moved_outside_is_booked_as_a_deposit(live: Live) -> None:
    bot = await live.bot()
    await live.env.runner.stop()
    free, _ = live.venue.balance("USDT")
    live.venue.set_balance("USDT", free + 500)
    await live.restart(bot)
    reconciled = (await live.env.events(bot, "reconcile"))[-1]
    assert {asset: Decimal(value) for asset, value in reconciled.data["adjusted"].items()} == {"USDT": 500}
    async with live.env.container.uow_factory() as uow:
        entries, _ = await uow.ledger.entries(live.account.id, asset="USDT", limit=5, offset=0)
    assert any(e.kind == "deposit" and e.reference == "bot-reconcile" for e in entries)
    await live.agrees_with_the_venue()


async def test_a_position_the_exchange_no_longer_holds_stops_the_bot(live: Live) -> None:
    bot = await live.bot()
    await live.env.runner.stop()
    live.venue.set_balance("BTC", 0)  # sold outside the bot
    failed = await live.restart(bot, "error")
    assert failed.error is not None and "cannot tell" in failed.error


async def test_a_venue_that_refuses_stops_gets_the_position_flattened(live: Live) -> None:
    bot = await live.bot({"risk_per_trade": "0.01", "stop_loss": "0.02"})
    orders = await live.env.orders(bot)
    [stop] = [o for o in orders if o.type is OrderType.STOP_MARKET]
    assert stop.status.value == "rejected"  # the market takes no STOP_LOSS orders
    assert "not allowed" in (stop.reason or "")  # ccxt refused it from the market's orderTypes
    assert [o.status.value for o in orders if o.client_order_id.endswith("-fl")] == ["filled"]
    assert await live.env.position(account_id=live.account.id) < MARKET.step_size
    assert any("flattened" in e.message for e in await live.env.events(bot, "protection"))
    await live.agrees_with_the_venue()
