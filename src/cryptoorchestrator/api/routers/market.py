"""Market data: markets, tickers, candles, order books, stored datasets, download and import."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, Request, Response, UploadFile, status
from fastapi.responses import JSONResponse

from cryptoorchestrator.api.deps import ContainerDep, PrincipalDep
from cryptoorchestrator.api.params import iso_ms, parse_time_ms
from cryptoorchestrator.api.routers.jobs import job_out
from cryptoorchestrator.core.errors import InvalidDateRange, PayloadTooLarge
from cryptoorchestrator.domain.market import OrderBook, Ticker
from cryptoorchestrator.marketdata import timeframes as tf
from cryptoorchestrator.schemas.common import ERROR_RESPONSES
from cryptoorchestrator.schemas.jobs import JobOut
from cryptoorchestrator.schemas.market import (
    CandlesOut,
    DatasetOut,
    DatasetsOut,
    DownloadRequest,
    ImportProblemOut,
    ImportResultOut,
    MarketOut,
    MarketsOut,
    OrderBookOut,
    TickerOut,
)
from cryptoorchestrator.services.market_data import DOWNLOAD_JOB, Candles, decimal_text

router = APIRouter(tags=["market data"], responses=ERROR_RESPONSES)

ExchangeQuery = Annotated[
    str | None,
    Query(max_length=50, description="Exchange id (default: the configured one, then synthetic data)."),
]
TimeQuery = Annotated[str | None, Query(description="ISO 8601 or epoch milliseconds.")]


def _number(value: float) -> str:
    return decimal_text(value)


def candles_body(candles: Candles, *, start_ms: int | None, end_ms: int | None) -> dict[str, Any]:
    frame = candles.frame
    data = [
        {
            "timestamp": iso_ms(int(ts)),
            "open": _number(o),
            "high": _number(h),
            "low": _number(low),
            "close": _number(c),
            "volume": _number(v),
        }
        for ts, o, h, low, c, v in zip(
            frame["timestamp"].tolist(),
            frame["open"].tolist(),
            frame["high"].tolist(),
            frame["low"].tolist(),
            frame["close"].tolist(),
            frame["volume"].tolist(),
            strict=True,
        )
    ]
    return {
        "symbol": candles.symbol,
        "interval": candles.timeframe,
        "timeframe": candles.timeframe,
        "exchange": candles.exchange,
        "source": candles.source,
        "data": data,
        "count": len(data),
        "has_more": candles.has_more,
        "start_time": iso_ms(start_ms) if start_ms is not None else (data[0]["timestamp"] if data else None),
        "end_time": iso_ms(end_ms) if end_ms is not None else (data[-1]["timestamp"] if data else None),
        "resampled_from": candles.resampled_from,
    }


async def _candles(
    container: Any,
    symbol: str,
    *,
    timeframe: str,
    limit: int,
    start_time: str | None,
    end_time: str | None,
    exchange: str | None,
) -> Response:
    start_ms = parse_time_ms(start_time, name="start_time")
    end_ms = parse_time_ms(end_time, name="end_time")
    if start_ms is not None and end_ms is not None and start_ms >= end_ms:
        raise InvalidDateRange(
            "start_time must be before end_time.", details={"start_time": start_time, "end_time": end_time}
        )
    candles = await container.market_data.klines(
        symbol, timeframe=timeframe, start_ms=start_ms, end_ms=end_ms, limit=limit, exchange=exchange
    )
    # Built as plain JSON (strings already exact): thousands of candles skip per-row validation.
    return JSONResponse(candles_body(candles, start_ms=start_ms, end_ms=end_ms))


def _ms_time(value: int | None) -> datetime | None:
    return datetime.fromtimestamp(value / 1000, UTC) if value is not None else None


def ticker_out(ticker: Ticker, exchange: str) -> TickerOut:
    return TickerOut(
        symbol=ticker.symbol,
        exchange=exchange,
        timestamp=_ms_time(ticker.timestamp),
        bid=ticker.bid,
        ask=ticker.ask,
        last=ticker.last,
        high=ticker.high,
        low=ticker.low,
        volume=ticker.base_volume,
        quote_volume=ticker.quote_volume,
        source=ticker.source,  # type: ignore[arg-type]
    )


def book_out(book: OrderBook, exchange: str) -> OrderBookOut:
    return OrderBookOut(
        symbol=book.symbol,
        exchange=exchange,
        timestamp=_ms_time(book.timestamp),
        bids=[(price, amount) for price, amount in book.bids],
        asks=[(price, amount) for price, amount in book.asks],
        last_update_id=book.nonce,
        source=book.source,  # type: ignore[arg-type]
    )


@router.get("/markets", response_model=MarketsOut)
async def markets(
    principal: PrincipalDep, container: ContainerDep, exchange: ExchangeQuery = None
) -> MarketsOut:
    """Markets with data: stored locally (with their timeframes) and, when live data is on, listed
    by the exchange."""
    entries = await container.market_data.markets(exchange)
    items = [
        MarketOut(
            symbol=e.symbol,
            exchange=e.exchange,
            base=e.base,
            quote=e.quote,
            active=e.active,
            source=e.source,  # type: ignore[arg-type]
            timeframes=list(e.timeframes),
        )
        for e in entries
    ]
    return MarketsOut(items=items, total=len(items))


@router.get("/market/ticker/{symbol:path}", response_model=TickerOut)
async def ticker(
    symbol: str, principal: PrincipalDep, container: ContainerDep, exchange: ExchangeQuery = None
) -> TickerOut:
    """Best bid/ask, last price and 24 h statistics. Symbols: BTC/USDT, BTC-USDT, BTC_USDT, BTCUSDT."""
    name, _ = await container.market_data.resolve(symbol, exchange=exchange)
    return ticker_out(await container.market_data.ticker(symbol, exchange=exchange), name)


@router.get("/market/klines/{symbol:path}", response_model=CandlesOut)
async def klines(
    symbol: str,
    principal: PrincipalDep,
    container: ContainerDep,
    interval: Annotated[str, Query(max_length=4, description="Timeframe: 1m 5m 15m 1h 4h 1d 1w ...")] = "1h",
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
    start_time: TimeQuery = None,
    end_time: TimeQuery = None,
    exchange: ExchangeQuery = None,
) -> Response:
    """Candles, oldest first: the newest `limit` ones, or from `start_time` on. Timeframes that
    are not stored are built exactly from a smaller stored one (complete candles only)."""
    return await _candles(
        container,
        symbol,
        timeframe=interval,
        limit=limit,
        start_time=start_time,
        end_time=end_time,
        exchange=exchange,
    )


@router.get("/market-data/datasets", response_model=DatasetsOut)
async def datasets(principal: PrincipalDep, container: ContainerDep) -> DatasetsOut:
    """Every stored candle dataset with its range, size, gaps and source label."""
    items = [
        DatasetOut(
            exchange=d.exchange,
            symbol=d.symbol,
            timeframe=d.timeframe,
            first_timestamp=datetime.fromtimestamp(d.first_ms / 1000, UTC),
            last_timestamp=datetime.fromtimestamp(d.last_ms / 1000, UTC),
            rows=d.rows,
            gaps=d.gaps,
            missing_candles=d.missing,
            source=d.source,
            file_size=d.file_size,
        )
        for d in container.market_data.datasets()
    ]
    return DatasetsOut(items=items, total=len(items))


@router.post("/market-data/download", status_code=status.HTTP_202_ACCEPTED, response_model=JobOut)
async def download(body: DownloadRequest, principal: PrincipalDep, container: ContainerDep) -> JobOut:
    """Start a background download (a job: poll `GET /jobs/{id}` for `progress_percent`). It
    pages through the exchange's candles and resumes from the last stored one."""
    since_ms = parse_time_ms(body.since, name="since")
    until_ms = parse_time_ms(body.until, name="until")
    if since_ms is not None and until_ms is not None and since_ms >= until_ms:
        raise InvalidDateRange("since must be before until.", details={"since": since_ms, "until": until_ms})
    for timeframe in body.timeframes:
        tf.validate_timeframe(timeframe)
    job = await container.jobs.submit(
        principal.user.id,
        DOWNLOAD_JOB,
        {
            "exchange": body.exchange,
            "symbols": body.symbols,
            "timeframes": body.timeframes,
            "since_ms": since_ms,
            "until_ms": until_ms,
        },
    )
    return job_out(job)


