"""Benchmark: read one million candles from the CandleStore against pandas, in the same run.

Builds a one-million-candle 1m dataset (the real 1m files found through ``CO_DATA_DIR`` laid end to
end on one continuous minute grid, repeated as needed; synthetic candles when the variable is
unset), stores it, writes the same candles to a CSV, checks that every reader returns identical
values, then times (best of ``--repeat`` runs, ``time.perf_counter``):

* ``CandleStore.read`` of the full one-million-candle range (a writable DataFrame),
* ``CandleStore.read(copy=False)`` and ``CandleStore.read_arrow`` (zero-copy variants),
* ``pandas.read_csv`` of the same candles,
* ``pandas.read_parquet`` of the very Parquet file the store wrote,
* a one-day range (1,440 candles) from the store against ``read_parquet`` + a boolean filter,

and prints each time and how many times faster the store is.

Usage: ``.venv/bin/python bench/candle_store.py [--rows N] [--repeat K] [--keep DIR]``
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cryptoorchestrator.marketdata.store import CandleStore
from cryptoorchestrator.marketdata.synthetic import generate_candles

REAL_1M_FILES = (
    "binance_BTC-USDT_1m.csv",
    "binance_ETH-USDT_1m.csv",
    "binance_FIL-USDT_1m.csv",
    "binance_NEAR-USDT_1m.csv",
)
START_MS = 1_577_836_800_000  # 2020-01-01 00:00 UTC
MINUTE_MS = 60_000
DAY = 1_440


def build_candles(rows: int) -> tuple[pd.DataFrame, str, str]:
    """(candles, description, source label): real 1m candles re-timed onto one grid, or synthetic."""
    data_dir = os.environ.get("CO_DATA_DIR")
    paths = [Path(data_dir) / name for name in REAL_1M_FILES] if data_dir else []
    paths = [path for path in paths if path.is_file()]
    if not paths:
        frame = generate_candles("BTC/USDT", "1m", start_ms=START_MS, count=rows, seed=0)
        return frame, f"{rows:,} synthetic 1m candles (CO_DATA_DIR not set)", "synthetic"
    parts = [pd.read_csv(path) for path in paths]
    available = sum(len(part) for part in parts)
    repeats = -(-rows // available)
    frame = pd.concat(parts * repeats, ignore_index=True).iloc[:rows]
    frame = frame.astype({column: "float64" for column in ("open", "high", "low", "close", "volume")})
    # Values stay as printed by the exchange; only the open times move onto one continuous grid.
    frame["timestamp"] = START_MS + np.arange(rows, dtype=np.int64) * MINUTE_MS
    names = ", ".join(path.name for path in paths)
    description = f"{rows:,} real 1m candles ({available:,} from {names}; repeated x{repeats}, re-timed)"
    return frame.reset_index(drop=True), description, "import"


def best_of(repeat: int, function: Callable[[], Any]) -> float:
    """Best wall time in seconds of ``repeat`` calls (after one untimed warm-up call)."""
    function()
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="candles in the dataset")
    parser.add_argument("--repeat", type=int, default=7, help="timed runs per reader (best is kept)")
    parser.add_argument("--keep", type=Path, default=None, help="write the files here and keep them")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="candle-bench-") as scratch:
        folder = args.keep or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        frame, description, label = build_candles(args.rows)
        print(f"dataset: {description}")

        store = CandleStore(folder / "store")
        if store.exists("bench", "BTC/USDT", "1m"):
            store.delete("bench", "BTC/USDT", "1m")
        started = time.perf_counter()
        store.append("bench", "BTC/USDT", "1m", frame, source=label)
        write_seconds = time.perf_counter() - started
        parquet_path = store.path_for("bench", "BTC/USDT", "1m")
        csv_path = folder / "candles.csv"
        frame.to_csv(csv_path, index=False)
        parquet_mib = parquet_path.stat().st_size / 2**20
        csv_mib = csv_path.stat().st_size / 2**20
        print(
            f"stored in {write_seconds * 1000:.0f} ms: {parquet_mib:.1f} MiB Parquet, {csv_mib:.1f} MiB CSV"
        )

        first, last = int(frame["timestamp"].iloc[0]), int(frame["timestamp"].iloc[-1])
        end = last + MINUTE_MS
        day_start = first + (args.rows // 2) * MINUTE_MS
        day_end = day_start + DAY * MINUTE_MS

        # Same candles, bit for bit, from every reader (checked before anything is timed).
        from_store = store.read("bench", "BTC/USDT", "1m", first, end)
        assert len(from_store) == args.rows
        pd.testing.assert_frame_equal(from_store, frame, check_exact=True)
        pd.testing.assert_frame_equal(
            pd.read_csv(csv_path).astype(frame.dtypes.to_dict()), frame, check_exact=True
        )
        pd.testing.assert_frame_equal(pd.read_parquet(parquet_path), frame, check_exact=True)

        def parquet_day() -> pd.DataFrame:
            full = pd.read_parquet(parquet_path)
            return full[(full["timestamp"] >= day_start) & (full["timestamp"] < day_end)]

        assert len(store.read("bench", "BTC/USDT", "1m", day_start, day_end)) == len(parquet_day()) == DAY

        repeat = args.repeat
        times = {
            "store.read (DataFrame)": best_of(
                repeat, lambda: store.read("bench", "BTC/USDT", "1m", first, end)
            ),
            "store.read (copy=False)": best_of(
                repeat, lambda: store.read("bench", "BTC/USDT", "1m", first, end, copy=False)
            ),
            "store.read_arrow": best_of(
                repeat, lambda: store.read_arrow("bench", "BTC/USDT", "1m", first, end)
            ),
            "pandas.read_parquet": best_of(repeat, lambda: pd.read_parquet(parquet_path)),
            "pandas.read_csv": best_of(max(1, repeat // 2), lambda: pd.read_csv(csv_path)),
            "store.read one day": best_of(
                repeat, lambda: store.read("bench", "BTC/USDT", "1m", day_start, day_end)
            ),
            "read_parquet + filter one day": best_of(repeat, parquet_day),
        }

    print(f"\nbest of {repeat} runs (read_csv: best of {max(1, repeat // 2)}), {args.rows:,} candles:")
    for name, seconds in times.items():
        print(f"  {name:<32} {seconds * 1000:10.2f} ms")
    store_time = times["store.read (DataFrame)"]
    print("\nratios (how many times faster the store is):")
    print(f"  store.read vs pandas.read_csv      {times['pandas.read_csv'] / store_time:8.1f}x")
    print(f"  store.read vs pandas.read_parquet  {times['pandas.read_parquet'] / store_time:8.1f}x")
    zero_copy = times["store.read (copy=False)"]
    print(f"  store.read(copy=False) vs read_parquet {times['pandas.read_parquet'] / zero_copy:4.1f}x")
    one_day = times["read_parquet + filter one day"] / times["store.read one day"]
    print(f"  one-day range vs read_parquet+filter   {one_day:6.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
