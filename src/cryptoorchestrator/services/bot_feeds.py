"""Closed candles for bots: the :class:`CandleSource` port and its three implementations.

A bot opens one stream per symbol: ``history`` (the candles before its resume point, to warm up
the strategy's window) and then the closed candles after that point, as they close. Rules:

F1 *Resume point.* ``after_ms`` is the open time of the last candle the bot processed; the stream
   yields candles opened after it (a restarted bot replays the candle it was working on when it
   died: its orders carry the same client order ids, so nothing is sent twice). ``None`` (a
   fresh bot) lets the source choose where to start; ``history`` ends before the first candle
   the stream yields.
F2 *Sources.* :class:`StoredCandleSource` replays the candle store (offline, the platform's
   default: ``ReplayFeed`` timing, ``speed`` times real time; a fresh bot starts after ``warmup``
   stored candles). :class:`PollingCandleSource` polls the exchange (``PollingFeed``) and never
   yields a candle that closed before the bot subscribed (no trading on stale candles).
   :class:`SteppedCandleSource` releases candles when told (:meth:`SteppedCandleSource.step`):
   deterministic, for tests and manual replays.
F3 *Naming.* Candles carry the exchange and symbol the bot asked for (the store may keep the
   series under another name, such as the synthetic series of the paper exchange).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import pandas as pd

from cryptoorchestrator.core.clock import Clock
from cryptoorchestrator.core.errors import NotFound
from cryptoorchestrator.marketdata import timeframes as tf
from cryptoorchestrator.marketdata.live import ClosedCandle, OhlcvPoller, PollingFeed, ReplayFeed, Sleep
from cryptoorchestrator.marketdata.store import CandleStore

_COLUMNS = ("timestamp", "open", "high", "low", "close", "volume")


@dataclass
class CandleStream:
    """What :meth:`CandleSource.open` returns: warm-up ``history`` (oldest first) and the live
    ``candles`` (close it with ``aclose`` when done)."""

    history: list[ClosedCandle]
    candles: AsyncIterator[ClosedCandle]

    async def aclose(self) -> None:
        closer = getattr(self.candles, "aclose", None)
        if closer is not None:
            with contextlib.suppress(RuntimeError):
                await closer()


class CandleSource(Protocol):
    """Where a bot's closed candles come from (rules F1-F3)."""

    async def open(
        self, exchange: str, symbol: str, timeframe: str, *, after_ms: int | None, warmup: int
    ) -> CandleStream: ...


def candles_from_frame(
    exchange: str, symbol: str, timeframe: str, frame: pd.DataFrame, *, source: str
) -> list[ClosedCandle]:
    """Store rows as :class:`ClosedCandle` events."""
    values = frame[list(_COLUMNS)].to_numpy(dtype=float)
    return [_candle(exchange, symbol, timeframe, row, source) for row in values]


def _candle(exchange: str, symbol: str, timeframe: str, row: Sequence[Any], source: str) -> ClosedCandle:
    """``[open time ms, open, high, low, close, volume]`` as a :class:`ClosedCandle`."""
    return ClosedCandle(
        exchange,
        symbol,
        timeframe,
        int(row[0]),
        float(row[1]),
        float(row[2]),
        float(row[3]),
        float(row[4]),
        float(row[5]),
        source=source,
    )


def _renamed(candle: ClosedCandle, exchange: str, symbol: str) -> ClosedCandle:
    return replace(candle, exchange=exchange, symbol=symbol)


Resolver = Callable[[str, str], Awaitable[tuple[str, str]]]
"""``(exchange, symbol) -> (exchange, symbol)`` as the candle store keeps the series."""


