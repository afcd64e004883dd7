"""The event-driven replay: the reference the fast kernel is checked against.

:func:`run_replay` walks the candles one bar at a time in plain Python, the way the paper and
live runtimes do: at each bar's close it asks the strategy for its signal *computed from the
candles up to that bar only* (the strategy's vectorised ``signals`` on the prefix, last value
taken), queues the resulting market orders for the next bar's open (or fills them at this
close with ``fill_at="close"``), prices every fill with
:class:`cryptoorchestrator.simulator.fill_model.FillRules` in ``Decimal`` arithmetic and
reports it to the strategy's ``on_fill`` hook. Stops, take profits, trailing stops and
liquidation follow the kernel's rules R1-R7 (:mod:`cryptoorchestrator.backtest.kernel`) in the
same pessimistic order; each rule is cited where it is implemented.

There is no shared code with the kernel beyond the fill rules' specification: that is the point
(a "shadow-free" second implementation). Acceptance tests require both to give the same trades.

Money is ``Decimal`` here (architecture convention 2): candle floats become ``Decimal(str(x))``,
the shortest text that round-trips, and so do the config's fractions. The default context's
28 significant digits are used; results agree with the float64 kernel to about 1e-12 relative.

Cost: the prefix makes a run O(n^2) in the number of bars (a few milliseconds per thousand
bars and per bar for the built-ins); ``max_bars`` (default :data:`DEFAULT_MAX_BARS`) refuses
longer inputs instead of running for minutes. Not applied (as in the kernel): the strategies'
per-bar stop/take-profit price hints and ``custom_stop``; the config's percentages apply.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

from cryptoorchestrator.backtest import kernel
from cryptoorchestrator.backtest.engine import PRICE_COLUMNS, BacktestConfig
from cryptoorchestrator.core.errors import ValidationFailed
from cryptoorchestrator.simulator.fill_model import BUY, SELL, SLIPPAGE_FIXED, SLIPPAGE_VOLUME, FillRules
from cryptoorchestrator.strategies import base, loader

DEFAULT_MAX_BARS = 20_000
"""Longest input :func:`run_replay` accepts unless told otherwise (the replay is O(n^2))."""

_ZERO = Decimal(0)
_ONE = Decimal(1)


def to_decimal(value: float | int | str | Decimal) -> Decimal:
    """A float as the Decimal of its shortest round-tripping text (``0.1`` -> ``Decimal('0.1')``)."""
    return value if isinstance(value, Decimal) else Decimal(str(value))


@dataclass(frozen=True, slots=True)
class ReplayTrade:
    """One trade of the replay; fields mirror :data:`~cryptoorchestrator.backtest.kernel.TRADE_DTYPE`
    with Decimal money and the exit reason as its name (``"signal"``, ``"stop_loss"``, ...)."""

    entry_bar: int
    exit_bar: int
    side: int
    quantity: Decimal
    entry_price: Decimal
    exit_price: Decimal
    entry_fee: Decimal
    exit_fee: Decimal
    pnl: Decimal
    trade_return: Decimal
    exit_reason: str


@dataclass(frozen=True, slots=True)
class ReplayBar:
    """State at a bar's close: equity, free cash and the signed position quantity."""

    equity: Decimal
    cash: Decimal
    position: Decimal


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """Trades, one :class:`ReplayBar` per input bar and every fill reported to ``on_fill``."""

    trades: tuple[ReplayTrade, ...]
    bars: tuple[ReplayBar, ...]
    fills: tuple[base.FillEvent, ...]
    config: BacktestConfig

    @property
    def final_equity(self) -> Decimal:
        """Equity after the last bar (the open position marked at the last close)."""
        return self.bars[-1].equity if self.bars else to_decimal(self.config.initial_cash)

    def trades_array(self) -> np.ndarray:
        """The trades as :data:`~cryptoorchestrator.backtest.kernel.TRADE_DTYPE` records (floats)."""
        codes = {name: code for code, name in kernel.EXIT_REASONS.items()}
        out = np.empty(len(self.trades), dtype=kernel.TRADE_DTYPE)
        for row, trade in enumerate(self.trades):
            out[row] = (
                trade.entry_bar,
                trade.exit_bar,
                trade.side,
                float(trade.quantity),
                float(trade.entry_price),
                float(trade.exit_price),
                float(trade.entry_fee),
                float(trade.exit_fee),
                float(trade.pnl),
                float(trade.trade_return),
                codes[trade.exit_reason],
            )
        return out

    def bars_array(self) -> np.ndarray:
        """The bars as :data:`~cryptoorchestrator.backtest.kernel.BAR_DTYPE` records (floats)."""
        out = np.empty(len(self.bars), dtype=kernel.BAR_DTYPE)
        for row, bar in enumerate(self.bars):
            out[row] = (float(bar.equity), float(bar.cash), float(bar.position))
        return out


