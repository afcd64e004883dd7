"""Multi-symbol portfolio backtests: several symbols trading out of one cash balance.

The simulation is a numba kernel (:func:`simulate_portfolio_nb`) over 2-D arrays (symbols x
bars). Each symbol follows the single-symbol kernel's rules R1-R7
(:mod:`cryptoorchestrator.backtest.kernel`) through the kernel's own per-position helpers, so
fills, stops, take profits, trailing stops and liquidation are the same code; only the cash is
shared and the entry size comes from the allocation rule.

Alignment (:func:`align_candles`): the symbols' candles are put on one timestamp index.

* ``how="inner"`` keeps only the timestamps every symbol has.
* ``how="ffill"`` keeps the union of timestamps. A symbol's missing bar is filled with its
  previous close as open, high, low and close, and zero volume, and is marked not tradable:
  nothing happens for that symbol on that bar (no fills, no stop checks, no signals; a signal
  queued for the next open is dropped when that bar is missing) but an open position is still
  marked at the carried close. Bars before a symbol's first candle carry its first open.

Order of events in a bar (fills at the next open, the default): for every symbol, gap exits
(R5a) and signal exits; then entries in symbol order, each sized against the equity marked at
this bar's opens; then intra-bar exits (R5b). With ``fill_at="close"`` the exits inside the bar
come first and signals act at the close. Exits before entries frees cash first, so the result
does not depend on which symbol's exit is processed first.

Allocation (``PortfolioConfig.allocation``); ``B`` is the entry's budget, commission included,
and the quantity is capped by free cash like the kernel's rule R4:

* ``"equal_weight"``: ``B = equity / max_positions``;
* ``"percent_equity"``: ``B = size * equity``;
* ``"fixed_cash"``: ``size`` quote units of margin per entry (the kernel's ``fixed_cash``).

At most ``max_positions`` positions are open at a time; entries beyond it are skipped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from numba import njit

from cryptoorchestrator.backtest import kernel
from cryptoorchestrator.backtest.engine import PRICE_COLUMNS, SIGNAL_COLUMNS, BacktestConfig
from cryptoorchestrator.core.errors import ValidationFailed
from cryptoorchestrator.simulator.fill_model import BUY, SELL, SLIPPAGE_FIXED, SLIPPAGE_VOLUME

Allocation = Literal["equal_weight", "percent_equity", "fixed_cash"]
_ALLOCATION_CODES = {"equal_weight": 0, "percent_equity": 1, "fixed_cash": 2}
_EQUAL, _PERCENT, _FIXED = 0, 1, 2


def _invalid(name: str, message: str) -> ValidationFailed:
    return ValidationFailed(f"{name}: {message}", details={"field": name})


@dataclass(frozen=True, slots=True, kw_only=True)
class PortfolioConfig:
    """Allocation of one shared capital; ``trading`` carries the rest (see module docstring).

    ``trading`` gives initial cash, fill timing, leverage, stops and costs; its ``sizing`` and
    ``size`` are not used (the allocation replaces them).
    """

    allocation: Allocation = "equal_weight"
    max_positions: int = 1
    size: float = 1.0
    trading: BacktestConfig = field(default_factory=BacktestConfig)

    def __post_init__(self) -> None:
        if self.allocation not in _ALLOCATION_CODES:
            raise _invalid("allocation", f"must be one of {sorted(_ALLOCATION_CODES)}")
        if isinstance(self.max_positions, bool) or not isinstance(self.max_positions, int):
            raise _invalid("max_positions", "must be an integer")
        if self.max_positions < 1:
            raise _invalid("max_positions", "must be >= 1")
        if not np.isfinite(self.size) or self.size <= 0:
            raise _invalid("size", "must be a finite number > 0")
        if self.allocation == "percent_equity" and self.size > 1:
            raise _invalid("size", "is a fraction of equity and must be <= 1")


@dataclass(frozen=True, slots=True)
class AlignedCandles:
    """Candles of several symbols on one index: 2-D float arrays (symbols x bars)."""

    symbols: tuple[str, ...]
    timestamps: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    tradable: np.ndarray  # bool: the symbol had a real candle at that timestamp


def align_candles(
    frames: Mapping[str, pd.DataFrame], *, how: Literal["inner", "ffill"] = "inner"
) -> AlignedCandles:
    """Put each symbol's candles (``timestamp`` + OHLCV columns) on a common index."""
    if not frames:
        raise _invalid("frames", "at least one symbol is required")
    if how not in ("inner", "ffill"):
        raise _invalid("how", "must be 'inner' or 'ffill'")
    indexed = {}
    for symbol, frame in frames.items():
        missing = [c for c in ("timestamp", *PRICE_COLUMNS) if c not in frame.columns]
        if missing:
            raise _invalid(symbol, f"missing columns {missing}")
        one = frame.drop_duplicates("timestamp").set_index("timestamp").sort_index()
        indexed[symbol] = one[list(PRICE_COLUMNS)].astype(np.float64)
    stamps = None
    for one in indexed.values():
        index = one.index
        stamps = (
            index
            if stamps is None
            else (stamps.intersection(index) if how == "inner" else stamps.union(index))
        )
    assert stamps is not None  # frames is not empty
    arrays: dict[str, list[np.ndarray]] = {name: [] for name in PRICE_COLUMNS}
    tradable = []
    for one in indexed.values():
        present = stamps.isin(one.index)
        frame = one.reindex(stamps)
        carried = frame["close"].ffill().fillna(frame["open"].bfill())
        for name in ("open", "high", "low", "close"):
            arrays[name].append(frame[name].fillna(carried).to_numpy())
        arrays["volume"].append(frame["volume"].fillna(0.0).to_numpy())
        tradable.append(present)
    return AlignedCandles(
        symbols=tuple(indexed),
        timestamps=np.asarray(stamps, dtype=np.int64),
        tradable=np.ascontiguousarray(np.vstack(tradable), dtype=np.bool_),
        **{name: np.ascontiguousarray(np.vstack(values)) for name, values in arrays.items()},
    )