class StoredCandleSource:
    """Replays the candle store (F2): candle ``i`` after the start closes ``(i + 1) * step /
    speed`` seconds after the stream opened."""

    def __init__(
        self,
        store: CandleStore,
        clock: Clock,
        *,
        resolve: Resolver | None = None,
        speed: float = 1.0,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._store = store
        self._clock = clock
        self._resolve = resolve
        self._speed = speed
        self._sleep = sleep

    async def open(
        self, exchange: str, symbol: str, timeframe: str, *, after_ms: int | None, warmup: int
    ) -> CandleStream:
        stored, name = (exchange, symbol) if self._resolve is None else await self._resolve(exchange, symbol)
        if not self._store.exists(stored, name, timeframe):
            raise NotFound(f"No stored {timeframe} candles for {symbol} on {exchange} to replay.")
        if after_ms is None:
            first = self._store.read(stored, name, timeframe, limit=warmup + 1)
            start = int(first["timestamp"].iloc[min(warmup, len(first) - 1)])
        else:
            start = after_ms + 1
        history = self._store.read(stored, name, timeframe, end_ms=start, limit=warmup, from_end=True)
        source = "synthetic" if self._store.info(stored, name, timeframe).source == "synthetic" else "replay"
        feed = ReplayFeed(self._store, self._clock, speed=self._speed, sleep=self._sleep)

        async def stream() -> AsyncIterator[ClosedCandle]:
            _, last = self._store.first_last(stored, name, timeframe)
            if start > last:
                return  # F1: nothing after the resume point is stored
            async for candle in feed.subscribe(stored, name, timeframe, start_at_ms=start):
                yield _renamed(candle, exchange, symbol)

        return CandleStream(candles_from_frame(exchange, symbol, timeframe, history, source=source), stream())


class PollingCandleSource:
    """Closed candles of an exchange, polled over REST (F2); one client per exchange, built by
    ``client_for`` on first use and closed by :meth:`aclose`."""

    def __init__(
        self,
        client_for: Callable[[str], OhlcvPoller],
        clock: Clock,
        *,
        poll_seconds: float = 5.0,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._client_for = client_for
        self._clients: dict[str, OhlcvPoller] = {}
        self._clock = clock
        self._poll = poll_seconds
        self._sleep = sleep

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            closer = getattr(client, "close", None)
            if closer is not None:
                with contextlib.suppress(Exception):
                    await closer()

    async def open(
        self, exchange: str, symbol: str, timeframe: str, *, after_ms: int | None, warmup: int
    ) -> CandleStream:
        poller = self._clients.get(exchange)
        if poller is None:
            poller = self._clients[exchange] = self._client_for(exchange)
        step = tf.timeframe_to_ms(timeframe)
        now_ms = int(self._clock.timestamp() * 1000)
        rows = await poller.fetch_ohlcv(
            symbol, timeframe, since_ms=now_ms - (warmup + 1) * step, limit=warmup + 1
        )
        history = [
            _candle(exchange, symbol, timeframe, row, "exchange")
            for row in rows
            if int(row[0]) + step <= now_ms
        ][-warmup:]
        newest = max([after_ms or 0, *(c.timestamp for c in history)])
        feed = PollingFeed(poller, self._clock, exchange=exchange, poll_seconds=self._poll, sleep=self._sleep)

        async def stream() -> AsyncIterator[ClosedCandle]:
            async for candle in feed.subscribe(exchange, symbol, timeframe):
                if candle.timestamp > newest:  # F2: nothing that closed before we looked
                    yield candle

        return CandleStream(history, stream())


@dataclass
class _Series:
    candles: list[ClosedCandle]
    released: int = 0
    subscribers: int = 0
    waiting: set[int] = field(default_factory=set)


class SteppedCandleSource:
    """Candles released one step at a time (F2): deterministic, for tests and manual replays.

    :meth:`load` a series per ``(exchange, symbol, timeframe)``; :meth:`step` releases the next
    candle of every series (or of one). A fresh subscriber starts with the next candle to be
    released and gets the released ones as history; a resuming one (F1) first gets the released
    candles after its resume point.
    """

    def __init__(self) -> None:
        self._series: dict[tuple[str, str, str], _Series] = {}
        self._changed = asyncio.Condition()

    def load(
        self, exchange: str, symbol: str, timeframe: str, candles: Iterable[ClosedCandle] | pd.DataFrame
    ) -> None:
        rows = (
            candles_from_frame(exchange, symbol, timeframe, candles, source="replay")
            if isinstance(candles, pd.DataFrame)
            else [_renamed(c, exchange, symbol) for c in candles]
        )
        self._series[(exchange, symbol, timeframe)] = _Series(rows)

    def released(self, exchange: str, symbol: str, timeframe: str) -> list[ClosedCandle]:
        series = self._series[(exchange, symbol, timeframe)]
        return series.candles[: series.released]

    def subscribers(self, exchange: str, symbol: str, timeframe: str) -> int:
        series = self._series.get((exchange, symbol, timeframe))
        return 0 if series is None else series.subscribers

    def remaining(self, exchange: str, symbol: str, timeframe: str) -> int:
        series = self._series[(exchange, symbol, timeframe)]
        return len(series.candles) - series.released

    async def step(self, count: int = 1, *, only: Sequence[str] | None = None) -> list[ClosedCandle]:
        """Release the next ``count`` candles of every series (or of the one ``only`` names:
        ``(exchange, symbol, timeframe)``); returns them."""
        released: list[ClosedCandle] = []
        async with self._changed:
            for key, series in self._series.items():
                if only is not None and key != tuple(only):
                    continue
                upto = min(len(series.candles), series.released + count)
                released.extend(series.candles[series.released : upto])
                series.released = upto
            self._changed.notify_all()
        return released

    async def open(
        self, exchange: str, symbol: str, timeframe: str, *, after_ms: int | None, warmup: int
    ) -> CandleStream:
        key = (exchange, symbol, timeframe)
        series = self._series.get(key)
        if series is None:
            raise NotFound(f"No candles loaded for {symbol} on {exchange} ({timeframe}).")
        out = series.candles[: series.released]
        if after_ms is None:
            start = series.released
        else:
            start = next(
                (i for i, c in enumerate(series.candles) if c.timestamp > after_ms), len(series.candles)
            )
        history = [c for c in out[:start]][-warmup:] if warmup > 0 else []
        series.subscribers += 1
        return CandleStream(history, self._iterate(series, start))

    async def _iterate(self, series: _Series, start: int) -> AsyncIterator[ClosedCandle]:
        index = start
        try:
            while index < len(series.candles):
                async with self._changed:
                    await self._changed.wait_for(lambda at=index: series.released > at)  # type: ignore[misc]
                yield series.candles[index]
                index += 1
        finally:
            series.subscribers -= 1
