"""Bot wire models: ``/bots``, ``/strategies/{id}/start|stop`` (seed 001) and ``/bot/*`` (seed 004).

Risk settings are exact decimals (JSON strings in responses; requests accept strings or
numbers); fractions are decimals, ``0.02`` meaning 2 %. Requests accept the seeds' names:
``trading_pair``/``tradingPair`` for ``symbol``, ``strategy`` as a type name or
``{"type", "params"}``, ``config`` for ``risk``, and the risk shortcuts ``risk_per_trade``,
``stop_loss``, ``take_profit``, ``leverage`` at the top level (seeds 000 and 002).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AliasChoices, Field, field_validator, model_validator

from cryptoorchestrator.schemas.common import Money, Page, RequestModel, ResponseModel

BotStatusName = Literal["stopped", "starting", "running", "paused", "stopping", "error"]
BotModeName = Literal["paper", "live"]
BotEventKind = Literal["state", "signal", "order", "fill", "protection", "reconcile", "error", "warning"]

_FRACTION = "a fraction between 0 and 1: 0.02 means 2 %"
_REQUIRED_RISK = ("risk_per_trade", "leverage", "max_open_positions", "max_position_fraction")
_SHORTCUTS = ("risk_per_trade", "stop_loss", "take_profit", "leverage")


class BotRiskIn(RequestModel):
    """Risk settings; those left out keep their value (their default on a new bot). ``null``
    removes a stop loss, take profit or trailing stop."""

    risk_per_trade: Money | None = Field(
        default=None, gt=0, lt=1, description=f"Equity risked per trade, {_FRACTION} (default 0.01)."
    )
    stop_loss: Money | None = Field(
        default=None, gt=0, lt=1, description=f"Below the entry price, {_FRACTION}."
    )
    take_profit: Money | None = Field(default=None, gt=0, lt=1, description=f"Beyond the entry, {_FRACTION}.")
    trailing_stop: Money | None = Field(
        default=None, gt=0, lt=1, description=f"Below the best price since entry, {_FRACTION}."
    )
    leverage: Money | None = Field(default=None, ge=1, le=125, description="1 to 125 (default 1).")
    max_open_positions: int | None = Field(default=None, ge=1, le=100, description="1 to 100 (default 1).")
    max_position_fraction: Money | None = Field(
        default=None, gt=0, le=125, description="Cap of one position's value over equity (default 1)."
    )

    @field_validator(*_REQUIRED_RISK, mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("cannot be null")
        return value


class BotStrategyIn(RequestModel):
    strategy_type: str = Field(
        min_length=1, max_length=64, validation_alias=AliasChoices("type", "strategy_type", "name")
    )
    params: dict[str, Any] = Field(
        default_factory=dict, validation_alias=AliasChoices("params", "parameters")
    )


class _BotSettings(RequestModel):
    strategy: BotStrategyIn | str | None = Field(
        default=None, description='A registered type ("sma_cross") or {"type", "params"}.'
    )
    params: dict[str, Any] | None = Field(
        default=None,
        validation_alias=AliasChoices("params", "parameters"),
        description="Strategy parameters (with strategy_id: overrides of the saved ones).",
    )
    symbol: str | None = Field(
        default=None,
        min_length=3,
        max_length=40,
        validation_alias=AliasChoices("symbol", "trading_pair", "tradingPair", "pair"),
    )
    symbols: list[str] | None = Field(default=None, min_length=1, max_length=20)
    risk: BotRiskIn | None = Field(
        default=None, validation_alias=AliasChoices("risk", "config", "risk_settings")
    )

    def strategy_fields(self) -> tuple[str | None, dict[str, Any] | None]:
        """(strategy type, params) as the service takes them."""
        if isinstance(self.strategy, BotStrategyIn):
            params = {**self.strategy.params, **(self.params or {})}
            return self.strategy.strategy_type, params
        return self.strategy, self.params

    def symbol_list(self) -> tuple[str, ...] | None:
        if self.symbol is not None and self.symbols is not None:
            raise ValueError("give symbol or symbols, not both")
        if self.symbol is not None:
            return (self.symbol,)
        return tuple(self.symbols) if self.symbols is not None else None

    def risk_changes(self) -> dict[str, Any]:
        return self.risk.model_dump(exclude_unset=True) if self.risk is not None else {}


class BotCreate(_BotSettings):
    """``POST /bots``: a saved strategy (``strategy_id``) or an inline one (``strategy``), on the
    paper account unless ``account_id`` names an exchange account (the mode follows)."""

    name: str = Field(min_length=1, max_length=100)
    strategy_id: str | None = Field(default=None, max_length=36)
    account_id: str = Field(default="paper", min_length=1, max_length=64)
    mode: BotModeName | None = Field(default=None, description="Checked against the account's mode.")
    exchange: str | None = Field(default=None, max_length=50, description="Checked against the account's.")
    timeframe: str = Field(default="1h", min_length=2, max_length=8)
    risk_per_trade: Money | None = Field(
        default=None, gt=0, lt=1, description=f"Shortcut of risk: {_FRACTION}."
    )
    stop_loss: Money | None = Field(default=None, gt=0, lt=1, description=f"Shortcut of risk: {_FRACTION}.")
    take_profit: Money | None = Field(default=None, gt=0, lt=1, description=f"Shortcut of risk: {_FRACTION}.")
    leverage: Money | None = Field(default=None, ge=1, le=125, description="Shortcut of risk.leverage.")

    @field_validator("mode", mode="before")
    @classmethod
    def _lower_mode(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _consistent(self) -> BotCreate:
        if (self.strategy_id is None) == (self.strategy is None):
            raise ValueError("give exactly one of strategy_id (a saved strategy) or strategy")
        if self.symbol_list() is None:
            raise ValueError("give symbol or symbols")
        given = self.risk.model_fields_set if self.risk is not None else set()
        for name in _SHORTCUTS:
            if getattr(self, name) is not None and name in given:
                raise ValueError(f"{name} is given twice: at the top level and in risk")
        return self

    def all_risk(self) -> dict[str, Any]:
        shortcuts = {name: getattr(self, name) for name in _SHORTCUTS if getattr(self, name) is not None}
        return {**self.risk_changes(), **shortcuts}


class BotUpdate(_BotSettings):
    """``PATCH /bots/{id}``: what is sent changes; ``params`` are merged into the stored ones
    (replaced when ``strategy`` names another type). The strategy, parameters, symbols and
    timeframe change only while the bot is stopped; the name, risk and default flag any time."""

    name: str | None = Field(default=None, min_length=1, max_length=100)
    timeframe: str | None = Field(default=None, min_length=2, max_length=8)
    is_default: bool | None = Field(default=None, description="Make this the bot the /bot/* routes act on.")

    @model_validator(mode="after")
    def _one_symbol_field(self) -> BotUpdate:
        self.symbol_list()
        return self


class StopRequest(RequestModel):
    close_positions: bool = Field(default=False, description="Close the bot's positions as it stops.")


class BotRiskOut(ResponseModel):
    risk_per_trade: Money
    stop_loss: Money | None
    take_profit: Money | None
    trailing_stop: Money | None
    leverage: Money
    max_open_positions: int
    max_position_fraction: Money


class BotOut(ResponseModel):
    id: str
    name: str
    strategy_type: str
    strategy_id: str | None
    params: dict[str, Any]
    account_id: str
    exchange: str
    mode: BotModeName
    symbols: list[str]
    symbol: str = Field(description="The first symbol (seeds 000 and 003 name one).")
    timeframe: str
    risk: BotRiskOut
    status: BotStatusName
    desired: Literal["running", "paused", "stopped"]
    error: str | None
    is_default: bool
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    stopped_at: datetime | None
    last_candle_at: datetime | None


BotsPage = Page[BotOut]


class BotActionOut(ResponseModel):
    """Seed 003's start/stop answer, with the bot."""

    message: str
    bot_id: str
    status: BotStatusName
    desired: Literal["running", "paused", "stopped"]
    bot: BotOut