@router.post("/market-data/import", status_code=status.HTTP_201_CREATED, response_model=ImportResultOut)
async def import_candles(
    request: Request,
    principal: PrincipalDep,
    container: ContainerDep,
    file: Annotated[
        UploadFile, File(description="CSV, JSON (ccxt/freqtrade arrays), freqtrade .feather or Parquet")
    ],
    symbol: Annotated[str, Form(min_length=3, max_length=40)],
    timeframe: Annotated[str, Form(max_length=4)],
    exchange: Annotated[str, Form(min_length=2, max_length=50, pattern=r"^[a-z0-9_]+$")] = "binance",
    drop_invalid: Annotated[
        bool, Form(description="Drop and count bad rows instead of refusing the file.")
    ] = False,
    file_format: Annotated[
        str | None, Form(description="csv, json, feather or parquet (default: from the name)")
    ] = None,
) -> ImportResultOut:
    """Import candles. Bad rows (out of order, high below low, negative volume, NaN...) are reported
    with their row numbers and the import is refused, unless `drop_invalid` is set."""
    limit = container.settings.max_upload_mb * 1024 * 1024
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(
            f"The file is larger than {container.settings.max_upload_mb} MB.",
            details={"max_bytes": limit},
        )
    result = await asyncio.to_thread(
        container.market_data.import_data,
        data,
        filename=file.filename,
        exchange=exchange,
        symbol=symbol,
        timeframe=timeframe,
        drop_invalid=drop_invalid,
        file_format=file_format,
    )
    return ImportResultOut(
        exchange=result.exchange,
        symbol=result.symbol,
        timeframe=result.timeframe,
        file_format=str(result.file_format),
        rows_read=result.rows_read,
        rows_stored=result.rows_stored,
        rows_dropped=result.rows_dropped,
        rows_added=result.rows_added,
        rows_replaced=result.rows_replaced,
        problem_count=result.problem_count,
        problems=[ImportProblemOut(row=p.row, column=p.column, problem=p.message) for p in result.problems],
        first_timestamp=_ms_time(result.first_ms),
        last_timestamp=_ms_time(result.last_ms),
    )


