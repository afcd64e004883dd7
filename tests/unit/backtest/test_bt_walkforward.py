"""Walk-forward analysis: window arithmetic, warm-up of out-of-sample signals, stitching."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from cryptoorchestrator.backtest import optimize as opt
from cryptoorchestrator.backtest import walkforward as wf
from cryptoorchestrator.backtest.engine import BacktestConfig
from cryptoorchestrator.core.errors import ValidationFailed

from ._bt_support import synthetic_candles

CONFIG = BacktestConfig(timeframe="5m")
SPACE = {"fast": {"values": [5, 10]}, "slow": {"values": [20, 40]}}


def frame(n: int, seed: int = 5) -> pd.DataFrame:
    return pd.DataFrame(
        {"timestamp": np.arange(n, dtype=np.int64) * 300_000, **synthetic_candles(n, seed=seed)}
    )


@pytest.mark.parametrize("anchored", [False, True])
def test_window_arithmetic(anchored: bool) -> None:
    windows = wf.walk_forward_windows(1050, in_sample=300, out_of_sample=100, anchored=anchored)
    assert len(windows) == 7  # (1050 - 300) // 100 full out-of-sample windows; the 50-bar tail is left out
    for k, w in enumerate(windows):
        assert w.index == k and w.in_sample_end == w.out_of_sample_start
        assert w.out_of_sample_end - w.out_of_sample_start == 100
        assert w.in_sample_start == (0 if anchored else k * 100)
        assert w.in_sample_end - w.in_sample_start == (300 + k * 100 if anchored else 300)
    for a, b in itertools.pairwise(windows):
        assert a.out_of_sample_end == b.out_of_sample_start  # no overlap, no gap
    assert windows[-1].out_of_sample_end <= 1050
    with pytest.raises(ValidationFailed, match="too few"):
        wf.walk_forward_windows(350, in_sample=300, out_of_sample=100)
    with pytest.raises(ValidationFailed) as caught:
        wf.walk_forward_windows(350, in_sample=300, out_of_sample=0)
    assert caught.value.details["field"] == "out_of_sample"


def test_out_of_sample_signals_are_warmed_up_on_in_sample_bars() -> None:
    candles = frame(3000, seed=9)
    params = {"fast": 5, "slow": 40}
    full = opt.strategy_signals("sma_cross", candles, params)
    warm_bars_with_signals = 0
    for window in wf.walk_forward_windows(len(candles), in_sample=200, out_of_sample=100):
        warmed = wf.out_of_sample_signals("sma_cross", candles, window, params)
        cold = opt.strategy_signals(
            "sma_cross", candles.iloc[window.out_of_sample_start : window.out_of_sample_end], params
        )
        part = slice(window.out_of_sample_start, window.out_of_sample_end)
        for name, values in warmed.items():
            np.testing.assert_array_equal(values, full[name][part])  # as if the whole history were known
            assert not cold[name][:40].any()  # without warm-up the slow SMA is NaN: no signal can fire
        warm_bars_with_signals += int(warmed["entry_long"][:40].sum() + warmed["exit_long"][:40].sum())
    assert warm_bars_with_signals > 0


def test_walk_forward_stitches_a_continuous_out_of_sample_run() -> None:
    candles = frame(1400)
    result = wf.walk_forward(
        "sma_cross", candles, SPACE, in_sample=500, out_of_sample=300, config=CONFIG, workers=1, min_trades=0
    )
    assert len(result.windows) == 3 and len(result.equity) == 900 == len(result.bars)
    assert result.equity.index[0] == candles["timestamp"].iloc[500]
    assert result.windows[0].start_equity == CONFIG.initial_cash
    for k, w in enumerate(result.windows):
        end = (k + 1) * 300 - 1
        assert result.equity.iloc[end] == pytest.approx(w.end_equity, rel=1e-12)
        if k:
            assert w.start_equity == result.windows[k - 1].end_equity
        # The window's best in-sample score is what optimize() reports for that in-sample slice.
        found = opt.optimize(
            "sma_cross",
            candles.iloc[w.window.in_sample_start : w.window.in_sample_end],
            SPACE,
            config=CONFIG,
            workers=1,
            min_trades=0,
        )
        assert (w.params, w.in_sample_score) == (found.best_params, found.best_score)
        assert w.out_of_sample_score == w.out_of_sample_metrics.sharpe
    assert result.metrics.total_return == pytest.approx(
        result.windows[-1].end_equity / CONFIG.initial_cash - 1
    )
    assert result.metrics.total_trades == sum(w.out_of_sample_metrics.total_trades for w in result.windows)
    assert set(result.stability) == {"fast", "slow"}
    assert len(result.table()) == 3


def test_parameter_stability() -> None:
    chosen = [{"fast": 10, "mode": "a"}, {"fast": 10, "mode": "b"}, {"fast": 20, "mode": "a"}]
    stability = wf.parameter_stability(chosen, ["fast", "mode"])
    assert stability["fast"]["distinct"] == 2 and stability["fast"]["most_common"] == 10
    assert stability["fast"]["cv"] == pytest.approx(np.std([10, 10, 20]) / np.mean([10, 10, 20]))
    assert stability["mode"] == {"distinct": 2, "most_common": "a"}
    same = wf.parameter_stability([{"fast": 7}] * 4, ["fast"])
    assert same["fast"]["cv"] == 0.0 and same["fast"]["distinct"] == 1