def fill_rules_for(config: BacktestConfig) -> FillRules:
    """The paper exchange's :class:`FillRules` carrying the costs and limits of ``config``."""
    return FillRules(
        maker_fee=to_decimal(config.maker_fee),
        taker_fee=to_decimal(config.taker_fee),
        slippage_model=SLIPPAGE_VOLUME if config.slippage == "volume" else SLIPPAGE_FIXED,
        slippage_bps=to_decimal(config.slippage_bps),
        impact_k_bps=to_decimal(config.impact_k_bps),
        impact_cap_bps=to_decimal(config.impact_cap_bps),
        quantity_step=to_decimal(config.quantity_step),
        min_quantity=to_decimal(config.min_quantity),
        min_notional=to_decimal(config.min_notional),
    )


@dataclass(frozen=True, slots=True)
class _Candle:
    index: int
    timestamp: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


@dataclass(slots=True)
class _Position:
    side: int
    quantity: Decimal
    entry_price: Decimal
    margin: Decimal
    entry_fee: Decimal
    entry_bar: int
    extreme: Decimal
    stop: Decimal | None  # None: no fixed stop
    take: Decimal | None  # None: no take profit
    liquidation: Decimal


def _reached(side: int, price: Decimal, level: Decimal | None) -> bool:
    """Whether ``price`` is at or beyond the adverse ``level`` (below for longs, above for shorts)."""
    if level is None:
        return False
    return price <= level if side == BUY else price >= level


