"""Runner processes against one database (real subprocesses; bounded waits, no timing asserts):

* lease hand-over: two ``cryptoorchestrator runner`` processes; the one holding the bot is
  killed (SIGKILL); the other takes the bot once the lease expires and trades on from the
  candle it was at; a SIGTERM stops a runner cleanly and releases its leases;
* kill -9 in the order path: a paper bot and a live bot (on a fake Binance that lives in this
  process, so the exchange survives the kill) trade while the runner is killed at every point of
  order submission (``CO_TEST_CRASH_AT``: before the order is stored, stored but not sent, sent
  but its answer not booked, booked but not seen by the bot); after each kill a new runner
  recovers. At the end: no order twice (in the database or at the exchange), none lost, none
  left ``unknown`` or ``pending``, the ledgers equal the sums of their entries and the live
  ledger equals the exchange's balances.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from cryptoorchestrator.bootstrap import Container, build_container
from cryptoorchestrator.domain.accounts import TradingAccount
from cryptoorchestrator.domain.bots import Bot
from cryptoorchestrator.domain.identity import RequestMeta
from cryptoorchestrator.domain.orders import OrderStatus
from cryptoorchestrator.exchanges.client import CcxtExchangeClient
from cryptoorchestrator.exchanges.ratelimit import RateBudgetRegistry
from cryptoorchestrator.services.bot_orders import bot_prefix
from cryptoorchestrator.services.bot_settings import BotSpec
from cryptoorchestrator.testing.fake_exchange import FakeBinance
from cryptoorchestrator.testing.fake_exchange_data import FakeMarket
from cryptoorchestrator.testing.fake_exchange_venue import SimulatedBinanceSpot
from tests.conftest import make_settings
from tests.integration.bots import _processes as procs
from tests.integration.bots.conftest import SYMBOL, TIMEFRAME, store_candles, walk

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MARKET = FakeMarket(
    base="BTC",
    quote="USDT",
    price=Decimal("100.00"),
    tick_size=Decimal("0.01"),
    step_size=Decimal("0.00001"),
    min_qty=Decimal("0.00001"),
    min_notional=Decimal("5"),
)


@dataclass
class Platform:
    """The test's own view of the database the runner processes share."""

    container: Container
    user_id: int
    database_url: str
    data_dir: Path

    async def bot(self, bot_id: str) -> Bot:
        async with self.container.uow_factory() as uow:
            found = await uow.bots.get(bot_id)
        assert found is not None
        return found

    async def holder(self, bot_id: str) -> str | None:
        async with self.container.uow_factory() as uow:
            lease = await uow.bot_leases.holder(bot_id, now=self.container.clock.now())
        return None if lease is None else lease.runner_id

    async def create(
        self, name: str, *, params: dict[str, Any], risk: dict[str, str], account: str | None = None
    ) -> Bot:
        spec = BotSpec(
            name=name,
            symbols=(SYMBOL,),
            strategy_type="sma_cross",
            params=params,
            account_id=account,
            timeframe=TIMEFRAME,
            risk=risk,
        )
        bot, _ = await self.container.bots.create(self.user_id, spec)
        return await self.container.bots.start(self.user_id, bot.id)

    async def entries(self, bot_id: str) -> int:
        async with self.container.uow_factory() as uow:
            orders, _ = await uow.orders.list_for_user(self.user_id, bot_id=bot_id, limit=10_000, offset=0)
        return len([o for o in orders if o.client_order_id.endswith(("-el", "-es"))])

    async def last_candle(self, bot_id: str) -> datetime | None:
        return (await self.bot(bot_id)).last_candle_at


@contextlib.asynccontextmanager
async def platform(
    tmp_path: Path, database_url: str, *, venue_factory: Any = None
) -> AsyncIterator[Platform]:
    settings = make_settings(
        tmp_path, database_url=database_url, runner_enabled=False, paper_poll_seconds=0, bot_candle_window=30
    )
    store_candles(settings.data_dir, "binance", SYMBOL, walk(900))
    container = build_container(settings, venue_factory=venue_factory)
    try:
        pair = await container.auth.register(
            email="runner@example.com",
            password="plenty-long-passphrase-42",
            username="runner",
            meta=RequestMeta(ip="test"),
        )
        yield Platform(container, pair.user.id, database_url, settings.data_dir)
    finally:
        await container.close()