@dataclass(frozen=True, slots=True)
class PortfolioResult:
    """Per-symbol trades (kernel :data:`~cryptoorchestrator.backtest.kernel.TRADE_DTYPE`), the
    portfolio's equity and cash per bar, and per symbol and bar the signed position quantity
    and the exposure (signed notional ``position * close``, quote units)."""

    symbols: tuple[str, ...]
    timestamps: np.ndarray
    trades: dict[str, np.ndarray]
    equity: np.ndarray
    cash: np.ndarray
    position: np.ndarray
    exposure: np.ndarray
    config: PortfolioConfig

    @property
    def final_equity(self) -> float:
        """Equity after the last bar (open positions marked at the last close)."""
        return float(self.equity[-1]) if len(self.equity) else self.config.trading.initial_cash


@njit(cache=True)
def _mark_nb(st: np.ndarray, prices: np.ndarray, cash: float) -> float:
    """Cash plus every open position's margin and unrealised P&L at ``prices``."""
    equity = cash
    for s in range(st.shape[0]):
        if st[s, kernel._SIDE] != 0.0:
            equity += st[s, kernel._MARGIN] + st[s, kernel._SIDE] * st[s, kernel._QTY] * (
                prices[s] - st[s, kernel._ENTRY_PRICE]
            )
    return equity


@njit(cache=True)
def _signal_exit_nb(
    st: np.ndarray, trades: np.ndarray, p: np.ndarray, bar: int, price: float, vol: float, sig: np.ndarray
) -> None:
    """R1/R2 exits: the exit signal of the open side, or a valid entry of the other side."""
    go_long = sig[0] and not sig[1] and not sig[2]
    go_short = sig[2] and not sig[3] and not sig[0]
    side = int(st[kernel._SIDE])
    if (side == BUY and (sig[1] or go_short)) or (side == SELL and (sig[3] or go_long)):
        kernel._close_nb(st, trades, p, bar, price, vol, kernel.EXIT_SIGNAL)


@njit(cache=True)
def _entry_side_nb(sig: np.ndarray) -> int:
    if sig[0] and not sig[1] and not sig[2]:
        return BUY
    if sig[2] and not sig[3] and not sig[0]:
        return SELL
    return 0


@njit(cache=True)
def _entries_nb(
    st: np.ndarray,
    trades: np.ndarray,
    p: np.ndarray,
    bar: int,
    prices: np.ndarray,
    volume: np.ndarray,
    sig: np.ndarray,
    live: np.ndarray,
    cash: float,
    allocation: tuple[int, int, float],
) -> float:
    """Open the wanted positions in symbol order, sized by the allocation; return the cash left."""
    mode, max_positions, size = allocation
    equity = _mark_nb(st, prices, cash)  # marked once: every entry of the bar sees the same equity
    open_count = 0
    for s in range(st.shape[0]):
        if st[s, kernel._SIDE] != 0.0:
            open_count += 1
    for s in range(st.shape[0]):
        side = _entry_side_nb(sig[s]) if live[s] else 0
        if side == 0 or st[s, kernel._SIDE] != 0.0 or open_count >= max_positions or cash <= 0.0:
            continue
        if mode == _FIXED:
            p[kernel._P_SIZING] = kernel.SIZE_FIXED_CASH
            p[kernel._P_SIZE] = size
        else:  # R4 percent sizing with size * cash equal to the budget (commission included)
            budget = equity / max_positions if mode == _EQUAL else size * equity
            p[kernel._P_SIZING] = kernel.SIZE_PERCENT_EQUITY
            p[kernel._P_SIZE] = budget / cash
        st[s, kernel._CASH] = cash
        kernel._open_nb(st[s], trades[s], p, bar, side, prices[s], volume[s])
        cash = st[s, kernel._CASH]
        if st[s, kernel._SIDE] != 0.0:
            open_count += 1
    return cash


