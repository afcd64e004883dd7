"""Fixtures for the bot runtime: an app whose bot runner reads a stepped candle feed, with the
same candles stored (so the paper venue knows the market), a registered user, and helpers to
create, start and step bots. The clock is set to each candle's close before it is released, so
fills carry the time of the candle they happened in."""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import httpx
import numpy as np
import pandas as pd
import pytest

from cryptoorchestrator.api.app import create_app
from cryptoorchestrator.bootstrap import Container, build_container
from cryptoorchestrator.core.clock import SimClock
from cryptoorchestrator.domain.bots import Bot, BotEvent
from cryptoorchestrator.domain.orders import Order
from cryptoorchestrator.marketdata.store import CandleStore
from cryptoorchestrator.services.bot_feeds import SteppedCandleSource
from cryptoorchestrator.services.bot_settings import BotSpec
from cryptoorchestrator.strategies import base
from cryptoorchestrator.testing.api import ApiUser, register_user
from tests.conftest import client_for, make_settings

STEP_MS = 300_000
TIMEFRAME = "5m"
SYMBOL = "BTC/USDT"
#: Leases live longer than any test (the simulated clock jumps a candle at a time).
LONG_LEASE = 10.0**8


def walk(n: int, *, seed: int = 11, start_ms: int = 1_700_000_100_000) -> pd.DataFrame:
    """A geometric random walk (1% per bar) with gaps between close and next open (the parity
    acceptance test's synthetic series)."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    open_ = np.concatenate(([100.0], close[:-1])) * np.exp(rng.normal(0.0, 0.002, n))
    high = np.maximum(open_, close) * (1.0 + rng.uniform(0.0, 0.008, n))
    low = np.minimum(open_, close) * (1.0 - rng.uniform(0.0, 0.008, n))
    stamps = start_ms + STEP_MS * np.arange(n, dtype=np.int64)
    volume = rng.uniform(10.0, 1000.0, n)
    return pd.DataFrame(
        {"timestamp": stamps, "open": open_, "high": high, "low": low, "close": close, "volume": volume}
    )


def from_closes(closes: list[float], *, start_ms: int, spread: float = 0.001) -> pd.DataFrame:
    """Candles that open at the previous close and close at ``closes`` (a hand-made path)."""
    close = np.asarray(closes, dtype=np.float64)
    open_ = np.concatenate(([close[0]], close[:-1]))
    return pd.DataFrame(
        {
            "timestamp": start_ms + STEP_MS * np.arange(len(close), dtype=np.int64),
            "open": open_,
            "high": np.maximum(open_, close) * (1 + spread),
            "low": np.minimum(open_, close) * (1 - spread),
            "close": close,
            "volume": 1000.0,
        }
    )


class Scripted(base.Strategy[base.StrategyParams]):
    """A strategy that signals what ``script`` says at each candle's open time (bar index ->
    signal name, resolved to open times by the env)."""

    name = "scripted"
    description = "Signals from a script (tests)."
    script: ClassVar[dict[int, str]] = {}

    def signals(self, candles: pd.DataFrame, params: base.StrategyParams) -> base.Signals:
        out = base.Signals.none(len(candles))
        stamps = candles["timestamp"].to_numpy(dtype=np.int64)
        for index, stamp in enumerate(stamps):
            name = self.script.get(int(stamp))
            if name == "raise":
                raise RuntimeError("scripted failure")
            if name:
                getattr(out, name)[index] = True
        return out


def next_slot_ms(clock: SimClock) -> int:
    """The first 5-minute open time after the clock's now (candles must lie ahead of it)."""
    return (math.floor(clock.timestamp() * 1000 / STEP_MS) + 2) * STEP_MS


