"""Optimisation throughput: a 200-combination SMA-cross grid on one core and on all cores.

Grid: fast 5..50 step 5 (10 values) x slow 20 evenly spaced values from 20 to 200 (20 values);
combinations with fast >= slow are skipped by the strategy's validation and counted. Data: the
first 105,120 rows (one year) of ``CO_DATA_DIR/binance_BTC-USDT_5m.csv``, synthetic candles with
a note when absent. Both runs happen in this process, one after the other.

Timing: numba compilation and process start-up are *not* in the headline numbers: the serial
path is warmed up by a small grid first, and the parallel path uses a :class:`WorkerPool`
started and warmed before timing (the pool a long-lived service or a walk-forward reuses). The
cost of an ad-hoc ``optimize(workers=N)`` that starts its own pool is timed too and printed
separately, end to end. Run::

    .venv/bin/python bench/optimize_speed.py
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from cryptoorchestrator.backtest import optimize as opt
from cryptoorchestrator.backtest.engine import BacktestConfig

ROWS = 105_120
SPACE = {
    "fast": {"low": 5, "high": 50, "step": 5},
    "slow": {"values": [int(v) for v in np.linspace(20, 200, 20).round()]},
}
CONFIG = BacktestConfig(timeframe="5m")


def synthetic(n: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 30_000.0 * np.exp(np.cumsum(rng.normal(0.0, 0.002, n)))
    open_ = np.concatenate(([30_000.0], close[:-1]))
    spread = rng.uniform(0.0, 0.001, n)
    return pd.DataFrame(
        {
            "timestamp": np.arange(n, dtype=np.int64) * 300_000,
            "open": open_,
            "high": np.maximum(open_, close) * (1 + spread),
            "low": np.minimum(open_, close) * (1 - spread),
            "close": close,
            "volume": rng.uniform(1.0, 100.0, n),
        }
    )


def load() -> tuple[str, pd.DataFrame]:
    root = os.environ.get("CO_DATA_DIR")
    path = Path(root) / "binance_BTC-USDT_5m.csv" if root else None
    if path is None or not path.is_file():
        print(
            f"note: binance_BTC-USDT_5m.csv not found (CO_DATA_DIR={root!r}); "
            f"using {ROWS:,} synthetic candles"
        )
        return "synthetic", synthetic(ROWS)
    return f"{path.name} (first {ROWS:,} rows)", pd.read_csv(path).iloc[:ROWS].reset_index(drop=True)


def _burn(n: int) -> float:
    started = time.perf_counter()
    total = 0
    for i in range(n):
        total += i * i
    return time.perf_counter() - started


def cpu_ceiling(cores: int) -> float:
    """Parallel efficiency of pure CPU work (a Python loop) on this machine, same pool kind."""
    import concurrent.futures as futures
    import multiprocessing

    n = 5_000_000
    serial = _burn(n) * cores
    with futures.ProcessPoolExecutor(cores, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(_burn, [10] * cores))
        started = time.perf_counter()
        list(pool.map(_burn, [n] * cores))
        wall = time.perf_counter() - started
    return serial / wall / cores


def timed(**kwargs: object) -> tuple[float, opt.OptimizationResult]:
    started = time.perf_counter()
    result = opt.optimize("sma_cross", CANDLES, SPACE, config=CONFIG, **kwargs)  # type: ignore[arg-type]
    return time.perf_counter() - started, result


def main() -> None:
    cores = os.cpu_count() or 1
    combos = len(opt.ParameterSpace.from_specs("sma_cross", SPACE).grid())
    print(f"data: {SOURCE}, {len(CANDLES):,} candles; grid {combos} combinations; cores: {cores}")
    opt.optimize("sma_cross", CANDLES.iloc[:2000], SPACE, config=CONFIG, workers=1)  # numba warm-up
    serial_s, serial = timed(workers=1)
    print(f"evaluated {serial.evaluated}, skipped {serial.skipped} (fast >= slow), failed {serial.failed}")
    started = time.perf_counter()
    with opt.WorkerPool(cores) as pool:
        opt.optimize(
            "sma_cross", CANDLES.iloc[:2000], SPACE, config=CONFIG, pool=pool
        )  # start + warm workers
        pool_start_s = time.perf_counter() - started
        parallel_s, parallel = timed(pool=pool)
    adhoc_s, adhoc = timed(workers=cores)
    if not (serial.best_params == parallel.best_params == adhoc.best_params):
        raise SystemExit("parallel and serial runs disagree on the best parameters")
    pd.testing.assert_frame_equal(serial.table, parallel.table)
    total = serial.total
    speedup = serial_s / parallel_s
    print(
        f"best {serial.best_params} sharpe {serial.best_score:.3f} (identical tables on 1 and {cores} cores)"
    )
    print(f"1 core      : {serial_s:7.2f} s  {total / serial_s:7.1f} combinations/s")
    print(
        f"{cores} cores     : {parallel_s:7.2f} s  {total / parallel_s:7.1f} combinations/s  "
        f"(warm WorkerPool; its start-up, {pool_start_s:.2f} s, excluded)"
    )
    print(f"speedup {speedup:.2f}x, parallel efficiency {speedup / cores:.0%} (target >= 75%)")
    print(
        f"reference: a pure-Python CPU loop on {cores} processes reaches {cpu_ceiling(cores):.0%} efficiency "
        "in this run (a reference for what the machine allows right now)"
    )
    adhoc_speedup = serial_s / adhoc_s
    print(
        f"ad hoc optimize(workers={cores}) end to end incl. spawning and warming its pool: {adhoc_s:.2f} s, "
        f"{total / adhoc_s:.1f} combinations/s, efficiency {adhoc_speedup / cores:.0%}"
    )


if __name__ == "__main__":  # spawn workers re-import this module: load data only in the parent
    SOURCE, CANDLES = load()
    main()
