"""The fill model: how an order becomes a fill (price, quantity, commission).

One set of rules, written twice: numba scalar functions (``*_nb``, float64) used inside the
backtest kernels, and :class:`FillRules`, a plain-Python ``Decimal`` version for the paper
exchange. ``tests/unit/backtest/test_bt_fill_model.py`` checks with hypothesis that both agree.

Rules
-----
1. **Reference price.** The caller chooses it: the next bar's open (default in backtests) or the
   signal bar's close; for stops, the stop price or the open when the bar gapped through it.
2. **Slippage** is charged in basis points against the taker, never in its favour:
   a buy fills at ``reference * (1 + bps / 10_000)``, a sell at ``reference * (1 - bps / 10_000)``.

   * ``SLIPPAGE_FIXED``: ``bps = fixed_bps``.
   * ``SLIPPAGE_VOLUME`` (square-root market impact, after Almgren et al. and the "square-root
     law" of market impact): ``bps = fixed_bps + min(cap_bps, k * sqrt(quantity / bar_volume))``
     with ``k`` in basis points. The impact therefore grows with the share of the bar's volume
     that the order takes. A bar with zero (or negative) volume gives the full ``cap_bps``.
3. **Commission** = ``notional * rate`` where market orders (signals, stops, liquidations) pay
   the taker rate and resting limit orders (take profit) pay the maker rate. Limit orders get
   no slippage.
4. **Quantity precision.** Quantities are rounded *down* to a multiple of ``step``
   (``step <= 0`` means no rounding). A quantity within ``1e-12 * max(1, units)`` steps of a
   step multiple counts as that multiple, which absorbs binary float error (``0.3 / 0.1`` is
   ``2.9999999999999996`` in float64).
5. **Minimums.** An order is refused when its rounded quantity is not positive, is below
   ``min_quantity``, or its notional ``quantity * price`` is below ``min_notional``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal

from numba import njit

from cryptoorchestrator.core.errors import ValidationFailed

SLIPPAGE_FIXED = 0
"""Slippage model code: a fixed number of basis points."""
SLIPPAGE_VOLUME = 1
"""Slippage model code: fixed bps plus square-root impact on the bar-volume share, capped."""

BUY = 1
"""Order side code for buys (opening a long, closing a short)."""
SELL = -1
"""Order side code for sells (closing a long, opening a short)."""

_BPS = 10_000.0
_STEP_TOLERANCE = 1e-12


# --- numba versions (float64, used inside kernels) --------------------------------------------


@njit(cache=True)
def slippage_bps_nb(
    quantity: float,
    bar_volume: float,
    model: int,
    fixed_bps: float,
    impact_k_bps: float,
    impact_cap_bps: float,
) -> float:
    """Slippage in basis points for ``quantity`` traded in a bar of ``bar_volume`` (rule 2)."""
    if model == SLIPPAGE_VOLUME:
        if bar_volume <= 0.0:
            return fixed_bps + impact_cap_bps
        impact = impact_k_bps * math.sqrt(quantity / bar_volume)
        return fixed_bps + min(impact, impact_cap_bps)
    return fixed_bps


@njit(cache=True)
def fill_price_nb(reference: float, side: int, slippage_bps: float) -> float:
    """Fill price of a market order: the reference moved against the taker by ``slippage_bps``."""
    if side == BUY:
        return reference * (1.0 + slippage_bps / _BPS)
    return reference * (1.0 - slippage_bps / _BPS)


@njit(cache=True)
def commission_nb(quantity: float, price: float, rate: float) -> float:
    """Commission for a fill: notional times the maker or taker ``rate`` (rule 3)."""
    return abs(quantity) * price * rate


@njit(cache=True)
def round_quantity_nb(quantity: float, step: float) -> float:
    """Round ``quantity`` down to a multiple of ``step`` (rule 4); ``step <= 0`` keeps it."""
    if step <= 0.0:
        return quantity
    units = quantity / step
    nearest = math.floor(units + 0.5)
    if abs(units - nearest) <= _STEP_TOLERANCE * max(1.0, abs(nearest)):
        return nearest * step
    return math.floor(units) * step


@njit(cache=True)
def order_allowed_nb(quantity: float, price: float, min_quantity: float, min_notional: float) -> bool:
    """Whether an order of ``quantity`` at ``price`` passes the exchange minimums (rule 5)."""
    if quantity <= 0.0:
        return False
    if quantity < min_quantity:
        return False
    return quantity * price >= min_notional


# --- plain-Python Decimal version (paper exchange) --------------------------------------------


def _dec(value: Decimal | float | int | str) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


@dataclass(frozen=True, slots=True)
class FillRules:
    """The fill rules of this module in ``Decimal`` arithmetic, for the paper exchange.

    Attributes mirror the arguments of the numba functions: ``slippage_model`` is
    :data:`SLIPPAGE_FIXED` or :data:`SLIPPAGE_VOLUME`; rates are fractions (``0.001`` = 0.1%).
    """

    maker_fee: Decimal = Decimal("0.001")
    taker_fee: Decimal = Decimal("0.001")
    slippage_model: int = SLIPPAGE_FIXED
    slippage_bps: Decimal = Decimal("5")
    impact_k_bps: Decimal = Decimal("10")
    impact_cap_bps: Decimal = Decimal("100")
    quantity_step: Decimal = Decimal("0")
    min_quantity: Decimal = Decimal("0")
    min_notional: Decimal = Decimal("0")

    def __post_init__(self) -> None:
        if self.slippage_model not in (SLIPPAGE_FIXED, SLIPPAGE_VOLUME):
            raise ValidationFailed(
                "slippage_model must be SLIPPAGE_FIXED or SLIPPAGE_VOLUME",
                details={"field": "slippage_model"},
            )
        for name in (
            "maker_fee",
            "taker_fee",
            "slippage_bps",
            "impact_k_bps",
            "impact_cap_bps",
            "quantity_step",
            "min_quantity",
            "min_notional",
        ):
            value = _dec(getattr(self, name))
            if not value.is_finite() or value < 0:
                raise ValidationFailed(f"{name} must be a finite number >= 0", details={"field": name})
            object.__setattr__(self, name, value)

    def slippage(self, quantity: Decimal, bar_volume: Decimal) -> Decimal:
        """Slippage in basis points (rule 2)."""
        if self.slippage_model == SLIPPAGE_VOLUME:
            if bar_volume <= 0:
                return self.slippage_bps + self.impact_cap_bps
            impact = self.impact_k_bps * (_dec(quantity) / _dec(bar_volume)).sqrt()
            return self.slippage_bps + min(impact, self.impact_cap_bps)
        return self.slippage_bps

    def fill_price(self, reference: Decimal, side: int, *, quantity: Decimal, bar_volume: Decimal) -> Decimal:
        """Price of a market order of ``quantity``: the reference moved against the taker."""
        bps = self.slippage(quantity, bar_volume)
        factor = Decimal(1) + bps / Decimal(10_000) if side == BUY else Decimal(1) - bps / Decimal(10_000)
        return _dec(reference) * factor

    def commission(self, quantity: Decimal, price: Decimal, *, taker: bool = True) -> Decimal:
        """Commission of a fill; market orders are takers, resting limit orders makers."""
        rate = self.taker_fee if taker else self.maker_fee
        return abs(_dec(quantity)) * _dec(price) * rate

    def round_quantity(self, quantity: Decimal) -> Decimal:
        """Round down to the step (rule 4, with the same tolerance as the numba version)."""
        quantity = _dec(quantity)
        if self.quantity_step <= 0:
            return quantity
        units = quantity / self.quantity_step
        nearest = (units + Decimal("0.5")).to_integral_value(rounding=ROUND_FLOOR)
        if abs(units - nearest) <= Decimal(str(_STEP_TOLERANCE)) * max(Decimal(1), abs(nearest)):
            return nearest * self.quantity_step
        return units.to_integral_value(rounding=ROUND_FLOOR) * self.quantity_step

    def order_allowed(self, quantity: Decimal, price: Decimal) -> bool:
        """Whether the (already rounded) order passes the minimums (rule 5)."""
        quantity = _dec(quantity)
        if quantity <= 0 or quantity < self.min_quantity:
            return False
        return quantity * _dec(price) >= self.min_notional
