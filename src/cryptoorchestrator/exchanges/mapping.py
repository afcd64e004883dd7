"""ccxt's unified dictionaries -> the domain records of ``domain/market.py``.

Numbers cross here exactly once: ccxt hands floats (or numeric strings), and each becomes a
Decimal through ``Decimal(str(x))``, so ``0.1`` stays ``0.1`` instead of the binary float's
``0.1000000000000000055511151231257827``. Candles are the exception: they feed numeric kernels
and stay floats.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Final, cast

from cryptoorchestrator.domain.market import (
    Balance,
    ExchangeOrder,
    ExchangeTrade,
    Fee,
    MarketInfo,
    MarketType,
    OrderBook,
    OrderSide,
    TakerOrMaker,
    Ticker,
)

# ccxt's precision modes (ccxt.DECIMAL_PLACES, SIGNIFICANT_DIGITS, TICK_SIZE), copied so this
# module stays importable and testable without ccxt.
DECIMAL_PLACES: Final = 2
SIGNIFICANT_DIGITS: Final = 3
TICK_SIZE: Final = 4
_BALANCE_META_KEYS: Final = frozenset({"info", "free", "used", "total", "timestamp", "datetime", "debt"})
_MARKET_TYPES: Final = frozenset({"spot", "margin", "swap", "future", "option"})


def to_decimal(value: Any) -> Decimal | None:
    """A ccxt number as a Decimal (via ``str``, never ``Decimal(float)``); ``None`` if absent."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        return value if value.is_finite() else None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    try:
        result = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None
    return result if result.is_finite() else None


def _decimal_or_zero(value: Any) -> Decimal:
    result = to_decimal(value)
    return result if result is not None else Decimal(0)


def _optional_int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _increment(value: Any, precision_mode: int) -> Decimal | None:
    """A precision as an increment: ccxt states it as a tick (``0.01``) or as digits (``2``)."""
    number = to_decimal(value)
    if number is None:
        return None
    if precision_mode == TICK_SIZE:
        return number
    if precision_mode == DECIMAL_PLACES:
        return Decimal(1).scaleb(-int(number))
    return None  # significant digits do not define a fixed increment


def market_from_ccxt(market: Mapping[str, Any], *, precision_mode: int = TICK_SIZE) -> MarketInfo:
    """One ccxt market structure as a ``MarketInfo``."""
    precision = market.get("precision") or {}
    limits = market.get("limits") or {}
    market_type = str(market.get("type") or "spot")
    return MarketInfo(
        symbol=str(market["symbol"]),
        base=str(market.get("base") or ""),
        quote=str(market.get("quote") or ""),
        type=cast(MarketType, market_type if market_type in _MARKET_TYPES else "spot"),
        active=market.get("active") is not False,
        price_tick=_increment(precision.get("price"), precision_mode),
        amount_step=_increment(precision.get("amount"), precision_mode),
        min_amount=to_decimal((limits.get("amount") or {}).get("min")),
        min_notional=to_decimal((limits.get("cost") or {}).get("min")),
        maker_fee=to_decimal(market.get("maker")),
        taker_fee=to_decimal(market.get("taker")),
        exchange_symbol=market.get("id"),
        settle=market.get("settle"),
    )


def markets_from_ccxt(
    markets: Mapping[str, Mapping[str, Any]], *, precision_mode: int = TICK_SIZE
) -> dict[str, MarketInfo]:
    """ccxt's ``exchange.markets`` as ``{unified symbol: MarketInfo}``."""
    return {
        symbol: market_from_ccxt(market, precision_mode=precision_mode)
        for symbol, market in markets.items()
        if market.get("symbol")
    }


def ticker_from_ccxt(ticker: Mapping[str, Any], *, source: str) -> Ticker:
    """A ccxt ticker structure as a ``Ticker``."""
    return Ticker(
        symbol=str(ticker["symbol"]),
        timestamp=_optional_int(ticker.get("timestamp")),
        bid=to_decimal(ticker.get("bid")),
        ask=to_decimal(ticker.get("ask")),
        last=to_decimal(ticker.get("last")),
        high=to_decimal(ticker.get("high")),
        low=to_decimal(ticker.get("low")),
        base_volume=to_decimal(ticker.get("baseVolume")),
        quote_volume=to_decimal(ticker.get("quoteVolume")),
        source=source,
    )


def _levels(rows: Iterable[Any]) -> tuple[tuple[Decimal, Decimal], ...]:
    levels = []
    for row in rows:
        price, amount = to_decimal(row[0]), to_decimal(row[1])
        if price is not None and amount is not None:
            levels.append((price, amount))
    return tuple(levels)


