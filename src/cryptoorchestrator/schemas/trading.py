"""Order, position, trade, account and portfolio wire models.

Money is ``Decimal`` (a JSON string in responses); requests accept strings or numbers, and the
trading routers parse JSON numbers as exact decimals (``api/decimal_json.py``). Enumerations
are accepted in any case (seed 001 sends ``"BUY"``, ``"LIMIT"``); responses are lower case.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import AliasChoices, Field, field_validator, model_validator

from cryptoorchestrator.schemas.common import Money, Page, RequestModel, ResponseModel

_MAX_MONEY = Decimal(10) ** 15
_CLIENT_ID = re.compile(r"^[A-Za-z0-9_\-:.]{1,36}$")
_TYPE_ALIASES = {"stop": "stop_market", "stop_loss": "stop_market", "stoplimit": "stop_limit"}


def _lower(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip().lower().replace("-", "_")
        return _TYPE_ALIASES.get(text, text)
    return value


class OrderCreate(RequestModel):
    """``POST /orders``: seed aliases (``trading_pair``, ``amount``, ``order_type``) accepted."""

    symbol: str = Field(
        min_length=3, max_length=40, validation_alias=AliasChoices("symbol", "trading_pair", "pair")
    )
    side: Literal["buy", "sell"]
    type: Literal["market", "limit", "stop_market", "stop_limit"] = Field(
        default="market", validation_alias=AliasChoices("type", "order_type", "orderType")
    )
    quantity: Money = Field(
        gt=0, le=_MAX_MONEY, validation_alias=AliasChoices("quantity", "amount", "size", "qty")
    )
    price: Money | None = Field(default=None, gt=0, le=_MAX_MONEY)
    stop_price: Money | None = Field(
        default=None,
        gt=0,
        le=_MAX_MONEY,
        validation_alias=AliasChoices("stop_price", "stopPrice", "trigger_price"),
    )
    time_in_force: Literal["GTC", "IOC", "FOK"] = Field(
        default="GTC", validation_alias=AliasChoices("time_in_force", "timeInForce", "tif")
    )
    reduce_only: bool = Field(default=False, validation_alias=AliasChoices("reduce_only", "reduceOnly"))
    client_order_id: str | None = Field(
        default=None, validation_alias=AliasChoices("client_order_id", "clientOrderId", "newClientOrderId")
    )
    stop_loss: Money | None = Field(
        default=None, gt=0, le=_MAX_MONEY, validation_alias=AliasChoices("stop_loss", "stopLoss")
    )
    take_profit: Money | None = Field(
        default=None, gt=0, le=_MAX_MONEY, validation_alias=AliasChoices("take_profit", "takeProfit")
    )
    bot_id: str | None = Field(default=None, max_length=64, validation_alias=AliasChoices("bot_id", "botId"))
    account_id: str | None = Field(
        default=None, max_length=64, validation_alias=AliasChoices("account_id", "accountId")
    )

    @field_validator("side", "type", mode="before")
    @classmethod
    def _case_insensitive(cls, value: Any) -> Any:
        return _lower(value)

    @field_validator("time_in_force", mode="before")
    @classmethod
    def _upper_tif(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("client_order_id")
    @classmethod
    def _client_id(cls, value: str | None) -> str | None:
        if value is not None and not _CLIENT_ID.match(value):
            raise ValueError("client_order_id must be 1-36 characters of letters, digits, '_', '-', ':', '.'")
        return value

    @model_validator(mode="after")
    def _prices_match_type(self) -> OrderCreate:
        if self.type in ("limit", "stop_limit") and self.price is None:
            raise ValueError(f"a {self.type} order needs a price")
        if self.type in ("stop_market", "stop_limit") and self.stop_price is None:
            raise ValueError(f"a {self.type} order needs a stop_price")
        if self.type == "market" and self.price is not None:
            raise ValueError("a market order takes no price (use a limit order to cap the price)")
        if self.type in ("market", "limit") and self.stop_price is not None:
            raise ValueError("stop_price is only for stop_market and stop_limit orders")
        if self.reduce_only and (self.stop_loss is not None or self.take_profit is not None):
            raise ValueError("a reduce-only order cannot carry its own stop_loss or take_profit")
        return self


class OrderOut(ResponseModel):
    id: str
    order_id: str = Field(description="The same as `id` (seed 001's name).")
    client_order_id: str
    account_id: str
    symbol: str
    side: str
    type: str
    status: str
    quantity: Money
    filled_quantity: Money
    remaining_quantity: Money
    price: Money | None
    stop_price: Money | None
    average_price: Money | None
    time_in_force: str
    reduce_only: bool
    stop_loss: Money | None
    take_profit: Money | None
    fees: dict[str, Money]
    exchange_order_id: str | None
    bot_id: str | None
    parent_id: str | None
    oco_group: str | None
    triggered: bool
    reason: str | None
    created_at: datetime
    updated_at: datetime


class PositionOut(ResponseModel):
    symbol: str
    account_id: str
    kind: str
    side: str
    quantity: Money
    entry_price: Money | None
    mark_price: Money | None
    notional: Money | None
    unrealized_pnl: Money | None
    unrealized_pnl_pct: float | None
    realized_pnl: Money
    fees_paid: Money
    leverage: Money
    margin: Money
    liquidation_price: Money | None
    stop_loss: Money | None
    take_profit: Money | None
    opened_at: datetime | None
    updated_at: datetime


class PositionsOut(Page[PositionOut]):
    total_unrealized_pnl: Money
    total_margin_used: Money


class ClosePositionRequest(RequestModel):
    quantity: Money | None = Field(
        default=None, gt=0, le=_MAX_MONEY, description="Part to close; all by default."
    )
    account_id: str | None = Field(default=None, max_length=64)


class CloseAllRequest(RequestModel):
    account_id: str | None = Field(default=None, max_length=64)
    symbol: str | None = Field(default=None, max_length=40)


class CloseResult(ResponseModel):
    closed: int
    orders: list[OrderOut]
    skipped: list[dict[str, str]] = Field(default_factory=list)


class LeverageRequest(RequestModel):
    leverage: Money = Field(ge=1, le=125)
    account_id: str | None = Field(default=None, max_length=64)


class LeverageOut(ResponseModel):
    symbol: str
    leverage: Money
    max_leverage: Money
    margin: Money | None = None


class TradeOut(ResponseModel):
    id: str
    order_id: str
    trade_id: str
    account_id: str
    symbol: str
    side: str
    price: Money
    quantity: Money
    notional: Money
    fee: Money
    fee_asset: str
    liquidity: str
    realized_pnl: Money | None
    bot_id: str | None
    strategy: str | None
    timestamp: datetime


class TradeSummary(ResponseModel):
    """Over the trades the filters select: ``closing_trades`` are fills that realised P&L."""

    trades: int
    closing_trades: int
    winning_trades: int
    losing_trades: int
    total_pnl: Money
    gross_profit: Money
    gross_loss: Money
    win_rate: float | None
    profit_factor: float | None
    largest_win: Money | None
    largest_loss: Money | None
    average_win: Money | None
    average_loss: Money | None
    fees: dict[str, Money]
    volume: Money


class TradesPage(Page[TradeOut]):
    summary: TradeSummary


class BalanceOut(ResponseModel):
    asset: str
    free: Money
    locked: Money
    total: Money
    value: Money | None = Field(default=None, description="Worth in the account currency, when priced.")


class BalancesOut(ResponseModel):
    account_id: str
    currency: str
    balances: list[BalanceOut]
    total_equity: Money
    available_margin: Money
    used_margin: Money
    unrealized_pnl: Money
    updated_at: datetime


class AccountOut(ResponseModel):
    id: str
    account_id: str
    name: str
    kind: str
    mode: str
    exchange: str
    status: str
    currency: str
    starting_balances: dict[str, Money] | None = None
    created_at: datetime
    updated_at: datetime


class AccountsOut(ResponseModel):
    items: list[AccountOut]
    total: int


class PaperResetRequest(RequestModel):
    balances: dict[str, Money] | None = Field(
        default=None, description="New starting balances (asset -> amount); the current ones by default."
    )

    @field_validator("balances")
    @classmethod
    def _positive(cls, value: dict[str, Money] | None) -> dict[str, Money] | None:
        if value is None:
            return None
        if not value or len(value) > 50:
            raise ValueError("give between 1 and 50 assets")
        cleaned: dict[str, Money] = {}
        for asset, amount in value.items():
            if not re.fullmatch(r"[A-Za-z0-9]{1,16}", asset):
                raise ValueError(f"{asset!r} is not an asset code")
            if amount < 0 or amount > _MAX_MONEY:
                raise ValueError(f"the balance of {asset} must be between 0 and 10^15")
            cleaned[asset.upper()] = amount
        return cleaned


class PortfolioOut(ResponseModel):
    account_id: str
    currency: str
    total_value: Money
    cash: Money
    positions_value: Money
    unrealized_pnl: Money
    realized_pnl: Money
    open_positions: int
    open_orders: int
    allocation: list[dict[str, Any]]
    updated_at: datetime


class DailyReturn(ResponseModel):
    date: date
    balance: Money
    return_amount: Money
    return_percentage: float | None


class PerformanceMetrics(ResponseModel):
    total_return: float | None
    sharpe_ratio: float | None
    sortino_ratio: float | None
    max_drawdown: float | None
    volatility: float | None
    win_rate: float | None
    profit_factor: float | None


class PerformanceOut(ResponseModel):
    period: str
    start_date: datetime | None
    end_date: datetime
    initial_balance: Money | None
    final_balance: Money
    total_return: Money | None
    total_return_percentage: float | None
    daily_returns: list[DailyReturn]
    metrics: PerformanceMetrics
    chart_url: str | None = None


class PnlBucket(ResponseModel):
    key: str
    pnl: Money
    trades: int


class PnlOut(ResponseModel):
    period: str
    start: datetime | None
    end: datetime
    realized_pnl: Money
    unrealized_pnl: Money
    total_pnl: Money
    fees: Money
    trades: int
    winning_trades: int
    losing_trades: int
    win_rate: float | None
    profit_factor: float | None
    largest_win: Money | None
    largest_loss: Money | None
    average_win: Money | None
    average_loss: Money | None
    by_strategy: list[dict[str, Any]]
    by_symbol: list[dict[str, Any]]


class RebalanceRequest(RequestModel):
    """Target weights (fractions of the account's value, summing to at most 1; the rest stays
    in the account currency). ``dry_run`` (the default) only returns the plan."""

    targets: dict[str, Money] = Field(validation_alias=AliasChoices("targets", "target_weights", "weights"))
    dry_run: bool = Field(default=True, validation_alias=AliasChoices("dry_run", "dryRun"))
    account_id: str | None = Field(default=None, max_length=64)
    tolerance: Money = Field(
        default=Decimal("0.01"), ge=0, le=1, description="Skip trades smaller than this weight difference."
    )

    @field_validator("targets")
    @classmethod
    def _weights(cls, value: dict[str, Money]) -> dict[str, Money]:
        if not value or len(value) > 50:
            raise ValueError("give between 1 and 50 target weights")
        if any(weight < 0 or weight > 1 for weight in value.values()):
            raise ValueError("each weight must be between 0 and 1")
        if sum(value.values(), Decimal(0)) > 1:
            raise ValueError("the weights must sum to at most 1")
        return value


class RebalanceTrade(ResponseModel):
    symbol: str
    asset: str
    side: str
    quantity: Money
    price: Money
    notional: Money
    current_weight: float
    target_weight: float


class RebalanceOut(ResponseModel):
    dry_run: bool
    account_id: str
    currency: str
    total_value: Money
    trades: list[RebalanceTrade]
    orders: list[OrderOut] = Field(default_factory=list)
    skipped: list[dict[str, str]] = Field(default_factory=list)
