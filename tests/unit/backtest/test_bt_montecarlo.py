"""Monte-Carlo resampling of trade returns."""

from __future__ import annotations

import time

import numpy as np
import pytest

from cryptoorchestrator.backtest import montecarlo as mc
from cryptoorchestrator.backtest.engine import BacktestConfig, run_backtest
from cryptoorchestrator.core.errors import ValidationFailed

from ._bt_support import sma_cross, synthetic_candles

RETURNS = np.random.default_rng(4).normal(0.003, 0.03, 300)


def oracle(values: np.ndarray, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Plain numpy paths: equity from 1, drawdown against the running peak (start included)."""
    equity = np.cumprod(1.0 + values[indices], axis=1)
    peak = np.maximum(np.maximum.accumulate(equity, axis=1), 1.0)
    return (
        equity[:, -1] - 1.0,
        np.minimum((equity / peak).min(axis=1) - 1.0, 0.0),
        np.minimum(equity.min(axis=1), 1.0),
    )


def test_kernel_matches_numpy_oracle() -> None:
    indices = np.random.default_rng(1).integers(0, len(RETURNS), size=(50, len(RETURNS)))
    for got, expected in zip(mc._paths_nb(RETURNS, indices), oracle(RETURNS, indices), strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-12)
    shuffled = mc._shuffled_indices_nb(np.random.default_rng(2).random((20, 30)))
    assert (np.sort(shuffled, axis=1) == np.arange(30)).all()


@pytest.mark.parametrize("method", ["bootstrap", "permutation"])
def test_percentiles_are_ordered_and_reproducible(method: str) -> None:
    a = mc.monte_carlo(RETURNS, n_simulations=2000, method=method, seed=7)
    b = mc.monte_carlo(RETURNS, n_simulations=2000, method=method, seed=7, block=300)
    c = mc.monte_carlo(RETURNS, n_simulations=2000, method=method, seed=8)
    for name in ("final_return", "max_drawdown"):
        p5, p50, p95 = (a.percentiles[name][p] for p in (5.0, 50.0, 95.0))
        assert p5 <= p50 <= p95
    assert (a.max_drawdowns <= 0).all() and 0 <= a.probability_of_ruin <= 1
    assert not np.array_equal(a.max_drawdowns, c.max_drawdowns)
    if method == "bootstrap":
        np.testing.assert_array_equal(a.final_returns, b.final_returns)  # blocks do not change the draws
        assert a.percentiles["final_return"][95.0] > a.percentiles["final_return"][5.0]
    else:
        np.testing.assert_allclose(
            a.final_returns, np.prod(1 + RETURNS) - 1, rtol=1e-9
        )  # same trades, any order
    again = mc.monte_carlo(RETURNS, n_simulations=2000, method=method, seed=7)
    np.testing.assert_array_equal(a.final_returns, again.final_returns)
    np.testing.assert_array_equal(a.max_drawdowns, again.max_drawdowns)


@pytest.mark.parametrize(("r", "ruined"), [(0.01, 0.0), (-0.1, 1.0)])
def test_equal_returns_have_no_spread(r: float, ruined: float) -> None:
    result = mc.monte_carlo(np.full(10, r), n_simulations=500, seed=1)
    final = (1 + r) ** 10 - 1
    np.testing.assert_allclose(result.final_returns, final, rtol=1e-12)
    np.testing.assert_allclose(result.max_drawdowns, min(final, 0.0), rtol=1e-12, atol=0)
    assert all(v == pytest.approx(final) for v in result.percentiles["final_return"].values())
    assert result.probability_of_ruin == ruined  # 0.9 ** 10 = 0.35 is below the 0.5 ruin level
    assert mc.probability_of_loss(result) == (1.0 if r < 0 else 0.0)


def test_trade_returns_compound_to_the_backtest_result() -> None:
    data = synthetic_candles(3000, seed=2)
    entries, exits = sma_cross(data["close"], 5, 20)
    run = run_backtest(data, {"entry_long": entries, "exit_long": exits}, BacktestConfig())
    returns = mc.equity_trade_returns(run)
    closed = run.trades[run.trades["exit_reason"] != 5]
    assert len(returns) == len(closed) > 10
    expected = (run.config.initial_cash + closed["pnl"].sum()) / run.config.initial_cash
    assert np.prod(1 + returns) == pytest.approx(expected, rel=1e-9)


def test_ten_thousand_paths_of_a_thousand_trades_are_fast() -> None:
    returns = np.random.default_rng(0).normal(0.001, 0.02, 1000)
    for method in ("bootstrap", "permutation"):
        mc.monte_carlo(returns, n_simulations=10, method=method)  # compile / load the numba cache
        started = time.perf_counter()
        result = mc.monte_carlo(returns, n_simulations=10_000, method=method, seed=3)
        assert time.perf_counter() - started < 1.0
        assert result.final_returns.shape == (10_000,) and result.n_trades == 1000


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"returns": []}, "returns"),
        ({"returns": [0.1, -1.0]}, "returns"),
        ({"returns": [0.1, np.nan]}, "returns"),
        ({"returns": [0.1], "n_simulations": 0}, "n_simulations"),
        ({"returns": [0.1], "percentiles": (5, 150)}, "percentiles"),
        ({"returns": [0.1], "ruin_equity": 1.5}, "ruin_equity"),
        ({"returns": [0.1], "method": "jackknife"}, "method"),
    ],
)
def test_bad_input_is_rejected(kwargs: dict, field: str) -> None:
    returns = kwargs.pop("returns")
    with pytest.raises(ValidationFailed) as caught:
        mc.monte_carlo(returns, **kwargs)
    assert caught.value.details["field"] == field
