"""Backtest speed: our numba kernel against vectorbt and backtesting.py, measured in one run.

Strategy: SMA cross (fast 10, slow 30), long only, whole equity, 0.1% commission per side, fill
at the next bar's open, no slippage. Data: the real BTC/USDT 1m and 5m candles from
``CO_DATA_DIR`` (synthetic data with a note when absent) and a synthetic 1,000,000-candle series.

Timing is end to end from candles in memory to results: indicator computation included, file
loading excluded. Numba compiles once per process (and caches to disk): every engine is warmed
up once on a small series before timing, and each timing is the best of ``--repeat`` runs.

The optional competitors come from the ``bench`` extra; when they are not importable the script
says so and still measures our engine. Run::

    .venv/bin/python bench/backtest_speed.py [--repeat 3] [--skip-backtesting-py-above 200000]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from cryptoorchestrator.backtest.engine import BacktestConfig, run_backtest

FAST, SLOW, FEE, CASH = 10, 30, 0.001, 10_000.0
Trades = list[tuple[int, int]]  # (entry bar, exit bar) of closed trades


def sma(values: np.ndarray, window: int) -> np.ndarray:
    out = np.full(len(values), np.nan)
    csum = np.cumsum(np.concatenate(([0.0], values)))
    out[window - 1 :] = (csum[window:] - csum[:-window]) / window
    return out


def sma_cross_signals(close: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Entries: fast crosses above slow (was <=, now >); exits: crosses below."""
    f, s = sma(close, FAST), sma(close, SLOW)
    diff = f - s
    prev = np.concatenate(([np.nan], diff[:-1]))
    return (prev <= 0) & (diff > 0), (prev >= 0) & (diff < 0)


def synthetic(n: int, seed: int = 1) -> pd.DataFrame:
    """Trending random walk (returns are a 60-bar moving sum of noise), so the strategy neither
    trades every few bars nor loses all its cash to fees: every engine keeps trading to the end."""
    rng = np.random.default_rng(seed)
    window = 60
    noise = rng.normal(0.0, 0.001, n + window)
    returns = np.convolve(noise, np.full(window, 3.0 / window**1.5), "valid")[:n]
    close = 30_000.0 * np.exp(np.cumsum(returns))
    open_ = np.concatenate(([30_000.0], close[:-1]))
    spread = rng.uniform(0.0, 0.001, n)
    return pd.DataFrame(
        {
            "open": open_,
            "high": np.maximum(open_, close) * (1 + spread),
            "low": np.minimum(open_, close) * (1 - spread),
            "close": close,
            "volume": rng.uniform(1.0, 100.0, n),
        },
        index=pd.date_range("2020-01-01", periods=n, freq="1min"),
    )


def load(name: str, fallback_rows: int) -> tuple[str, pd.DataFrame]:
    root = os.environ.get("CO_DATA_DIR")
    path = Path(root) / name if root else None
    if path is None or not path.is_file():
        print(f"note: {name} not found (CO_DATA_DIR={root!r}); using {fallback_rows:,} synthetic candles")
        return f"synthetic ({name} missing)", synthetic(fallback_rows, seed=fallback_rows)
    frame = pd.read_csv(path)
    frame.index = pd.to_datetime(frame.pop("timestamp"), unit="ms")
    return name, frame


# --- engines: each takes the candles and returns the closed trades -----------------------------


def run_ours(df: pd.DataFrame) -> Trades:
    close = df["close"].to_numpy(np.float64)
    entries, exits = sma_cross_signals(close)
    config = BacktestConfig(initial_cash=CASH, taker_fee=FEE, maker_fee=FEE, slippage_bps=0.0)
    result = run_backtest(df, {"entry_long": entries, "exit_long": exits}, config)
    closed = result.trades[result.trades["exit_reason"] != 5]
    return list(zip(closed["entry_bar"].tolist(), closed["exit_bar"].tolist(), strict=True))


