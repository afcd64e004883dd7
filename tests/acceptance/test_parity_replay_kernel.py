"""Acceptance: the fast kernel and the event-driven replay give the same trades.

For every registered strategy (built-ins and the rules strategy, default parameters), with costs
on (0.1% commission, 5 bp slippage), the kernel (:func:`run_backtest` on the strategy's
vectorised signals) and the replay (:func:`run_replay`, bar by bar, Decimal money, signals from
the candles up to each bar only) must agree: same entry and exit bars, sides and exit reasons;
quantities, prices, fees and P&L within 1e-9 relative; equity per bar within 1e-9 relative.
Configurations: costs only, stop loss + take profit + trailing stop, fills at the close, and
the short side (``allow_short=True``) with leverage so that liquidations happen too.

Synthetic series always run; the real candles (``CO_DATA_DIR``) are marked ``realdata``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from cryptoorchestrator.backtest import kernel
from cryptoorchestrator.backtest.engine import SIGNAL_COLUMNS, BacktestConfig, BacktestResult, run_backtest
from cryptoorchestrator.backtest.replay import ReplayResult, run_replay
from cryptoorchestrator.strategies import registry

RTOL = 1e-9
COSTS: dict[str, Any] = {"taker_fee": 0.001, "maker_fee": 0.001, "slippage_bps": 5.0}
CONFIGS: dict[str, BacktestConfig] = {
    "costs": BacktestConfig(**COSTS),
    "stops": BacktestConfig(stop_loss=0.02, take_profit=0.03, trailing_stop=0.015, **COSTS),
    "close_fills": BacktestConfig(fill_at="close", stop_loss=0.03, trailing_stop=0.02, **COSTS),
}
SHORT_CONFIG = BacktestConfig(size=0.25, leverage=5.0, stop_loss=0.03, take_profit=0.04, **COSTS)
STRATEGIES = registry.builtin_registry().names()
SHORTABLE = [
    name
    for name in STRATEGIES
    if "allow_short" in registry.builtin_registry().get(name).params_model.model_fields
]
REAL_FILE = "binance_BTC-USDT_5m.csv"
REAL_SHORT_FILE = "binance_ETH-USDT_15m.csv"
REAL_BARS = 3000


def synthetic_frame(n: int = 1000, *, seed: int = 11) -> pd.DataFrame:
    """A geometric random walk (1% per bar) with gaps between close and next open."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    open_ = np.concatenate(([100.0], close[:-1])) * np.exp(rng.normal(0.0, 0.002, n))
    high = np.maximum(open_, close) * (1.0 + rng.uniform(0.0, 0.008, n))
    low = np.minimum(open_, close) * (1.0 - rng.uniform(0.0, 0.008, n))
    stamps = 1_700_000_000_000 + 300_000 * np.arange(n, dtype=np.int64)
    volume = rng.uniform(10.0, 1000.0, n)
    return pd.DataFrame(
        {"timestamp": stamps, "open": open_, "high": high, "low": low, "close": close, "volume": volume}
    )


def real_frame(name: str, bars: int = REAL_BARS) -> pd.DataFrame:
    root = os.environ.get("CO_DATA_DIR")
    if not root:
        pytest.skip("CO_DATA_DIR not set: the real candle files are not available")
    path = Path(root) / name
    if not path.is_file():
        pytest.skip(f"{name} is missing from CO_DATA_DIR={root}")
    return pd.read_csv(path).iloc[:bars].reset_index(drop=True)


def kernel_run(
    frame: pd.DataFrame, name: str, params: dict[str, Any], config: BacktestConfig
) -> BacktestResult:
    strategy = registry.builtin_registry().create(name)
    signals = strategy.signals(frame, strategy.validate_params(params))
    return run_backtest(frame, {column: getattr(signals, column) for column in SIGNAL_COLUMNS}, config)


def describe_first_difference(fast: np.ndarray, slow: np.ndarray) -> str:
    for row in range(min(len(fast), len(slow))):
        if any(fast[key][row] != slow[key][row] for key in ("entry_bar", "exit_bar", "side", "exit_reason")):
            return f"trade {row}: kernel {fast[row]} vs replay {slow[row]}"
    return f"kernel has {len(fast)} trades, replay {len(slow)}"