@dataclass(slots=True)
class _Account:
    """Cash, the open position and the trades of one replay, in Decimal (rules R3-R7)."""

    config: BacktestConfig
    rules: FillRules
    strategy: loader.GuardedStrategy
    params: base.StrategyParams
    cash: Decimal
    position: _Position | None = None
    trades: list[ReplayTrade] = field(default_factory=list)
    fills: list[base.FillEvent] = field(default_factory=list)

    def _report_fill(self, bar: _Candle, side: int, price: Decimal, quantity: Decimal) -> None:
        event = base.FillEvent(
            bar_index=bar.index,
            timestamp=bar.timestamp,
            side="buy" if side == BUY else "sell",
            price=float(price),
            quantity=float(quantity),
        )
        self.fills.append(event)
        self.strategy.on_fill(event, self.params)

    # -- sizing and opening (R3, R4) --------------------------------------------------------

    def _wanted_quantity(self, cash: Decimal, price: Decimal) -> Decimal:
        """R4: the wanted quantity at ``price``, capped by what cash can pay for."""
        leverage = to_decimal(self.config.leverage)
        size = to_decimal(self.config.size)
        per_unit = price * (_ONE / leverage + self.rules.taker_fee)
        sizing = self.config.sizing
        if sizing == "fixed_quantity":
            quantity = size
        elif sizing == "fixed_cash":
            quantity = size * leverage / price
        elif sizing == "percent_equity":
            quantity = size * cash / per_unit  # flat when entering (R1), so equity == cash
        else:  # risk: lose ``size`` of equity when the stop is hit
            quantity = size * cash / (price * to_decimal(self.config.stop_loss or 0.0))
        return min(quantity, cash / per_unit)

    def open(self, bar: _Candle, side: int, reference: Decimal) -> None:
        """Open ``side`` with a market order at ``reference`` (fill-model rules 2-5)."""
        cash = self.cash
        if cash <= 0:
            return
        # Two passes, as in the kernel: slippage depends on the quantity and vice versa.
        price, quantity = reference, _ZERO
        for _ in range(2):
            quantity = self.rules.round_quantity(self._wanted_quantity(cash, price))
            price = self.rules.fill_price(reference, side, quantity=quantity, bar_volume=bar.volume)
        if not self.rules.order_allowed(quantity, price):
            return
        leverage = to_decimal(self.config.leverage)
        fee = self.rules.commission(quantity, price, taker=True)
        margin = quantity * price / leverage
        self.cash = cash - margin - fee
        self.position = self._new_position(side, quantity, price, margin, fee, bar.index)
        self._report_fill(bar, side, price, quantity)

    def _new_position(
        self, side: int, quantity: Decimal, price: Decimal, margin: Decimal, fee: Decimal, bar: int
    ) -> _Position:
        config = self.config
        sl = to_decimal(config.stop_loss) if config.stop_loss else None
        tp = to_decimal(config.take_profit) if config.take_profit else None
        leverage = to_decimal(config.leverage)
        mmr = to_decimal(config.maintenance_margin_rate)
        sign = Decimal(side)
        # Isolated margin: margin + side q (x - p) = mmr q x (the kernel's R3 liquidation price).
        liquidation = price * (_ONE - sign / leverage) / (_ONE - sign * mmr)
        return _Position(
            side=side,
            quantity=quantity,
            entry_price=price,
            margin=margin,
            entry_fee=fee,
            entry_bar=bar,
            extreme=price,  # R5c: the trailing stop starts at the entry fill price
            stop=price * (_ONE - sign * sl) if sl is not None else None,
            take=price * (_ONE + sign * tp) if tp is not None else None,
            liquidation=liquidation,
        )

    # -- closing (R5d, R6, R7) --------------------------------------------------------------

    def close(self, bar: _Candle, reference: Decimal, reason: str) -> None:
        """Close the position: market with slippage, limit (take profit) or liquidation."""
        position = self.position
        if position is None:
            return
        side, quantity = position.side, position.quantity
        if reason == "liquidation":
            price, fee = reference, _ZERO
            pnl = -position.margin - position.entry_fee  # the whole margin is lost, no cash back
        else:
            if reason == "take_profit":  # resting limit: maker fee, no slippage
                price, taker = reference, False
            else:
                price = self.rules.fill_price(reference, -side, quantity=quantity, bar_volume=bar.volume)
                taker = True
            fee = self.rules.commission(quantity, price, taker=taker)
            gross = side * quantity * (price - position.entry_price)
            self.cash += position.margin + gross - fee
            pnl = gross - position.entry_fee - fee
        self._record(position, bar.index, price, fee, pnl, reason)
        self.position = None
        self._report_fill(bar, -side, price, quantity)

    def _record(
        self, position: _Position, bar: int, price: Decimal, fee: Decimal, pnl: Decimal, reason: str
    ) -> None:
        self.trades.append(
            ReplayTrade(
                entry_bar=position.entry_bar,
                exit_bar=bar,
                side=position.side,
                quantity=position.quantity,
                entry_price=position.entry_price,
                exit_price=price,
                entry_fee=position.entry_fee,
                exit_fee=fee,
                pnl=pnl,
                trade_return=pnl / (position.margin + position.entry_fee),  # R7
                exit_reason=reason,
            )
        )

    def close_at_end(self, bar: _Candle) -> None:
        """R6: report the still-open position, marked at the last close, without exit fee."""
        position = self.position
        if position is None:
            return
        pnl = position.side * position.quantity * (bar.close - position.entry_price) - position.entry_fee
        self._record(position, bar.index, bar.close, _ZERO, pnl, "open")

    # -- exits inside a bar (R5) ------------------------------------------------------------

    def _stop_level(self, position: _Position) -> tuple[Decimal | None, str]:
        """The tighter of the fixed stop and the trailing stop (R5c), with its reason."""
        trailing = self.config.trailing_stop
        if not trailing:
            return position.stop, "stop_loss"
        trail = position.extreme * (_ONE - position.side * to_decimal(trailing))
        if position.stop is None:
            return trail, "trailing_stop"
        tighter = trail > position.stop if position.side == BUY else trail < position.stop
        return (trail, "trailing_stop") if tighter else (position.stop, "stop_loss")

    def gap_exit(self, bar: _Candle) -> None:
        """R5a: a level the open already passed fills at the open (liquidation at its price)."""
        position = self.position
        if position is None:
            return
        side = position.side
        stop, stop_reason = self._stop_level(position)
        if _reached(side, bar.open, position.liquidation):
            self.close(bar, position.liquidation, "liquidation")
        elif _reached(side, bar.open, stop):
            self.close(bar, bar.open, stop_reason)
        elif _reached(-side, bar.open, position.take):  # favourable side: the mirror test
            self.close(bar, bar.open, "take_profit")

    def intrabar_exit(self, bar: _Candle) -> None:
        """R5b/c: the adverse levels first (the nearer one first), then the take profit."""
        position = self.position
        if position is None:
            return
        side = position.side
        stop, stop_reason = self._stop_level(position)
        adverse, favourable = (bar.low, bar.high) if side == BUY else (bar.high, bar.low)
        liquidation = position.liquidation
        # The stop counts first when it lies at or before the liquidation price (nearer the open).
        stop_first = stop is not None and (stop >= liquidation if side == BUY else stop <= liquidation)
        if stop is not None and stop_first and _reached(side, adverse, stop):
            self.close(bar, stop, stop_reason)
        elif _reached(side, adverse, liquidation):
            self.close(bar, liquidation, "liquidation")
        elif position.take is not None and _reached(-side, favourable, position.take):
            self.close(bar, position.take, "take_profit")
        elif side == BUY:  # R5c: the bar's extreme moves the trail only after the bar is checked
            position.extreme = max(position.extreme, bar.high)
        else:
            position.extreme = min(position.extreme, bar.low)

    # -- signals (R1, R2) -------------------------------------------------------------------

    def act(self, bar: _Candle, reference: Decimal, signal: tuple[bool, bool, bool, bool]) -> None:
        """R1/R2: signal exits and reversals, then entries, as market orders at ``reference``."""
        entry_long, exit_long, entry_short, exit_short = signal
        go_long = entry_long and not exit_long and not entry_short
        go_short = entry_short and not exit_short and not entry_long
        position = self.position
        if position is not None and (
            (position.side == BUY and (exit_long or go_short))
            or (position.side == SELL and (exit_short or go_long))
        ):
            self.close(bar, reference, "signal")
        if self.position is None:
            if go_long:
                self.open(bar, BUY, reference)
            elif go_short:
                self.open(bar, SELL, reference)

    def mark(self, bar: _Candle) -> ReplayBar:
        """R3: equity = cash + margin + unrealised P&L at the close."""
        position = self.position
        if position is None:
            return ReplayBar(equity=self.cash, cash=self.cash, position=_ZERO)
        value = position.margin + position.side * position.quantity * (bar.close - position.entry_price)
        return ReplayBar(equity=self.cash + value, cash=self.cash, position=position.side * position.quantity)


