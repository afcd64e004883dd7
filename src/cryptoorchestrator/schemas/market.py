"""Market-data wire models (candles keep the contract's own shape, not the list envelope)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import Field, field_validator

from cryptoorchestrator.schemas.common import RequestModel, ResponseModel

Source = Literal["exchange", "replay", "synthetic"]


class CandleOut(ResponseModel):
    timestamp: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


class CandlesOut(ResponseModel):
    symbol: str
    interval: str
    timeframe: str
    exchange: str
    source: Source
    data: list[CandleOut]
    count: int
    has_more: bool
    start_time: datetime | None = None
    end_time: datetime | None = None
    resampled_from: str | None = Field(default=None, description="the stored timeframe these were built from")


class MarketOut(ResponseModel):
    symbol: str
    exchange: str
    base: str
    quote: str
    active: bool
    source: Source
    timeframes: list[str] = Field(description="timeframes stored locally")


class MarketsOut(ResponseModel):
    items: list[MarketOut]
    total: int


class TickerOut(ResponseModel):
    symbol: str
    exchange: str
    timestamp: datetime | None
    bid: Decimal | None
    ask: Decimal | None
    last: Decimal | None
    high: Decimal | None
    low: Decimal | None
    volume: Decimal | None
    quote_volume: Decimal | None
    source: Source


class OrderBookOut(ResponseModel):
    symbol: str
    exchange: str
    timestamp: datetime | None
    bids: list[tuple[Decimal, Decimal]]
    asks: list[tuple[Decimal, Decimal]]
    last_update_id: int | None = None
    source: Source


class DatasetOut(ResponseModel):
    exchange: str
    symbol: str
    timeframe: str
    first_timestamp: datetime
    last_timestamp: datetime
    rows: int
    gaps: int
    missing_candles: int
    source: str
    file_size: int


class DatasetsOut(ResponseModel):
    items: list[DatasetOut]
    total: int


class DownloadRequest(RequestModel):
    exchange: str = Field(default="binance", min_length=2, max_length=50, pattern=r"^[a-z0-9_]+$")
    symbols: list[str] = Field(min_length=1, max_length=50)
    timeframes: list[str] = Field(default_factory=lambda: ["1h"], min_length=1, max_length=15)
    since: datetime | int = Field(description="ISO 8601 or epoch milliseconds")
    until: datetime | int | None = Field(
        default=None, description="ISO 8601 or epoch milliseconds; default now"
    )

    @field_validator("symbols")
    @classmethod
    def _no_blank(cls, value: list[str]) -> list[str]:
        if any(not item.strip() for item in value):
            raise ValueError("symbols must not be blank")
        return value


class ImportProblemOut(ResponseModel):
    row: int
    column: str | None = None
    problem: str


class ImportResultOut(ResponseModel):
    exchange: str
    symbol: str
    timeframe: str
    file_format: str
    rows_read: int
    rows_stored: int
    rows_dropped: int
    rows_added: int
    rows_replaced: int
    problem_count: int
    problems: list[ImportProblemOut]
    first_timestamp: datetime | None
    last_timestamp: datetime | None