@njit(cache=True)
def _exits_nb(
    st: np.ndarray,
    trades: np.ndarray,
    p: np.ndarray,
    bar: int,
    columns: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    sig: np.ndarray,
    live: np.ndarray,
    cash: float,
    phase: int,
) -> float:
    """Phase 0: gap exits (R5a) then signal exits at ``columns[0]``; phase 1: intra-bar (R5b)."""
    ref, high, low, vol, open_ = columns
    for s in range(st.shape[0]):
        if not live[s] or st[s, kernel._SIDE] == 0.0:
            continue
        st[s, kernel._CASH] = cash
        if phase == 0:
            if sig.shape[0] > 0:
                _signal_exit_nb(st[s], trades[s], p, bar, ref[s], vol[s], sig[s])
        elif phase == 1:
            kernel._intrabar_exit_nb(st[s], trades[s], p, bar, high[s], low[s], vol[s])
        else:
            kernel._gap_exit_nb(st[s], trades[s], p, bar, open_[s], vol[s])
        cash = st[s, kernel._CASH]
    return cash


_GAP, _SIGNAL, _INTRABAR = 2, 0, 1


@njit(cache=True)
def simulate_portfolio_nb(
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
    tradable: np.ndarray,
    signals: np.ndarray,
    fill_at_close: bool,
    initial_cash: float,
    p: np.ndarray,
    allocation: tuple[int, int, float],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Simulate all symbols on one cash balance (see the module docstring).

    Prices are (symbols, bars) float64, ``tradable`` (symbols, bars) bool, ``signals``
    (symbols, bars, 4) bool in the order entry_long, exit_long, entry_short, exit_short; ``p``
    the single-symbol kernel's parameter vector (its sizing slots are overwritten per entry).
    Returns ``(trades, trade_counts, equity, cash, position)``: trades (symbols, bars + 1)
    with ``trade_counts[s]`` valid rows for symbol ``s``.
    """
    n_sym, n = close.shape
    st = np.zeros((n_sym, kernel._STATE_SIZE), dtype=np.float64)
    trades = np.empty((n_sym, n + 1), dtype=kernel.TRADE_DTYPE)
    equity = np.empty(n, dtype=np.float64)
    cash_out = np.empty(n, dtype=np.float64)
    position = np.zeros((n_sym, n), dtype=np.float64)
    none = np.zeros((0, 4), dtype=np.bool_)
    cash = initial_cash
    for t in range(n):
        live = tradable[:, t]
        at_open = (open_[:, t], high[:, t], low[:, t], volume[:, t], open_[:, t])
        cash = _exits_nb(st, trades, p, t, at_open, none, live, cash, _GAP)
        if not fill_at_close:
            if t > 0:
                # R1: the previous bar's signals act at this open (dropped on a missing bar).
                sig = signals[:, t - 1, :]
                cash = _exits_nb(st, trades, p, t, at_open, sig, live, cash, _SIGNAL)
                cash = _entries_nb(st, trades, p, t, open_[:, t], volume[:, t], sig, live, cash, allocation)
            cash = _exits_nb(st, trades, p, t, at_open, none, live, cash, _INTRABAR)
        else:
            cash = _exits_nb(st, trades, p, t, at_open, none, live, cash, _INTRABAR)
            sig = signals[:, t, :]
            at_close = (close[:, t], high[:, t], low[:, t], volume[:, t], open_[:, t])
            cash = _exits_nb(st, trades, p, t, at_close, sig, live, cash, _SIGNAL)
            cash = _entries_nb(st, trades, p, t, close[:, t], volume[:, t], sig, live, cash, allocation)
        equity[t] = _mark_nb(st, close[:, t], cash)
        cash_out[t] = cash
        for s in range(n_sym):
            position[s, t] = st[s, kernel._SIDE] * st[s, kernel._QTY]
    counts = np.zeros(n_sym, dtype=np.int64)
    for s in range(n_sym):
        if st[s, kernel._SIDE] != 0.0 and n > 0:  # R6, per symbol
            row = st[s]
            pnl = row[kernel._SIDE] * row[kernel._QTY] * (close[s, n - 1] - row[kernel._ENTRY_PRICE])
            kernel._record_trade_nb(
                row, trades[s], n - 1, close[s, n - 1], 0.0, pnl - row[kernel._ENTRY_FEE], kernel.EXIT_OPEN
            )
        counts[s] = int(st[s, kernel._NTRADES])
    return trades, counts, equity, cash_out, position


def _param_vector(trading: BacktestConfig) -> np.ndarray:
    """The single-symbol kernel's parameter vector for ``trading`` (sizing slots set per entry)."""
    p = np.zeros(kernel._PARAM_SIZE, dtype=np.float64)
    p[kernel._P_LEVERAGE] = trading.leverage
    p[kernel._P_MMR] = trading.maintenance_margin_rate
    p[kernel._P_SL] = trading.stop_loss or 0.0
    p[kernel._P_TP] = trading.take_profit or 0.0
    p[kernel._P_TSL] = trading.trailing_stop or 0.0
    p[kernel._P_TAKER] = trading.taker_fee
    p[kernel._P_MAKER] = trading.maker_fee
    p[kernel._P_SLIP_MODEL] = SLIPPAGE_VOLUME if trading.slippage == "volume" else SLIPPAGE_FIXED
    p[kernel._P_SLIP_BPS] = trading.slippage_bps
    p[kernel._P_IMPACT_K] = trading.impact_k_bps
    p[kernel._P_IMPACT_CAP] = trading.impact_cap_bps
    p[kernel._P_STEP] = trading.quantity_step
    p[kernel._P_MIN_QTY] = trading.min_quantity
    p[kernel._P_MIN_NOTIONAL] = trading.min_notional
    return p


def _signal_cube(
    candles: AlignedCandles, signals: Mapping[str, Mapping[str, np.ndarray | Sequence[bool]]]
) -> np.ndarray:
    unknown = sorted(set(signals) - set(candles.symbols))
    if unknown:
        raise _invalid("signals", f"unknown symbols {unknown}")
    n = len(candles.timestamps)
    cube = np.zeros((len(candles.symbols), n, len(SIGNAL_COLUMNS)), dtype=np.bool_)
    for row, symbol in enumerate(candles.symbols):
        for column, name in enumerate(SIGNAL_COLUMNS):
            values = signals.get(symbol, {}).get(name)
            if values is None:
                continue
            array = np.asarray(values)
            if array.dtype != np.bool_ or array.shape != (n,):
                raise _invalid(f"signals.{symbol}.{name}", f"must be a boolean array of {n} values")
            cube[row, :, column] = array
    cube &= candles.tradable[:, :, None]  # no signal on a missing (forward-filled) bar
    return cube


def run_portfolio(
    candles: AlignedCandles,
    signals: Mapping[str, Mapping[str, np.ndarray | Sequence[bool]]],
    config: PortfolioConfig,
) -> PortfolioResult:
    """Backtest several symbols sharing one capital.

    ``signals`` maps a symbol to its boolean arrays (names as in
    :data:`~cryptoorchestrator.backtest.engine.SIGNAL_COLUMNS`, missing ones all false) on the
    aligned index of :func:`align_candles`. Raises ValidationFailed on bad input.
    """
    for name in ("open", "high", "low", "close"):
        values = getattr(candles, name)
        if not np.isfinite(values).all() or (values <= 0).any():
            raise _invalid("candles", f"{name} prices must be finite and > 0")
    cube = _signal_cube(candles, signals)
    trading = config.trading
    allocation = (_ALLOCATION_CODES[config.allocation], int(config.max_positions), float(config.size))
    trades, counts, equity, cash, position = simulate_portfolio_nb(
        candles.open,
        candles.high,
        candles.low,
        candles.close,
        np.ascontiguousarray(candles.volume, dtype=np.float64),
        candles.tradable,
        cube,
        trading.fill_at == "close",
        float(trading.initial_cash),
        _param_vector(trading),
        allocation,
    )
    per_symbol = {symbol: trades[row, : counts[row]].copy() for row, symbol in enumerate(candles.symbols)}
    return PortfolioResult(
        symbols=candles.symbols,
        timestamps=candles.timestamps,
        trades=per_symbol,
        equity=equity,
        cash=cash,
        position=position,
        exposure=position * candles.close,
        config=config,
    )
