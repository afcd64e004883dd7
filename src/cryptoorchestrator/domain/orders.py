"""Orders and the order state machine, shared by paper and live trading (stdlib only).

An order moves ``pending -> new -> partially_filled -> filled | canceled | rejected | expired``;
``unknown`` means a submission was sent and its outcome is not known yet (a timeout or a 5xx):
it is resolved by asking the venue about the order's ``client_order_id``, never by sending it
again under a new id, and it is never reported as rejected on a guess.

Rules implemented by :func:`apply_event` (the property tests in
``tests/unit/domain/test_order_state_machine.py`` check them on random event sequences):

1. Terminal states (``filled``, ``canceled``, ``rejected``, ``expired``) absorb every later
   event: the order object comes back unchanged.
2. Fills are de-duplicated by ``trade_id``: a fill already applied changes nothing.
3. A fill never takes the filled quantity past the order quantity: the excess is ignored
   (venues do not overfill; a bigger number is a duplicate under another id or a bad message).
4. The status follows the filled quantity: some filled -> ``partially_filled``, all ->
   ``filled``, whatever status the fill arrived in (an ack may come after the first fill).
5. ``accepted`` moves ``pending``/``unknown`` to ``new`` and records the venue's order id;
   later it only fills in a missing venue id.
6. ``canceled`` and ``expired`` keep the fills already made (a partly filled order ends
   ``canceled`` with ``filled_quantity > 0``).
7. ``rejected`` is accepted only before any fill; after one, a rejection is an inconsistent
   venue message and is ignored (the fills happened).
8. ``outcome_unknown`` moves only ``pending`` to ``unknown``.
9. ``triggered`` marks a stop order as triggered (it then behaves as its market or limit order).
10. ``updated_at`` never goes back: a message that arrives late (an ack after the first fill, a
    reordered cancel) leaves the later time in place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from cryptoorchestrator.core.records import replace


class OrderStatus(StrEnum):
    PENDING = "pending"
    NEW = "new"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELED = "canceled"
    REJECTED = "rejected"
    EXPIRED = "expired"
    UNKNOWN = "unknown"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES

    @property
    def is_open(self) -> bool:
        """Working at the venue (or possibly so): funds stay locked while an order is open."""
        return self in OPEN_STATUSES


TERMINAL_STATUSES = frozenset(
    {OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED, OrderStatus.EXPIRED}
)
OPEN_STATUSES = frozenset(
    {OrderStatus.PENDING, OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED, OrderStatus.UNKNOWN}
)


class OrderSide(StrEnum):
    BUY = "buy"
    SELL = "sell"

    @property
    def sign(self) -> int:
        return 1 if self is OrderSide.BUY else -1

    @property
    def opposite(self) -> OrderSide:
        return OrderSide.SELL if self is OrderSide.BUY else OrderSide.BUY


class OrderType(StrEnum):
    MARKET = "market"
    LIMIT = "limit"
    STOP_MARKET = "stop_market"
    STOP_LIMIT = "stop_limit"

    @property
    def is_stop(self) -> bool:
        return self in (OrderType.STOP_MARKET, OrderType.STOP_LIMIT)

    @property
    def has_limit_price(self) -> bool:
        return self in (OrderType.LIMIT, OrderType.STOP_LIMIT)


class TimeInForce(StrEnum):
    GTC = "GTC"
    IOC = "IOC"
    FOK = "FOK"


class Liquidity(StrEnum):
    MAKER = "maker"
    TAKER = "taker"


# No slots: core.records.replace copies a Fill as its __dict__ (a few are made per order).
@dataclass(frozen=True)
class Fill:
    """One execution of an order. ``fee`` is charged in ``fee_asset`` (base or quote)."""

    trade_id: str
    order_id: str
    symbol: str
    side: OrderSide
    price: Decimal
    quantity: Decimal
    fee: Decimal
    fee_asset: str
    liquidity: Liquidity
    timestamp: datetime

    @property
    def notional(self) -> Decimal:
        return self.price * self.quantity


# --- events -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Accepted:
    """The venue acknowledged the order (rule 5)."""

    exchange_order_id: str | None
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class Filled:
    """An execution report (rules 2-4)."""

    fill: Fill


@dataclass(frozen=True, slots=True)
class Canceled:
    timestamp: datetime
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Rejected:
    timestamp: datetime
    reason: str


@dataclass(frozen=True, slots=True)
class Expired:
    timestamp: datetime
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class OutcomeUnknown:
    """The submission was sent but its answer was lost (rule 8)."""

    timestamp: datetime
    reason: str


@dataclass(frozen=True, slots=True)
class Triggered:
    """A stop order's trigger price was reached (rule 9)."""

    timestamp: datetime


OrderEvent = Accepted | Filled | Canceled | Rejected | Expired | OutcomeUnknown | Triggered


# --- the order --------------------------------------------------------------------------------


