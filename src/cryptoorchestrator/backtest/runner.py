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

from cryptoorchestrator.backtest import kernel, portfolio
from cryptoorchestrator.backtest import metrics as metrics_module
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


SIGNAL_NAMES = ("entry_long", "exit_long", "entry_short", "exit_short")


def compute_portfolio(
    frames: dict[str, pd.DataFrame],
    *,
    strategy_type: str,
    params: dict[str, Any],
    config: dict[str, Any],
    max_positions: int,
    results_path: Path,
    strategies_dir: str | None = None,
) -> dict[str, Any]:
    """Several symbols sharing one capital (equal weight of equity per open position, at most
    ``max_positions`` at once), on the timestamps all symbols have (inner join)."""
    strategies = registry.builtin_registry()
    if strategies_dir:
        loader.load_strategies(strategies_dir, strategies)
    strategy = loader.guard(strategies.create(strategy_type))
    aligned = portfolio.align_candles(frames, how="inner")
    signals: dict[str, dict[str, np.ndarray]] = {}
    for index, symbol in enumerate(aligned.symbols):
        frame = pd.DataFrame(
            {
                "timestamp": aligned.timestamps,
                "open": aligned.open[index],
                "high": aligned.high[index],
                "low": aligned.low[index],
                "close": aligned.close[index],
                "volume": aligned.volume[index],
            }
        )
        result = strategy.signals(frame, params)
        signals[symbol] = {name: getattr(result, name) for name in SIGNAL_NAMES}
    backtest_config = BacktestConfig(**config)
    outcome = portfolio.run_portfolio(
        aligned,
        signals,
        portfolio.PortfolioConfig(
            allocation="equal_weight", max_positions=max_positions, trading=backtest_config
        ),
    )
    stamps = np.asarray(aligned.timestamps, dtype=np.int64)
    in_market = (np.abs(np.atleast_2d(outcome.position)) > 0).any(axis=0).astype(np.float64)
    bars = np.zeros(len(stamps), dtype=kernel.BAR_DTYPE)
    bars["equity"], bars["cash"], bars["position"] = outcome.equity, outcome.cash, in_market
    per_symbol = []
    for symbol, trades in outcome.trades.items():
        frame = pd.DataFrame(trades)
        frame.insert(0, "symbol", symbol)
        per_symbol.append(frame)
    trades_frame = pd.concat(per_symbol, ignore_index=True) if per_symbol else pd.DataFrame()
    all_trades = (
        np.concatenate([outcome.trades[s] for s in outcome.trades])
        if outcome.trades
        else np.zeros(0, dtype=kernel.TRADE_DTYPE)
    )
    metrics = metrics_module.compute_metrics(
        bars, all_trades, initial_cash=backtest_config.initial_cash, timeframe=backtest_config.timeframe
    )
    peak = np.maximum.accumulate(bars["equity"])
    curve = pd.DataFrame(
        {
            "timestamp": stamps,
            "equity": bars["equity"],
            "drawdown": np.where(peak > 0, bars["equity"] / peak - 1.0, 0.0),
            "position": in_market,
        }
    )
    if len(trades_frame):
        trades_frame["entry_time"] = stamps[trades_frame["entry_bar"].to_numpy()]
        trades_frame["exit_time"] = stamps[np.minimum(trades_frame["exit_bar"].to_numpy(), len(stamps) - 1)]
        trades_frame["exit_reason"] = trades_frame["exit_reason"].map(kernel.EXIT_REASONS)
        trades_frame = trades_frame.sort_values(["entry_time", "symbol"], ignore_index=True)
    results_path.parent.mkdir(parents=True, exist_ok=True)
    curve.to_parquet(results_path.with_suffix(".equity.parquet"))
    trades_frame.to_parquet(results_path.with_suffix(".trades.parquet"))
    costs_on = (
        backtest_config.taker_fee > 0 or backtest_config.maker_fee > 0 or backtest_config.slippage_bps > 0
    )
    summary = {
        "candles": len(stamps),
        "trades": len(trades_frame),
        "trades_by_symbol": {symbol: len(t) for symbol, t in outcome.trades.items()},
        "symbols": list(aligned.symbols),
        "max_positions": max_positions,
        "initial_capital": backtest_config.initial_cash,
        "final_equity": _finite(float(bars["equity"][-1])) if len(bars) else backtest_config.initial_cash,
        "costs_on": bool(costs_on),
        "first_candle": int(stamps[0]) if len(stamps) else None,
        "last_candle": int(stamps[-1]) if len(stamps) else None,
    }
    return {
        "metrics": {key: _finite(value) for key, value in dataclasses.asdict(metrics).items()},
        "summary": summary,
    }