def _prepared_candles(candles: pd.DataFrame, max_bars: int | None) -> pd.DataFrame:
    if not isinstance(candles, pd.DataFrame):
        raise ValidationFailed("candles: must be a DataFrame", details={"field": "candles"})
    missing = [name for name in ("timestamp", *PRICE_COLUMNS) if name not in candles.columns]
    if missing:
        raise ValidationFailed(f"candles: missing columns {missing}", details={"field": "candles"})
    if max_bars is not None and len(candles) > max_bars:
        raise ValidationFailed(
            f"candles: {len(candles)} bars exceed max_bars={max_bars} (the replay is O(n^2))",
            details={"field": "candles"},
        )
    prices = candles[list(PRICE_COLUMNS)].to_numpy(dtype=np.float64)
    if not np.isfinite(prices).all() or (prices[:, :4] <= 0).any():
        raise ValidationFailed("candles: prices must be finite and > 0", details={"field": "candles"})
    return candles.reset_index(drop=True)


def _candle_rows(candles: pd.DataFrame) -> list[_Candle]:
    stamps = candles["timestamp"].to_numpy(dtype=np.int64)
    columns = [candles[name].to_numpy(dtype=np.float64) for name in PRICE_COLUMNS]
    return [
        _Candle(int(index), int(stamps[index]), *(to_decimal(float(values[index])) for values in columns))
        for index in range(len(candles))
    ]


