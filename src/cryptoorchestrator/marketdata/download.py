"""Download candles from an exchange into the store: pages through ``fetch_ohlcv``, resumes from
the last stored candle, stores only closed candles, and reports progress.

Works with anything that has ccxt's ``fetch_ohlcv`` shape (the exchange adapter, or a fake).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import pandas as pd

from cryptoorchestrator.core.errors import InvalidDateRange
from cryptoorchestrator.marketdata import timeframes as tf
from cryptoorchestrator.marketdata.store import CandleStore

PAGE_LIMIT = 1000
ProgressCallback = Callable[[float, str], Awaitable[None]]


class OhlcvSource(Protocol):
    @property
    def exchange_id(self) -> str: ...

    async def fetch_ohlcv(
        self, symbol: str, timeframe: str = "1m", since_ms: int | None = None, limit: int | None = None
    ) -> list[list[float]]: ...


@dataclass(frozen=True, slots=True)
class DownloadResult:
    exchange: str
    symbol: str
    timeframe: str
    requested_from_ms: int
    started_from_ms: int
    until_ms: int
    pages: int
    fetched: int
    added: int
    first_ms: int | None
    last_ms: int | None
    resumed: bool

    def as_dict(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.__slots__}


async def download_candles(
    source: OhlcvSource,
    store: CandleStore,
    *,
    symbol: str,
    timeframe: str,
    since_ms: int,
    until_ms: int | None,
    now_ms: int,
    exchange: str | None = None,
    progress: ProgressCallback | None = None,
    page_limit: int = PAGE_LIMIT,
) -> DownloadResult:
    """Fetch [since, until) (until defaults to now) into the store and return what happened.

    Resumes: when the store already holds this dataset up to a later candle, fetching starts
    after the last stored one. The candle still forming at ``now`` is never stored.
    """
    tf.validate_timeframe(timeframe)
    step = tf.timeframe_to_ms(timeframe)
    exchange = exchange or source.exchange_id
    until = min(until_ms if until_ms is not None else now_ms, now_ms)
    start = tf.align_up(since_ms, timeframe)
    if start >= until:
        raise InvalidDateRange(
            "The start of the download is not before its end (or in the future).",
            details={"since_ms": since_ms, "until_ms": until},
        )
    resumed = False
    if store.exists(exchange, symbol, timeframe):
        first, last = store.first_last(exchange, symbol, timeframe)
        if first <= start <= last:
            start, resumed = last + step, True
    cursor, pages, fetched, added = start, 0, 0, 0
    first_seen: int | None = None
    last_seen: int | None = None
    span = max(until - start, 1)
    while cursor < until:
        rows = await source.fetch_ohlcv(symbol, timeframe, since_ms=cursor, limit=page_limit)
        pages += 1
        # Only closed candles inside the window: open time + step <= now and < until.
        closed = [row for row in rows if cursor <= int(row[0]) < until and int(row[0]) + step <= now_ms]
        if closed:
            frame = pd.DataFrame(closed, columns=["timestamp", "open", "high", "low", "close", "volume"])
            frame["timestamp"] = frame["timestamp"].astype("int64")
            result = store.append(exchange, symbol, timeframe, frame, source="exchange")
            fetched += len(closed)
            added += result.added
            first_seen = first_seen if first_seen is not None else int(closed[0][0])
            last_seen = int(closed[-1][0])
        if not rows or int(rows[-1][0]) < cursor:
            break  # the exchange has nothing more from here on
        next_cursor = int(rows[-1][0]) + step
        if next_cursor <= cursor:
            break
        cursor = next_cursor
        if progress is not None:
            done = min(100.0, (min(cursor, until) - start) / span * 100)
            await progress(done, f"{symbol} {timeframe}: {fetched} candles")
    if progress is not None:
        await progress(100.0, f"{symbol} {timeframe}: {fetched} candles")
    return DownloadResult(
        exchange=exchange,
        symbol=symbol,
        timeframe=timeframe,
        requested_from_ms=since_ms,
        started_from_ms=start,
        until_ms=until,
        pages=pages,
        fetched=fetched,
        added=added,
        first_ms=first_seen,
        last_ms=last_seen,
        resumed=resumed,
    )
