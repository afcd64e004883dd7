"""The account side of the fake Binance spot venue: balances, orders, fills.

``SpotAccount`` places, fills and cancels orders under Binance's spot rules (see the venue
module's docstring) and answers ``POST /api/v3/order`` in the ACK, RESULT or FULL shape that
``newOrderRespType`` asks for.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from decimal import ROUND_DOWN, Decimal
from typing import Any, Final, Literal

from cryptoorchestrator.testing.fake_exchange_data import SPOT_ORDER_TYPES, FakeMarket, floor_to, fmt
from cryptoorchestrator.testing.fake_exchange_records import (
    VenueError,
    VenueOrder,
    VenueTrade,
    decimal_param,
)

_EIGHT_PLACES: Final = Decimal("0.00000001")
#: Trigger orders: a market order, or a limit one at its price, once the last price reaches the
#: stop price. Binance: STOP_LOSS buys and TAKE_PROFIT sells trigger at or above it, STOP_LOSS
#: sells and TAKE_PROFIT buys at or below it; one that would trigger at once is refused.
_TRIGGER_TYPES: Final = frozenset({"STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT"})
_TRIGGER_MARKET_TYPES: Final = frozenset({"STOP_LOSS", "TAKE_PROFIT"})
_ORDER_TYPES: Final = frozenset(SPOT_ORDER_TYPES)


def _reached(order_type: str, side: str, stop_price: Decimal, price: Decimal) -> bool:
    """Whether ``price`` triggers a ``order_type`` order on ``side`` with ``stop_price``."""
    rising = (order_type.startswith("STOP_LOSS")) == (side == "BUY")
    return price >= stop_price if rising else price <= stop_price


def _new_client_order_id() -> str:
    # Binance generates 22 characters when the client sends none.
    return secrets.token_urlsafe(16)[:22]


class SpotAccount:
    """The single account of the fake venue."""

    def __init__(
        self,
        *,
        markets: Mapping[str, FakeMarket],
        balances: Mapping[str, Decimal | int | str],
        fee_rate: Decimal,
        client_order_id_scope: Literal["open", "all"],
        now_ms: Callable[[], int],
        price_of: Callable[[str], Decimal],
    ) -> None:
        self.markets = markets
        self.fee_rate = fee_rate
        self.client_order_id_scope = client_order_id_scope
        self.balances: dict[str, list[Decimal]] = {
            asset: [Decimal(str(amount)), Decimal(0)] for asset, amount in balances.items()
        }
        self.orders: dict[int, VenueOrder] = {}
        self.trades: list[VenueTrade] = []
        #: Bumped on every change (the order book's ``lastUpdateId`` follows it).
        self.version = 0
        self._now_ms = now_ms
        self._price_of = price_of
        self._next_order_id = 1_000_001
        self._next_trade_id = 5_000_001

    # --- funds ----------------------------------------------------------------------------

    def funds(self, asset: str) -> list[Decimal]:
        """``[free, locked]`` of ``asset``, mutable."""
        return self.balances.setdefault(asset, [Decimal(0), Decimal(0)])

    def _reserve(self, asset: str, amount: Decimal, *, lock: bool) -> None:
        funds = self.funds(asset)
        if funds[0] < amount:
            raise VenueError(-2010, "Account has insufficient balance for requested action.")
        if lock:
            funds[0] -= amount
            funds[1] += amount

    def release(self, order: VenueOrder) -> None:
        """Give back what a resting order still locks."""
        if order.type == "MARKET":
            return
        market = self.markets[order.symbol]
        if order.side == "BUY":
            amount, asset = order.remaining * order.lock_price, market.quote
        else:
            amount, asset = order.remaining, market.base
        funds = self.funds(asset)
        funds[1] -= amount
        funds[0] += amount

    # --- placement ------------------------------------------------------------------------

    def place(self, market: FakeMarket, params: Mapping[str, str]) -> dict[str, Any]:
        """``POST /api/v3/order``: validate, reserve funds, match, answer."""
        side = params.get("side", "").upper()
        order_type = params.get("type", "").upper()
        if side not in ("BUY", "SELL"):
            raise VenueError(-1102, "Mandatory parameter 'side' was not sent, was empty/null, or malformed.")
        if order_type not in _ORDER_TYPES:
            raise VenueError(-1116, "Invalid orderType.")
        if order_type not in market.order_types:
            raise VenueError(-1013, "Order type not supported for this symbol.")
        client_order_id = params.get("newClientOrderId") or _new_client_order_id()
        self._check_duplicate(client_order_id)
        current = self._price_of(market.exchange_symbol)
        stop_price = self._stop_price(market, params, order_type, side, current)
        if order_type == "MARKET":
            quantity, quote_quantity = self._market_quantity(market, params, current)
            limit_price, notional_price = Decimal(0), current
        else:
            quantity = decimal_param(params, "quantity") or Decimal(0)
            quote_quantity = Decimal(0)
            limit_price = self._limit_price(market, params, order_type)
            notional_price = limit_price or stop_price
        self._check_quantity(market, quantity)
        if quantity * notional_price < market.min_notional:
            raise VenueError(-1013, f"Filter failure: {market.notional_filter}")
        marketable = order_type == "MARKET" or (
            order_type not in _TRIGGER_TYPES
            and (limit_price >= current if side == "BUY" else limit_price <= current)
        )
        if order_type == "LIMIT_MAKER" and marketable:
            raise VenueError(-2010, "Order would immediately match and take.")
        self._reserve_for(market, side, order_type, quantity, limit_price or stop_price, current)
        order = self._record(
            market, params, side, order_type, client_order_id, limit_price, quantity, quote_quantity
        )
        if stop_price:
            order.stop_price, order.working = stop_price, False
        fills = []
        if marketable:
            fills.append(self.execute(order, quantity, current, maker=False))
        elif order.time_in_force in ("IOC", "FOK"):
            self.release(order)
            order.status = "EXPIRED"
        return self._answer(order, fills, params.get("newOrderRespType", "FULL").upper())

    def _stop_price(
        self, market: FakeMarket, params: Mapping[str, str], order_type: str, side: str, current: Decimal
    ) -> Decimal:
        """A trigger order's stop price (0 for the other types), refused when it would trigger
        at once."""
        if order_type not in _TRIGGER_TYPES:
            return Decimal(0)
        stop_price = decimal_param(params, "stopPrice") or Decimal(0)
        self._check_price(market, stop_price)
        if _reached(order_type, side, stop_price, current):
            raise VenueError(-2010, "Stop price would trigger immediately.")
        return stop_price

    def _limit_price(self, market: FakeMarket, params: Mapping[str, str], order_type: str) -> Decimal:
        """The limit price of a limit type (0 for a stop-market or take-profit-market one)."""
        if order_type in _TRIGGER_MARKET_TYPES:
            return Decimal(0)
        limit_price = decimal_param(params, "price") or Decimal(0)
        if order_type != "LIMIT_MAKER" and not params.get("timeInForce"):
            raise VenueError(
                -1102, "Mandatory parameter 'timeInForce' was not sent, was empty/null, or malformed."
            )
        self._check_price(market, limit_price)
        return limit_price

    def _check_duplicate(self, client_order_id: str) -> None:
        for order in self.orders.values():
            if order.client_order_id == client_order_id and (
                self.client_order_id_scope == "all" or order.is_open
            ):
                raise VenueError(-2010, "Duplicate order sent.")

    @staticmethod
    def _market_quantity(
        market: FakeMarket, params: Mapping[str, str], current: Decimal
    ) -> tuple[Decimal, Decimal]:
        quote_quantity = decimal_param(params, "quoteOrderQty", required=False)
        if quote_quantity is not None:
            return floor_to(quote_quantity / current, market.step_size), quote_quantity
        return decimal_param(params, "quantity") or Decimal(0), Decimal(0)

    @staticmethod
    def _check_price(market: FakeMarket, price: Decimal) -> None:
        minimum = market.min_price or market.tick_size
        if price < minimum or price > market.max_price or price % market.tick_size != 0:
            raise VenueError(-1013, "Filter failure: PRICE_FILTER")

    @staticmethod
    def _check_quantity(market: FakeMarket, quantity: Decimal) -> None:
        if quantity < market.min_qty or quantity > market.max_qty or quantity % market.step_size != 0:
            raise VenueError(-1013, "Filter failure: LOT_SIZE")

    def _reserve_for(
        self,
        market: FakeMarket,
        side: str,
        order_type: str,
        quantity: Decimal,
        limit_price: Decimal,
        current: Decimal,
    ) -> None:
        rests = order_type != "MARKET"
        if side == "BUY":
            price = limit_price if rests else current
            self._reserve(market.quote, quantity * price, lock=rests)
        else:
            self._reserve(market.base, quantity, lock=rests)

    def _record(
        self,
        market: FakeMarket,
        params: Mapping[str, str],
        side: Literal["BUY", "SELL"] | str,
        order_type: str,
        client_order_id: str,
        limit_price: Decimal,
        quantity: Decimal,
        quote_quantity: Decimal,
    ) -> VenueOrder:
        now = self._now_ms()
        order = VenueOrder(
            order_id=self._next_order_id,
            client_order_id=client_order_id,
            symbol=market.exchange_symbol,
            side="BUY" if side == "BUY" else "SELL",
            type=order_type,
            time_in_force=None if order_type == "MARKET" else (params.get("timeInForce") or "GTC"),
            price=limit_price,
            orig_qty=quantity,
            orig_quote_qty=quote_quantity,
            time=now,
            update_time=now,
        )
        self._next_order_id += 1
        self.orders[order.order_id] = order
        self.version += 1
        return order

    @staticmethod
    def _answer(order: VenueOrder, fills: list[VenueTrade], response_type: str) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "symbol": order.symbol,
            "orderId": order.order_id,
            "orderListId": -1,
            "clientOrderId": order.client_order_id,
            "transactTime": order.time,
        }
        if response_type == "ACK":
            return answer
        answer.update(
            {
                "price": fmt(order.price),
                "origQty": fmt(order.orig_qty),
                "executedQty": fmt(order.executed_qty),
                "origQuoteOrderQty": fmt(order.orig_quote_qty),
                "cummulativeQuoteQty": fmt(order.cumulative_quote_qty),
                "status": order.status,
                "timeInForce": order.time_in_force or "GTC",
                "type": order.type,
                "side": order.side,
                "workingTime": order.time,
                "selfTradePreventionMode": "EXPIRE_MAKER",
            }
        )
        if response_type == "FULL":
            answer["fills"] = [fill.to_fill_json() for fill in fills]
        return answer

    # --- after placement ------------------------------------------------------------------

    def cancel(self, order: VenueOrder, params: Mapping[str, str]) -> dict[str, Any]:
        """``DELETE /api/v3/order`` for an order already found."""
        if not order.is_open:
            raise VenueError(-2011, "Unknown order sent.")
        self.release(order)
        order.status = "CANCELED"
        order.update_time = self._now_ms()
        self.version += 1
        answer = order.to_json()
        for key in ("stopPrice", "icebergQty", "time", "updateTime", "isWorking", "workingTime"):
            answer.pop(key, None)
        # Binance: clientOrderId names the cancel request; the order's own id moves here.
        answer["origClientOrderId"] = order.client_order_id
        answer["clientOrderId"] = params.get("newClientOrderId") or _new_client_order_id()
        answer["transactTime"] = order.update_time
        return answer

    def match(self, symbol: str, price: Decimal) -> list[VenueTrade]:
        """Fill the resting limit orders of ``symbol`` that ``price`` crosses, at their limit;
        trigger the stop and take-profit orders it reaches (a market one fills at ``price``, a
        limit one joins the book, filling at ``price`` when it is marketable there)."""
        fills = []
        for order in list(self.orders.values()):
            if order.symbol != symbol or not order.is_open or order.type == "MARKET":
                continue
            if not order.working:
                if not _reached(order.type, order.side, order.stop_price, price):
                    continue
                order.working = True
                order.update_time = self._now_ms()
                self.version += 1
                marketable = order.type in _TRIGGER_MARKET_TYPES or (
                    price <= order.price if order.side == "BUY" else price >= order.price
                )
                if marketable:
                    fills.append(self.execute(order, order.remaining, price, maker=False))
                continue
            crossed = price <= order.price if order.side == "BUY" else price >= order.price
            if crossed:
                fills.append(self.execute(order, order.remaining, order.price, maker=True))
        return fills

    def execute(self, order: VenueOrder, quantity: Decimal, price: Decimal, *, maker: bool) -> VenueTrade:
        """Fill ``quantity`` of ``order`` at ``price`` and settle balances; the fee is taken from
        the asset received, as Binance does for an account without BNB."""
        market = self.markets[order.symbol]
        quote_amount = quantity * price
        rests = order.type != "MARKET"
        if order.side == "BUY":
            funds = self.funds(market.quote)
            if rests:
                funds[1] -= quantity * order.lock_price
                funds[0] += quantity * (order.lock_price - price)  # price improvement comes back
            else:
                funds[0] -= quote_amount
            commission = (quantity * self.fee_rate).quantize(_EIGHT_PLACES, rounding=ROUND_DOWN)
            commission_asset = market.base
            self.funds(market.base)[0] += quantity - commission
        else:
            funds = self.funds(market.base)
            funds[1 if rests else 0] -= quantity
            commission = (quote_amount * self.fee_rate).quantize(_EIGHT_PLACES, rounding=ROUND_DOWN)
            commission_asset = market.quote
            self.funds(market.quote)[0] += quote_amount - commission
        now = self._now_ms()
        order.executed_qty += quantity
        order.cumulative_quote_qty += quote_amount
        order.status = "FILLED" if order.executed_qty >= order.orig_qty else "PARTIALLY_FILLED"
        order.update_time = now
        trade = VenueTrade(
            trade_id=self._next_trade_id,
            order_id=order.order_id,
            symbol=order.symbol,
            side=order.side,
            price=price,
            qty=quantity,
            commission=commission,
            commission_asset=commission_asset,
            time=now,
            is_maker=maker,
        )
        self._next_trade_id += 1
        self.trades.append(trade)
        self.version += 1
        return trade