# No slots: core.records.replace copies an Order as its __dict__ (several times per order).
@dataclass(frozen=True)
class Order:
    """An order as the platform tracks it. Immutable: :func:`apply_event` returns a new one.

    ``quantity`` is in base units; ``price`` is the limit price (limit and stop-limit orders),
    ``stop_price`` the trigger of stop orders. ``fees`` maps each asset to the fees paid in it.
    ``oco_group`` ties an attached stop loss and take profit together (one cancels the other);
    ``parent_id`` is the order whose fill created them. ``locked_asset``/``locked_amount`` is
    what the ledger still holds locked for this order (released on cancel, reject or expiry);
    ``fingerprint`` is a hash of the request that created it (same ``client_order_id`` with a
    different body answers 409 ``CONFLICT``).
    """

    id: str
    user_id: int
    account_id: str
    symbol: str
    side: OrderSide
    type: OrderType
    quantity: Decimal
    client_order_id: str
    created_at: datetime
    updated_at: datetime
    status: OrderStatus = OrderStatus.PENDING
    price: Decimal | None = None
    stop_price: Decimal | None = None
    time_in_force: TimeInForce = TimeInForce.GTC
    reduce_only: bool = False
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    bot_id: str | None = None
    parent_id: str | None = None
    oco_group: str | None = None
    exchange_order_id: str | None = None
    filled_quantity: Decimal = Decimal(0)
    average_price: Decimal | None = None
    fees: dict[str, Decimal] = field(default_factory=dict)
    trade_ids: frozenset[str] = frozenset()
    triggered: bool = False
    reason: str | None = None
    locked_asset: str | None = None
    locked_amount: Decimal = Decimal(0)
    fingerprint: str | None = None

    @property
    def remaining(self) -> Decimal:
        return self.quantity - self.filled_quantity

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal

    @property
    def is_open(self) -> bool:
        return self.status.is_open

    @property
    def filled_notional(self) -> Decimal:
        return Decimal(0) if self.average_price is None else self.average_price * self.filled_quantity


def apply_event(order: Order, event: OrderEvent) -> Order:
    """The order after ``event`` (the rules in the module docstring). Pure; never raises."""
    if order.status.is_terminal:
        return order  # rule 1
    if isinstance(event, Filled):
        return _apply_fill(order, event.fill)
    if isinstance(event, Accepted):
        return _apply_accepted(order, event)
    if isinstance(event, Canceled | Expired):
        status = OrderStatus.CANCELED if isinstance(event, Canceled) else OrderStatus.EXPIRED
        return replace(
            order,
            status=status,
            updated_at=_later(order, event.timestamp),
            reason=event.reason or order.reason,
        )
    if isinstance(event, Rejected):
        if order.filled_quantity > 0:
            return order  # rule 7
        return replace(
            order, status=OrderStatus.REJECTED, updated_at=_later(order, event.timestamp), reason=event.reason
        )
    if isinstance(event, OutcomeUnknown):
        if order.status is not OrderStatus.PENDING:
            return order  # rule 8
        return replace(
            order, status=OrderStatus.UNKNOWN, updated_at=_later(order, event.timestamp), reason=event.reason
        )
    # Triggered
    return replace(order, triggered=True, updated_at=_later(order, event.timestamp))


def _later(order: Order, timestamp: datetime) -> datetime:
    """Rule 10."""
    return max(order.updated_at, timestamp)


def _apply_accepted(order: Order, event: Accepted) -> Order:
    if order.status in (OrderStatus.PENDING, OrderStatus.UNKNOWN):
        return replace(
            order,
            status=OrderStatus.NEW,
            exchange_order_id=event.exchange_order_id or order.exchange_order_id,
            updated_at=_later(order, event.timestamp),
            reason=None,
        )
    if order.exchange_order_id is None and event.exchange_order_id:
        return replace(order, exchange_order_id=event.exchange_order_id)
    return order


def _apply_fill(order: Order, fill: Fill) -> Order:
    if fill.trade_id in order.trade_ids:
        return order  # rule 2
    quantity = min(fill.quantity, order.remaining)  # rule 3
    if quantity <= 0:
        return replace(order, trade_ids=order.trade_ids | {fill.trade_id})
    filled = order.filled_quantity + quantity
    average = (order.filled_notional + fill.price * quantity) / filled
    fees = dict(order.fees)
    fees[fill.fee_asset] = fees.get(fill.fee_asset, Decimal(0)) + fill.fee
    status = OrderStatus.FILLED if filled >= order.quantity else OrderStatus.PARTIALLY_FILLED  # rule 4
    return replace(
        order,
        status=status,
        filled_quantity=filled,
        average_price=average,
        fees=fees,
        trade_ids=order.trade_ids | {fill.trade_id},
        updated_at=_later(order, fill.timestamp),  # rule 10
        reason=None if status is OrderStatus.FILLED else order.reason,
    )


def apply_events(order: Order, events: list[OrderEvent] | tuple[OrderEvent, ...]) -> Order:
    """Fold :func:`apply_event` over ``events``."""
    for event in events:
        order = apply_event(order, event)
    return order