@router.get("/market-data/{symbol:path}/history", response_model=CandlesOut)
async def history(
    symbol: str,
    principal: PrincipalDep,
    container: ContainerDep,
    timeframe: Annotated[str, Query(max_length=4)],
    start_time: TimeQuery = None,
    end_time: TimeQuery = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
    exchange: ExchangeQuery = None,
) -> Response:
    """Historical candles (seed 001); up to 5000 per request."""
    return await _candles(
        container,
        symbol,
        timeframe=timeframe,
        limit=limit,
        start_time=start_time,
        end_time=end_time,
        exchange=exchange,
    )


@router.get("/market-data/{symbol:path}/orderbook", response_model=OrderBookOut)
async def orderbook(
    symbol: str,
    principal: PrincipalDep,
    container: ContainerDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    exchange: ExchangeQuery = None,
) -> OrderBookOut:
    """Order book; built around the replayed price (`source: synthetic`) when no exchange is live."""
    name, _ = await container.market_data.resolve(symbol, exchange=exchange)
    return book_out(await container.market_data.order_book(symbol, limit=limit, exchange=exchange), name)


@router.get("/market-data/{symbol:path}", response_model=CandlesOut)
async def recent(
    symbol: str,
    principal: PrincipalDep,
    container: ContainerDep,
    timeframe: Annotated[str, Query(max_length=4)] = "1m",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    exchange: ExchangeQuery = None,
) -> Response:
    """Recent candles (seed 001)."""
    return await _candles(
        container, symbol, timeframe=timeframe, limit=limit, start_time=None, end_time=None, exchange=exchange
    )


__all__ = ["Decimal", "router"]
