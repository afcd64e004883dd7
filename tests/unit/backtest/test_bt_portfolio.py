"""The portfolio kernel: one symbol equals the single-symbol kernel, shared-cash invariants."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cryptoorchestrator.backtest.engine import SIGNAL_COLUMNS, BacktestConfig, run_backtest
from cryptoorchestrator.backtest.portfolio import PortfolioConfig, align_candles, run_portfolio
from cryptoorchestrator.core.errors import ValidationFailed
from tests.unit.backtest._bt_support import sma_cross, synthetic_candles

COSTS = {"taker_fee": 0.001, "maker_fee": 0.0005, "slippage_bps": 5.0}


def frame(n: int, seed: int) -> pd.DataFrame:
    data = synthetic_candles(n, seed=seed)
    return pd.DataFrame({"timestamp": 60_000 * np.arange(n, dtype=np.int64), **data})


def both_sides(close: np.ndarray) -> dict[str, np.ndarray]:
    entries, exits = sma_cross(close, 5, 20)
    return {"entry_long": entries, "exit_long": exits, "entry_short": exits, "exit_short": entries}


def assert_same_trades(left: np.ndarray, right: np.ndarray) -> None:
    assert len(left) == len(right) > 0
    for name in left.dtype.names or ():
        np.testing.assert_allclose(left[name], right[name], rtol=1e-12, atol=1e-9, err_msg=name)


@pytest.mark.parametrize(
    "trading",
    [
        BacktestConfig(**COSTS),
        BacktestConfig(stop_loss=0.02, take_profit=0.03, trailing_stop=0.01, leverage=3.0, **COSTS),
        BacktestConfig(fill_at="close", stop_loss=0.02, **COSTS),
        BacktestConfig(leverage=50.0, size=0.2, **COSTS),
    ],
)
def test_one_symbol_matches_the_single_symbol_kernel(trading: BacktestConfig) -> None:
    candles = frame(1500, seed=3)
    signals = both_sides(candles["close"].to_numpy())
    single = run_backtest(candles, signals, trading)
    allocation = (
        PortfolioConfig(trading=trading)
        if trading.size == 1.0
        else PortfolioConfig(allocation="percent_equity", size=trading.size, trading=trading)
    )
    result = run_portfolio(align_candles({"X": candles}), {"X": signals}, allocation)
    assert_same_trades(result.trades["X"], single.trades)
    np.testing.assert_allclose(result.equity, single.bars["equity"], rtol=1e-12)
    np.testing.assert_allclose(result.position[0], single.bars["position"], rtol=1e-12)


def test_two_fixed_cash_symbols_equal_two_half_capital_runs() -> None:
    a, b = frame(1200, seed=1), frame(1200, seed=2)
    signals = {"A": both_sides(a["close"].to_numpy()), "B": both_sides(b["close"].to_numpy())}
    trading = BacktestConfig(initial_cash=10_000.0, stop_loss=0.03, **COSTS)
    config = PortfolioConfig(allocation="fixed_cash", size=2_000.0, max_positions=2, trading=trading)
    result = run_portfolio(align_candles({"A": a, "B": b}), signals, config)
    half = BacktestConfig(initial_cash=5_000.0, sizing="fixed_cash", size=2_000.0, stop_loss=0.03, **COSTS)
    single_a, single_b = run_backtest(a, signals["A"], half), run_backtest(b, signals["B"], half)
    assert_same_trades(result.trades["A"], single_a.trades)
    assert_same_trades(result.trades["B"], single_b.trades)
    np.testing.assert_allclose(result.equity, single_a.bars["equity"] + single_b.bars["equity"], rtol=1e-12)
    assert (result.position[0] != 0).any() and (result.position[1] != 0).any()
    assert ((result.position[0] != 0) & (result.position[1] != 0)).any()  # they did overlap in time


def test_equal_weight_gives_each_position_its_share_of_equity() -> None:
    a, b = frame(800, seed=4), frame(800, seed=5)
    signals = {"A": both_sides(a["close"].to_numpy())}  # B never trades
    config = PortfolioConfig(max_positions=2, trading=BacktestConfig(**COSTS))
    result = run_portfolio(align_candles({"A": a, "B": b}), signals, config)
    single = run_backtest(a, signals["A"], BacktestConfig(size=0.5, **COSTS))
    assert_same_trades(result.trades["A"], single.trades)
    assert len(result.trades["B"]) == 0
    np.testing.assert_allclose(result.equity, single.bars["equity"], rtol=1e-12)


def test_max_positions_caps_simultaneous_positions() -> None:
    frames = {name: frame(600, seed=seed) for seed, name in enumerate("ABC", start=10)}
    signals = {name: both_sides(candles["close"].to_numpy()) for name, candles in frames.items()}
    config = PortfolioConfig(max_positions=2, trading=BacktestConfig(**COSTS))
    result = run_portfolio(align_candles(frames), signals, config)
    open_counts = (result.position != 0).sum(axis=0)
    assert open_counts.max() == 2
    assert (result.cash >= -1e-6).all()
    np.testing.assert_allclose(
        result.exposure, result.position * np.vstack([f["close"] for f in frames.values()])
    )


def test_forward_fill_alignment_marks_missing_bars_untradable() -> None:
    a = frame(50, seed=6)
    b = frame(50, seed=7).drop(index=[10, 11, 30]).reset_index(drop=True)
    inner = align_candles({"A": a, "B": b}, how="inner")
    assert len(inner.timestamps) == 47 and inner.tradable.all()
    full = align_candles({"A": a, "B": b}, how="ffill")
    assert len(full.timestamps) == 50
    assert not full.tradable[1, 10] and not full.tradable[1, 30] and full.tradable[0].all()
    carried = full.close[1, 9]
    assert full.open[1, 10] == full.high[1, 11] == full.close[1, 11] == carried
    assert full.volume[1, 10] == 0.0
    entries = np.zeros(50, dtype=bool)
    entries[[9, 29]] = True  # both would fill on a missing bar: dropped
    exits = np.zeros(50, dtype=bool)
    result = run_portfolio(full, {"B": {"entry_long": entries, "exit_long": exits}}, PortfolioConfig())
    assert len(result.trades["B"]) == 0
    entries[[9, 29]] = False
    entries[12] = True
    result = run_portfolio(full, {"B": {"entry_long": entries, "exit_long": exits}}, PortfolioConfig())
    assert result.trades["B"]["entry_bar"].tolist() == [13]


def test_invalid_input_is_rejected() -> None:
    with pytest.raises(ValidationFailed):
        PortfolioConfig(max_positions=0)
    with pytest.raises(ValidationFailed):
        PortfolioConfig(allocation="percent_equity", size=1.5)
    candles = align_candles({"A": frame(20, seed=1)})
    with pytest.raises(ValidationFailed):
        run_portfolio(candles, {"Z": {}}, PortfolioConfig())
    with pytest.raises(ValidationFailed):
        run_portfolio(candles, {"A": {"entry_long": np.ones(5, dtype=bool)}}, PortfolioConfig())


FRAMES = {name: frame(150, seed=seed) for seed, name in enumerate("ABC", start=20)}
ALIGNED = align_candles(FRAMES)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    allocation=st.sampled_from(["equal_weight", "percent_equity", "fixed_cash"]),
    max_positions=st.integers(1, 3),
    leverage=st.sampled_from([1.0, 3.0, 20.0]),
    stops=st.booleans(),
    density=st.floats(0.02, 0.4),
)
def test_shared_cash_invariants_on_random_signals(
    seed: int, allocation: str, max_positions: int, leverage: float, stops: bool, density: float
) -> None:
    rng = np.random.default_rng(seed)
    n = len(ALIGNED.timestamps)
    signals = {
        name: {column: rng.random(n) < density for column in SIGNAL_COLUMNS} for name in ALIGNED.symbols
    }
    trading = BacktestConfig(
        leverage=leverage,
        stop_loss=0.02 if stops else None,
        take_profit=0.03 if stops else None,
        trailing_stop=0.01 if stops else None,
        **COSTS,
    )
    size = 3_000.0 if allocation == "fixed_cash" else 0.5
    config = PortfolioConfig(allocation=allocation, max_positions=max_positions, size=size, trading=trading)  # type: ignore[arg-type]
    result = run_portfolio(ALIGNED, signals, config)
    assert (result.cash >= -1e-9 * trading.initial_cash).all()
    assert ((result.position != 0).sum(axis=0) <= max_positions).all()
    assert np.isfinite(result.equity).all() and (result.equity >= -1e-9).all()
    # Accounting identity: every trade's P&L (open ones marked at the last close) adds up.
    total_pnl = sum(float(trades["pnl"].sum()) for trades in result.trades.values())
    assert result.final_equity == pytest.approx(trading.initial_cash + total_pnl, rel=1e-9, abs=1e-6)
    for name, trades in result.trades.items():
        row = ALIGNED.symbols.index(name)
        assert (np.diff(trades["entry_bar"]) > 0).all()
        assert (trades["exit_bar"][:-1] <= trades["entry_bar"][1:]).all()
        if len(trades) and trades["exit_reason"][-1] == 5:
            assert result.position[row, -1] != 0