class BotPositionOut(ResponseModel):
    symbol: str
    side: str
    quantity: Money
    entry_price: Money | None
    realized_pnl: Money
    opened_at: datetime | None


class BotStatusOut(ResponseModel):
    bot_id: str
    status: BotStatusName
    desired: Literal["running", "paused", "stopped"]
    error: str | None
    mode: BotModeName
    uptime_seconds: int
    started_at: datetime | None
    stopped_at: datetime | None
    last_candle_at: datetime | None
    signals_today: int
    daily_pnl: Money
    daily_trades: int
    win_rate: float | None = Field(description="Winning closing trades today, in percent.")
    open_positions: list[BotPositionOut] = Field(
        description="Non-flat positions of the bot's symbols on its account (shared by every bot on it)."
    )


class BotEventOut(ResponseModel):
    id: int
    bot_id: str
    kind: BotEventKind
    message: str
    data: dict[str, Any]
    timestamp: datetime


BotEventsPage = Page[BotEventOut]


# --- seed 001: /strategies/{id}/start|stop -------------------------------------------------------


class StrategyStartRequest(RequestModel):
    symbol: str | None = Field(
        default=None,
        min_length=3,
        max_length=40,
        validation_alias=AliasChoices("symbol", "trading_pair", "tradingPair", "pair"),
        description="Default BTC/USDT for a new bot.",
    )
    timeframe: str | None = Field(default=None, min_length=2, max_length=8, description="Default 1h.")


class StrategyRunOut(ResponseModel):
    strategy_id: str
    status: Literal["started", "stopped"]
    message: str
    started_at: datetime | None = Field(default=None, description="When the start was asked for.")
    stopped_at: datetime | None = None
    bot_id: str
    bot_status: BotStatusName


# --- seed 004: /bot/* (the user's default bot) ----------------------------------------------------


class DefaultBotStartRequest(RequestModel):
    paper_trading: bool | None = Field(default=None, description="Default true for a new bot.")
    strategies: list[str] | None = Field(
        default=None, max_length=1, description="The strategy of a new default bot (default sma_cross)."
    )


class DefaultBotStartOut(ResponseModel):
    status: Literal["started"]
    message: str
    paper_trading: bool
    active_strategies: list[str]
    bot_id: str


class DefaultBotStopOut(ResponseModel):
    status: Literal["stopped"]
    message: str
    open_positions: int
    bot_id: str


class StrategyActivity(ResponseModel):
    name: str
    enabled: bool
    signals_today: int


class DailyPerformance(ResponseModel):
    daily_pnl: Money
    daily_trades: int
    win_rate: float | None


class DefaultBotStatusOut(ResponseModel):
    status: BotStatusName
    trading_enabled: bool
    paper_trading: bool
    uptime_seconds: int
    started_at: datetime | None
    strategies: list[StrategyActivity]
    performance: DailyPerformance
    bot_id: str | None
