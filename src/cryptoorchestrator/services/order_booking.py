"""Booking venue events: the state machine, the ledger and the positions moved together.

Pure over its inputs (the orders, ledger and positions the order service loaded in one
transaction); the service stores what :func:`book_events` returns. Rules:

B1 Every event goes through :func:`~cryptoorchestrator.domain.orders.apply_event`; an event
   that changes nothing (a duplicate trade id, anything after a terminal state) books nothing.
B2 A fill is booked for the quantity the state machine accepted (never beyond the order), once:
   the ledger settles it from the order's lock (``Ledger.settle_fill``), the position moves with
   it, and a :class:`~cryptoorchestrator.domain.accounts.TradeRecord` is written carrying the P&L
   it realised when it reduced a position.
B3 The two orders of a spot protective pair share one lock (held by the first): the one that
   fills takes the lock over from its sibling before settling.
B4 A paper fill the account cannot pay (a market order that slipped past its buffer and the
   free balance) is not booked: the order is cancelled with the reason instead, so paper
   balances never go negative. A live fill is always booked (it happened at the venue).
B5 A terminal order releases what is left of its lock.
B7 Fill prices are kept to 10 decimal places and fees to 18 (rounded up): every amount the
   ledger books fits the database's scale, so stored balances equal the sums of stored entries.
B8 A spot sell of coins no fill bought (starting balances, deposits) covers them at the fill
   price first: selling them realises nothing (their cost is unknown).
B6 A parent order that ends with fills and carries ``stop_loss``/``take_profit`` is returned in
   ``protect``: the service places its protective pair.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal

from cryptoorchestrator.core.errors import InsufficientBalance
from cryptoorchestrator.core.ids import new_uuid7
from cryptoorchestrator.core.records import replace
from cryptoorchestrator.domain.accounts import TradeRecord, TradingAccount
from cryptoorchestrator.domain.instruments import Instrument
from cryptoorchestrator.domain.ledger import Ledger
from cryptoorchestrator.domain.orders import (
    Canceled,
    Fill,
    Filled,
    Order,
    OrderEvent,
    OrderSide,
    apply_event,
)
from cryptoorchestrator.domain.positions import Position, apply_fill

_ZERO = Decimal(0)
PRICE_QUANTUM = Decimal("1e-10")
MONEY_QUANTUM = Decimal("1e-18")


@dataclass
class Booking:
    changed: dict[str, Order] = field(default_factory=dict)
    trades: list[TradeRecord] = field(default_factory=list)
    positions: dict[str, Position] = field(default_factory=dict)
    protect: list[Order] = field(default_factory=list)


def account_leverage(account: TradingAccount) -> dict[str, Decimal]:
    """The leverage the account set per symbol (``settings["leverage"]``, stored as text)."""
    return {symbol: Decimal(str(value)) for symbol, value in account.settings.get("leverage", {}).items()}


def book_events(
    *,
    account: TradingAccount,
    events: list[tuple[str, OrderEvent]],
    orders: dict[str, Order],
    instruments: Mapping[str, Instrument],
    ledger: Ledger,
    positions: dict[str, Position | None],
    leverage: Mapping[str, Decimal],
    now: datetime,
) -> Booking:
    """Apply ``events`` in order (rules B1-B6); ``orders`` and ``positions`` are updated in place."""
    booking = Booking()
    for order_id, event in events:
        before = orders[order_id]
        after = apply_event(before, event)  # B1
        if after is before:
            continue
        if isinstance(event, Filled) and after.filled_quantity > before.filled_quantity:
            after = _book_fill(
                account, before, after, event.fill, orders, instruments, ledger, positions, leverage, booking
            )
        if after.is_terminal and after.locked_amount > 0 and after.locked_asset:  # B5
            ledger.unlock(after.locked_asset, after.locked_amount, timestamp=now, reference=after.id)
            after = replace(after, locked_amount=_ZERO)
        if (
            after.is_terminal
            and not before.is_terminal
            and after.filled_quantity > 0
            and after.parent_id is None
            and (after.stop_loss is not None or after.take_profit is not None)
        ):
            booking.protect.append(after)  # B6
        orders[order_id] = after
        booking.changed[order_id] = after
    return booking


def _book_fill(
    account: TradingAccount,
    before: Order,
    after: Order,
    reported: Fill,
    orders: dict[str, Order],
    instruments: Mapping[str, Instrument],
    ledger: Ledger,
    positions: dict[str, Position | None],
    leverage: Mapping[str, Decimal],
    booking: Booking,
) -> Order:
    instrument = instruments[after.symbol]
    quantity = after.filled_quantity - before.filled_quantity  # B2: what the order accepted
    fee = reported.fee
    if quantity != reported.quantity:
        fee = reported.fee * quantity / reported.quantity if reported.quantity else _ZERO
    # B7: money stays within the database's 18 decimal places (prices to 10, fees rounded up),
    # so the stored balances are exactly the sums of the stored entries.
    fill = replace(
        reported,
        quantity=quantity,
        price=reported.price.quantize(PRICE_QUANTUM, rounding=ROUND_HALF_EVEN),
        fee=fee.quantize(MONEY_QUANTUM, rounding=ROUND_CEILING),
    )
    if instrument.is_spot and fill.side is OrderSide.SELL:
        positions[after.symbol] = _cover_untracked(account, positions.get(after.symbol), fill, instrument)
    if instrument.is_spot and after.oco_group is not None and after.locked_amount == 0:
        after = _take_over_lock(after, orders, booking)  # B3
    position = positions.get(after.symbol)
    chosen = leverage.get(after.symbol) or (position.leverage if position is not None else Decimal(1))
    try:
        settlement = ledger.settle_fill(
            fill,
            instrument=instrument,
            position=position,
            leverage=chosen,
            order_locked=after.locked_amount,
            reference=after.id,
            timestamp=fill.timestamp,
        )
    except InsufficientBalance as error:
        if account.kind != "paper":
            raise
        # B4: undo the state machine's view of this fill and end the order instead.
        return apply_event(before, Canceled(timestamp=fill.timestamp, reason=f"not booked: {error.message}"))
    positions[after.symbol] = settlement.position
    booking.positions[after.symbol] = settlement.position
    held = _ZERO if position is None else position.quantity
    reduced = held != 0 and (held > 0) != (fill.side.sign > 0)
    booking.trades.append(
        TradeRecord(
            id=new_uuid7(),
            user_id=after.user_id,
            account_id=after.account_id,
            order_id=after.id,
            trade_id=fill.trade_id,
            symbol=after.symbol,
            side=after.side.value,
            price=fill.price,
            quantity=fill.quantity,
            fee=fill.fee,
            fee_asset=fill.fee_asset,
            liquidity=fill.liquidity.value,
            timestamp=fill.timestamp,
            realized_pnl=settlement.realized_pnl if reduced else None,
            bot_id=after.bot_id,
        )
    )
    return replace(after, locked_amount=settlement.order_locked)


def _cover_untracked(
    account: TradingAccount, position: Position | None, fill: Fill, instrument: Instrument
) -> Position | None:
    """B8: a spot sell of coins the positions never saw bought (starting balances, deposits, an
    exchange-sync) first adds them to the position at the fill price: the sale realises nothing
    on them, since their cost is unknown. The ledger has already checked they are free."""
    held = _ZERO if position is None else position.quantity
    missing = fill.quantity - held
    if missing <= 0:
        return position
    seed = replace(
        fill, side=OrderSide.BUY, quantity=missing, fee=_ZERO, trade_id=f"{fill.trade_id}-untracked"
    )
    covered, _ = apply_fill(position, seed, instrument=instrument, leverage=Decimal(1), account_id=account.id)
    return covered


def _take_over_lock(order: Order, orders: dict[str, Order], booking: Booking) -> Order:
    for sibling_id, sibling in orders.items():
        if sibling_id != order.id and sibling.oco_group == order.oco_group and sibling.locked_amount > 0:
            orders[sibling_id] = replace(sibling, locked_amount=_ZERO)
            booking.changed[sibling_id] = orders[sibling_id]
            return replace(order, locked_amount=sibling.locked_amount, locked_asset=sibling.locked_asset)
    return order
