"""Walk-forward analysis: optimise in-sample, trade the winner out-of-sample, roll forward.

Windows (bar indices, ends exclusive) over ``n`` candles with in-sample length ``IS`` and
out-of-sample length ``OOS``:

* rolling: window ``k`` has in-sample ``[k*OOS, k*OOS + IS)`` and out-of-sample
  ``[k*OOS + IS, k*OOS + IS + OOS)``;
* anchored: in-sample always starts at bar 0: ``[0, IS + k*OOS)``, out-of-sample as above.

Only full out-of-sample windows are used (a shorter tail is left out); out-of-sample windows
follow each other without overlap or gap.

**Warm-up rule.** The out-of-sample signals are computed on the in-sample window *and* the
out-of-sample window together, and the out-of-sample slice is taken from them. Every indicator
whose look-back is at most ``IS`` bars is therefore fully warmed up on the first out-of-sample
bar, and because a signal at bar ``t`` uses data up to ``t`` only (the strategy contract), no
out-of-sample bar sees the future. Each out-of-sample backtest starts flat with the previous
window's ending equity as its cash (a position open at the end of a window is marked at the last
close, rule R6 of the kernel), so the stitched equity curve is continuous.
"""

from __future__ import annotations

import dataclasses
import math
import os
import threading
from collections import Counter
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from cryptoorchestrator.backtest import metrics as metrics_module
from cryptoorchestrator.backtest import optimize as optimize_module
from cryptoorchestrator.backtest.engine import BacktestConfig, run_backtest
from cryptoorchestrator.core.errors import ValidationFailed


@dataclasses.dataclass(frozen=True, slots=True)
class Window:
    """One walk-forward step: bar index ranges, ends exclusive."""

    index: int
    in_sample_start: int
    in_sample_end: int
    out_of_sample_start: int
    out_of_sample_end: int


def walk_forward_windows(
    n_bars: int, *, in_sample: int, out_of_sample: int, anchored: bool = False
) -> list[Window]:
    """The windows over ``n_bars`` candles (see the module docstring); at least one or 422."""
    for name, value in (("in_sample", in_sample), ("out_of_sample", out_of_sample)):
        if value < 1:
            raise ValidationFailed(f"{name}: must be >= 1", details={"field": name})
    count = (n_bars - in_sample) // out_of_sample if n_bars >= in_sample else 0
    if count < 1:
        raise ValidationFailed(
            f"candles: {n_bars} bars are too few for in_sample={in_sample} + out_of_sample={out_of_sample}",
            details={"field": "candles"},
        )
    windows = []
    for k in range(count):
        oos_start = in_sample + k * out_of_sample
        is_start = 0 if anchored else k * out_of_sample
        windows.append(Window(k, is_start, oos_start, oos_start, oos_start + out_of_sample))
    return windows


def out_of_sample_signals(
    strategy: optimize_module.StrategyRef, candles: pd.DataFrame, window: Window, params: Mapping[str, Any]
) -> dict[str, np.ndarray]:
    """The out-of-sample signals of ``window``, warmed up on its in-sample bars (the warm-up rule)."""
    history = candles.iloc[window.in_sample_start : window.out_of_sample_end]
    signals = optimize_module.strategy_signals(strategy, history, params)
    offset = window.out_of_sample_start - window.in_sample_start
    return {name: values[offset:] for name, values in signals.items()}


@dataclasses.dataclass(frozen=True, slots=True)
class WindowResult:
    """The outcome of one window: chosen parameters, scores and the out-of-sample run."""

    window: Window
    params: dict[str, Any]
    in_sample_score: float
    out_of_sample_score: float
    out_of_sample_metrics: metrics_module.Metrics
    start_equity: float
    end_equity: float
    evaluated: int
    skipped: int
    failed: int


@dataclasses.dataclass(frozen=True, slots=True)
class WalkForwardResult:
    """Per-window results, the stitched out-of-sample run and parameter stability.

    ``bars`` and ``trades`` are the kernel records of all out-of-sample windows in a row (trade
    bar indices relative to the first out-of-sample bar); ``equity`` is the stitched curve indexed
    by timestamp; ``metrics`` are computed on it. ``stability`` maps each searched parameter to
    ``distinct`` (number of different values chosen), ``most_common``, and for numbers ``mean``,
    ``std`` and ``cv`` (std / |mean|; 0 = the same value in every window).
    """

    windows: list[WindowResult]
    bars: np.ndarray
    trades: np.ndarray
    equity: pd.Series
    metrics: metrics_module.Metrics
    stability: dict[str, dict[str, Any]]
    objective: str

    def table(self) -> pd.DataFrame:
        """One row per window: bounds, parameters, scores, equity and trade count."""
        return pd.DataFrame(
            [
                {
                    **dataclasses.asdict(w.window),
                    **{f"param_{k}": v for k, v in w.params.items()},
                    "in_sample_score": w.in_sample_score,
                    "out_of_sample_score": w.out_of_sample_score,
                    "start_equity": w.start_equity,
                    "end_equity": w.end_equity,
                    "out_of_sample_trades": w.out_of_sample_metrics.total_trades,
                }
                for w in self.windows
            ]
        )


