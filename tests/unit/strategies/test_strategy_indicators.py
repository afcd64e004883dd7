"""Each indicator against an independent pandas/numpy computation, and its documented warm-up."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from cryptoorchestrator import indicators
from cryptoorchestrator.core.errors import ValidationFailed

RTOL = 1e-9


def leading_nans(values: np.ndarray) -> int:
    finite = np.flatnonzero(~np.isnan(values))
    return int(finite[0]) if len(finite) else len(values)


def wilder(values: np.ndarray, period: int, first: int) -> np.ndarray:
    """Wilder smoothing seeded with the mean of ``values[first : first + period]``."""
    out = np.full(len(values), np.nan)
    seed_end = first + period - 1
    out[seed_end] = values[first : seed_end + 1].mean()
    for index in range(seed_end + 1, len(values)):
        out[index] = (out[index - 1] * (period - 1) + values[index]) / period
    return out


def true_range(frame: pd.DataFrame) -> np.ndarray:
    previous = frame["close"].shift(1)
    ranges = pd.concat(
        [frame["high"] - frame["low"], (frame["high"] - previous).abs(), (frame["low"] - previous).abs()],
        axis=1,
    )
    return ranges.max(axis=1).to_numpy()


def test_sma_matches_pandas_rolling_mean(candles: pd.DataFrame) -> None:
    result = indicators.sma(candles["close"], 20)
    expected = candles["close"].rolling(20).mean().to_numpy()
    assert leading_nans(result) == 19
    np.testing.assert_allclose(result, expected, rtol=RTOL, equal_nan=True)


def test_ema_matches_sma_seeded_recursion(candles: pd.DataFrame) -> None:
    close, period = candles["close"].to_numpy(), 12
    expected = np.full(len(close), np.nan)
    expected[period - 1] = close[:period].mean()
    alpha = 2.0 / (period + 1)
    for index in range(period, len(close)):
        expected[index] = alpha * close[index] + (1 - alpha) * expected[index - 1]
    result = indicators.ema(close, period)
    assert leading_nans(result) == period - 1
    np.testing.assert_allclose(result, expected, rtol=RTOL, equal_nan=True)


def test_rsi_matches_wilder_reference(candles: pd.DataFrame) -> None:
    close, period = candles["close"].to_numpy(), 14
    change = np.diff(close, prepend=np.nan)
    gains = wilder(np.where(change > 0, change, 0.0), period, first=1)
    losses = wilder(np.where(change < 0, -change, 0.0), period, first=1)
    expected = 100.0 - 100.0 / (1.0 + gains / losses)
    result = indicators.rsi(close, period)
    assert leading_nans(result) == period
    np.testing.assert_allclose(result, expected, rtol=1e-8, equal_nan=True)


def test_macd_matches_pandas_ewm_after_convergence(candles: pd.DataFrame) -> None:
    close = candles["close"]
    line = close.ewm(span=12, adjust=False).mean() - close.ewm(span=26, adjust=False).mean()
    signal = line.ewm(span=9, adjust=False).mean()
    result = indicators.macd(close, 12, 26, 9)
    assert [leading_nans(values) for values in result] == [33, 33, 33]
    # Different EMA seeds: compare after the seeds have decayed, to the price scale.
    tail = slice(400, None)
    np.testing.assert_allclose(result.line[tail], line.to_numpy()[tail], atol=1e-9 * close.mean())
    np.testing.assert_allclose(result.signal[tail], signal.to_numpy()[tail], atol=1e-9 * close.mean())
    np.testing.assert_allclose(result.hist[tail], (line - signal).to_numpy()[tail], atol=1e-9 * close.mean())


def test_bollinger_matches_rolling_mean_and_population_std(candles: pd.DataFrame) -> None:
    close = candles["close"]
    middle = close.rolling(20).mean()
    std = close.rolling(20).std(ddof=0)
    bands = indicators.bollinger(close, 20, 2.5)
    assert leading_nans(bands.upper) == 19
    np.testing.assert_allclose(bands.middle, middle, rtol=RTOL, equal_nan=True)
    np.testing.assert_allclose(bands.upper, middle + 2.5 * std, rtol=1e-8, equal_nan=True)
    np.testing.assert_allclose(bands.lower, middle - 2.5 * std, rtol=1e-8, equal_nan=True)


def test_atr_matches_wilder_true_range(candles: pd.DataFrame) -> None:
    expected = wilder(true_range(candles), 14, first=1)
    result = indicators.atr(candles["high"], candles["low"], candles["close"], 14)
    assert leading_nans(result) == 14
    np.testing.assert_allclose(result, expected, rtol=1e-8, equal_nan=True)


def test_adx_matches_ewm_reference_after_convergence(candles: pd.DataFrame) -> None:
    period = 14
    high, low = candles["high"], candles["low"]
    up, down = high.diff(), -low.diff()
    plus_dm = pd.Series(np.where((up > down) & (up > 0), up, 0.0))
    minus_dm = pd.Series(np.where((down > up) & (down > 0), down, 0.0))
    alpha = 1.0 / period
    tr = pd.Series(true_range(candles))
    smoothed_tr = tr.ewm(alpha=alpha, adjust=False).mean()
    plus_di = 100 * plus_dm.ewm(alpha=alpha, adjust=False).mean() / smoothed_tr
    minus_di = 100 * minus_dm.ewm(alpha=alpha, adjust=False).mean() / smoothed_tr
    dx = 100 * (plus_di - minus_di).abs() / (plus_di + minus_di)
    expected = dx.ewm(alpha=alpha, adjust=False).mean().to_numpy()
    result = indicators.adx(high, low, candles["close"], period)
    assert leading_nans(result) == 2 * period - 1
    tail = slice(600, None)  # different seeding; (13/14)^600 is negligible
    np.testing.assert_allclose(result[tail], expected[tail], atol=1e-9)


def test_stochastic_matches_rolling_extremes(candles: pd.DataFrame) -> None:
    highest = candles["high"].rolling(14).max()
    lowest = candles["low"].rolling(14).min()
    fast_k = 100 * (candles["close"] - lowest) / (highest - lowest)
    slow_k = fast_k.rolling(3).mean()
    slow_d = slow_k.rolling(3).mean()
    result = indicators.stochastic(candles["high"], candles["low"], candles["close"], 14, 3, 3)
    assert leading_nans(result.k) == leading_nans(result.d) == 13 + 2 + 2
    valid = slice(17, None)
    np.testing.assert_allclose(result.k[valid], slow_k.to_numpy()[valid], rtol=1e-8)
    np.testing.assert_allclose(result.d[valid], slow_d.to_numpy()[valid], rtol=1e-8)


def test_obv_matches_signed_cumulative_volume(candles: pd.DataFrame) -> None:
    close, volume = candles["close"].to_numpy(), candles["volume"].to_numpy()
    signed = np.sign(np.diff(close)) * volume[1:]
    expected = volume[0] + np.concatenate([[0.0], np.cumsum(signed)])
    result = indicators.obv(close, volume)
    assert leading_nans(result) == 0
    np.testing.assert_allclose(result, expected, rtol=RTOL)


def test_vwap_rolling_and_cumulative_match_pandas(candles: pd.DataFrame) -> None:
    typical = (candles["high"] + candles["low"] + candles["close"]) / 3
    weighted = typical * candles["volume"]
    rolling = weighted.rolling(30).sum() / candles["volume"].rolling(30).sum()
    cumulative = weighted.cumsum() / candles["volume"].cumsum()
    args = (candles["high"], candles["low"], candles["close"], candles["volume"])
    result_rolling = indicators.vwap(*args, period=30)
    assert leading_nans(result_rolling) == 29
    np.testing.assert_allclose(result_rolling, rolling, rtol=RTOL, equal_nan=True)
    np.testing.assert_allclose(indicators.vwap(*args), cumulative, rtol=RTOL)


def test_vwap_zero_volume_window_is_nan() -> None:
    price = np.array([1.0, 2.0, 3.0, 4.0])
    volume = np.array([1.0, 0.0, 0.0, 2.0])
    result = indicators.vwap(price, price, price, volume, period=2)
    assert np.isnan(result[0]) and np.isnan(result[2])
    assert result[1] == 1.0 and result[3] == 4.0


def test_donchian_matches_rolling_max_min(candles: pd.DataFrame) -> None:
    channel = indicators.donchian(candles["high"], candles["low"], 20)
    upper = candles["high"].rolling(20).max().to_numpy()
    lower = candles["low"].rolling(20).min().to_numpy()
    assert leading_nans(channel.upper) == 19
    np.testing.assert_array_equal(channel.upper, upper)
    np.testing.assert_array_equal(channel.lower, lower)
    np.testing.assert_allclose(channel.middle, (upper + lower) / 2, equal_nan=True)


@pytest.mark.parametrize(
    "call",
    [
        lambda x: indicators.sma(x, 0),
        lambda x: indicators.rsi(x, 1),
        lambda x: indicators.ema(x, True),
        lambda x: indicators.macd(x, 26, 12),
        lambda x: indicators.bollinger(x, 20, -1.0),
        lambda x: indicators.atr(x, x[:-1], x, 14),
        lambda x: indicators.sma(np.ones((3, 3)), 2),
    ],
)
def test_bad_arguments_raise_validation_failed(call: Callable[[np.ndarray], object]) -> None:
    with pytest.raises(ValidationFailed):
        call(np.linspace(1.0, 2.0, 50))


def test_period_one_is_the_series_itself() -> None:
    values = np.array([3.0, 1.0, 2.0])
    np.testing.assert_array_equal(indicators.sma(values, 1), values)
    np.testing.assert_array_equal(indicators.ema(values, 1), values)


@pytest.mark.realdata
def test_indicators_on_real_btc_candles(real_candles: Callable[[str, int], pd.DataFrame]) -> None:
    frame = real_candles("binance_BTC-USDT_5m.csv", 20_000)
    np.testing.assert_allclose(
        indicators.sma(frame["close"], 50), frame["close"].rolling(50).mean(), rtol=RTOL, equal_nan=True
    )
    expected_atr = wilder(true_range(frame), 14, first=1)
    np.testing.assert_allclose(
        indicators.atr(frame["high"], frame["low"], frame["close"], 14),
        expected_atr,
        rtol=1e-8,
        equal_nan=True,
    )
    typical = (frame["high"] + frame["low"] + frame["close"]) / 3
    rolling = (typical * frame["volume"]).rolling(96).sum() / frame["volume"].rolling(96).sum()
    result = indicators.vwap(frame["high"], frame["low"], frame["close"], frame["volume"], period=96)
    np.testing.assert_allclose(result, rolling, rtol=1e-9, equal_nan=True)
