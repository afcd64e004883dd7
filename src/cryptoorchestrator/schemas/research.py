"""Strategy and backtest wire models."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import AliasChoices, Field, model_validator

from cryptoorchestrator.schemas.common import RequestModel, ResponseModel


class StrategyTypeOut(ResponseModel):
    name: str
    description: str
    parameters_schema: dict[str, Any]
    defaults: dict[str, Any]


class StrategyTypesOut(ResponseModel):
    items: list[StrategyTypeOut]
    total: int


class StrategyCreate(RequestModel):
    name: str = Field(min_length=1, max_length=100)
    strategy_type: str = Field(
        min_length=1, max_length=64, validation_alias=AliasChoices("strategy_type", "type", "strategyType")
    )
    params: dict[str, Any] = Field(
        default_factory=dict, validation_alias=AliasChoices("params", "parameters", "config")
    )
    description: str | None = Field(default=None, max_length=2000)


class StrategyUpdate(RequestModel):
    name: str | None = Field(default=None, min_length=1, max_length=100)
    strategy_type: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        validation_alias=AliasChoices("strategy_type", "type", "strategyType"),
    )
    params: dict[str, Any] | None = Field(
        default=None, validation_alias=AliasChoices("params", "parameters", "config")
    )
    description: str | None = Field(default=None, max_length=2000)


class StrategyValidate(RequestModel):
    strategy_type: str = Field(
        min_length=1, max_length=64, validation_alias=AliasChoices("strategy_type", "type")
    )
    params: dict[str, Any] = Field(
        default_factory=dict, validation_alias=AliasChoices("params", "parameters")
    )


class StrategyValidation(ResponseModel):
    valid: bool
    strategy_type: str
    params: dict[str, Any]


class StrategyOut(ResponseModel):
    id: str
    name: str
    strategy_type: str
    params: dict[str, Any]
    description: str | None
    created_at: datetime
    updated_at: datetime


class InlineStrategy(RequestModel):
    strategy_type: str = Field(
        min_length=1, max_length=64, validation_alias=AliasChoices("strategy_type", "type", "name")
    )
    params: dict[str, Any] = Field(
        default_factory=dict, validation_alias=AliasChoices("params", "parameters")
    )


class BacktestCreate(RequestModel):
    """Strategy by ``strategy_id`` or inline; costs are on by default (0.1% per side, 5 bp slippage)."""

    strategy_id: str | None = Field(default=None, max_length=36)
    strategy: InlineStrategy | None = None
    params: dict[str, Any] | None = Field(
        default=None, description="overrides of the saved strategy's parameters"
    )
    symbol: str | None = Field(
        default=None, min_length=2, max_length=40, validation_alias=AliasChoices("symbol", "trading_pair")
    )
    symbols: list[str] | None = Field(
        default=None, min_length=1, max_length=20, description="several symbols sharing one capital"
    )
    max_positions: int | None = Field(
        default=None, ge=1, le=20, description="portfolio: positions open at once (default: one per symbol)"
    )
    exchange: str | None = Field(default=None, max_length=50)
    timeframe: str = Field(default="1h", max_length=4)
    start: datetime | int = Field(validation_alias=AliasChoices("start", "start_date", "start_time"))
    end: datetime | int = Field(validation_alias=AliasChoices("end", "end_date", "end_time"))
    initial_capital: Decimal = Field(default=Decimal(10000), gt=0, le=Decimal(10) ** 12)
    commission: float = Field(default=0.001, ge=0, lt=0.1, description="fraction per side, e.g. 0.001 = 0.1%")
    slippage_model: Literal["fixed", "volume"] = "fixed"
    slippage_bps: float = Field(default=5.0, ge=0, lt=10_000)
    sizing: Literal["percent_equity", "fixed_cash", "fixed_quantity", "risk"] = "percent_equity"
    size: float = Field(default=1.0, gt=0)
    leverage: float = Field(default=1.0, ge=1, le=200)
    stop_loss: float | None = Field(default=None, gt=0, lt=1, description="fraction of the entry price")
    take_profit: float | None = Field(default=None, gt=0, lt=1)
    trailing_stop: float | None = Field(default=None, gt=0, lt=1)
    fill_at: Literal["open", "close"] = "open"

    @model_validator(mode="after")
    def _one_strategy(self) -> BacktestCreate:
        if (self.strategy_id is None) == (self.strategy is None):
            raise ValueError("give exactly one of strategy_id or strategy")
        if (self.symbol is None) == (self.symbols is None):
            raise ValueError("give exactly one of symbol or symbols")
        if self.symbols is not None and len(set(self.symbols)) != len(self.symbols):
            raise ValueError("symbols must not repeat")
        return self


class BacktestOut(ResponseModel):
    id: str
    status: Literal["queued", "running", "succeeded", "failed", "canceled"]
    progress_percent: float
    job_id: str | None
    strategy_id: str | None
    strategy_type: str
    params: dict[str, Any]
    symbol: str
    timeframe: str
    start: datetime
    end: datetime
    created_at: datetime
    message: str | None = None
    error: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    summary: dict[str, Any] | None = None


class EquityPoint(ResponseModel):
    timestamp: datetime
    equity: Decimal
    drawdown: float


class TradeOut(ResponseModel):
    symbol: str | None = None
    side: Literal["long", "short"]
    entry_time: datetime
    exit_time: datetime
    quantity: Decimal
    entry_price: Decimal
    exit_price: Decimal
    fees: Decimal
    pnl: Decimal
    return_pct: float
    exit_reason: str


class BacktestResults(ResponseModel):
    id: str
    metrics: dict[str, Any]
    summary: dict[str, Any]
    equity_curve: list[EquityPoint]
    trades: list[TradeOut]
    trades_total: int


class WalkForwardSpec(RequestModel):
    in_sample: int = Field(ge=50, description="bars per in-sample window")
    out_of_sample: int = Field(ge=10, description="bars per out-of-sample window")
    anchored: bool = False


class OptimizeCreate(RequestModel):
    """A parameter search over stored candles; ``space`` maps parameter names to
    ``{"low", "high", "step"}`` ranges or ``{"values": [...]}`` choices."""

    strategy: InlineStrategy | None = None
    strategy_type: str | None = Field(default=None, max_length=64)
    space: dict[str, dict[str, Any]] = Field(min_length=1, max_length=20)
    method: Literal["grid", "random", "optuna"] = "grid"
    objective: Literal["sharpe", "sortino", "calmar", "total_return", "profit_factor", "max_drawdown"] = (
        "sharpe"
    )
    n_trials: int = Field(default=100, ge=1, le=20_000)
    seed: int | None = Field(default=None, ge=0)
    min_trades: int = Field(default=1, ge=0)
    symbol: str = Field(min_length=2, max_length=40)
    exchange: str | None = Field(default=None, max_length=50)
    timeframe: str = Field(default="1h", max_length=4)
    start: datetime | int
    end: datetime | int
    initial_capital: Decimal = Field(default=Decimal(10000), gt=0, le=Decimal(10) ** 12)
    commission: float = Field(default=0.001, ge=0, lt=0.1)
    slippage_bps: float = Field(default=5.0, ge=0, lt=10_000)
    walk_forward: WalkForwardSpec | None = None
    monte_carlo: int | None = Field(
        default=None, ge=100, le=100_000, description="simulations of the best run"
    )

    @model_validator(mode="after")
    def _strategy(self) -> OptimizeCreate:
        if (self.strategy is None) == (self.strategy_type is None):
            raise ValueError("give exactly one of strategy or strategy_type")
        return self


class OptimizeOut(ResponseModel):
    id: str
    status: Literal["queued", "running", "succeeded", "failed", "canceled"]
    progress_percent: float
    message: str | None = None
    created_at: datetime
    finished_at: datetime | None = None
    request: dict[str, Any]
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