def parameter_stability(chosen: list[dict[str, Any]], names: list[str]) -> dict[str, dict[str, Any]]:
    """Distinct values, most common value and, for numbers, mean / std / coefficient of variation."""
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        values = [params.get(name) for params in chosen]
        counts = Counter(map(repr, values))
        entry: dict[str, Any] = {
            "distinct": len(counts),
            "most_common": next(v for v in values if repr(v) == counts.most_common(1)[0][0]),
        }
        if values and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            array = np.asarray(values, dtype=np.float64)
            mean, std = float(array.mean()), float(array.std(ddof=0))
            entry.update(mean=mean, std=std, cv=std / abs(mean) if mean != 0 else math.nan)
        out[name] = entry
    return out


def walk_forward(
    strategy: optimize_module.StrategyRef,
    candles: pd.DataFrame,
    space: optimize_module.ParameterSpace | Mapping[str, Any],
    *,
    in_sample: int,
    out_of_sample: int,
    anchored: bool = False,
    method: optimize_module.Method = "grid",
    objective: optimize_module.Objective = "sharpe",
    n_trials: int = 100,
    seed: int | None = None,
    min_trades: int = 1,
    config: BacktestConfig | None = None,
    fixed_params: Mapping[str, Any] | None = None,
    workers: int | None = None,
    cancel: threading.Event | None = None,
) -> WalkForwardResult:
    """Walk-forward optimisation of ``strategy`` on ``candles`` (see the module docstring).

    Each window is optimised with :func:`optimize.optimize` (same ``method``, ``objective``,
    ``seed`` ...); with ``workers > 1`` one :class:`optimize.WorkerPool` serves every window.
    Raises ValidationFailed when the candles hold no full window or a window has no combination
    the strategy accepts. ``cancel`` stops before the next window.
    """
    config = config or BacktestConfig()
    if not isinstance(space, optimize_module.ParameterSpace):
        space = optimize_module.ParameterSpace.from_specs(strategy, space, fixed=fixed_params)
    windows = walk_forward_windows(
        len(candles), in_sample=in_sample, out_of_sample=out_of_sample, anchored=anchored
    )
    worker_count = workers or os.cpu_count() or 1
    pool = optimize_module.WorkerPool(worker_count) if worker_count > 1 else None
    results: list[WindowResult] = []
    bars_parts: list[np.ndarray] = []
    trades_parts: list[np.ndarray] = []
    equity = config.initial_cash
    try:
        for window in windows:
            if cancel is not None and cancel.is_set():
                break
            found = optimize_module.optimize(
                strategy,
                candles.iloc[window.in_sample_start : window.in_sample_end],
                space,
                method=method,
                objective=objective,
                n_trials=n_trials,
                seed=seed,
                min_trades=min_trades,
                config=config,
                workers=1,
                pool=pool,
            )
            if found.best_params is None:
                raise ValidationFailed(
                    f"window {window.index}: no parameter combination could be evaluated",
                    details={"field": "space", "window": window.index, "skipped": found.skipped},
                )
            oos_candles = candles.iloc[window.out_of_sample_start : window.out_of_sample_end]
            signals = out_of_sample_signals(strategy, candles, window, found.best_params)
            run = run_backtest(oos_candles, signals, dataclasses.replace(config, initial_cash=equity))
            oos_metrics = run.metrics()
            results.append(
                WindowResult(
                    window=window,
                    params=found.best_params,
                    in_sample_score=found.best_score,
                    out_of_sample_score=float(getattr(oos_metrics, objective)),
                    out_of_sample_metrics=oos_metrics,
                    start_equity=equity,
                    end_equity=run.final_equity,
                    evaluated=found.evaluated,
                    skipped=found.skipped,
                    failed=found.failed,
                )
            )
            trades = run.trades.copy()
            trades["entry_bar"] += window.out_of_sample_start - windows[0].out_of_sample_start
            trades["exit_bar"] += window.out_of_sample_start - windows[0].out_of_sample_start
            bars_parts.append(run.bars)
            trades_parts.append(trades)
            equity = run.final_equity
    finally:
        if pool is not None:
            pool.shutdown()
    return _stitch(results, bars_parts, trades_parts, candles, config, objective, space.names)


def _stitch(
    results: list[WindowResult],
    bars_parts: list[np.ndarray],
    trades_parts: list[np.ndarray],
    candles: pd.DataFrame,
    config: BacktestConfig,
    objective: str,
    names: list[str],
) -> WalkForwardResult:
    if not results:
        raise ValidationFailed(
            "walk-forward was cancelled before the first window", details={"field": "cancel"}
        )
    bars = np.concatenate(bars_parts)
    trades = np.concatenate(trades_parts)
    start, end = results[0].window.out_of_sample_start, results[-1].window.out_of_sample_end
    index = pd.Index(candles["timestamp"].to_numpy(np.int64)[start:end], name="timestamp")
    metrics = metrics_module.compute_metrics(
        bars, trades, initial_cash=config.initial_cash, timeframe=config.timeframe
    )
    return WalkForwardResult(
        windows=results,
        bars=bars,
        trades=trades,
        equity=pd.Series(bars["equity"], index=index, name="equity"),
        metrics=metrics,
        stability=parameter_stability([r.params for r in results], names),
        objective=objective,
    )
