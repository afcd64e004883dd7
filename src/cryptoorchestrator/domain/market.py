"""Market and account records as the exchange adapter returns them.

Plain frozen dataclasses with Decimal money (convention 2 of the architecture guide): the
adapter converts the vendor's floats once, at the boundary, and everything past it works on
these records. Symbols use ccxt's unified form (``"BTC/USDT"``, ``"BTC/USDT:USDT"`` for a
USDT-settled swap); statuses use ccxt's words (``open``, ``closed``, ``canceled``, ``expired``,
``rejected``) because those are what every venue is normalised to.

Stdlib only: no ccxt, no pydantic.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Literal

MarketType = Literal["spot", "margin", "swap", "future", "option"]
OrderSide = Literal["buy", "sell"]
TakerOrMaker = Literal["taker", "maker"]

#: ccxt's unified order statuses.
OPEN_STATUSES = frozenset({"open"})
FINAL_STATUSES = frozenset({"closed", "canceled", "expired", "rejected"})


def _floor_to_step(value: Decimal, step: Decimal) -> Decimal:
    return (value / step).to_integral_value(rounding=ROUND_FLOOR) * step


@dataclass(frozen=True, slots=True)
class MarketInfo:
    """One tradable market: what may be sent to the venue and what it costs.

    ``price_tick`` and ``amount_step`` are increments (``0.01``, ``0.00001``), whatever way the
    venue states its precision; ``None`` means the venue does not say. ``min_notional`` is the
    smallest ``price * amount`` the venue accepts. Fees are rates (``0.001`` is 0.1 %).
    """

    symbol: str
    base: str
    quote: str
    type: MarketType
    active: bool
    price_tick: Decimal | None
    amount_step: Decimal | None
    min_amount: Decimal | None
    min_notional: Decimal | None
    maker_fee: Decimal | None
    taker_fee: Decimal | None
    exchange_symbol: str | None = None
    settle: str | None = None

    def floor_amount(self, amount: Decimal) -> Decimal:
        """``amount`` rounded down to the venue's step (unchanged when the step is unknown)."""
        if self.amount_step is None or self.amount_step <= 0:
            return amount
        return _floor_to_step(amount, self.amount_step)

    def round_price(self, price: Decimal, *, side: OrderSide) -> Decimal:
        """``price`` on the tick grid, rounded away from crossing: down for buys, up for sells."""
        if self.price_tick is None or self.price_tick <= 0:
            return price
        rounding = ROUND_FLOOR if side == "buy" else ROUND_CEILING
        return (price / self.price_tick).to_integral_value(rounding=rounding) * self.price_tick

    def rejection_reason(self, amount: Decimal, price: Decimal) -> str | None:
        """Why the venue would refuse this size, or ``None`` when it passes the known limits."""
        if self.min_amount is not None and amount < self.min_amount:
            return f"amount {amount} is below the minimum {self.min_amount}"
        if self.amount_step is not None and self.amount_step > 0 and amount % self.amount_step != 0:
            return f"amount {amount} is not a multiple of the step {self.amount_step}"
        if self.min_notional is not None and amount * price < self.min_notional:
            return f"notional {amount * price} is below the minimum {self.min_notional}"
        return None


@dataclass(frozen=True, slots=True)
class Ticker:
    """Best prices and 24 h statistics of one market at ``timestamp`` (ms since the epoch)."""

    symbol: str
    timestamp: int | None
    bid: Decimal | None
    ask: Decimal | None
    last: Decimal | None
    high: Decimal | None
    low: Decimal | None
    base_volume: Decimal | None
    quote_volume: Decimal | None
    source: str

    @property
    def mid(self) -> Decimal | None:
        """The middle of the best bid and ask, when both are known."""
        if self.bid is None or self.ask is None:
            return None
        return (self.bid + self.ask) / 2


@dataclass(frozen=True, slots=True)
class OrderBook:
    """A depth snapshot: ``bids`` best (highest) first, ``asks`` best (lowest) first."""

    symbol: str
    timestamp: int | None
    bids: tuple[tuple[Decimal, Decimal], ...]
    asks: tuple[tuple[Decimal, Decimal], ...]
    source: str
    nonce: int | None = None

    @property
    def best_bid(self) -> Decimal | None:
        return self.bids[0][0] if self.bids else None

    @property
    def best_ask(self) -> Decimal | None:
        return self.asks[0][0] if self.asks else None


@dataclass(frozen=True, slots=True)
class Balance:
    """One asset of an account: ``free + used == total`` when the venue reports all three."""

    asset: str
    free: Decimal
    used: Decimal
    total: Decimal


@dataclass(frozen=True, slots=True)
class Fee:
    """A fee paid, in ``currency`` (``None`` when the venue does not say which)."""

    cost: Decimal
    currency: str | None


@dataclass(frozen=True, slots=True)
class ExchangeOrder:
    """An order as the venue sees it (ccxt's unified order, with Decimal numbers).

    ``side`` is ``None`` only when the venue's answer omits it (some cancel answers do).
    """

    id: str
    client_order_id: str | None
    symbol: str
    side: OrderSide | None
    type: str
    status: str
    price: Decimal | None
    amount: Decimal | None
    filled: Decimal
    remaining: Decimal | None
    average: Decimal | None
    cost: Decimal | None
    fee: Fee | None
    timestamp: int | None

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def is_final(self) -> bool:
        """True once the venue will never change this order again."""
        return self.status in FINAL_STATUSES


@dataclass(frozen=True, slots=True)
class ExchangeTrade:
    """One fill of one of our orders."""

    id: str
    order_id: str | None
    symbol: str
    side: OrderSide | None
    price: Decimal
    amount: Decimal
    cost: Decimal | None
    fee_cost: Decimal | None
    fee_currency: str | None
    taker_or_maker: TakerOrMaker | None
    timestamp: int | None