def pid_of(runner_id: str | None) -> int | None:
    return None if runner_id is None else int(runner_id.split(":")[1])


async def test_a_killed_runners_bot_moves_to_the_other_runner(tmp_path: Path, database_url: str) -> None:
    async with platform(tmp_path, database_url) as shared:
        bot = await shared.create("handover", params={"fast": 3, "slow": 8}, risk={"risk_per_trade": "0.3"})
        env = procs.runner_env(database_url, shared.data_dir)
        first = procs.spawn_cli_runner(env, tmp_path / "runner-a.log")
        second: Any = None
        try:

            async def first_holds() -> bool:
                return (
                    pid_of(await shared.holder(bot.id)) == first.pid
                    and await shared.last_candle(bot.id) is not None
                )

            await procs.wait_until(first_holds, seconds=120, what="the first runner to run the bot")
            second = procs.spawn_cli_runner(env, tmp_path / "runner-b.log")

            async def second_started() -> bool:
                return "bot runner" in (tmp_path / "runner-b.log").read_text(errors="replace")

            await procs.wait_until(second_started, seconds=120, what="the second runner to start")
            assert pid_of(await shared.holder(bot.id)) == first.pid  # one runner per bot
            procs.kill(first)  # kill -9: no lease released, nothing cleaned up
            seen = await shared.last_candle(bot.id)

            async def second_holds() -> bool:
                return pid_of(await shared.holder(bot.id)) == second.pid

            await procs.wait_until(second_holds, seconds=60, what="the bot to move to the second runner")

            async def trading_on() -> bool:
                last = await shared.last_candle(bot.id)
                return last is not None and seen is not None and last > seen

            await procs.wait_until(trading_on, seconds=60, what="the second runner to process candles")
            assert (await shared.bot(bot.id)).status.value == "running"
            procs.stop(second)
            assert await procs.wait_exit(second, seconds=60) == 0
            assert await shared.holder(bot.id) is None  # a clean stop releases the lease
        finally:
            procs.kill(first)
            if second is not None:
                procs.kill(second)


#: ``(point, n)``: the runner dies the n-th time its order path reaches the point.
CRASHES = [
    ("before_persist", 2),
    ("after_persist", 1),
    ("after_send", 2),
    ("after_answer", 3),
    ("after_send", 1),
    ("after_answer", 1),
]


async def check_orders(shared: Platform, venue: SimulatedBinanceSpot, bots: list[Bot]) -> None:
    async with shared.container.uow_factory() as uow:
        orders, _ = await uow.orders.list_for_user(shared.user_id, limit=100_000, offset=0)
    stuck = [o.client_order_id for o in orders if o.status in (OrderStatus.UNKNOWN, OrderStatus.PENDING)]
    assert not stuck, f"orders left unknown or pending: {stuck}"
    keys = [(o.account_id, o.client_order_id) for o in orders]
    assert len(keys) == len(set(keys))
    live_ids = {
        o.client_order_id: o
        for o in orders
        if o.exchange_order_id and not o.exchange_order_id.startswith("PAPER")
    }
    prefixes = tuple(bot_prefix(bot.id) for bot in bots)
    at_venue = [o for o in venue.orders(SYMBOL) if o.client_order_id.startswith(prefixes)]
    assert at_venue, "the live bot sent nothing"
    for order in at_venue:  # nothing sent twice, nothing the database lost
        assert len(venue.orders_with_client_id(order.client_order_id)) == 1, order.client_order_id
        stored = live_ids.get(order.client_order_id)
        assert stored is not None, f"{order.client_order_id} is at the exchange but not in the database"
        assert stored.exchange_order_id == str(order.order_id)
        assert stored.filled_quantity == order.executed_qty, order.client_order_id


