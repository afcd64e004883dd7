"""Positions: spot holdings and linear-perpetual long/short positions (stdlib only).

Rules implemented by :func:`apply_fill` and the helpers below (``tests/unit/domain/
test_positions.py`` checks them on hand-computed examples, ``test_ledger.py`` on random fills):

1. Spot: the held quantity is the signed sum of the fills less the fees charged in the base
   asset (a buy of 1 BTC with a 0.001 BTC fee holds 0.999; a sell of 1 BTC with a base fee of
   0.001 takes 1.001 out of the holding). A spot holding never goes below zero: a sell larger
   than the holding is refused with ``OrderRejected``.
2. The entry price is the average cost of the open quantity, fees excluded: buying adds
   ``(held quantity added) * price`` to the cost; selling leaves the entry price unchanged.
3. Reducing realises ``(price - entry) * closed`` for a long and ``(entry - price) * closed`` for
   a short (quote asset, fees excluded). On spot ``closed`` is the quantity leaving the holding,
   a base fee included: that base left at the fill price, so P&L less ``fees_paid`` (which values
   it at the fill price) is the change of the account's value (to the quanta of rule 5).
4. Swaps: a fill on the side of the position (or on a flat one) increases it at the weighted
   average entry; a fill against it reduces it; a fill larger than the position closes it
   (realising rule 3 on the closing part) and opens the rest on the other side at the fill price.
5. Margin (isolated, linear) is ``abs(quantity) * entry_price / leverage``, so reducing releases
   it in proportion; spot positions carry no margin and leverage 1. Divisions are the only
   inexact steps, and each is rounded on purpose: the entry price to :data:`PRICE_QUANTUM`
   (the database keeps 18 decimals, so a reloaded position equals the one in memory), margin up
   and realised P&L to the nearest :data:`MONEY_QUANTUM` (amounts the ledger books must add up
   exactly, so that every balance stays the sum of its entries). Everything else is exact: the
   functions compute in a 60-digit context, whatever the caller's context is.
6. ``fees_paid`` accumulates the fees' value in the quote asset: quote fees as they are, base
   fees at the fill price. A fee in a third asset (BNB) has no price here: the ledger books it,
   the position does not value it.
7. Leverage is a number from 1 to the instrument's ``max_leverage`` (swaps only); changing it
   re-computes the margin (:func:`with_leverage`).
8. Liquidation price (isolated margin, linear): long ``entry * (1 - 1/leverage + mmr)``, short
   ``entry * (1 + 1/leverage - mmr)``, where ``mmr`` is the maintenance margin rate; ``None`` for
   spot and flat positions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Context, Decimal, localcontext

from cryptoorchestrator.core.errors import OrderRejected, ValidationFailed
from cryptoorchestrator.core.records import replace
from cryptoorchestrator.domain.instruments import Instrument
from cryptoorchestrator.domain.orders import Fill

_ZERO = Decimal(0)
_ONE = Decimal(1)

MONEY_QUANTUM = Decimal("1e-12")
"""The smallest unit of margin and realised P&L (rule 5): far below any settle asset's precision,
and short enough that balances up to 10**15 add exactly even in Decimal's default 28 digits."""

PRICE_QUANTUM = Decimal("1e-18")
"""The smallest unit of an average entry price (rule 5): the database's scale."""

# Rule 5: products and sums of 28-digit values are exact in 60 digits; the caller's context
# (28 digits by default) would round them, and results would depend on who called.
_WIDE = Context(prec=60)


# No slots: core.records.replace copies a Position as its __dict__ (a few are made per order).
@dataclass(frozen=True)
class Position:
    """A position in one symbol of one account.

    ``quantity`` is signed: positive long (or held, on spot), negative short (swaps only).
    ``entry_price`` is the average price of the open quantity; ``realized_pnl`` accumulates
    in the quote (settle) asset, fees excluded. ``margin`` is the collateral locked for a swap
    position (``abs(quantity) * entry_price / leverage``); zero on spot.
    """

    account_id: str
    symbol: str
    kind: str
    quantity: Decimal
    entry_price: Decimal | None
    realized_pnl: Decimal
    fees_paid: Decimal
    leverage: Decimal
    margin: Decimal
    opened_at: datetime | None
    updated_at: datetime

    @property
    def side(self) -> str:
        if self.quantity > 0:
            return "long"
        if self.quantity < 0:
            return "short"
        return "flat"

    @property
    def is_flat(self) -> bool:
        return self.quantity == 0

    def notional(self, mark: Decimal) -> Decimal:
        """The position's value at ``mark``, unsigned: ``abs(quantity) * mark``."""
        with localcontext(_WIDE):
            return abs(self.quantity) * mark

    def unrealized_pnl(self, mark: Decimal) -> Decimal:
        """See :func:`unrealized_pnl`."""
        return unrealized_pnl(self, mark)


