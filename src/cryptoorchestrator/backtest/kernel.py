"""The fast single-symbol backtest kernel (numba, float64).

``simulate_nb`` walks the bars once and returns fixed-dtype records: one row per trade
(:data:`TRADE_DTYPE`) and one row per bar (:data:`BAR_DTYPE`). Prices, fees and slippage follow
:mod:`cryptoorchestrator.simulator.fill_model`, the rules shared with the paper exchange.

Rules (each cited where it is implemented):

R1 *Timing.* A signal at bar ``t`` is acted on at bar ``t + 1``'s open (``fill_at_close=False``,
   the default) or at bar ``t``'s close. One position at a time, no pyramiding: an entry signal
   while a position is open on the same side is ignored.
R2 *Signal conflicts.* An entry is ignored when the same bar also carries the exit signal of
   that side or the entry signal of the other side. A valid entry of the other side closes the
   open position first (reversal).
R3 *Accounting (isolated margin).* Opening ``q`` at price ``p`` with leverage ``L`` moves
   ``q * p / L`` (the margin) plus the taker commission out of cash; equity is
   ``cash + margin + side * q * (close - p)``. With ``L = 1`` a long is a plain spot purchase.
R4 *Sizing* (the position is sized at the fill price, slippage included, and capped so that
   margin plus commission never exceeds cash): ``SIZE_FIXED_QUANTITY`` (``size`` base units),
   ``SIZE_FIXED_CASH`` (``size`` quote units of margin, notional ``size * L``),
   ``SIZE_PERCENT_EQUITY`` (``size`` is the fraction of equity to commit, commission included;
   ``1.0`` = all in), ``SIZE_RISK`` (``size`` is the fraction of equity lost if the stop loss is
   hit: ``q = size * equity / (p * stop_loss)``). The quantity is then rounded down to the step
   and refused under the minimum quantity / notional (fill-model rules 4 and 5).
R5 *Exits inside a bar* use the bar's open, high and low, pessimistically, because the path
   inside a bar is unknown:
   a. At the open of a bar, a position held from an earlier bar whose liquidation, stop or
      take-profit level the open already passed exits at the open (gap); for liquidation, at
      the liquidation price (the exchange's insurance fund absorbs the rest).
   b. Then the adverse levels (stop loss, trailing stop, liquidation) are checked against the
      low (longs) or high (shorts) before the take profit: when both the stop and the take
      profit lie inside the bar's range the stop is assumed to have been hit first.
   c. The trailing stop trails the best price seen up to the previous bar (the entry fill price
      on the entry bar); the current bar's extreme only moves it after the bar is checked.
   d. Stops, trailing stops and signal exits are market orders: taker fee plus slippage.
      Take profits are resting limit orders: maker fee, no slippage, filled at the limit (or at
      a better open). Liquidation loses the whole margin (no exit fee, no cash back).
R6 *End of data.* A position still open after the last bar is reported as a trade with exit
   reason ``EXIT_OPEN``, marked at the last close, without an exit fee; cash is not changed.
R7 *Trade return* = ``pnl / (margin + entry fee)``: return on the capital the trade tied up.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from cryptoorchestrator.simulator.fill_model import (
    BUY,
    SELL,
    commission_nb,
    fill_price_nb,
    order_allowed_nb,
    round_quantity_nb,
    slippage_bps_nb,
)

TRADE_DTYPE = np.dtype(
    [
        ("entry_bar", np.int64),
        ("exit_bar", np.int64),
        ("side", np.int8),
        ("quantity", np.float64),
        ("entry_price", np.float64),
        ("exit_price", np.float64),
        ("entry_fee", np.float64),
        ("exit_fee", np.float64),
        ("pnl", np.float64),
        ("trade_return", np.float64),
        ("exit_reason", np.int8),
    ]
)
"""One closed (or still open, see R6) trade; ``side`` is 1 long, -1 short."""

BAR_DTYPE = np.dtype([("equity", np.float64), ("cash", np.float64), ("position", np.float64)])
"""Per-bar state at the close: equity, free cash and signed position quantity."""

EXIT_SIGNAL = 0
EXIT_STOP_LOSS = 1
EXIT_TAKE_PROFIT = 2
EXIT_TRAILING_STOP = 3
EXIT_LIQUIDATION = 4
EXIT_OPEN = 5
EXIT_REASONS = {
    EXIT_SIGNAL: "signal",
    EXIT_STOP_LOSS: "stop_loss",
    EXIT_TAKE_PROFIT: "take_profit",
    EXIT_TRAILING_STOP: "trailing_stop",
    EXIT_LIQUIDATION: "liquidation",
    EXIT_OPEN: "open",
}
"""Exit reason codes of :data:`TRADE_DTYPE` and their names."""

SIZE_FIXED_QUANTITY = 0
SIZE_FIXED_CASH = 1
SIZE_PERCENT_EQUITY = 2
SIZE_RISK = 3

# Kernel state, one float64 array so that the helpers can update it in place.
_CASH, _SIDE, _QTY, _ENTRY_PRICE, _MARGIN, _ENTRY_FEE, _ENTRY_BAR = 0, 1, 2, 3, 4, 5, 6
_EXTREME, _STOP, _TAKE, _LIQ, _NTRADES = 7, 8, 9, 10, 11
_STATE_SIZE = 12

# Parameters, packed by simulate_nb into one float64 array for the helpers.
_P_SIZING, _P_SIZE, _P_LEVERAGE, _P_MMR, _P_SL, _P_TP, _P_TSL = 0, 1, 2, 3, 4, 5, 6
_P_TAKER, _P_MAKER, _P_SLIP_MODEL, _P_SLIP_BPS, _P_IMPACT_K, _P_IMPACT_CAP = 7, 8, 9, 10, 11, 12
_P_STEP, _P_MIN_QTY, _P_MIN_NOTIONAL = 13, 14, 15
_PARAM_SIZE = 16


@njit(cache=True)
def _slippage_nb(p: np.ndarray, quantity: float, bar_volume: float) -> float:
    return slippage_bps_nb(
        quantity, bar_volume, int(p[_P_SLIP_MODEL]), p[_P_SLIP_BPS], p[_P_IMPACT_K], p[_P_IMPACT_CAP]
    )


@njit(cache=True)
def _sized_quantity_nb(p: np.ndarray, cash: float, price: float) -> float:
    """R4: the wanted quantity at ``price``, capped by what cash can pay for."""
    lev = p[_P_LEVERAGE]
    per_unit = price * (1.0 / lev + p[_P_TAKER])
    mode = int(p[_P_SIZING])
    if mode == SIZE_FIXED_QUANTITY:
        qty = p[_P_SIZE]
    elif mode == SIZE_FIXED_CASH:
        qty = p[_P_SIZE] * lev / price
    elif mode == SIZE_PERCENT_EQUITY:
        qty = p[_P_SIZE] * cash / per_unit  # flat when entering (R1), so equity == cash
    else:
        qty = p[_P_SIZE] * cash / (price * p[_P_SL])
    return float(min(qty, cash / per_unit))


@njit(cache=True)
def _record_trade_nb(
    st: np.ndarray,
    trades: np.ndarray,
    bar: int,
    price: float,
    fee: float,
    pnl: float,
    reason: int,
) -> None:
    k = int(st[_NTRADES])
    trades["entry_bar"][k] = int(st[_ENTRY_BAR])
    trades["exit_bar"][k] = bar
    trades["side"][k] = int(st[_SIDE])
    trades["quantity"][k] = st[_QTY]
    trades["entry_price"][k] = st[_ENTRY_PRICE]
    trades["exit_price"][k] = price
    trades["entry_fee"][k] = st[_ENTRY_FEE]
    trades["exit_fee"][k] = fee
    trades["pnl"][k] = pnl
    trades["trade_return"][k] = pnl / (st[_MARGIN] + st[_ENTRY_FEE])  # R7
    trades["exit_reason"][k] = reason
    st[_NTRADES] = k + 1


@njit(cache=True)
def _open_nb(
    st: np.ndarray, trades: np.ndarray, p: np.ndarray, bar: int, side: int, ref: float, bar_volume: float
) -> None:
    """Open a position of ``side`` with a market order at reference price ``ref`` (R3, R4)."""
    cash = st[_CASH]
    if cash <= 0.0:
        return
    # Two passes: slippage depends on the quantity, the quantity on the fill price. Each pass
    # moves the price against us less or equally, so the final order stays affordable.
    price = ref
    qty = 0.0
    for _ in range(2):
        qty = round_quantity_nb(_sized_quantity_nb(p, cash, price), p[_P_STEP])
        price = fill_price_nb(ref, side, _slippage_nb(p, qty, bar_volume))
    if not order_allowed_nb(qty, price, p[_P_MIN_QTY], p[_P_MIN_NOTIONAL]):
        return
    lev = p[_P_LEVERAGE]
    fee = commission_nb(qty, price, p[_P_TAKER])
    margin = qty * price / lev
    st[_CASH] = cash - margin - fee
    st[_SIDE] = side
    st[_QTY] = qty
    st[_ENTRY_PRICE] = price
    st[_MARGIN] = margin
    st[_ENTRY_FEE] = fee
    st[_ENTRY_BAR] = bar
    st[_EXTREME] = price
    sl, tp, mmr = p[_P_SL], p[_P_TP], p[_P_MMR]
    if side == BUY:
        st[_STOP] = price * (1.0 - sl) if sl > 0.0 else -np.inf
        st[_TAKE] = price * (1.0 + tp) if tp > 0.0 else np.inf
        # Isolated margin: margin + q (x - p) = mmr q x  =>  x = p (1 - 1/L) / (1 - mmr).
        st[_LIQ] = price * (1.0 - 1.0 / lev) / (1.0 - mmr)
    else:
        st[_STOP] = price * (1.0 + sl) if sl > 0.0 else np.inf
        st[_TAKE] = price * (1.0 - tp) if tp > 0.0 else -np.inf
        # margin + q (p - x) = mmr q x  =>  x = p (1 + 1/L) / (1 + mmr).
        st[_LIQ] = price * (1.0 + 1.0 / lev) / (1.0 + mmr)


@njit(cache=True)
def _close_nb(
    st: np.ndarray, trades: np.ndarray, p: np.ndarray, bar: int, ref: float, bar_volume: float, reason: int
) -> None:
    """Close the open position (R5d): market at ``ref`` with slippage, limit or liquidation."""
    side = int(st[_SIDE])
    qty = st[_QTY]
    if reason == EXIT_LIQUIDATION:
        price, fee = ref, 0.0
        pnl = -st[_MARGIN] - st[_ENTRY_FEE]
    else:
        if reason == EXIT_TAKE_PROFIT:
            price, rate = ref, p[_P_MAKER]
        else:
            price = fill_price_nb(ref, -side, _slippage_nb(p, qty, bar_volume))
            rate = p[_P_TAKER]
        fee = commission_nb(qty, price, rate)
        gross = side * qty * (price - st[_ENTRY_PRICE])
        st[_CASH] += st[_MARGIN] + gross - fee
        pnl = gross - st[_ENTRY_FEE] - fee
    _record_trade_nb(st, trades, bar, price, fee, pnl, reason)
    st[_SIDE] = 0.0
    st[_QTY] = 0.0
    st[_MARGIN] = 0.0


@njit(cache=True)
def _stop_level_nb(st: np.ndarray, p: np.ndarray) -> tuple[float, int]:
    """The tighter of the fixed stop and the trailing stop (R5c), with its exit reason."""
    side = int(st[_SIDE])
    stop = st[_STOP]
    tsl = p[_P_TSL]
    if tsl <= 0.0:
        return stop, EXIT_STOP_LOSS
    if side == BUY:
        trail = st[_EXTREME] * (1.0 - tsl)
        return (trail, EXIT_TRAILING_STOP) if trail > stop else (stop, EXIT_STOP_LOSS)
    trail = st[_EXTREME] * (1.0 + tsl)
    return (trail, EXIT_TRAILING_STOP) if trail < stop else (stop, EXIT_STOP_LOSS)


@njit(cache=True)
def _gap_exit_nb(st: np.ndarray, trades: np.ndarray, p: np.ndarray, bar: int, op: float, vol: float) -> None:
    """R5a: a level already passed at the open fills at the open (liquidation at its price)."""
    side = int(st[_SIDE])
    stop, stop_reason = _stop_level_nb(st, p)
    s = float(side)  # signed comparisons: for shorts every inequality flips
    if s * op <= s * st[_LIQ]:
        _close_nb(st, trades, p, bar, st[_LIQ], vol, EXIT_LIQUIDATION)
    elif s * op <= s * stop:
        _close_nb(st, trades, p, bar, op, vol, stop_reason)
    elif s * op >= s * st[_TAKE]:
        _close_nb(st, trades, p, bar, op, vol, EXIT_TAKE_PROFIT)


@njit(cache=True)
def _intrabar_exit_nb(
    st: np.ndarray, trades: np.ndarray, p: np.ndarray, bar: int, hi: float, lo: float, vol: float
) -> None:
    """R5b/c: adverse levels first (the one nearer the open first), then take profit."""
    side = int(st[_SIDE])
    stop, stop_reason = _stop_level_nb(st, p)
    s = float(side)
    adverse = lo if side == BUY else hi
    favourable = hi if side == BUY else lo
    liq = st[_LIQ]
    if s * stop >= s * liq and s * adverse <= s * stop:
        _close_nb(st, trades, p, bar, stop, vol, stop_reason)
    elif s * adverse <= s * liq:
        _close_nb(st, trades, p, bar, liq, vol, EXIT_LIQUIDATION)
    elif s * favourable >= s * st[_TAKE]:
        _close_nb(st, trades, p, bar, st[_TAKE], vol, EXIT_TAKE_PROFIT)
    elif side == BUY:
        st[_EXTREME] = max(st[_EXTREME], hi)
    else:
        st[_EXTREME] = min(st[_EXTREME], lo)


@njit(cache=True)
def _act_on_signals_nb(
    st: np.ndarray,
    trades: np.ndarray,
    p: np.ndarray,
    bar: int,
    price: float,
    vol: float,
    signals: tuple[bool, bool, bool, bool],
) -> None:
    """R1/R2: signal exits (and reversals), then entries, as market orders at ``price``."""
    entry_long, exit_long, entry_short, exit_short = signals
    go_long = entry_long and not exit_long and not entry_short
    go_short = entry_short and not exit_short and not entry_long
    side = int(st[_SIDE])
    if (side == BUY and (exit_long or go_short)) or (side == SELL and (exit_short or go_long)):
        _close_nb(st, trades, p, bar, price, vol, EXIT_SIGNAL)
    if int(st[_SIDE]) == 0:
        if go_long:
            _open_nb(st, trades, p, bar, BUY, price, vol)
        elif go_short:
            _open_nb(st, trades, p, bar, SELL, price, vol)


@njit(cache=True)
def simulate_nb(
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
    entry_long: np.ndarray,
    exit_long: np.ndarray,
    entry_short: np.ndarray,
    exit_short: np.ndarray,
    fill_at_close: bool,
    initial_cash: float,
    sizing_mode: int,
    size: float,
    leverage: float,
    maintenance_margin_rate: float,
    stop_loss: float,
    take_profit: float,
    trailing_stop: float,
    taker_fee: float,
    maker_fee: float,
    slippage_model: int,
    slippage_bps: float,
    impact_k_bps: float,
    impact_cap_bps: float,
    quantity_step: float,
    min_quantity: float,
    min_notional: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Simulate one symbol bar by bar; return ``(trades, bars)`` records (see module rules).

    Arrays are float64 (prices, volume) and bool (signals), all of one length. ``stop_loss``,
    ``take_profit`` and ``trailing_stop`` are fractions of the entry price; 0 turns them off.
    Validation is the caller's job (:func:`cryptoorchestrator.backtest.engine.run_backtest`).
    """
    n = close.shape[0]
    p = np.empty(_PARAM_SIZE, dtype=np.float64)
    p[_P_SIZING], p[_P_SIZE], p[_P_LEVERAGE], p[_P_MMR] = sizing_mode, size, leverage, maintenance_margin_rate
    p[_P_SL], p[_P_TP], p[_P_TSL] = stop_loss, take_profit, trailing_stop
    p[_P_TAKER], p[_P_MAKER], p[_P_SLIP_MODEL], p[_P_SLIP_BPS] = (
        taker_fee,
        maker_fee,
        slippage_model,
        slippage_bps,
    )
    p[_P_IMPACT_K], p[_P_IMPACT_CAP] = impact_k_bps, impact_cap_bps
    p[_P_STEP], p[_P_MIN_QTY], p[_P_MIN_NOTIONAL] = quantity_step, min_quantity, min_notional

    st = np.zeros(_STATE_SIZE, dtype=np.float64)
    st[_CASH] = initial_cash
    # Every trade has its own entry and there is at most one entry per bar: n rows suffice.
    trades = np.empty(n + 1, dtype=TRADE_DTYPE)
    bars = np.empty(n, dtype=BAR_DTYPE)

    for t in range(n):
        if not fill_at_close:
            if st[_SIDE] != 0.0:
                _gap_exit_nb(st, trades, p, t, open_[t], volume[t])
            if t > 0:
                sig = (entry_long[t - 1], exit_long[t - 1], entry_short[t - 1], exit_short[t - 1])
                _act_on_signals_nb(st, trades, p, t, open_[t], volume[t], sig)
            if st[_SIDE] != 0.0:
                _intrabar_exit_nb(st, trades, p, t, high[t], low[t], volume[t])
        else:
            if st[_SIDE] != 0.0:
                _gap_exit_nb(st, trades, p, t, open_[t], volume[t])
            if st[_SIDE] != 0.0:
                _intrabar_exit_nb(st, trades, p, t, high[t], low[t], volume[t])
            sig = (entry_long[t], exit_long[t], entry_short[t], exit_short[t])
            _act_on_signals_nb(st, trades, p, t, close[t], volume[t], sig)

        position_value = st[_MARGIN] + st[_SIDE] * st[_QTY] * (close[t] - st[_ENTRY_PRICE])
        bars["equity"][t] = st[_CASH] + position_value
        bars["cash"][t] = st[_CASH]
        bars["position"][t] = st[_SIDE] * st[_QTY]

    if st[_SIDE] != 0.0 and n > 0:  # R6: report the open trade, marked at the last close
        side = st[_SIDE]
        last = close[n - 1]
        pnl = side * st[_QTY] * (last - st[_ENTRY_PRICE]) - st[_ENTRY_FEE]
        _record_trade_nb(st, trades, n - 1, last, 0.0, pnl, EXIT_OPEN)
    return trades[: int(st[_NTRADES])].copy(), bars