async def check_ledgers(
    shared: Platform, venue: SimulatedBinanceSpot, accounts: list[TradingAccount]
) -> None:
    for account in accounts:
        async with shared.container.uow_factory() as uow:
            sums = await uow.ledger.entry_sums(account.id)
            balances = await uow.ledger.balances(account.id)
            position = await uow.positions.get(account.id, SYMBOL)
        for asset, balance in balances.items():
            assert sums[asset] == (balance.free, balance.locked), (account.kind, asset)
            assert balance.free >= 0 and balance.locked >= 0, (account.kind, asset)
        if account.kind == "paper":
            held = Decimal(0) if position is None else position.quantity
            assert balances["BTC"].total == held  # paper fees are in the quote
        else:
            for asset in ("USDT", "BTC"):
                free, locked = venue.balance(asset)
                assert balances[asset].total == free + locked, asset


async def test_kill_9_in_the_order_path_loses_and_duplicates_nothing(
    tmp_path: Path, database_url: str
) -> None:
    venue = SimulatedBinanceSpot(markets=[MARKET], balances={"USDT": "10000", "BTC": "0"}, clock=_LiveClock())
    registry = RateBudgetRegistry()

    def venue_factory(account: Any, credentials: Any) -> Any:
        return CcxtExchangeClient(FakeBinance(venue=venue), budget_registry=registry)

    with procs.VenueServer(venue) as server:
        async with platform(tmp_path, database_url, venue_factory=venue_factory) as shared:
            paper = await shared.container.accounts.paper_account(shared.user_id)
            live = await shared.container.accounts.create_exchange_account(
                shared.user_id, name="binance-main", exchange="binance", credentials_encrypted=None
            )
            await shared.container.orders.sync_balances(live)
            params = {"fast": 2, "slow": 5}
            bots = [
                await shared.create(
                    "paper",
                    params=params,
                    risk={"risk_per_trade": "0.01", "stop_loss": "0.02", "take_profit": "0.03"},
                ),
                await shared.create(
                    "live",
                    params=params,
                    risk={"risk_per_trade": "0.2", "take_profit": "0.03"},
                    account=live.id,
                ),
            ]
            base_env = procs.runner_env(database_url, shared.data_dir, **{procs.VENUE_URL_ENV: server.url})
            for number, (point, count) in enumerate(CRASHES):
                env = {**base_env, "CO_TEST_CRASH_AT": f"{point}:{count}"}
                process = procs.spawn_crash_runner(env, tmp_path / f"crash-{number}.log")
                try:
                    code = await procs.wait_exit(process, seconds=180)
                finally:
                    procs.kill(process)
                log = (tmp_path / f"crash-{number}.log").read_text(errors="replace")
                assert code == 137, (
                    f"run {number} ({point}:{count}) ended {code}, not at the crash point:\n{log[-3000:]}"
                )
            # A last runner, without a crash, settles everything and trades on.
            marks = {bot.id: await shared.last_candle(bot.id) for bot in bots}
            final = procs.spawn_crash_runner(base_env, tmp_path / "final.log")
            try:

                async def traded_on() -> bool:
                    for bot in bots:
                        last, mark = await shared.last_candle(bot.id), marks[bot.id]
                        if last is None or (mark is not None and last <= mark):
                            return False
                        if await shared.entries(bot.id) < 2:
                            return False
                    return True

                await procs.wait_until(traded_on, seconds=180, what="both bots to trade on after the crashes")
                procs.stop(final)
                assert await procs.wait_exit(final, seconds=60) == 0
            finally:
                procs.kill(final)
            for bot in bots:
                stored = await shared.bot(bot.id)
                assert stored.status.value == "running", (stored.name, stored.error)
            await check_orders(shared, venue, bots)
            await check_ledgers(shared, venue, [paper, live])


class _LiveClock:
    """The venue's clock: real time, as the runner processes see it."""

    def timestamp(self) -> float:
        import time

        return time.time()
