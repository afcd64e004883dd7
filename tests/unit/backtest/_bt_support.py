"""Shared helpers of the backtest tests: synthetic candles, numpy SMA cross, real-data loader."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest


def synthetic_candles(n: int, *, seed: int = 7, start: float = 100.0) -> dict[str, np.ndarray]:
    """A geometric random walk with plausible highs, lows and volumes."""
    rng = np.random.default_rng(seed)
    close = start * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    open_ = np.concatenate(([start], close[:-1])) * np.exp(rng.normal(0.0, 0.001, n))
    high = np.maximum(open_, close) * (1.0 + rng.uniform(0.0, 0.01, n))
    low = np.minimum(open_, close) * (1.0 - rng.uniform(0.0, 0.01, n))
    volume = rng.uniform(10.0, 1000.0, n)
    return {"open": open_, "high": high, "low": low, "close": close, "volume": volume}


def sma(values: np.ndarray, window: int) -> np.ndarray:
    """Simple moving average with plain numpy; NaN for the first ``window - 1`` bars."""
    out = np.full(len(values), np.nan)
    csum = np.cumsum(np.concatenate(([0.0], values)))
    out[window - 1 :] = (csum[window:] - csum[:-window]) / window
    return out


def sma_cross(close: np.ndarray, fast: int = 10, slow: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Entries where the fast SMA crosses above the slow one, exits where it crosses below."""
    f, s = sma(close, fast), sma(close, slow)
    above = f > s
    below = f < s
    prev_above = np.concatenate(([False], above[:-1]))
    prev_below = np.concatenate(([False], below[:-1]))
    valid = np.concatenate(([False], ~np.isnan(s[:-1]))) & ~np.isnan(s)
    entries = above & ~prev_above & valid
    exits = below & ~prev_below & valid
    return entries, exits


def real_candles(name: str) -> dict[str, np.ndarray]:
    """Load a real candle CSV from CO_DATA_DIR, or skip the test with the reason."""
    root = os.environ.get("CO_DATA_DIR")
    if not root:
        pytest.skip("CO_DATA_DIR not set: the real candle files are not available")
    path = Path(root) / name
    if not path.is_file():
        pytest.skip(f"{name} is missing from CO_DATA_DIR={root}")
    frame = pd.read_csv(path)
    return {c: frame[c].to_numpy(np.float64) for c in ("open", "high", "low", "close", "volume")}
