"""The bot's trading rules: decision + position + risk + account -> intents (pure, Decimal).

A running bot trades like the event replay (``backtest/replay.py``) run with
``fill_at="close"``: it decides at the close of each candle and sends market orders at once, so
they fill at that close (plus the venue's slippage). The rules below are the kernel's
(``backtest/kernel.py``, R1-R7), restated for the bot; each is cited where it is implemented.

R1 *Timing, no pyramiding.* The bot acts at the close of the candle the decision is for. An
   entry signal while a position of the same side is open is ignored.
R2 *Signal conflicts.* An entry is ignored when the same candle also carries the exit signal of
   that side or the entry of the other side; a valid entry of the other side closes the open
   position first (reversal). A market that cannot go short (spot) never opens a short, but a
   short entry still closes a long (the close half of the reversal).
R4 *Sizing* at the expected fill price (the reference moved by the expected slippage, two passes
   as the kernel) with ``taker`` fee per unit: with a stop loss, ``risk_per_trade`` is the
   fraction of equity lost when the stop is hit (the kernel's ``risk`` sizing,
   ``q = risk * equity / (price * stop_loss)``); without one it is the fraction of equity put
   in the position, commission included (``percent_equity``, ``q = risk * equity / (price *
   (1/L + fee))``). Then capped: margin (``q * price / L``) at most ``max_position_fraction`` of
   equity, and what the venue will lock at most the free cash (swaps: margin plus fee, as the
   kernel's cap; spot buys: ``q * price * (1 + fee + buffer)``, the order service's lock of a
   market buy). Rounded down to the step; refused under the venue's minimums. No entry when
   ``max_open_positions`` positions are open already.
R5 *Protection.* From the entry fill price ``p``: stop ``p * (1 - side * stop_loss)``, take profit
   ``p * (1 + side * take_profit)``. The trailing stop trails the best price since entry (the
   entry fill price on the entry candle; a candle's extreme moves it only after the candle was
   checked against the stop, R5c); the stop that counts is the tighter of the fixed and the
   trailing one. The venue fills stops and take profits inside the next candles (the paper
   venue reads candles as the kernel's R5a/b do).
R8 *Watchdog.* A position whose protective stop is missing is re-armed at the stop level, or
   flattened when the price is already at or through it (:func:`stop_breached`).
R9 *Dust.* What an exit leaves behind (a spot buy's fee taken in the coin bought, rounded away
   by the step) is below what the venue accepts in an order: the bot counts a position that
   small as flat (:func:`is_dust`): it could neither protect nor sell it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Protocol

from cryptoorchestrator.engine.signals import Decision
from cryptoorchestrator.simulator.fill_model import FillRules

LONG = 1
SHORT = -1
_ZERO = Decimal(0)
_ONE = Decimal(1)
_BPS = Decimal(10_000)


class RiskRules(Protocol):
    """What the rules read of a bot's risk settings (``domain.bots.BotRisk`` fits)."""

    @property
    def risk_per_trade(self) -> Decimal: ...

    @property
    def stop_loss(self) -> Decimal | None: ...

    @property
    def take_profit(self) -> Decimal | None: ...

    @property
    def trailing_stop(self) -> Decimal | None: ...

    @property
    def leverage(self) -> Decimal: ...

    @property
    def max_open_positions(self) -> int: ...

    @property
    def max_position_fraction(self) -> Decimal: ...


@dataclass(frozen=True, slots=True)
class PositionState:
    """The bot's view of one open position: side (``LONG``/``SHORT``), quantity, entry fill
    price and the best price since entry (the trailing stop's anchor, R5)."""

    side: int
    quantity: Decimal
    entry_price: Decimal
    best_price: Decimal

    @classmethod
    def opened(cls, side: int, quantity: Decimal, entry_price: Decimal) -> PositionState:
        """R5c: a new position's best price is its entry fill price."""
        return cls(side=side, quantity=quantity, entry_price=entry_price, best_price=entry_price)


@dataclass(frozen=True, slots=True)
class MarketView:
    """What sizing needs to know about the account and the market at the decision's close.

    ``price`` is the reference (the candle close); ``slippage_bps`` what a market order is
    expected to pay; ``lock_buffer`` the extra fraction the order service locks for a spot
    market buy; ``step``/``min_quantity``/``min_notional`` the venue's rules.
    """

    equity: Decimal
    free_cash: Decimal
    price: Decimal
    taker_fee: Decimal = Decimal("0.001")
    slippage_bps: Decimal = Decimal(0)
    lock_buffer: Decimal = Decimal(0)
    quantity_step: Decimal = Decimal(0)
    min_quantity: Decimal = Decimal(0)
    min_notional: Decimal = Decimal(0)
    spot: bool = True
    open_positions: int = 0


@dataclass(frozen=True, slots=True)
class OpenPosition:
    """Intent: open ``side`` with a market order of ``quantity`` at the close ``reference``."""

    symbol: str
    side: int
    quantity: Decimal
    reference: Decimal
    reason: str = "signal"


@dataclass(frozen=True, slots=True)
class ClosePosition:
    """Intent: close the whole open position (``side`` is the position's) with a market order."""

    symbol: str
    side: int
    reason: str = "signal"


Intent = OpenPosition | ClosePosition


