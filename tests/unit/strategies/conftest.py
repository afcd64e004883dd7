"""Fixtures for the strategy tests: synthetic candles and the real-data loader."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest


def make_candles(count: int = 1500, *, seed: int = 7, start: float = 100.0) -> pd.DataFrame:
    """A deterministic random walk with consistent OHLC and positive volume."""
    rng = np.random.default_rng(seed)
    close = start * np.exp(np.cumsum(rng.normal(0.0, 0.01, count)))
    open_ = np.concatenate([[start], close[:-1]])
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0.0, 0.003, count)))
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0.0, 0.003, count)))
    return pd.DataFrame(
        {
            "timestamp": 1_700_000_000_000 + np.arange(count, dtype=np.int64) * 60_000,
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": rng.lognormal(3.0, 0.5, count),
        }
    )


def candles_from_close(close: list[float] | np.ndarray) -> pd.DataFrame:
    """Candles whose open/high/low equal the close (for hand-built series)."""
    values = np.asarray(close, dtype=np.float64)
    return pd.DataFrame(
        {
            "timestamp": np.arange(len(values), dtype=np.int64) * 60_000,
            "open": values,
            "high": values,
            "low": values,
            "close": values,
            "volume": np.ones(len(values)),
        }
    )


@pytest.fixture(scope="session")
def candles() -> pd.DataFrame:
    return make_candles()


@pytest.fixture(scope="session")
def real_candles() -> Callable[[str, int], pd.DataFrame]:
    """Return a loader of the first rows of a real candle CSV under CO_DATA_DIR (or skip)."""
    cache: dict[tuple[str, int], pd.DataFrame] = {}

    def load(name: str, rows: int = 20_000) -> pd.DataFrame:
        root = os.environ.get("CO_DATA_DIR")
        if not root:
            pytest.skip("CO_DATA_DIR not set: the real candle files are not available")
        path = Path(root) / name
        if not path.is_file():
            pytest.skip(f"{name} is missing from CO_DATA_DIR={root}")
        if (name, rows) not in cache:
            frame = pd.read_csv(path, nrows=rows)
            cache[(name, rows)] = frame.astype(
                {"timestamp": "int64"} | dict.fromkeys(frame.columns[1:], "float64")
            )
        return cache[(name, rows)]

    return load
