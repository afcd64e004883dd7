"""Market data use cases: markets, tickers, order books and candles for the API; downloads and
imports into the candle store; the synthetic first-run series.

Where the data comes from is always said (``source``): ``exchange`` (asked live), ``replay``
(stored real candles, replayed in time), ``synthetic`` (generated, never mistaken for real).
With ``live`` off (the default, and the only choice with no network) everything is served from
the store.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

import numpy as np
import pandas as pd

from cryptoorchestrator.core.clock import Clock
from cryptoorchestrator.core.errors import (
    ExchangeUnavailable,
    InvalidDateRange,
    InvalidSymbol,
    NotFound,
    ValidationFailed,
)
from cryptoorchestrator.domain.market import MarketInfo, OrderBook, Ticker
from cryptoorchestrator.domain.symbols import SUPPORTED_PREVIEW, SymbolIndex, unify_new_symbol
from cryptoorchestrator.marketdata import importer, synthetic
from cryptoorchestrator.marketdata import timeframes as tf
from cryptoorchestrator.marketdata.download import DownloadResult, download_candles
from cryptoorchestrator.marketdata.resample import resample
from cryptoorchestrator.marketdata.store import CandleStore, DatasetInfo

SYNTHETIC = "synthetic"
#: Order of preference when a timeframe is not stored and has to be built from a smaller one.
RESAMPLE_SOURCES = ("1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d")
LIVE_RETRY_SECONDS = 60.0
REPLAY_WINDOW_MS = 30 * 86_400_000
#: How long the list of a symbol's stored timeframes is trusted before it is listed again.
REPLAY_LIST_SECONDS = 5.0
HALF_SPREAD = Decimal("0.00005")  # of the price, for tickers and books built from candles
LEVEL_STEP = Decimal("0.0005")


class MarketSource(Protocol):
    """What this service needs from an exchange adapter (``exchanges.CcxtExchangeClient``)."""

    @property
    def exchange_id(self) -> str: ...

    async def load_markets(self, reload: bool = False) -> Mapping[str, MarketInfo]: ...

    async def fetch_ticker(self, symbol: str) -> Ticker: ...

    async def fetch_order_book(self, symbol: str, limit: int | None = None) -> OrderBook: ...

    async def fetch_ohlcv(
        self, symbol: str, timeframe: str = "1m", since_ms: int | None = None, limit: int | None = None
    ) -> list[list[float]]: ...

    async def close(self) -> None: ...


ExchangeFactory = Callable[[str], MarketSource]
Progress = Callable[[float, str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Candles:
    exchange: str
    symbol: str
    timeframe: str
    frame: pd.DataFrame
    source: str
    has_more: bool
    resampled_from: str | None = None


@dataclass(frozen=True, slots=True)
class MarketEntry:
    exchange: str
    symbol: str
    base: str
    quote: str
    source: str
    timeframes: tuple[str, ...]
    active: bool = True


class MarketDataService:
    def __init__(
        self,
        store: CandleStore,
        *,
        clock: Clock,
        default_exchange: str,
        live: bool = False,
        exchange_factory: ExchangeFactory | None = None,
    ) -> None:
        self.store = store
        self._clock = clock
        self.default_exchange = default_exchange
        self._live = live and exchange_factory is not None
        self._factory = exchange_factory
        self._live_clients: dict[str, MarketSource] = {}
        self._live_down_until: dict[str, float] = {}
        self._replay_origin = clock.timestamp()
        self._replay_lists: dict[tuple[str, str], tuple[float, DatasetInfo]] = {}
        self._replay_windows: dict[tuple[str, str], tuple[tuple[int, int, int], DatasetInfo, np.ndarray]] = {}
        self._replay_tickers: dict[tuple[str, str], tuple[tuple[tuple[int, int, int], int, int], Ticker]] = {}

    # --- where the data lives ----------------------------------------------------------

    def _datasets(self, exchange: str | None = None) -> list[DatasetInfo]:
        return self.store.datasets(exchange=exchange)

    def _candidates(self, exchange: str | None) -> list[str]:
        """Exchanges to look in: the one asked for, else the default one then synthetic data."""
        if exchange:
            return [exchange]
        return [self.default_exchange, SYNTHETIC] if self.default_exchange != SYNTHETIC else [SYNTHETIC]

    def _stored_symbols(self, exchange: str) -> set[str]:
        return {info.symbol for info in self._datasets(exchange)}

    async def resolve(self, text: str, *, exchange: str | None = None) -> tuple[str, str]:
        """(exchange, unified symbol) for what the user typed; INVALID_SYMBOL lists the choices."""
        known: set[str] = set()
        for candidate in self._candidates(exchange):
            symbols = self._stored_symbols(candidate) | set(await self._live_symbols(candidate))
            known |= symbols
            if symbols:
                try:
                    return candidate, SymbolIndex(symbols).resolve(text)
                except InvalidSymbol:
                    continue
        raise InvalidSymbol(
            f"Unknown symbol {text.strip()!r}.",
            details={"symbol": text, "supported": sorted(known)[:SUPPORTED_PREVIEW]},
        )

    async def market_info(self, text: str, *, exchange: str | None = None) -> MarketInfo:
        """The trading rules of a market: the venue's own when it is reachable, otherwise the
        defaults of :func:`offline_market_info` for a stored (replayed or synthetic) series."""
        name, symbol = await self.resolve(text, exchange=exchange)
        live = await self._live_markets(name)
        if symbol in live:
            return live[symbol]
        return offline_market_info(symbol)

    # --- markets -----------------------------------------------------------------------

    async def markets(self, exchange: str | None = None) -> list[MarketEntry]:
        entries: dict[tuple[str, str], MarketEntry] = {}
        stored: dict[tuple[str, str], list[DatasetInfo]] = {}
        for candidate in self._candidates(exchange):
            for info in self._datasets(candidate):
                stored.setdefault((info.exchange, info.symbol), []).append(info)
            for symbol, market in (await self._live_markets(candidate)).items():
                entries[(candidate, symbol)] = MarketEntry(
                    candidate, symbol, market.base, market.quote, "exchange", (), market.active
                )
        for (name, symbol), infos in stored.items():
            base, _, quote = symbol.split(":", 1)[0].partition("/")
            timeframes = tuple(sorted({i.timeframe for i in infos}, key=tf.timeframe_to_ms))
            source = SYNTHETIC if all(i.source == SYNTHETIC for i in infos) else "replay"
            live = entries.get((name, symbol))
            entries[(name, symbol)] = MarketEntry(
                name, symbol, base, quote, live.source if live else source, timeframes, True
            )
        return sorted(entries.values(), key=lambda e: (e.exchange, e.symbol))

    # --- candles -----------------------------------------------------------------------

    async def klines(
        self,
        text: str,
        *,
        timeframe: str,
        start_ms: int | None,
        end_ms: int | None,
        limit: int,
        exchange: str | None = None,
    ) -> Candles:
        """Candles in [start, end), at most ``limit``: the newest ones when no start is given."""
        tf.validate_timeframe(timeframe)
        if start_ms is not None and end_ms is not None and start_ms >= end_ms:
            raise InvalidDateRange(
                "start_time must be before end_time.", details={"start_time": start_ms, "end_time": end_ms}
            )
        name, symbol = await self.resolve(text, exchange=exchange)
        stored_tf, resampled_from = self._timeframe_source(name, symbol, timeframe)
        if stored_tf is None:
            raise NotFound(
                f"No {timeframe} candles for {symbol} on {name}, nor a smaller timeframe to build them from.",
                details={
                    "stored": sorted(i.timeframe for i in self.store.datasets(exchange=name, symbol=symbol))
                },
            )
        info = self.store.info(name, symbol, stored_tf)
        source = SYNTHETIC if info.source == SYNTHETIC else "replay"
        if resampled_from is None:
            frame = self._read(name, symbol, timeframe, start_ms, end_ms, limit + 1)
        else:
            step = tf.timeframe_to_ms(timeframe)
            # Read enough source candles for limit+1 target candles, aligned to whole buckets.
            span = (limit + 2) * step
            lo = tf.align_down(start_ms, timeframe) if start_ms is not None else None
            hi = end_ms if end_ms is not None else None
            if lo is None:
                hi_bound = hi if hi is not None else info.last_ms + tf.timeframe_to_ms(stored_tf)
                lo = tf.align_down(hi_bound - span, timeframe)
            elif hi is None:
                hi = lo + span
            raw = self.store.read(name, symbol, stored_tf, start_ms=lo, end_ms=hi)
            frame = resample(raw, stored_tf, timeframe)
            if start_ms is not None:
                frame = frame[frame["timestamp"] >= start_ms]
            frame = frame.iloc[: limit + 1] if start_ms is not None else frame.iloc[-(limit + 1) :]
        has_more = len(frame) > limit
        frame = frame.iloc[:limit] if start_ms is not None else frame.iloc[-limit:]
        return Candles(
            name, symbol, timeframe, frame.reset_index(drop=True), source, has_more, resampled_from
        )

    async def history(
        self,
        text: str,
        *,
        timeframe: str,
        start_ms: int,
        end_ms: int,
        exchange: str | None = None,
        max_candles: int | None = None,
    ) -> Candles:
        """Every candle in [start, end) for research (backtests): INVALID_DATE_RANGE names the
        stored range when nothing is stored there; requests beyond ``max_candles`` are refused."""
        tf.validate_timeframe(timeframe)
        if start_ms >= end_ms:
            raise InvalidDateRange("start must be before end.", details={"start": start_ms, "end": end_ms})
        name, symbol = await self.resolve(text, exchange=exchange)
        stored_tf, resampled_from = self._timeframe_source(name, symbol, timeframe)
        if stored_tf is None:
            raise NotFound(
                f"No {timeframe} candles for {symbol} on {name}, nor a smaller timeframe to build them from."
            )
        step = tf.timeframe_to_ms(timeframe)
        if max_candles is not None and (end_ms - start_ms) // step > max_candles:
            raise ValidationFailed(
                f"The range holds more than {max_candles} {timeframe} candles; "
                "shorten it or use a larger timeframe.",
                details={"max_candles": max_candles},
            )
        info = self.store.info(name, symbol, stored_tf)
        frame = self.store.read(
            name, symbol, stored_tf, start_ms=tf.align_down(start_ms, timeframe), end_ms=end_ms
        )
        if resampled_from is not None:
            frame = resample(frame, stored_tf, timeframe)
        frame = frame[(frame["timestamp"] >= start_ms) & (frame["timestamp"] < end_ms)].reset_index(drop=True)
        if frame.empty:
            raise InvalidDateRange(
                f"No {symbol} candles on {name} between the dates asked for; stored: "
                f"{_iso(info.first_ms)} to {_iso(info.last_ms)}.",
                details={"stored_from": _iso(info.first_ms), "stored_to": _iso(info.last_ms)},
            )
        source = SYNTHETIC if info.source == SYNTHETIC else "replay"
        return Candles(name, symbol, timeframe, frame, source, False, resampled_from)

    def _read(
        self, name: str, symbol: str, timeframe: str, start_ms: int | None, end_ms: int | None, limit: int
    ) -> pd.DataFrame:
        if start_ms is not None:
            return self.store.read(name, symbol, timeframe, start_ms=start_ms, end_ms=end_ms, limit=limit)
        return self.store.read(name, symbol, timeframe, end_ms=end_ms, limit=limit, from_end=True)

    def _timeframe_source(self, name: str, symbol: str, timeframe: str) -> tuple[str | None, str | None]:
        if self.store.exists(name, symbol, timeframe):
            return timeframe, None
        target = tf.timeframe_to_ms(timeframe)
        for smaller in reversed(RESAMPLE_SOURCES):
            size = tf.timeframe_to_ms(smaller)
            if size < target and target % size == 0 and self.store.exists(name, symbol, smaller):
                return smaller, smaller
        return None, None

    # --- tickers and books ----------------------------------------------------------------

    async def ticker(self, text: str, *, exchange: str | None = None) -> Ticker:
        name, symbol = await self.resolve(text, exchange=exchange)
        client = await self._live_client(name)
        if client is not None:
            try:
                return await client.fetch_ticker(symbol)
            except ExchangeUnavailable:
                self._mark_down(name)
        return self._replayed_ticker(name, symbol)

    async def order_book(self, text: str, *, limit: int, exchange: str | None = None) -> OrderBook:
        name, symbol = await self.resolve(text, exchange=exchange)
        client = await self._live_client(name)
        if client is not None:
            try:
                return await client.fetch_order_book(symbol, limit)
            except ExchangeUnavailable:
                self._mark_down(name)
        return self._synthetic_book(name, symbol, limit)

    def _replay_window(self, name: str, symbol: str) -> tuple[DatasetInfo, np.ndarray, tuple[int, int, int]]:
        """The dataset replayed for ``symbol`` (its finest timeframe), the open times of its
        last ``REPLAY_WINDOW``, and the file's (inode, mtime, size). Remembered while the file is
        unchanged (the list of datasets for ``REPLAY_LIST_SECONDS``): a ticker is asked for on
        every paper order, and reading the file each time would hold the event loop."""
        key = (name, symbol)
        now = self._clock.timestamp()
        listed = self._replay_lists.get(key)
        if listed is None or now - listed[0] >= REPLAY_LIST_SECONDS:
            infos = self.store.datasets(exchange=name, symbol=symbol)
            if not infos:
                raise NotFound(f"No stored candles for {symbol} on {name}.")
            finest = min(infos, key=lambda i: tf.timeframe_to_ms(i.timeframe))
            listed = self._replay_lists[key] = (now, finest)
        info = listed[1]
        try:
            stat = self.store.path_for(name, symbol, info.timeframe).stat()
        except FileNotFoundError:
            self._replay_lists.pop(key, None)
            raise NotFound(f"No stored candles for {symbol} on {name}.") from None
        version = (stat.st_ino, stat.st_mtime_ns, stat.st_size)  # a rewrite is a new file
        cached = self._replay_windows.get(key)
        if cached is not None and cached[0] == version and cached[1].timeframe == info.timeframe:
            return info, cached[2], version
        step = tf.timeframe_to_ms(info.timeframe)
        stamps = self.store.timestamps(name, symbol, info.timeframe)
        window = stamps[-max(2, REPLAY_WINDOW_MS // step) :]
        self._replay_windows[key] = (version, info, window)
        return info, window, version

    def _replay_position(self, name: str, symbol: str) -> tuple[DatasetInfo, int, int, tuple[int, int, int]]:
        """Where replay stands: (dataset, first, last open time of the day of candles up to 'now'
        in replay time, file version).

        Replay loops over the most recent ``REPLAY_WINDOW`` of the stored series (so a ticker sits
        next to the newest candles a chart shows), one candle per timeframe of wall time since the
        service started, starting one day into the window."""
        info, window, version = self._replay_window(name, symbol)
        step = tf.timeframe_to_ms(info.timeframe)
        rows = len(window)
        day = max(1, 86_400_000 // step)
        elapsed = int((self._clock.timestamp() - self._replay_origin) * 1000) // step
        position = (min(day, rows - 1) + elapsed) % rows
        first = max(0, position - day + 1)
        return info, int(window[first]), int(window[position]), version

    def _replay_frame(self, name: str, symbol: str) -> tuple[str, pd.DataFrame]:
        info, first, last, _ = self._replay_position(name, symbol)
        frame = self.store.read(name, symbol, info.timeframe, start_ms=first, end_ms=last + 1)
        return info.source, frame

    def _replayed_ticker(self, name: str, symbol: str) -> Ticker:
        info, first, last, version = self._replay_position(name, symbol)
        key = (name, symbol)
        cached = self._replay_tickers.get(key)
        if cached is not None and cached[0] == (version, first, last):
            return cached[1]
        frame = self.store.read(name, symbol, info.timeframe, start_ms=first, end_ms=last + 1)
        stored_as = info.source
        last_row = frame.iloc[-1]
        price = _dec(float(last_row["close"]))
        half_spread = _quantize_like(price * HALF_SPREAD, price)
        ticker = Ticker(
            symbol=symbol,
            timestamp=int(last_row["timestamp"]),
            bid=price - half_spread,
            ask=price + half_spread,
            last=price,
            high=_dec(float(frame["high"].max())),
            low=_dec(float(frame["low"].min())),
            base_volume=_dec(float(frame["volume"].sum())),
            quote_volume=_dec(round(float((frame["volume"] * frame["close"]).sum()), 8)),
            source=SYNTHETIC if stored_as == SYNTHETIC else "replay",
        )
        self._replay_tickers[key] = ((version, first, last), ticker)
        return ticker

    def _synthetic_book(self, name: str, symbol: str, limit: int) -> OrderBook:
        """A book built around the replayed price (levels 5 bp apart, sizes from recent volume):
        no depth is stored, so it is labelled ``synthetic`` even when the price is real."""
        _, frame = self._replay_frame(name, symbol)
        price = _dec(float(frame["close"].iloc[-1]))
        half_spread = _quantize_like(price * HALF_SPREAD, price)
        per_level = max(float(frame["volume"].mean()) / 50.0, 1e-6)
        bids, asks = [], []
        for level in range(limit):
            offset = price * LEVEL_STEP * level
            size = _dec(round(per_level * (1 + 0.15 * level), 6))
            bids.append((_quantize_like(price - half_spread - offset, price), size))
            asks.append((_quantize_like(price + half_spread + offset, price), size))
        return OrderBook(
            symbol=symbol,
            timestamp=int(frame["timestamp"].iloc[-1]),
            bids=tuple(bids),
            asks=tuple(asks),
            source=SYNTHETIC,
        )

    # --- live exchange access ----------------------------------------------------------------

    async def _live_client(self, name: str) -> MarketSource | None:
        if not self._live or name == SYNTHETIC or self._live_down_until.get(name, 0) > time.monotonic():
            return None
        if name not in self._live_clients:
            assert self._factory is not None
            self._live_clients[name] = self._factory(name)
        return self._live_clients[name]

    def _mark_down(self, name: str) -> None:
        self._live_down_until[name] = time.monotonic() + LIVE_RETRY_SECONDS

    async def _live_markets(self, name: str) -> Mapping[str, MarketInfo]:
        client = await self._live_client(name)
        if client is None:
            return {}
        try:
            return await client.load_markets()
        except ExchangeUnavailable:
            self._mark_down(name)
            return {}

    async def _live_symbols(self, name: str) -> list[str]:
        return list(await self._live_markets(name))

    async def close(self) -> None:
        clients, self._live_clients = list(self._live_clients.values()), {}
        await asyncio.gather(*(client.close() for client in clients), return_exceptions=True)

    # --- filling the store ------------------------------------------------------------------

    def datasets(self) -> list[DatasetInfo]:
        return self._datasets()

    async def download(
        self,
        *,
        exchange: str,
        symbols: list[str],
        timeframes: list[str],
        since_ms: int,
        until_ms: int | None,
        progress: Progress | None = None,
    ) -> list[DownloadResult]:
        """Download every (symbol, timeframe) pair, resuming each from its last stored candle."""
        if self._factory is None:
            raise ExchangeUnavailable("No exchange adapter is configured.")
        for timeframe in timeframes:
            tf.validate_timeframe(timeframe)
        client = self._factory(exchange)
        results: list[DownloadResult] = []
        try:
            index = SymbolIndex((await client.load_markets()).keys())
            resolved = [index.resolve(symbol) for symbol in symbols]
            pairs = [(symbol, timeframe) for symbol in resolved for timeframe in timeframes]
            for number, (symbol, timeframe) in enumerate(pairs):

                async def report(percent: float, message: str, number: int = number) -> None:
                    if progress is not None:
                        await progress((number + percent / 100) / len(pairs) * 100, message)

                results.append(
                    await download_candles(
                        client,
                        self.store,
                        symbol=symbol,
                        timeframe=timeframe,
                        since_ms=since_ms,
                        until_ms=until_ms,
                        now_ms=int(self._clock.timestamp() * 1000),
                        exchange=exchange,
                        progress=report,
                    )
                )
        finally:
            await client.close()
        return results

    def import_data(
        self,
        data: bytes,
        *,
        filename: str | None,
        exchange: str,
        symbol: str,
        timeframe: str,
        drop_invalid: bool,
        file_format: str | None = None,
    ) -> importer.ImportResult:
        return importer.import_candles(
            self.store,
            data,
            exchange=exchange,
            symbol=unify_new_symbol(symbol),
            timeframe=timeframe,
            file_format=file_format,  # type: ignore[arg-type]
            filename=filename,
            drop_invalid=drop_invalid,
        )

    def ensure_synthetic(self, symbols: list[str], timeframe: str) -> list[str]:
        """Generate the labelled synthetic series for symbols with no data at all (first run)."""
        result = synthetic.ensure_synthetic_datasets(self.store, symbols, timeframe)
        return list(result.created)


DOWNLOAD_JOB = "market_data.download"


#: Quote assets whose markets get the venue-typical minimum order value offline.
_USD_QUOTES = frozenset({"USDT", "USDC", "USD", "BUSD", "FDUSD", "TUSD", "DAI"})


def offline_market_info(symbol: str) -> MarketInfo:
    """Rules for a market known only from stored candles (no venue to ask): quantities in steps
    of 10^-8, no price tick, Binance's 0.1 % fees and, on dollar quotes, its 5-unit minimum
    order value, so a paper order that a real venue would refuse is refused here too."""
    base, _, rest = symbol.partition("/")
    quote, _, settle = rest.partition(":")
    return MarketInfo(
        symbol=symbol,
        base=base,
        quote=quote,
        type="swap" if settle else "spot",
        active=True,
        price_tick=None,
        amount_step=Decimal("0.00000001"),
        min_amount=None,
        min_notional=Decimal(5) if quote in _USD_QUOTES else None,
        maker_fee=Decimal("0.001"),
        taker_fee=Decimal("0.001"),
        settle=settle or None,
    )


def download_job_handler(service: MarketDataService) -> Callable[[Any], Awaitable[dict[str, Any]]]:
    """The job behind ``POST /market-data/download``: params as :meth:`MarketDataService.download`."""

    async def run(context: Any) -> dict[str, Any]:
        params = context.params
        results = await service.download(
            exchange=params["exchange"],
            symbols=list(params["symbols"]),
            timeframes=list(params["timeframes"]),
            since_ms=int(params["since_ms"]),
            until_ms=params.get("until_ms"),
            progress=context.report,
        )
        return {"datasets": [result.as_dict() for result in results]}

    return run


def _iso(ms: int) -> str:
    return pd.Timestamp(ms, unit="ms", tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


def decimal_text(value: float) -> str:
    """A float from a numeric kernel as decimal text with at most 15 significant digits: every
    stored value (15 digits at most) prints back exactly, and the binary noise of sums and
    products (digits 16-17) is cut off."""
    if value == 0 or not np.isfinite(value):
        return "0" if value == 0 else str(value)
    return np.format_float_positional(value, precision=15, unique=True, fractional=False, trim="-")


def _dec(value: float) -> Decimal:
    return Decimal(decimal_text(value))


def _quantize_like(value: Decimal, reference: Decimal) -> Decimal:
    """Round to the reference price's decimal places (at least 2, at most 8)."""
    exponent = reference.as_tuple().exponent
    places = -exponent if isinstance(exponent, int) and exponent < 0 else 0
    return value.quantize(Decimal(1).scaleb(-min(max(places, 2), 8)))


__all__: Any = ["Candles", "MarketDataService", "MarketEntry", "MarketSource"]