def assert_same_trades(fast: BacktestResult, replayed: ReplayResult) -> None:
    """The parity contract of the module docstring."""
    slow = replayed.trades_array()
    exact = ("entry_bar", "exit_bar", "side", "exit_reason")
    same_shape = len(fast.trades) == len(slow) and all(
        np.array_equal(fast.trades[key], slow[key]) for key in exact
    )
    assert same_shape, describe_first_difference(fast.trades, slow)
    scale = fast.config.initial_cash * 1e-12  # absolute floor for values that are ~0
    for key in ("quantity", "entry_price", "exit_price", "entry_fee", "exit_fee", "pnl", "trade_return"):
        np.testing.assert_allclose(slow[key], fast.trades[key], rtol=RTOL, atol=scale, err_msg=key)
    bars = replayed.bars_array()
    np.testing.assert_allclose(bars["equity"], fast.bars["equity"], rtol=RTOL, atol=scale)
    np.testing.assert_allclose(
        bars["cash"], fast.bars["cash"], rtol=RTOL, atol=fast.config.initial_cash * 1e-9
    )
    np.testing.assert_allclose(bars["position"], fast.bars["position"], rtol=RTOL, atol=0.0)
    assert float(replayed.final_equity) == pytest.approx(fast.final_equity, rel=RTOL)


def check_parity(
    frame: pd.DataFrame, name: str, params: dict[str, Any], config: BacktestConfig
) -> ReplayResult:
    fast = kernel_run(frame, name, params, config)
    replayed = run_replay(frame, registry.builtin_registry().create(name), params=params, config=config)
    assert len(fast.trades) > 0, f"{name} made no trade: the comparison would be vacuous"
    assert_same_trades(fast, replayed)
    return replayed


@pytest.fixture(scope="module")
def synthetic() -> pd.DataFrame:
    return synthetic_frame()


@pytest.mark.parametrize("config_name", list(CONFIGS))
@pytest.mark.parametrize("name", STRATEGIES)
def test_parity_synthetic(synthetic: pd.DataFrame, name: str, config_name: str) -> None:
    check_parity(synthetic, name, {}, CONFIGS[config_name])


@pytest.mark.parametrize("name", SHORTABLE)
def test_parity_synthetic_short_leveraged(synthetic: pd.DataFrame, name: str) -> None:
    replayed = check_parity(synthetic, name, {"allow_short": True}, SHORT_CONFIG)
    assert {trade.side for trade in replayed.trades} == {1, -1}


def test_exit_paths_are_exercised(synthetic: pd.DataFrame) -> None:
    """The configurations above reach every exit reason, so parity covers every rule of R5."""
    reasons: set[str] = set()
    for name in ("sma_cross", "bollinger_reversion", "macd_cross"):
        reasons |= {t.exit_reason for t in check_parity(synthetic, name, {}, CONFIGS["stops"]).trades}
        short = check_parity(synthetic, name, {"allow_short": True}, SHORT_CONFIG)
        reasons |= {t.exit_reason for t in short.trades}
    reasons |= {t.exit_reason for t in check_parity(synthetic, "dca", {}, CONFIGS["costs"]).trades}
    assert reasons >= {"signal", "stop_loss", "take_profit", "trailing_stop", "open"}
    very_leveraged = BacktestConfig(size=0.1, leverage=100.0, **COSTS)
    liquidated = check_parity(synthetic, "sma_cross", {"allow_short": True}, very_leveraged)
    assert "liquidation" in {t.exit_reason for t in liquidated.trades}
    assert set(kernel.EXIT_REASONS.values()) <= reasons | {"liquidation"}


@pytest.mark.realdata
@pytest.mark.parametrize("config_name", ["costs", "stops"])
@pytest.mark.parametrize("name", STRATEGIES)
def test_parity_real(name: str, config_name: str) -> None:
    check_parity(real_frame(REAL_FILE), name, {}, CONFIGS[config_name])


@pytest.mark.realdata
@pytest.mark.parametrize("name", SHORTABLE)
def test_parity_real_short(name: str) -> None:
    config = BacktestConfig(
        size=0.5, leverage=3.0, stop_loss=0.02, take_profit=0.03, trailing_stop=0.015, **COSTS
    )
    check_parity(real_frame(REAL_SHORT_FILE), name, {"allow_short": True}, config)
