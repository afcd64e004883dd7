"""Synthetic candles: determinism, OHLC validity, realism and the offline first-run helper."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cryptoorchestrator.core.errors import InvalidDateRange, InvalidTimeframe, ValidationFailed
from cryptoorchestrator.marketdata import timeframes as tf
from cryptoorchestrator.marketdata.store import CandleStore
from cryptoorchestrator.marketdata.synthetic import (
    DEFAULT_START_MS,
    ensure_synthetic_datasets,
    generate_candles,
    profile_for,
)
from cryptoorchestrator.marketdata.validation import validate_frame

START = DEFAULT_START_MS  # 2023-01-01 00:00 UTC, a Sunday


def test_same_inputs_give_identical_output() -> None:
    first = generate_candles("BTC/USDT", "5m", start_ms=START, count=5000, seed=42)
    second = generate_candles("BTC/USDT", "5m", start_ms=START, count=5000, seed=42)
    pd.testing.assert_frame_equal(first, second, check_exact=True)
    prefix = generate_candles("BTC/USDT", "5m", start_ms=START, count=100, seed=42)
    assert len(prefix) == 100 and prefix["timestamp"].tolist() == first["timestamp"][:100].tolist()


@pytest.mark.parametrize(("change", "value"), [("seed", 43), ("symbol", "ETH/USDT"), ("timeframe", "15m")])
def test_different_inputs_give_different_series(change: str, value: object) -> None:
    base: dict[str, object] = {"symbol": "BTC/USDT", "timeframe": "5m", "seed": 42}
    other = {**base, change: value}
    a = generate_candles(base["symbol"], base["timeframe"], start_ms=START, count=500, seed=base["seed"])  # type: ignore[arg-type]
    b = generate_candles(other["symbol"], other["timeframe"], start_ms=START, count=500, seed=other["seed"])  # type: ignore[arg-type]
    assert not np.array_equal(a["close"].to_numpy(), b["close"].to_numpy())


@pytest.mark.parametrize("timeframe", ["1m", "1h", "4h", "1d", "1w", "1M"])
def test_candles_obey_ohlc_rules_and_timeframe(timeframe: str) -> None:
    start = tf.align_up(START, timeframe)
    frame = generate_candles("SOL/USDT", timeframe, start_ms=start, count=3000 if timeframe != "1M" else 300)
    report = validate_frame(frame, timeframe=timeframe)
    assert report.ok, report.problems[:5]
    assert frame["timestamp"].iloc[0] == start
    assert np.all(np.diff(tf.period_index(frame["timestamp"], timeframe)) == 1)  # no gaps
    assert np.all(frame[["open", "high", "low", "close", "volume"]].to_numpy() > 0)
    assert frame["open"].iloc[1:].tolist() == frame["close"].iloc[:-1].tolist()  # opens at last close


def test_prices_sit_on_the_tick_and_look_like_a_market() -> None:
    frame = generate_candles("BTC/USDT", "1h", start_ms=START, count=24 * 365, seed=1)
    cents = frame[["open", "high", "low", "close"]].to_numpy() * 100
    assert np.all(np.abs(cents - np.round(cents)) < 1e-6)
    returns = np.diff(np.log(frame["close"].to_numpy()))
    yearly_volatility = returns.std() * np.sqrt(24 * 365)
    assert 0.2 < yearly_volatility < 1.5
    assert frame["high"].gt(frame[["open", "close"]].max(axis=1)).mean() > 0.5  # real wicks


def test_unknown_symbols_get_a_deterministic_profile() -> None:
    assert profile_for("DOGE/USDT") == profile_for("DOGE/USDT")
    assert profile_for("DOGE/USDT") != profile_for("PEPE/USDT")
    frame = generate_candles("DOGE/USDT", "1h", start_ms=START, count=2000)
    assert validate_frame(frame, timeframe="1h").ok


def test_invalid_arguments() -> None:
    with pytest.raises(InvalidDateRange):
        generate_candles("BTC/USDT", "1h", start_ms=START + 1, count=10)
    with pytest.raises(ValidationFailed):
        generate_candles("BTC/USDT", "1h", start_ms=START, count=-1)
    with pytest.raises(InvalidTimeframe):
        generate_candles("BTC/USDT", "2m", start_ms=START, count=10)
    assert generate_candles("BTC/USDT", "1h", start_ms=START, count=0).empty


def test_ensure_creates_missing_symbols_once(store: CandleStore) -> None:
    result = ensure_synthetic_datasets(store, timeframe="4h", count=500)
    assert result.created == ("BTC/USDT", "ETH/USDT", "SOL/USDT") and result.skipped == ()
    listed = store.datasets()
    assert [(d.exchange, d.symbol, d.timeframe, d.rows, d.source) for d in listed] == [
        ("synthetic", symbol, "4h", 500, "synthetic") for symbol in ("BTC/USDT", "ETH/USDT", "SOL/USDT")
    ]
    expected = generate_candles("ETH/USDT", "4h", start_ms=START, count=500)
    pd.testing.assert_frame_equal(store.read("synthetic", "ETH/USDT", "4h"), expected, check_exact=True)
    again = ensure_synthetic_datasets(store, timeframe="4h", count=500)
    assert again.created == () and len(again.skipped) == 3


def test_ensure_never_shadows_real_data(store: CandleStore) -> None:
    real = generate_candles("BTC/USDT", "1h", start_ms=START, count=10)
    store.append("binance", "BTC/USDT", "1h", real, source="import")
    result = ensure_synthetic_datasets(store, ["BTC/USDT", "ADA/USDT"], "1h", count=48)
    assert result.created == ("ADA/USDT",) and result.skipped == ("BTC/USDT",)
    assert not store.exists("synthetic", "BTC/USDT", "1h")
    assert store.info("synthetic", "ADA/USDT", "1h").rows == 48


def test_ensure_default_is_two_years_of_hourly_candles(store: CandleStore) -> None:
    ensure_synthetic_datasets(store, ["BTC/USDT"])
    info = store.info("synthetic", "BTC/USDT", "1h")
    assert (info.rows, info.first_ms, info.gaps) == (730 * 24, START, 0)