@dataclass(frozen=True, slots=True)
class Protection:
    """Protective levels of a position (R5): the stop that counts (``None``: none configured),
    why it is there (``"stop_loss"`` or ``"trailing_stop"``), and the take profit."""

    stop: Decimal | None
    stop_reason: str
    take_profit: Decimal | None


def _fraction(value: Decimal | None) -> Decimal | None:
    return value if value is not None and value > 0 else None


def _rules(view: MarketView) -> FillRules:
    return FillRules(
        taker_fee=view.taker_fee,
        maker_fee=view.taker_fee,
        slippage_bps=view.slippage_bps,
        quantity_step=view.quantity_step,
        min_quantity=view.min_quantity,
        min_notional=view.min_notional,
    )


def _wanted(risk: RiskRules, view: MarketView, price: Decimal, leverage: Decimal) -> Decimal:
    """R4: the wanted quantity at ``price`` and its caps."""
    per_unit = price * (_ONE / leverage + view.taker_fee)
    stop = _fraction(risk.stop_loss)
    if stop is not None:
        quantity = risk.risk_per_trade * view.equity / (price * stop)
    else:
        quantity = risk.risk_per_trade * view.equity / per_unit
    quantity = min(quantity, risk.max_position_fraction * view.equity * leverage / price)
    if view.spot:
        affordable = view.free_cash / (price * (_ONE + view.taker_fee + view.lock_buffer))
    else:
        affordable = view.free_cash / per_unit
    return max(_ZERO, min(quantity, affordable))


def entry_quantity(side: int, risk: RiskRules, view: MarketView) -> Decimal:
    """R4: the quantity of a new position of ``side``, or zero when none may be opened."""
    if view.equity <= 0 or view.free_cash <= 0 or view.price <= 0:
        return _ZERO
    leverage = _ONE if view.spot else max(_ONE, risk.leverage)
    rules = _rules(view)
    price, quantity = view.price, _ZERO
    # Two passes, as the kernel and the replay: slippage moves the price the size is read at.
    for _ in range(2):
        quantity = rules.round_quantity(_wanted(risk, view, price, leverage))
        price = rules.fill_price(view.price, side, quantity=quantity, bar_volume=_ONE)
    if not rules.order_allowed(quantity, price):
        return _ZERO
    return quantity


def on_decision(
    decision: Decision,
    position: PositionState | None,
    risk: RiskRules,
    view: MarketView,
    *,
    entries_allowed: bool = True,
) -> list[Intent]:
    """R1/R2 at the close of the decision's candle: the exit (or the close half of a reversal)
    first, then an entry. ``entries_allowed`` is false while the bot is paused."""
    entry_long, exit_long, entry_short, exit_short = decision.signal
    go_long = entry_long and not exit_long and not entry_short
    go_short = entry_short and not exit_short and not entry_long
    intents: list[Intent] = []
    if position is not None and (
        (position.side == LONG and (exit_long or go_short))
        or (position.side == SHORT and (exit_short or go_long))
    ):
        intents.append(ClosePosition(decision.symbol, position.side))
        position = None
    if position is not None or not entries_allowed:
        return intents  # R1: no pyramiding
    if view.open_positions >= risk.max_open_positions:
        return intents
    side = LONG if go_long else SHORT if go_short and not view.spot else 0
    if side:
        quantity = entry_quantity(side, risk, view)
        if quantity > 0:
            intents.append(OpenPosition(decision.symbol, side, quantity, view.price))
    return intents


def protection_for(position: PositionState, risk: RiskRules) -> Protection:
    """R5: the stop that counts now and the take profit, from the entry fill price."""
    stop, reason = stop_level(position, risk)
    take = _fraction(risk.take_profit)
    sign = Decimal(position.side)
    take_price = position.entry_price * (_ONE + sign * take) if take is not None else None
    return Protection(stop=stop, stop_reason=reason, take_profit=take_price)


def stop_level(position: PositionState, risk: RiskRules) -> tuple[Decimal | None, str]:
    """R5c: the tighter of the fixed stop and the trailing stop, with its reason."""
    sign = Decimal(position.side)
    fixed = _fraction(risk.stop_loss)
    stop = position.entry_price * (_ONE - sign * fixed) if fixed is not None else None
    trailing = _fraction(risk.trailing_stop)
    if trailing is None:
        return stop, "stop_loss"
    trail_price = position.best_price * (_ONE - sign * trailing)
    if stop is None:
        return trail_price, "trailing_stop"
    tighter = trail_price > stop if position.side == LONG else trail_price < stop
    return (trail_price, "trailing_stop") if tighter else (stop, "stop_loss")


def trail(position: PositionState, *, high: Decimal, low: Decimal) -> PositionState:
    """R5c: after a candle that did not stop the position out, its extreme moves the best price."""
    best = max(position.best_price, high) if position.side == LONG else min(position.best_price, low)
    return position if best == position.best_price else replace(position, best_price=best)


def stop_breached(side: int, price: Decimal, stop: Decimal | None) -> bool:
    """R8: whether ``price`` is at or through the adverse ``stop`` (below for longs)."""
    if stop is None:
        return False
    return price <= stop if side == LONG else price >= stop


def is_dust(
    quantity: Decimal, price: Decimal, *, step: Decimal, min_quantity: Decimal, min_notional: Decimal
) -> bool:
    """R9: a position the venue would not take an order for (below one step, the minimum
    quantity or the minimum order value)."""
    size = abs(quantity)
    return size == 0 or size < step or size < min_quantity or size * price < min_notional
