"""Instrument rules: what an order on a market may look like and what it costs (stdlib only).

Built from the venue's market description (ccxt's ``markets``, already converted to
:class:`~cryptoorchestrator.domain.market.MarketInfo`). Rules:

1. Quantities are rounded *down* to the step (never buy or sell more than asked or held).
2. Limit and stop prices are rounded to the tick away from crossing: down for buys, up for sells.
3. An order is refused when its rounded quantity is not positive, is below the minimum
   quantity, or its notional is below the minimum notional.
4. Fees are rates of the notional: maker for resting orders, taker otherwise. Missing venue
   values fall back to :data:`DEFAULT_FEE`.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from cryptoorchestrator.core.errors import OrderRejected
from cryptoorchestrator.domain.market import MarketInfo
from cryptoorchestrator.domain.orders import Liquidity, OrderSide

DEFAULT_FEE = Decimal("0.001")


@dataclass(frozen=True, slots=True)
class Instrument:
    """One tradable market. ``kind`` is ``spot`` (holdings) or ``swap`` (linear perpetual:
    long/short positions margined in ``settle``)."""

    symbol: str
    base: str
    quote: str
    kind: str = "spot"
    price_tick: Decimal = Decimal(0)
    quantity_step: Decimal = Decimal(0)
    min_quantity: Decimal = Decimal(0)
    min_notional: Decimal = Decimal(0)
    maker_fee: Decimal = DEFAULT_FEE
    taker_fee: Decimal = DEFAULT_FEE
    settle: str | None = None
    max_leverage: Decimal = Decimal(125)
    maintenance_margin_rate: Decimal = Decimal("0.005")

    @classmethod
    def from_market(cls, market: MarketInfo) -> Instrument:
        kind = "spot" if market.type in ("spot", "margin") else "swap"
        return cls(
            symbol=market.symbol,
            base=market.base,
            quote=market.quote,
            kind=kind,
            price_tick=market.price_tick or Decimal(0),
            quantity_step=market.amount_step or Decimal(0),
            min_quantity=market.min_amount or Decimal(0),
            min_notional=market.min_notional or Decimal(0),
            maker_fee=DEFAULT_FEE if market.maker_fee is None else market.maker_fee,
            taker_fee=DEFAULT_FEE if market.taker_fee is None else market.taker_fee,
            settle=market.settle or (market.quote if kind == "swap" else None),
        )

    @property
    def is_spot(self) -> bool:
        return self.kind == "spot"

    @property
    def margin_asset(self) -> str:
        """The asset that pays for positions: the quote on spot, the settle asset on swaps."""
        return self.settle or self.quote

    def fee_rate(self, liquidity: Liquidity) -> Decimal:
        return self.maker_fee if liquidity is Liquidity.MAKER else self.taker_fee

    def round_quantity(self, quantity: Decimal) -> Decimal:
        """Rule 1."""
        if self.quantity_step <= 0:
            return quantity
        return (quantity / self.quantity_step).to_integral_value(rounding=ROUND_FLOOR) * self.quantity_step

    def round_price(self, price: Decimal, side: OrderSide) -> Decimal:
        """Rule 2."""
        if self.price_tick <= 0:
            return price
        rounding = ROUND_FLOOR if side is OrderSide.BUY else ROUND_CEILING
        return (price / self.price_tick).to_integral_value(rounding=rounding) * self.price_tick

    def check(self, quantity: Decimal, price: Decimal) -> None:
        """Rule 3: raise ``OrderRejected`` (400 ``ORDER_REJECTED``) naming the limit missed."""
        if quantity <= 0:
            raise OrderRejected(
                f"The quantity rounds to {quantity} at the step {self.quantity_step} of {self.symbol}.",
                details={"field": "quantity", "step": str(self.quantity_step)},
            )
        if quantity < self.min_quantity:
            raise OrderRejected(
                f"The quantity {quantity} is below the minimum {self.min_quantity} of {self.symbol}.",
                details={"field": "quantity", "min_quantity": str(self.min_quantity)},
            )
        if quantity * price < self.min_notional:
            raise OrderRejected(
                f"The order value {quantity * price} is below the minimum {self.min_notional} "
                f"of {self.symbol}.",
                details={"field": "quantity", "min_notional": str(self.min_notional)},
            )
