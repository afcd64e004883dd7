"""Records and request/response types of the fake Binance spot venue."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Final, Literal

from cryptoorchestrator.testing.fake_exchange_data import fmt

JSON_HEADERS: Final = {"Content-Type": "application/json;charset=UTF-8"}


class VenueError(Exception):
    """A Binance error answer: ``{"code": code, "msg": message}`` with an HTTP status."""

    def __init__(self, code: int, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


@dataclass(frozen=True, slots=True)
class VenueRequest:
    """One decoded HTTP request. ``signed_payload`` is the exact text that was signed."""

    method: str
    path: str
    params: Mapping[str, str]
    api_key: str | None = None
    signed_payload: str | None = None
    signature: str | None = None


@dataclass(frozen=True, slots=True)
class VenueResponse:
    """An HTTP answer: status, headers and a JSON-serialisable body."""

    status: int
    body: Any
    headers: Mapping[str, str] = field(default_factory=lambda: dict(JSON_HEADERS))

    def text(self) -> str:
        return json.dumps(self.body, separators=(",", ":"))


@dataclass(slots=True)
class VenueOrder:
    """An order inside the fake venue (mutable: it fills and cancels)."""

    order_id: int
    client_order_id: str
    symbol: str
    side: Literal["BUY", "SELL"]
    type: str
    time_in_force: str | None
    price: Decimal
    orig_qty: Decimal
    time: int
    update_time: int
    orig_quote_qty: Decimal = Decimal(0)
    executed_qty: Decimal = Decimal(0)
    cumulative_quote_qty: Decimal = Decimal(0)
    status: str = "NEW"
    #: Stop and take-profit orders: the trigger price, and whether it has been reached (an order
    #: that is not working yet rests outside the book).
    stop_price: Decimal = Decimal(0)
    working: bool = True

    @property
    def is_open(self) -> bool:
        return self.status in ("NEW", "PARTIALLY_FILLED")

    @property
    def lock_price(self) -> Decimal:
        """The price a resting buy locks its quote at: its limit, or for a stop-market its
        trigger price."""
        return self.price or self.stop_price

    @property
    def remaining(self) -> Decimal:
        return self.orig_qty - self.executed_qty

    def to_json(self) -> dict[str, Any]:
        """The body of ``GET /api/v3/order``."""
        return {
            "symbol": self.symbol,
            "orderId": self.order_id,
            "orderListId": -1,
            "clientOrderId": self.client_order_id,
            "price": fmt(self.price),
            "origQty": fmt(self.orig_qty),
            "executedQty": fmt(self.executed_qty),
            "cummulativeQuoteQty": fmt(self.cumulative_quote_qty),
            "status": self.status,
            "timeInForce": self.time_in_force or "GTC",
            "type": self.type,
            "side": self.side,
            "stopPrice": fmt(self.stop_price),
            "icebergQty": fmt(Decimal(0)),
            "time": self.time,
            "updateTime": self.update_time,
            "isWorking": self.working,
            "workingTime": self.time,
            "origQuoteOrderQty": fmt(self.orig_quote_qty),
            "selfTradePreventionMode": "EXPIRE_MAKER",
        }


@dataclass(frozen=True, slots=True)
class VenueTrade:
    """One fill of one order."""

    trade_id: int
    order_id: int
    symbol: str
    side: Literal["BUY", "SELL"]
    price: Decimal
    qty: Decimal
    commission: Decimal
    commission_asset: str
    time: int
    is_maker: bool

    def to_json(self) -> dict[str, Any]:
        """An entry of ``GET /api/v3/myTrades``."""
        return {
            "symbol": self.symbol,
            "id": self.trade_id,
            "orderId": self.order_id,
            "orderListId": -1,
            "price": fmt(self.price),
            "qty": fmt(self.qty),
            "quoteQty": fmt(self.price * self.qty),
            "commission": fmt(self.commission),
            "commissionAsset": self.commission_asset,
            "time": self.time,
            "isBuyer": self.side == "BUY",
            "isMaker": self.is_maker,
            "isBestMatch": True,
        }

    def to_fill_json(self) -> dict[str, Any]:
        """An entry of ``fills`` in a FULL order answer."""
        return {
            "price": fmt(self.price),
            "qty": fmt(self.qty),
            "commission": fmt(self.commission),
            "commissionAsset": self.commission_asset,
            "tradeId": self.trade_id,
        }


def decimal_param(params: Mapping[str, str], name: str, *, required: bool = True) -> Decimal | None:
    raw = params.get(name)
    if raw is None or raw == "":
        if required:
            raise VenueError(
                -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
            )
        return None
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise VenueError(-1100, f"Illegal characters found in parameter '{name}'.") from None
    if not value.is_finite() or value < 0:
        raise VenueError(-1100, f"Illegal characters found in parameter '{name}'.")
    return value


def int_param(params: Mapping[str, str], name: str) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise VenueError(-1100, f"Illegal characters found in parameter '{name}'.") from None
