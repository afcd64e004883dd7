"""The event-driven replay: exact Decimal fills, the on_fill hook, no look-ahead, validation."""

from __future__ import annotations

from decimal import Decimal
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

from cryptoorchestrator.backtest.engine import BacktestConfig, run_backtest
from cryptoorchestrator.backtest.replay import run_replay, to_decimal
from cryptoorchestrator.core.errors import StrategyError, ValidationFailed
from cryptoorchestrator.strategies import base


class Scripted(base.Strategy[base.StrategyParams]):
    """Enters long at bar 1, exits at bar 3 (chosen by bar index); records its fills."""

    name: ClassVar[str] = "scripted"
    description: ClassVar[str] = "test strategy"

    def __init__(self) -> None:
        self.fills: list[base.FillEvent] = []

    def signals(self, candles: pd.DataFrame, params: base.StrategyParams) -> base.Signals:
        index = np.arange(len(candles))
        return base.Signals.long_only(index == 1, index == 3)

    def on_fill(self, fill: base.FillEvent, params: base.StrategyParams) -> None:
        self.fills.append(fill)


class PeeksAhead(base.Strategy[base.StrategyParams]):
    """Cheats: buys when the *next* close is higher (needs the future)."""

    name: ClassVar[str] = "peeks_ahead"
    description: ClassVar[str] = "look-ahead"

    def signals(self, candles: pd.DataFrame, params: base.StrategyParams) -> base.Signals:
        close = candles["close"].to_numpy()
        rising = np.zeros(len(close), dtype=bool)
        rising[:-1] = close[1:] > close[:-1]
        return base.Signals.long_only(rising, ~rising)


class Broken(base.Strategy[base.StrategyParams]):
    name: ClassVar[str] = "broken"
    description: ClassVar[str] = "raises"

    def signals(self, candles: pd.DataFrame, params: base.StrategyParams) -> base.Signals:
        raise RuntimeError("boom")


def candles(closes: list[float]) -> pd.DataFrame:
    close = np.asarray(closes)
    open_ = np.concatenate(([close[0]], close[:-1]))
    return pd.DataFrame(
        {
            "timestamp": 1000 * np.arange(len(close), dtype=np.int64),
            "open": open_,
            "high": np.maximum(open_, close) + 0.5,
            "low": np.minimum(open_, close) - 0.5,
            "close": close,
            "volume": np.full(len(close), 100.0),
        }
    )


def test_a_round_trip_is_priced_exactly_in_decimal() -> None:
    strategy = Scripted()
    config = BacktestConfig(initial_cash=1000.0, taker_fee=0.001, slippage_bps=5.0)
    result = run_replay(candles([100.0, 101.0, 102.0, 103.0, 104.0, 105.0]), strategy, config=config)
    (trade,) = result.trades
    entry = Decimal("101") * Decimal("1.0005")  # bar 2 opens at bar 1's close, +5 bp
    quantity = Decimal(1000) / (entry * Decimal("1.001"))
    exit_ = Decimal("103") * Decimal("0.9995")  # signal at bar 3, sold at bar 4's open, -5 bp
    assert (trade.entry_bar, trade.exit_bar, trade.exit_reason) == (2, 4, "signal")
    assert trade.entry_price == entry and trade.quantity == quantity and trade.exit_price == exit_
    assert trade.exit_fee == quantity * exit_ * Decimal("0.001")
    assert trade.pnl == quantity * (exit_ - entry) - trade.entry_fee - trade.exit_fee
    assert abs(result.final_equity - (Decimal(1000) + trade.pnl)) < Decimal("1e-20")  # 28 digits
    assert [(f.bar_index, f.side) for f in strategy.fills] == [(2, "buy"), (4, "sell")]
    assert strategy.fills == list(result.fills)
    assert strategy.fills[0].price == float(entry) and strategy.fills[1].timestamp == 4000


def test_fills_at_the_close_match_the_kernel() -> None:
    frame = candles([100.0, 99.0, 101.0, 104.0, 103.0, 102.0, 106.0])
    config = BacktestConfig(fill_at="close", stop_loss=0.01)
    result = run_replay(frame, Scripted(), config=config)
    signals = Scripted().signals(frame, base.StrategyParams())
    kernel = run_backtest(frame, {"entry_long": signals.entry_long, "exit_long": signals.exit_long}, config)
    assert result.trades_array()["exit_bar"].tolist() == kernel.trades["exit_bar"].tolist() == [3]
    np.testing.assert_allclose(result.bars_array()["equity"], kernel.bars["equity"], rtol=1e-12)


def test_the_replay_does_not_see_the_future() -> None:
    frame = candles([100.0 + 3.0 * np.sin(i / 2.0) for i in range(60)])
    signals = PeeksAhead().signals(frame, base.StrategyParams())
    cheating = run_backtest(
        frame, {"entry_long": signals.entry_long, "exit_long": signals.exit_long}, BacktestConfig()
    )
    honest = run_replay(frame, PeeksAhead())
    # On the prefix the last bar never has a next close, so the replay's signal is always off.
    assert len(cheating.trades) > 0
    assert honest.trades == () and honest.final_equity == Decimal(10_000)


def test_invalid_input_and_strategy_errors() -> None:
    frame = candles([100.0, 101.0, 102.0])
    with pytest.raises(ValidationFailed):
        run_replay(frame.drop(columns=["timestamp"]), Scripted())
    with pytest.raises(ValidationFailed):
        run_replay(frame, Scripted(), max_bars=2)
    with pytest.raises(StrategyError, match="boom"):
        run_replay(frame, Broken())
    assert to_decimal(0.1) == Decimal("0.1") and to_decimal(Decimal("2")) == Decimal(2)
