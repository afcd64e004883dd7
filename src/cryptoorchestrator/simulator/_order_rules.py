"""The order rules of the paper exchange, as pure functions: price comparisons for both sides,
acceptance (rule M2 of :mod:`cryptoorchestrator.simulator.matching`), the liquidity an order
takes (M3) and the stop trigger on a quote (M5). The rule numbers are the matching module's."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal

from cryptoorchestrator.core.errors import OrderRejected, ValidationFailed
from cryptoorchestrator.domain.instruments import Instrument
from cryptoorchestrator.domain.orders import Order, OrderSide, OrderStatus, OrderType
from cryptoorchestrator.simulator.market_state import MarketState

Level = tuple[Decimal, Decimal | None]
"""A price level to take from: ``(price, size)``; size ``None`` is unlimited liquidity (M3)."""

_RESTORABLE = frozenset({OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED})


# --- price helpers: every comparison is written once, for both sides ----------------------------


def worse(side: OrderSide, a: Decimal, b: Decimal) -> Decimal:
    """The price worse for the order's owner: the higher for a buy, the lower for a sell."""
    return max(a, b) if side is OrderSide.BUY else min(a, b)


def better(side: OrderSide, a: Decimal, b: Decimal) -> Decimal:
    """The price better for the order's owner: the lower for a buy, the higher for a sell."""
    return min(a, b) if side is OrderSide.BUY else max(a, b)


def within(side: OrderSide, price: Decimal, limit: Decimal) -> bool:
    """Whether trading at ``price`` respects ``limit``: at or below it for buys, at or above for sells."""
    return price <= limit if side is OrderSide.BUY else price >= limit


def limit_price(order: Order) -> Decimal:
    """The limit price of a limit or stop-limit order."""
    if order.price is None:  # validated on submit and restore; a guard for the type checker
        raise ValidationFailed(f"order {order.id} has no limit price", details={"field": "price"})
    return order.price


def stop_price(order: Order) -> Decimal:
    """The trigger price of a stop order."""
    if order.stop_price is None:
        raise ValidationFailed(f"order {order.id} has no stop price", details={"field": "stop_price"})
    return order.stop_price


def waits_for_trigger(order: Order) -> bool:
    """Whether a resting order belongs in the stop queues (M5) rather than the limit queues (M6)."""
    # A stop-market order never rests once triggered (it fills or is canceled, M4); one restored
    # as triggered and open is treated as untriggered, so it fills on the next crossing price.
    return order.type.is_stop and (not order.triggered or order.type is OrderType.STOP_MARKET)


# --- acceptance (M2) -----------------------------------------------------------------------------


def _price_problem(order: Order, instrument: Instrument) -> str | None:
    for name, value, needed in (
        ("price", order.price, order.type.has_limit_price),
        ("stop_price", order.stop_price, order.type.is_stop),
    ):
        if not needed:
            continue
        if value is None or not value.is_finite() or value <= 0:
            return f"{name} must be a number > 0 for a {order.type.value} order"
        if instrument.round_price(value, order.side) != value:
            return f"{name} {value} is not a multiple of the tick {instrument.price_tick} of {order.symbol}"
    return None


def rejection_reason(order: Order, instrument: Instrument, market: MarketState) -> str | None:
    """M2: why the venue would refuse ``order``, or ``None``."""
    quantity = order.quantity
    if not quantity.is_finite() or quantity <= 0:
        return "quantity must be a number > 0"
    if instrument.round_quantity(quantity) != quantity:
        step = instrument.quantity_step
        return f"quantity {quantity} is not a multiple of the step {step} of {order.symbol}"
    problem = _price_problem(order, instrument)
    if problem is not None:
        return problem
    if order.type.has_limit_price:
        value_at = limit_price(order)
    elif order.type.is_stop:
        value_at = stop_price(order)
    else:
        value_at = market.touch(order.side)
    try:
        instrument.check(quantity, value_at)
    except OrderRejected as exc:
        return exc.message
    return None


def plan_take(order: Order, instrument: Instrument, levels: Sequence[Level]) -> list[tuple[Decimal, Decimal]]:
    """M3: ``(level price, quantity)`` pairs the order takes, best level first."""
    side = order.side
    limit = order.price if order.type.has_limit_price else None
    remaining = order.remaining
    plan: list[tuple[Decimal, Decimal]] = []
    for price, size in levels:
        if remaining <= 0:
            break
        if limit is not None and not within(side, price, limit):
            break  # levels come best first: every later one is beyond the limit too
        quantity = remaining if size is None else instrument.round_quantity(min(remaining, size))
        if quantity > 0:
            plan.append((price, quantity))
            remaining -= quantity
    return plan


def quote_levels(order: Order, market: MarketState) -> Sequence[Level]:
    """M3: the book side an order of ``order.side`` takes from, or the reference price."""
    if market.book is not None:
        return market.book.asks if order.side is OrderSide.BUY else market.book.bids
    reference = market.touch(order.side)
    if order.type.is_stop:
        reference = worse(order.side, stop_price(order), reference)
    return ((reference, None),)


def quote_triggers(order: Order, market: MarketState) -> bool:
    """M5 on a quote: the last price reached the stop."""
    stop = stop_price(order)
    return market.last >= stop if order.side is OrderSide.BUY else market.last <= stop


def check_restorable(order: Order, instruments: Mapping[str, Instrument]) -> None:
    """Raise ``ValidationFailed`` unless ``order`` can rest again after a restart (see
    :meth:`~cryptoorchestrator.simulator.matching.PaperExchange.restore`)."""
    problem = None
    if order.status not in _RESTORABLE or order.exchange_order_id is None:
        problem = f"only accepted orders can be restored; {order.id} is {order.status.value}"
    elif order.type is OrderType.MARKET:
        problem = f"market orders never rest; {order.id} cannot be restored"
    elif order.symbol not in instruments:
        problem = f"no instrument for {order.symbol} (order {order.id})"
    elif (order.type.has_limit_price and order.price is None) or (
        order.type.is_stop and order.stop_price is None
    ):
        problem = f"order {order.id} lacks the price its type needs"
    if problem is not None:
        raise ValidationFailed(problem, details={"order_id": order.id})