def apply_fill(
    position: Position | None,
    fill: Fill,
    *,
    instrument: Instrument,
    leverage: Decimal,
    account_id: str,
) -> tuple[Position, Decimal]:
    """The position after ``fill`` and the P&L this fill realised (quote asset, fees excluded).

    ``position`` is ``None`` before the first fill of a symbol. ``leverage`` applies to the
    position after the fill (rule 7; ignored on spot, where it is 1). Rules 1-6 of the module
    docstring. Raises ``OrderRejected`` for a spot sell beyond the holding or a leverage out of
    range, ``ValidationFailed`` for a fill of another symbol or a non-positive price or quantity.
    Pure: the given position is not changed.
    """
    _check_fill(position, fill, instrument)
    if position is None:
        position = _flat(account_id, fill, instrument)
    with localcontext(_WIDE):  # rule 5
        if instrument.is_spot:
            return _apply_spot(position, fill, instrument)
        _check_leverage(leverage, instrument)
        return _apply_swap(position, fill, instrument, leverage)


def unrealized_pnl(position: Position, mark: Decimal) -> Decimal:
    """``(mark - entry) * quantity``: positive when a long's mark is above entry or a short's below."""
    if position.entry_price is None or position.quantity == 0:
        return _ZERO
    with localcontext(_WIDE):
        return (mark - position.entry_price) * position.quantity


def liquidation_price(position: Position, maintenance_margin_rate: Decimal) -> Decimal | None:
    """Rule 8: where an isolated linear position's margin falls to the maintenance margin."""
    if position.kind == "spot" or position.quantity == 0 or position.entry_price is None:
        return None
    with localcontext(_WIDE):
        step = _ONE / position.leverage
        if position.quantity > 0:
            price = position.entry_price * (_ONE - step + maintenance_margin_rate)
        else:
            price = position.entry_price * (_ONE + step - maintenance_margin_rate)
    return _trim(price.quantize(PRICE_QUANTUM, rounding=ROUND_HALF_EVEN, context=_WIDE))


def with_leverage(position: Position, leverage: Decimal, *, instrument: Instrument) -> Position:
    """Rule 7: the position at ``leverage``, its margin re-computed (rule 5).

    Raises ``OrderRejected`` for spot positions (always leverage 1) and for a leverage outside
    ``1..instrument.max_leverage``. The ledger moves the margin difference
    (:meth:`~cryptoorchestrator.domain.ledger.Ledger.set_leverage`).
    """
    if instrument.is_spot:
        raise OrderRejected(
            f"{instrument.symbol} is a spot market: leverage is always 1.",
            details={"field": "leverage", "symbol": instrument.symbol},
        )
    _check_leverage(leverage, instrument)
    with localcontext(_WIDE):  # rule 5
        margin = _margin(position.quantity, position.entry_price, leverage)
    return replace(position, leverage=leverage, margin=margin)


# --- the arithmetic ---------------------------------------------------------------------------


def _check_fill(position: Position | None, fill: Fill, instrument: Instrument) -> None:
    if fill.symbol != instrument.symbol or (position is not None and position.symbol != fill.symbol):
        raise ValidationFailed(
            f"The fill of {fill.symbol} does not belong to {instrument.symbol}.",
            details={"field": "symbol", "symbol": fill.symbol},
        )
    if not (fill.quantity > 0 and fill.price > 0 and fill.fee >= 0):
        raise ValidationFailed(
            "A fill needs a positive price and quantity and a fee that is not negative.",
            details={"price": str(fill.price), "quantity": str(fill.quantity), "fee": str(fill.fee)},
        )


def _check_leverage(leverage: Decimal, instrument: Instrument) -> None:
    if not (leverage.is_finite() and _ONE <= leverage <= instrument.max_leverage):
        raise OrderRejected(
            f"The leverage {leverage} is outside 1..{instrument.max_leverage} on {instrument.symbol}.",
            details={"field": "leverage", "max_leverage": str(instrument.max_leverage)},
        )


def _flat(account_id: str, fill: Fill, instrument: Instrument) -> Position:
    return Position(
        account_id=account_id,
        symbol=fill.symbol,
        kind=instrument.kind,
        quantity=_ZERO,
        entry_price=None,
        realized_pnl=_ZERO,
        fees_paid=_ZERO,
        leverage=_ONE,
        margin=_ZERO,
        opened_at=None,
        updated_at=fill.timestamp,
    )