@dataclass
class BotsEnv:
    http: httpx.AsyncClient
    container: Container
    feed: SteppedCandleSource
    clock: SimClock
    user: ApiUser
    frames: dict[str, pd.DataFrame] = field(default_factory=dict)
    #: Called with each candle's row just before it is released (a fake venue follows the price).
    on_release: Callable[[str, pd.Series], None] | None = None

    @property
    def exchange(self) -> str:
        return self.container.accounts.paper_exchange

    @property
    def runner(self) -> Any:
        return self.container.bot_runner

    def stamp(self, index: int, symbol: str = SYMBOL) -> int:
        return int(self.frames[symbol]["timestamp"].iloc[index])

    def script(self, **signals: list[int]) -> type[Scripted]:
        """Register a fresh ``scripted`` strategy: signal name -> bar indexes."""
        script = {self.stamp(i): name for name, indexes in signals.items() for i in indexes}
        strategy = type("ScriptedForTest", (Scripted,), {"script": script})
        self.container.strategies.registry.register(strategy, replace=True)
        return strategy

    async def position(self, symbol: str = SYMBOL, account_id: str | None = None) -> Decimal:
        account = await self.container.accounts.resolve(self.user.id, account_id)
        async with self.container.uow_factory() as uow:
            found = await uow.positions.get(account.id, symbol)
        return Decimal(0) if found is None else found.quantity

    async def ledger_consistent(self, account_id: str | None = None) -> None:
        """The ledger invariant: every balance is the sum of its entries."""
        account = await self.container.accounts.resolve(self.user.id, account_id)
        async with self.container.uow_factory() as uow:
            sums = await uow.ledger.entry_sums(account.id)
            balances = await uow.ledger.balances(account.id)
        for asset, balance in balances.items():
            assert sums[asset] == (balance.free, balance.locked), asset

    async def create(
        self,
        name: str = "bot",
        *,
        strategy_type: str = "sma_cross",
        params: dict[str, Any] | None = None,
        risk: dict[str, Any] | None = None,
        symbols: tuple[str, ...] = (SYMBOL,),
        account_id: str | None = None,
    ) -> Bot:
        spec = BotSpec(
            name=name,
            symbols=symbols,
            strategy_type=strategy_type,
            params=params if params is not None else {"fast": 5, "slow": 20},
            account_id=account_id,
            timeframe=TIMEFRAME,
            risk={
                key: str(value) if isinstance(value, Decimal | float) else value
                for key, value in (risk or {}).items()
            },
        )
        bot, _ = await self.container.bots.create(self.user.id, spec)
        return bot

    async def start(self, bot: Bot) -> Bot:
        started = await self.container.bots.start(self.user.id, bot.id)
        await self.runner.wait_for_session(bot.id, seconds=30)
        return started

    async def subscribed(self, symbol: str = SYMBOL, count: int = 1) -> None:
        """Wait (bounded) until ``count`` bot streams read ``symbol``."""
        for _ in range(3000):
            if self.feed.subscribers(self.exchange, symbol, TIMEFRAME) >= count:
                return
            await _pause()
        raise AssertionError(f"no bot subscribed to {symbol}")

    async def step(self, *bots: Bot, count: int = 1, symbol: str = SYMBOL) -> list[int]:
        """Release ``count`` candles one at a time (the clock at each one's close) and wait until
        every bot in ``bots`` processed it. Returns their open times."""
        stamps = []
        for _ in range(count):
            upcoming = self.feed.released(self.exchange, symbol, TIMEFRAME)
            frame = self.frames[symbol]
            if len(upcoming) >= len(frame):
                break
            stamp = int(frame["timestamp"].iloc[len(upcoming)])
            self.clock.set(max(self.clock.timestamp(), (stamp + STEP_MS) / 1000))
            if self.on_release is not None:
                self.on_release(symbol, frame.iloc[len(upcoming)])
            await self.feed.step(only=(self.exchange, symbol, TIMEFRAME))
            for bot in bots:
                assert await self.runner.wait_for_candle(bot.id, stamp, seconds=60), await self.events(bot)
            stamps.append(stamp)
        return stamps

    async def bot(self, bot_id: str) -> Bot:
        async with self.container.uow_factory() as uow:
            found = await uow.bots.get(bot_id)
        assert found is not None
        return found

    async def events(self, bot: Bot, kind: str | None = None) -> list[BotEvent]:
        async with self.container.uow_factory() as uow:
            found, _ = await uow.bot_events.list_for_bot(bot.id, kind=kind, limit=1000, offset=0)
        return list(reversed(found))

    async def orders(self, bot: Bot) -> list[Order]:
        async with self.container.uow_factory() as uow:
            found, _ = await uow.orders.list_for_user(self.user.id, bot_id=bot.id, limit=10_000, offset=0)
        return sorted(found, key=lambda o: (o.created_at, o.client_order_id))

    async def open_orders(self, bot: Bot) -> list[Order]:
        return [order for order in await self.orders(bot) if order.is_open]

    async def wait_status(self, bot: Bot, *statuses: str) -> Bot:
        for _ in range(3000):
            current = await self.bot(bot.id)
            if current.status.value in statuses:
                return current
            await _pause()
        raise AssertionError(f"bot stayed {current.status.value}, wanted {statuses}: {current.error}")


async def _pause() -> None:
    import asyncio

    await asyncio.sleep(0.01)


BuildEnv = Callable[..., Any]


def store_candles(data_dir: Path, exchange: str, symbol: str, frame: pd.DataFrame) -> None:
    CandleStore(data_dir / "candles").append(exchange, symbol, TIMEFRAME, frame, source="import")


@pytest.fixture
async def bots_env_factory(tmp_path: Path, database_url: str) -> AsyncIterator[BuildEnv]:
    """Build a BotsEnv over ``frames`` (symbol -> candles); the app is closed after the test."""
    contexts: list[Any] = []
    clients: list[httpx.AsyncClient] = []

    async def build(
        frames: dict[str, pd.DataFrame] | None = None,
        *,
        clock: SimClock | None = None,
        venue_factory: Any = None,
        **overrides: Any,
    ) -> BotsEnv:
        clock = clock or SimClock(start=time.time())
        if frames is None:
            frames = {SYMBOL: walk(400, start_ms=next_slot_ms(clock))}
        values: dict[str, Any] = {
            "paper_poll_seconds": 0,
            "bot_heartbeat_seconds": 0.05,
            "bot_lease_seconds": LONG_LEASE,
            **overrides,
        }
        settings = make_settings(tmp_path, database_url=database_url, **values)
        feed = SteppedCandleSource()
        exchange = settings.paper_exchange or settings.market_data_exchange
        for symbol, frame in frames.items():
            store_candles(settings.data_dir, exchange, symbol, frame)
            feed.load(exchange, symbol, TIMEFRAME, frame)
        container = build_container(settings, clock=clock, venue_factory=venue_factory, candle_source=feed)
        app = create_app(settings, container=container)
        context = app.router.lifespan_context(app)
        await context.__aenter__()
        contexts.append(context)
        http = client_for(app)
        clients.append(http)
        user = await register_user(http, "botuser")
        return BotsEnv(http, container, feed, clock, user, dict(frames))

    yield build
    for http in clients:
        await http.aclose()
    for context in reversed(contexts):
        await context.__aexit__(None, None, None)


@pytest.fixture
async def env(bots_env_factory: BuildEnv) -> BotsEnv:
    result: BotsEnv = await bots_env_factory()
    return result
