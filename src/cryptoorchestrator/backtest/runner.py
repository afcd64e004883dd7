"""One backtest from candles to stored results: the unit of work a job runs in a worker process.

Module-level functions only, so a process pool can pickle the call.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cryptoorchestrator.backtest import kernel
from cryptoorchestrator.backtest.engine import BacktestConfig, run_backtest
from cryptoorchestrator.strategies import loader, registry


def _finite(value: Any) -> Any:
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def compute(
    candles: pd.DataFrame,
    *,
    strategy_type: str,
    params: dict[str, Any],
    config: dict[str, Any],
    results_path: Path,
    strategies_dir: str | None = None,
) -> dict[str, Any]:
    """Signals, the kernel, metrics; the equity curve and trades go to ``results_path`` (Parquet)
    and the metrics and a summary come back (JSON-ready: NaN and infinities become null)."""
    strategies = registry.builtin_registry()
    if strategies_dir:
        # Broken user files are reported when the server loads them; here they are skipped.
        loader.load_strategies(strategies_dir, strategies)
    strategy = loader.guard(strategies.create(strategy_type))
    signals = strategy.signals(candles, params)
    backtest_config = BacktestConfig(**config)
    # The kernel takes the four signal arrays; the strategies' stop/take-profit price hints are
    # for the event-driven runtime (the kernel applies the configured percentages).
    arrays = {
        name: getattr(signals, name) for name in ("entry_long", "exit_long", "entry_short", "exit_short")
    }
    result = run_backtest(candles, arrays, backtest_config)
    metrics = {key: _finite(value) for key, value in dataclasses.asdict(result.metrics()).items()}
    equity = result.bars["equity"]
    peak = np.maximum.accumulate(equity)
    curve = pd.DataFrame(
        {
            "timestamp": candles["timestamp"].to_numpy(dtype=np.int64),
            "equity": equity,
            "drawdown": np.where(peak > 0, equity / peak - 1.0, 0.0),
            "position": result.bars["position"],
        }
    )
    trades = pd.DataFrame(result.trades)
    stamps = candles["timestamp"].to_numpy(dtype=np.int64)
    if len(trades):
        trades["entry_time"] = stamps[trades["entry_bar"].to_numpy()]
        trades["exit_time"] = stamps[np.minimum(trades["exit_bar"].to_numpy(), len(stamps) - 1)]
        trades["exit_reason"] = trades["exit_reason"].map(kernel.EXIT_REASONS)
    results_path.parent.mkdir(parents=True, exist_ok=True)
    curve.to_parquet(results_path.with_suffix(".equity.parquet"))
    trades.to_parquet(results_path.with_suffix(".trades.parquet"))
    costs_on = (
        backtest_config.taker_fee > 0 or backtest_config.maker_fee > 0 or backtest_config.slippage_bps > 0
    )
    summary = {
        "candles": len(candles),
        "trades": len(trades),
        "initial_capital": backtest_config.initial_cash,
        "final_equity": _finite(result.final_equity),
        "costs_on": bool(costs_on),
        "first_candle": int(stamps[0]),
        "last_candle": int(stamps[-1]),
    }
    return {"metrics": metrics, "summary": summary}