def _fee_value(fill: Fill, instrument: Instrument) -> Decimal:
    """Rule 6."""
    if fill.fee_asset in (instrument.quote, instrument.margin_asset):
        return fill.fee
    if fill.fee_asset == instrument.base:
        return fill.fee * fill.price
    return _ZERO


def _margin(quantity: Decimal, entry: Decimal | None, leverage: Decimal) -> Decimal:
    """Rule 5, rounded up: the collateral is never understated."""
    if quantity == 0 or entry is None:
        return _ZERO
    exact = abs(quantity) * entry / leverage
    return _trim(exact.quantize(MONEY_QUANTUM, rounding=ROUND_CEILING, context=_WIDE))


def _pnl(value: Decimal) -> Decimal:
    """Rule 5: realised P&L to the nearest quantum."""
    return _trim(value.quantize(MONEY_QUANTUM, rounding=ROUND_HALF_EVEN, context=_WIDE))


def _trim(value: Decimal) -> Decimal:
    """The same number without trailing zeros (``20``, not ``20.000000000000``) nor an exponent."""
    trimmed = value.normalize(_WIDE)
    exponent = trimmed.as_tuple().exponent
    return trimmed.quantize(_ONE, context=_WIDE) if isinstance(exponent, int) and exponent > 0 else trimmed


def _apply_spot(position: Position, fill: Fill, instrument: Instrument) -> tuple[Position, Decimal]:
    base_fee = fill.fee if fill.fee_asset == instrument.base else _ZERO
    held = position.quantity
    if fill.side.sign > 0:
        added = fill.quantity - base_fee  # rule 1
        if added < 0:
            raise ValidationFailed(
                "A buy's fee in the base asset cannot exceed the quantity bought.",
                details={"quantity": str(fill.quantity), "fee": str(fill.fee)},
            )
        quantity = held + added
        entry = _average(held, position.entry_price, added, fill.price)  # rule 2
        realized = _ZERO
    else:
        leaving = fill.quantity + base_fee  # rule 1
        if leaving > held:
            raise OrderRejected(
                f"The sell of {leaving} {instrument.base} exceeds the holding of {held}.",
                details={"field": "quantity", "held": str(held), "required": str(leaving)},
            )
        quantity = held - leaving
        realized = _pnl((fill.price - (position.entry_price or fill.price)) * leaving)  # rule 3
        entry = position.entry_price
    return _updated(position, fill, instrument, quantity, entry, realized, _ONE), realized


def _apply_swap(
    position: Position, fill: Fill, instrument: Instrument, leverage: Decimal
) -> tuple[Position, Decimal]:
    held = position.quantity
    signed = fill.quantity * fill.side.sign
    if held == 0 or (held > 0) == (signed > 0):
        # Rule 4: increase (or open) at the weighted average entry.
        average = _average(abs(held), position.entry_price, fill.quantity, fill.price)
        return _updated(position, fill, instrument, held + signed, average, _ZERO, leverage), _ZERO
    closed = min(fill.quantity, abs(held))
    direction = _ONE if held > 0 else -_ONE
    realized = _pnl((fill.price - (position.entry_price or fill.price)) * closed * direction)  # rule 3
    quantity = held + signed
    if quantity == 0:
        entry: Decimal | None = None
    elif (quantity > 0) == (held > 0):
        entry = position.entry_price  # a partial close keeps the entry
    else:
        entry = fill.price  # rule 4: the flip opens the rest at the fill price
    updated = _updated(position, fill, instrument, quantity, entry, realized, leverage)
    if quantity != 0 and (quantity > 0) != (held > 0):
        updated = replace(updated, opened_at=fill.timestamp)  # a flipped position is a new one
    return updated, realized


def _average(held: Decimal, entry: Decimal | None, added: Decimal, price: Decimal) -> Decimal | None:
    total = held + added
    if total <= 0:
        return entry if held > 0 else None
    if entry is None or held <= 0:
        return price
    average = (held * entry + added * price) / total
    return _trim(average.quantize(PRICE_QUANTUM, rounding=ROUND_HALF_EVEN, context=_WIDE))  # rule 5


def _updated(
    position: Position,
    fill: Fill,
    instrument: Instrument,
    quantity: Decimal,
    entry: Decimal | None,
    realized: Decimal,
    leverage: Decimal,
) -> Position:
    flat = quantity == 0
    return replace(
        position,
        quantity=quantity,
        entry_price=None if flat else entry,
        realized_pnl=position.realized_pnl + realized,
        fees_paid=position.fees_paid + _fee_value(fill, instrument),
        leverage=leverage,
        margin=_ZERO if instrument.is_spot else _margin(quantity, entry, leverage),
        opened_at=None if flat else (position.opened_at or fill.timestamp),
        updated_at=max(position.updated_at, fill.timestamp),
    )
