"""Live market data that the paper exchange and bots subscribe to: closed candles as they close.

Two feeds behind one interface:

* :class:`ReplayFeed` replays stored candles, in real time or accelerated (``speed``), so the
  platform runs end to end with no network; replay time maps wall time onto the stored series.
* :class:`PollingFeed` polls an exchange's ``fetch_ohlcv`` (REST) and emits each candle once it
  has closed.

Every event says its ``source`` ("replay", "synthetic" or "exchange").
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from cryptoorchestrator.core.clock import Clock
from cryptoorchestrator.core.errors import NotFound
from cryptoorchestrator.marketdata import timeframes as tf
from cryptoorchestrator.marketdata.store import CandleStore


@dataclass(frozen=True, slots=True)
class ClosedCandle:
    exchange: str
    symbol: str
    timeframe: str
    timestamp: int  # open time, ms
    open: float
    high: float
    low: float
    close: float
    volume: float
    source: str


class CandleFeed(Protocol):
    def subscribe(self, exchange: str, symbol: str, timeframe: str) -> AsyncIterator[ClosedCandle]: ...


Sleep = Callable[[float], Awaitable[None]]


class ReplayFeed:
    """Replays a stored dataset: candle ``i`` closes ``(i + 1) * step / speed`` after ``start``.

    ``start_at_ms`` picks where in the stored series the replay begins (default: its first
    candle). The clock and sleep are injectable so tests run in no time.
    """

    def __init__(
        self,
        store: CandleStore,
        clock: Clock,
        *,
        speed: float = 1.0,
        sleep: Sleep = asyncio.sleep,
        loop_forever: bool = False,
    ) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self._store = store
        self._clock = clock
        self._speed = speed
        self._sleep = sleep
        self._loop = loop_forever

    async def subscribe(
        self, exchange: str, symbol: str, timeframe: str, *, start_at_ms: int | None = None
    ) -> AsyncIterator[ClosedCandle]:
        if not self._store.exists(exchange, symbol, timeframe):
            raise NotFound(f"No stored candles for {exchange} {symbol} {timeframe} to replay.")
        frame = self._store.read(exchange, symbol, timeframe, start_ms=start_at_ms)
        stored_as = self._store.info(exchange, symbol, timeframe).source
        source = "synthetic" if stored_as == "synthetic" else "replay"
        step_s = tf.timeframe_to_ms(timeframe) / 1000 / self._speed
        values = frame[["timestamp", "open", "high", "low", "close", "volume"]].to_numpy(dtype=np.float64)
        while True:
            began = self._clock.monotonic()
            for index, row in enumerate(values):
                due = began + (index + 1) * step_s
                wait = due - self._clock.monotonic()
                if wait > 0:
                    await self._sleep(wait)
                opened, o, h, low, c, v = (float(x) for x in row)
                yield ClosedCandle(exchange, symbol, timeframe, int(opened), o, h, low, c, v, source=source)
            if not self._loop:
                return


class OhlcvPoller(Protocol):
    async def fetch_ohlcv(
        self, symbol: str, timeframe: str = "1m", since_ms: int | None = None, limit: int | None = None
    ) -> list[list[float]]: ...


class PollingFeed:
    """Emits each candle of an exchange once it has closed, polling REST ``fetch_ohlcv``."""

    def __init__(
        self,
        client: OhlcvPoller,
        clock: Clock,
        *,
        exchange: str,
        poll_seconds: float = 5.0,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._client = client
        self._clock = clock
        self._exchange = exchange
        self._poll = poll_seconds
        self._sleep = sleep

    async def subscribe(self, exchange: str, symbol: str, timeframe: str) -> AsyncIterator[ClosedCandle]:
        step = tf.timeframe_to_ms(timeframe)
        last_emitted: int | None = None
        while True:
            now_ms = int(self._clock.timestamp() * 1000)
            since = last_emitted + step if last_emitted is not None else now_ms - 2 * step
            rows = await self._client.fetch_ohlcv(symbol, timeframe, since_ms=since, limit=100)
            for row in rows:
                opened = int(row[0])
                if opened + step <= now_ms and (last_emitted is None or opened > last_emitted):
                    last_emitted = opened
                    yield ClosedCandle(
                        self._exchange, symbol, timeframe, opened, *map(float, row[1:6]), source="exchange"
                    )
            await self._sleep(self._poll)
