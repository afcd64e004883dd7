"""Metrics against an independent pandas implementation written here."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from cryptoorchestrator.backtest.engine import BacktestConfig, run_backtest
from cryptoorchestrator.backtest.kernel import BAR_DTYPE, EXIT_OPEN, EXIT_SIGNAL, TRADE_DTYPE
from cryptoorchestrator.backtest.metrics import (
    compute_metrics,
    drawdown_series,
    periods_per_year,
)
from cryptoorchestrator.core.errors import ValidationFailed

from ._bt_support import sma_cross, synthetic_candles


def pandas_oracle(equity: pd.Series, initial: float, periods: float) -> dict[str, float]:
    full = pd.concat([pd.Series([initial]), equity], ignore_index=True)
    r = full.pct_change().dropna()
    years = len(r) / periods
    cagr = (full.iloc[-1] / initial) ** (1 / years) - 1
    downside = np.sqrt((r.clip(upper=0) ** 2).mean()) * np.sqrt(periods)
    dd = full / full.cummax() - 1
    return {
        "annual_return": cagr,
        "volatility": r.std() * np.sqrt(periods),
        "sharpe": r.mean() / r.std() * np.sqrt(periods),
        "sortino": r.mean() * periods / downside,
        "max_drawdown": dd.min(),
        "calmar": cagr / abs(dd.min()),
        "total_return": full.iloc[-1] / initial - 1,
    }


def test_bt_periods_per_year_uses_365_days() -> None:
    assert periods_per_year("1d") == 365
    assert periods_per_year("1h") == 365 * 24
    assert periods_per_year("5m") == 365 * 24 * 12
    with pytest.raises(ValidationFailed):
        periods_per_year("0m")


@pytest.mark.parametrize("timeframe", ["5m", "1h", "1d"])
def test_bt_return_metrics_match_pandas(timeframe: str) -> None:
    candles = synthetic_candles(3_000, seed=3)
    entries, exits = sma_cross(candles["close"])
    config = BacktestConfig(timeframe=timeframe)
    result = run_backtest(candles, {"entry_long": entries, "exit_long": exits}, config)
    m = result.metrics()
    oracle = pandas_oracle(pd.Series(result.bars["equity"]), config.initial_cash, periods_per_year(timeframe))
    for name, expected in oracle.items():
        assert getattr(m, name) == pytest.approx(expected, rel=1e-9), name
    full = pd.Series(np.concatenate(([config.initial_cash], result.bars["equity"])))
    expected_dd = (full / full.cummax() - 1).to_numpy()[1:]
    np.testing.assert_allclose(
        drawdown_series(result.bars["equity"], config.initial_cash), expected_dd, rtol=1e-12
    )
    assert m.exposure == pytest.approx(float((result.bars["position"] != 0).mean()))
    assert 0 < m.exposure < 1


def test_bt_trade_metrics_on_known_trades() -> None:
    trades = np.zeros(5, dtype=TRADE_DTYPE)
    trades["entry_bar"] = [0, 10, 20, 30, 40]
    trades["exit_bar"] = [4, 12, 26, 31, 49]
    trades["side"] = [1, -1, 1, 1, -1]
    trades["pnl"] = [100.0, -50.0, 30.0, -10.0, 999.0]
    trades["exit_reason"] = [EXIT_SIGNAL] * 4 + [EXIT_OPEN]
    bars = np.zeros(50, dtype=BAR_DTYPE)
    bars["equity"] = 1_000.0
    bars["position"][[1, 2, 3, 11]] = 1.0
    m = compute_metrics(bars, trades, initial_cash=1_000.0, timeframe="1h")
    assert (m.total_trades, m.long_trades, m.short_trades, m.open_trades) == (4, 3, 1, 1)
    assert (m.wins, m.losses) == (2, 2)
    assert m.win_rate == 0.5
    assert m.profit_factor == pytest.approx(130.0 / 60.0)
    assert m.expectancy == pytest.approx(70.0 / 4)
    assert (m.average_win, m.average_loss) == (65.0, -30.0)
    assert (m.largest_win, m.largest_loss) == (100.0, -50.0)
    assert m.average_duration_bars == pytest.approx((4 + 2 + 6 + 1) / 4)
    assert m.average_duration_seconds == pytest.approx(m.average_duration_bars * 3600)
    assert m.exposure == pytest.approx(4 / 50)
    assert m.total_return == 0.0 and m.max_drawdown == 0.0
    assert math.isnan(m.sharpe)  # flat equity: zero volatility


def test_bt_no_trades_gives_nan_ratios() -> None:
    bars = np.zeros(3, dtype=BAR_DTYPE)
    bars["equity"] = [1.0, 1.1, 1.0]
    m = compute_metrics(bars, np.zeros(0, dtype=TRADE_DTYPE), initial_cash=1.0, timeframe="1d")
    assert m.total_trades == 0
    assert math.isnan(m.win_rate) and math.isnan(m.profit_factor)
    assert m.max_drawdown == pytest.approx(1.0 / 1.1 - 1)