def make_vectorbt() -> Callable[[pd.DataFrame], Trades] | None:
    try:
        import vectorbt as vbt
    except ImportError as exc:
        print(f"note: vectorbt is not importable ({exc}); install the 'bench' extra to compare")
        return None

    def run_vbt(df: pd.DataFrame) -> Trades:
        close = df["close"]
        fast, slow = vbt.MA.run(close, FAST), vbt.MA.run(close, SLOW)
        # Signals act on the next bar's open: shift them one bar and trade at the open price.
        entries = fast.ma_crossed_above(slow).shift(1, fill_value=False)
        exits = fast.ma_crossed_below(slow).shift(1, fill_value=False)
        pf = vbt.Portfolio.from_signals(
            close, entries, exits, price=df["open"], init_cash=CASH, fees=FEE, freq="1min"
        )
        rec = pf.trades.records
        rec = rec[rec["status"] == 1]  # closed
        return list(zip(rec["entry_idx"].tolist(), rec["exit_idx"].tolist(), strict=True))

    return run_vbt


def make_backtesting_py() -> Callable[[pd.DataFrame], Trades] | None:
    try:
        from backtesting import Backtest, Strategy
        from backtesting.lib import crossover
    except ImportError as exc:
        print(f"note: backtesting.py is not importable ({exc}); install the 'bench' extra to compare")
        return None

    def rolling_mean(values: np.ndarray, window: int) -> np.ndarray:
        return pd.Series(values).rolling(window).mean().to_numpy()

    class SmaCross(Strategy):  # type: ignore[misc]
        def init(self) -> None:
            self.fast = self.I(rolling_mean, self.data.Close, FAST)
            self.slow = self.I(rolling_mean, self.data.Close, SLOW)

        def next(self) -> None:
            if not self.position and crossover(self.fast, self.slow):
                self.buy()
            elif self.position and crossover(self.slow, self.fast):
                self.position.close()

    def run_btpy(df: pd.DataFrame) -> Trades:
        data = df.rename(columns=str.capitalize)
        # backtesting.py buys whole units: give it enough cash for whole BTC.
        bt = Backtest(data, SmaCross, cash=CASH * 1e4, commission=FEE, finalize_trades=False)
        with contextlib.redirect_stderr(io.StringIO()):  # its tqdm progress bar
            stats = bt.run()
        trades = stats._trades
        return list(zip(trades["EntryBar"].tolist(), trades["ExitBar"].tolist(), strict=True))

    return run_btpy


def timed(fn: Callable[[pd.DataFrame], Trades], df: pd.DataFrame, repeat: int) -> tuple[float, Trades]:
    best, trades = float("inf"), []
    for _ in range(repeat):
        start = time.perf_counter()
        trades = fn(df)
        best = min(best, time.perf_counter() - start)
    return best, trades


def compare(name: str, ours: Trades, other: Trades) -> str:
    if ours == other:
        return f"{name}: same {len(ours)} trades, same entry/exit bars"
    same = len(set(ours) & set(other))
    return (
        f"{name}: DIFFERENT trades: ours {len(ours)}, {name} {len(other)}, "
        f"{same} identical (entry, exit) pairs"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-backtesting-py-above", type=int, default=2_000_000)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")  # competitors' deprecation chatter, not our concern here

    engines: dict[str, Callable[[pd.DataFrame], Trades]] = {"ours": run_ours}
    for name, factory in (("vectorbt", make_vectorbt), ("backtesting.py", make_backtesting_py)):
        engine = factory()
        if engine is not None:
            engines[name] = engine

    warm = synthetic(2_000)
    for engine in engines.values():
        engine(warm)
    print(f"warm-up: each engine ran once on 2,000 candles (numba compile excluded); best of {args.repeat}")

    datasets = [load("binance_BTC-USDT_1m.csv", 130_708), load("binance_BTC-USDT_5m.csv", 140_614)]
    datasets.append(("synthetic 1,000,000 x 1m", synthetic(1_000_000)))
    for label, df in datasets:
        n = len(df)
        print(f"\n== {label}: {n:,} candles")
        results: dict[str, tuple[float, Trades]] = {}
        for name, engine in engines.items():
            if name == "backtesting.py" and n > args.skip_backtesting_py_above:
                print(f"  {name:15s} skipped (more than {args.skip_backtesting_py_above:,} candles)")
                continue
            results[name] = timed(engine, df, 1 if name == "backtesting.py" else args.repeat)
            seconds = results[name][0]
            print(f"  {name:15s} {seconds * 1e3:10.1f} ms  {n / seconds:14,.0f} candles/s")
        ours_time, ours_trades = results["ours"]
        for name, (seconds, trades) in results.items():
            if name != "ours":
                ratio = seconds / ours_time
                print(f"  ours is {ratio:6.1f}x faster than {name}; {compare(name, ours_trades, trades)}")


if __name__ == "__main__":
    main()