def order_book_from_ccxt(book: Mapping[str, Any], *, symbol: str, source: str) -> OrderBook:
    """A ccxt order book structure as an ``OrderBook``."""
    return OrderBook(
        symbol=str(book.get("symbol") or symbol),
        timestamp=_optional_int(book.get("timestamp")),
        bids=_levels(book.get("bids") or ()),
        asks=_levels(book.get("asks") or ()),
        source=source,
        nonce=_optional_int(book.get("nonce")),
    )


def ohlcv_from_ccxt(rows: Iterable[Iterable[Any]]) -> list[list[float]]:
    """ccxt candles as ``[timestamp_ms, open, high, low, close, volume]`` floats."""
    candles: list[list[float]] = []
    for row in rows:
        values = list(row)
        timestamp = int(values[0])
        numbers = [float(value) if value is not None else math.nan for value in values[1:6]]
        candles.append([timestamp, *numbers])
    return candles


def balances_from_ccxt(balance: Mapping[str, Any]) -> dict[str, Balance]:
    """ccxt's balance structure as ``{asset: Balance}``; assets at zero everywhere are left out."""
    result: dict[str, Balance] = {}
    for asset, account in balance.items():
        if asset in _BALANCE_META_KEYS or not isinstance(account, Mapping):
            continue
        free = _decimal_or_zero(account.get("free"))
        used = _decimal_or_zero(account.get("used"))
        total = to_decimal(account.get("total"))
        total = free + used if total is None else total
        if free == 0 and used == 0 and total == 0:
            continue
        result[str(asset)] = Balance(asset=str(asset), free=free, used=used, total=total)
    return result


def _fee(order: Mapping[str, Any]) -> Fee | None:
    fee = order.get("fee")
    if isinstance(fee, Mapping) and to_decimal(fee.get("cost")) is not None:
        return Fee(cost=_decimal_or_zero(fee.get("cost")), currency=fee.get("currency"))
    fees = [item for item in order.get("fees") or () if isinstance(item, Mapping)]
    currencies = {item.get("currency") for item in fees}
    if fees and len(currencies) == 1:
        total = sum((_decimal_or_zero(item.get("cost")) for item in fees), Decimal(0))
        return Fee(cost=total, currency=currencies.pop())
    return None


def _side(value: Any) -> OrderSide | None:
    side = str(value).lower() if value is not None else None
    return cast(OrderSide, side) if side in ("buy", "sell") else None


def order_from_ccxt(order: Mapping[str, Any]) -> ExchangeOrder:
    """A ccxt order structure as an ``ExchangeOrder``.

    Binance answers a cancel with ``clientOrderId`` set to the id of the *cancel request* and
    the order's own id in ``origClientOrderId``; the order's id is the one worth keeping.
    """
    info = order.get("info")
    original_client_id = info.get("origClientOrderId") if isinstance(info, Mapping) else None
    return ExchangeOrder(
        id=str(order.get("id")),
        client_order_id=original_client_id or order.get("clientOrderId"),
        symbol=str(order.get("symbol")),
        side=_side(order.get("side")),
        type=str(order.get("type") or "").lower(),
        status=str(order.get("status") or ""),
        price=to_decimal(order.get("price")),
        amount=to_decimal(order.get("amount")),
        filled=_decimal_or_zero(order.get("filled")),
        remaining=to_decimal(order.get("remaining")),
        average=to_decimal(order.get("average")),
        cost=to_decimal(order.get("cost")),
        fee=_fee(order),
        timestamp=_optional_int(order.get("timestamp")),
    )


def trade_from_ccxt(trade: Mapping[str, Any]) -> ExchangeTrade:
    """A ccxt trade structure (one of our fills) as an ``ExchangeTrade``."""
    raw_fee = trade.get("fee")
    fee: Mapping[str, Any] = raw_fee if isinstance(raw_fee, Mapping) else {}
    taker_or_maker = trade.get("takerOrMaker")
    return ExchangeTrade(
        id=str(trade.get("id")),
        order_id=None if trade.get("order") is None else str(trade.get("order")),
        symbol=str(trade.get("symbol")),
        side=_side(trade.get("side")),
        price=_decimal_or_zero(trade.get("price")),
        amount=_decimal_or_zero(trade.get("amount")),
        cost=to_decimal(trade.get("cost")),
        fee_cost=to_decimal(fee.get("cost")),
        fee_currency=fee.get("currency"),
        taker_or_maker=cast(TakerOrMaker, taker_or_maker) if taker_or_maker in ("taker", "maker") else None,
        timestamp=_optional_int(trade.get("timestamp")),
    )
