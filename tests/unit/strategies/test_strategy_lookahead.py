"""The look-ahead checker: catches a cheating strategy, passes every built-in."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
from pydantic import Field

from cryptoorchestrator.strategies import base, registry
from cryptoorchestrator.strategies.lookahead import check_lookahead, prefix_ends


class PeekParams(base.StrategyParams):
    shift: int = Field(default=-1, ge=-5, le=5)


class Peeking(base.Strategy[PeekParams]):
    """Cheats: buys when the *next* close is higher (close.shift(-1))."""

    name: ClassVar[str] = "peeking"
    description: ClassVar[str] = "uses tomorrow's close"
    params_model = PeekParams

    def signals(self, candles: pd.DataFrame, params: PeekParams) -> base.Signals:
        close = candles["close"]
        other = close.shift(params.shift)
        up = (other > close).to_numpy(dtype=bool)
        down = (other < close).to_numpy(dtype=bool)
        return base.Signals.long_only(up, down)


class CenteredMean(base.Strategy[base.StrategyParams]):
    """Cheats subtly: a centred rolling mean as a stop hint (uses bars after t)."""

    name: ClassVar[str] = "centered"
    description: ClassVar[str] = "centred window"

    def signals(self, candles: pd.DataFrame, params: base.StrategyParams) -> base.Signals:
        length = len(candles)
        stop = candles["low"].rolling(5, center=True).mean().to_numpy()
        return base.Signals.long_only(np.zeros(length, bool), np.zeros(length, bool), stop_loss=stop)


def test_detects_close_shift_minus_one(candles: pd.DataFrame) -> None:
    frame = candles.iloc[:400]
    report = check_lookahead(Peeking(), frame, step=20, tail=3)
    assert not report.ok
    assert set(report.signals) <= {"entry_long", "exit_long"} and report.signals
    # A shift of -1 can only change the last bar of each prefix.
    assert all(d.bar == d.prefix_end for d in report.differences)
    assert set(report.bars) <= set(report.prefix_ends) and len(report.bars) > 5
    first = report.differences[0]
    assert first.timestamp == int(frame["timestamp"].iloc[first.bar])
    assert first.full_value != first.truncated_value
    assert "change when later data is removed" in report.summary()


def test_detects_look_ahead_in_hints(candles: pd.DataFrame) -> None:
    report = check_lookahead(CenteredMean(), candles.iloc[:300], step=30, tail=2)
    assert report.signals == ["stop_loss"]


def test_honest_shift_passes(candles: pd.DataFrame) -> None:
    report = check_lookahead(Peeking(), candles.iloc[:300], {"shift": 1}, step=10)
    assert report.ok and report.differences == ()
    assert "no look-ahead" in report.summary()


@pytest.mark.parametrize("name", sorted(registry.default_registry().names()))
def test_every_builtin_passes(name: str, candles: pd.DataFrame) -> None:
    strategy = registry.get(name)()
    report = check_lookahead(strategy, candles.iloc[:800], step=20, tail=5)
    assert report.ok, report.summary()
    assert len(report.prefix_ends) >= 40


@pytest.mark.parametrize("name", ["sma_cross", "grid", "donchian_breakout", "bollinger_reversion"])
def test_builtins_with_short_side_pass(name: str, candles: pd.DataFrame) -> None:
    strategy = registry.get(name)()
    assert check_lookahead(strategy, candles.iloc[:600], {"allow_short": True}, step=15).ok


def test_dca_with_take_profit_passes(candles: pd.DataFrame) -> None:
    strategy = registry.get("dca")()
    report = check_lookahead(strategy, candles.iloc[:600], {"interval": 7, "take_profit_pct": 2.0}, step=11)
    assert report.ok, report.summary()


def test_prefix_ends_sample_every_step_and_the_tail() -> None:
    assert prefix_ends(20, step=5, tail=3, min_bars=2) == [1, 6, 11, 16, 17, 18]
    assert prefix_ends(3, step=5, tail=10, min_bars=1) == [0, 1]
