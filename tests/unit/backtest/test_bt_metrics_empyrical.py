"""The metric formulas against an independent library (empyrical-reloaded, test-only) on the
same bar returns: Sharpe, Sortino, volatility, annual return, max drawdown, Calmar."""

from __future__ import annotations

import empyrical
import numpy as np
import pandas as pd
import pytest

from cryptoorchestrator.backtest import kernel
from cryptoorchestrator.backtest.engine import BacktestConfig, run_backtest
from cryptoorchestrator.backtest.metrics import bar_returns, periods_per_year


def _candles(count: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0.0002, 0.01, count)))
    open_ = np.concatenate([[close[0]], close[:-1]])
    spread = np.abs(rng.normal(0, 0.004, count)) * close
    return pd.DataFrame(
        {
            "timestamp": np.arange(count, dtype=np.int64) * 3_600_000,
            "open": open_,
            "high": np.maximum(open_, close) + spread,
            "low": np.minimum(open_, close) - spread,
            "close": close,
            "volume": rng.uniform(10, 100, count),
        }
    )


def _signals(close: np.ndarray, fast: int = 10, slow: int = 30) -> dict[str, np.ndarray]:
    fast_ma = pd.Series(close).rolling(fast).mean().to_numpy()
    slow_ma = pd.Series(close).rolling(slow).mean().to_numpy()
    above = fast_ma > slow_ma
    before = np.concatenate([[False], above[:-1]])
    valid = ~np.isnan(slow_ma) & ~np.isnan(np.concatenate([[np.nan], slow_ma[:-1]]))
    return {
        "entry_long": above & ~before & valid,
        "exit_long": ~above & before & valid,
        "entry_short": np.zeros(len(close), dtype=bool),
        "exit_short": np.zeros(len(close), dtype=bool),
    }


@pytest.mark.parametrize(("seed", "timeframe"), [(1, "1h"), (2, "1h"), (3, "1d")])
def test_metrics_agree_with_empyrical(seed, timeframe):
    candles = _candles(3000, seed)
    config = BacktestConfig(timeframe=timeframe)
    result = run_backtest(candles, _signals(candles["close"].to_numpy()), config)
    metrics = result.metrics()
    returns = pd.Series(bar_returns(result.bars["equity"], config.initial_cash))
    periods = periods_per_year(timeframe)
    oracle = {
        "sharpe": empyrical.sharpe_ratio(returns, annualization=periods),
        "sortino": empyrical.sortino_ratio(returns, annualization=periods),
        "volatility": empyrical.annual_volatility(returns, annualization=periods),
        "annual_return": empyrical.annual_return(returns, annualization=periods),
        "max_drawdown": empyrical.max_drawdown(returns),
        "calmar": empyrical.calmar_ratio(returns, annualization=periods),
    }
    for name, expected in oracle.items():
        assert getattr(metrics, name) == pytest.approx(expected, rel=1e-9), name
    assert len(result.trades) > 10
    assert set(np.unique(result.trades["exit_reason"])) <= set(kernel.EXIT_REASONS)