def _signal_at_close(
    strategy: loader.GuardedStrategy, candles: pd.DataFrame, params: base.StrategyParams, bar: int
) -> tuple[bool, bool, bool, bool]:
    """The strategy's signal for ``bar`` computed from candles ``0..bar`` only (no look-ahead)."""
    signals = strategy.signals(candles.iloc[: bar + 1], params)
    return (
        bool(signals.entry_long[bar]),
        bool(signals.exit_long[bar]),
        bool(signals.entry_short[bar]),
        bool(signals.exit_short[bar]),
    )


def run_replay(
    candles: pd.DataFrame,
    strategy: base.Strategy[Any] | loader.GuardedStrategy,
    *,
    params: Mapping[str, Any] | base.StrategyParams | None = None,
    config: BacktestConfig | None = None,
    max_bars: int | None = DEFAULT_MAX_BARS,
) -> ReplayResult:
    """Replay ``strategy`` over ``candles`` bar by bar (see the module docstring).

    ``candles`` is a DataFrame with ``timestamp``, ``open``, ``high``, ``low``, ``close`` and
    ``volume``, ascending; ``params`` the strategy's raw or validated parameters (None: its
    defaults); ``config`` the same :class:`BacktestConfig` the kernel takes. Raises
    ValidationFailed on bad input and StrategyError when the strategy's code fails.
    """
    config = config or BacktestConfig()
    frame = _prepared_candles(candles, max_bars)
    guarded = strategy if isinstance(strategy, loader.GuardedStrategy) else loader.guard(strategy)
    validated = guarded.validate_params(params)
    account = _Account(
        config=config,
        rules=fill_rules_for(config),
        strategy=guarded,
        params=validated,
        cash=to_decimal(config.initial_cash),
    )
    at_close = config.fill_at == "close"
    pending: tuple[bool, bool, bool, bool] | None = None  # orders queued for the next open (R1)
    bars: list[ReplayBar] = []
    rows = _candle_rows(frame)
    for bar in rows:
        account.gap_exit(bar)  # R5a, before anything else at the open
        if not at_close:
            if pending is not None:
                account.act(bar, bar.open, pending)
            account.intrabar_exit(bar)  # R5b: also the position just opened at this open
            pending = _signal_at_close(guarded, frame, validated, bar.index)
        else:
            account.intrabar_exit(bar)
            account.act(bar, bar.close, _signal_at_close(guarded, frame, validated, bar.index))
        bars.append(account.mark(bar))
    if rows:
        account.close_at_end(rows[-1])
    return ReplayResult(
        trades=tuple(account.trades), bars=tuple(bars), fills=tuple(account.fills), config=config
    )
