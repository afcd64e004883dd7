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

SIGNAL_NAMES = ("entry_long", "exit_long", "entry_short", "exit_short")


def _finite(value: Any) -> Any:
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def _strategy(strategy_type: str, strategies_dir: str | None) -> loader.GuardedStrategy:
    strategies = registry.builtin_registry()
    if strategies_dir:
        # Broken user files are reported when the server loads them; here they are skipped.
        loader.load_strategies(strategies_dir, strategies)
    return loader.guard(strategies.create(strategy_type))


def _signal_arrays(
    strategy: loader.GuardedStrategy, frame: pd.DataFrame, params: dict[str, Any]
) -> dict[str, Any]:
    # The kernels take the four signal arrays; the strategies' stop/take-profit price hints are
    # for the event-driven runtime (the kernels apply the configured percentages).
    signals = strategy.signals(frame, params)
    return {name: getattr(signals, name) for name in SIGNAL_NAMES}


def _store(
    results_path: Path,
    *,
    stamps: np.ndarray,
    bars: np.ndarray,
    trades: pd.DataFrame,
    config: BacktestConfig,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """Write the equity curve (with drawdown) and the trades as Parquet; metrics and a summary
    come back JSON-ready (NaN and infinities become null)."""
    equity = bars["equity"]
    peak = np.maximum.accumulate(equity)
    curve = pd.DataFrame(
        {
            "timestamp": stamps,
            "equity": equity,
            "drawdown": np.where(peak > 0, equity / peak - 1.0, 0.0),
            "position": bars["position"],
        }
    )
    if len(trades):
        trades["entry_time"] = stamps[trades["entry_bar"].to_numpy()]
        trades["exit_time"] = stamps[np.minimum(trades["exit_bar"].to_numpy(), len(stamps) - 1)]
        trades["exit_reason"] = trades["exit_reason"].map(kernel.EXIT_REASONS)
    results_path.parent.mkdir(parents=True, exist_ok=True)
    curve.to_parquet(results_path.with_suffix(".equity.parquet"))
    trades.to_parquet(results_path.with_suffix(".trades.parquet"))
    closed = trades.drop(columns=["symbol", "entry_time", "exit_time"], errors="ignore")
    records = np.zeros(len(closed), dtype=kernel.TRADE_DTYPE)
    if len(closed):
        reasons = {name: code for code, name in kernel.EXIT_REASONS.items()}
        for field in kernel.TRADE_DTYPE.names or ():
            column = closed[field].map(reasons) if field == "exit_reason" else closed[field]
            records[field] = column.to_numpy()
    metrics = metrics_module.compute_metrics(
        bars, records, initial_cash=config.initial_cash, timeframe=config.timeframe
    )
    summary = {
        "candles": len(stamps),
        "trades": len(trades),
        "initial_capital": config.initial_cash,
        "final_equity": _finite(float(equity[-1])) if len(equity) else config.initial_cash,
        "costs_on": bool(config.taker_fee > 0 or config.maker_fee > 0 or config.slippage_bps > 0),
        "first_candle": int(stamps[0]) if len(stamps) else None,
        "last_candle": int(stamps[-1]) if len(stamps) else None,
        **extra,
    }
    return {"metrics": {k: _finite(v) for k, v in dataclasses.asdict(metrics).items()}, "summary": summary}


def compute(
    candles: pd.DataFrame,
    *,
    strategy_type: str,
    params: dict[str, Any],
    config: dict[str, Any],
    results_path: Path,
    strategies_dir: str | None = None,
) -> dict[str, Any]:
    """Signals, the kernel, metrics; results stored under ``results_path``."""
    strategy = _strategy(strategy_type, strategies_dir)
    backtest_config = BacktestConfig(**config)
    result = run_backtest(candles, _signal_arrays(strategy, candles, params), backtest_config)
    return _store(
        results_path,
        stamps=candles["timestamp"].to_numpy(dtype=np.int64),
        bars=result.bars,
        trades=pd.DataFrame(result.trades),
        config=backtest_config,
        extra={},
    )


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
    strategy = _strategy(strategy_type, strategies_dir)
    aligned = portfolio.align_candles(frames, how="inner")
    signals = {}
    for index, symbol in enumerate(aligned.symbols):
        frame = pd.DataFrame(
            {
                "timestamp": aligned.timestamps,
                **{
                    name: getattr(aligned, name)[index] for name in ("open", "high", "low", "close", "volume")
                },
            }
        )
        signals[symbol] = _signal_arrays(strategy, frame, params)
    backtest_config = BacktestConfig(**config)
    outcome = portfolio.run_portfolio(
        aligned,
        signals,
        portfolio.PortfolioConfig(
            allocation="equal_weight", max_positions=max_positions, trading=backtest_config
        ),
    )
    bars = np.zeros(len(aligned.timestamps), dtype=kernel.BAR_DTYPE)
    bars["equity"], bars["cash"] = outcome.equity, outcome.cash
    # "In the market" for exposure: any symbol holds a position.
    bars["position"] = (np.abs(np.atleast_2d(outcome.position)) > 0).any(axis=0)
    per_symbol = [pd.DataFrame(trades).assign(symbol=symbol) for symbol, trades in outcome.trades.items()]
    trades = pd.concat(per_symbol, ignore_index=True) if per_symbol else pd.DataFrame()
    if len(trades):
        trades = trades.sort_values(["entry_bar", "symbol"], ignore_index=True)
    return _store(
        results_path,
        stamps=np.asarray(aligned.timestamps, dtype=np.int64),
        bars=bars,
        trades=trades,
        config=backtest_config,
        extra={
            "symbols": list(aligned.symbols),
            "max_positions": max_positions,
            "trades_by_symbol": {symbol: len(t) for symbol, t in outcome.trades.items()},
        },
    )
