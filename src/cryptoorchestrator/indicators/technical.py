"""Technical indicators: thin wrappers over TA-Lib plus vectorised numpy where TA-Lib has none.

Every function takes numpy arrays or pandas Series (converted to contiguous float64) and returns
numpy float64 arrays of the same length. The first bars, before an indicator has enough history,
are NaN: each function states its *warm-up* (the number of leading NaN bars on NaN-free input).
All indicators are causal: the value at bar ``t`` uses inputs up to and including bar ``t`` only,
so they are safe for signals acted on at the next bar.

Warm-up lengths (``n`` = period):

============================  ===========================================================
``sma(n)``                    ``n - 1``
``ema(n)``                    ``n - 1`` (seeded with the SMA of the first ``n`` values)
``rsi(n)``                    ``n`` (Wilder smoothing)
``macd(fast, slow, signal)``  ``slow - 1 + signal - 1`` for all three outputs
``bollinger(n)``              ``n - 1``
``atr(n)``                    ``n`` (Wilder smoothing of the true range)
``adx(n)``                    ``2 * n - 1``
``stochastic(k, sk, sd)``     ``k - 1 + sk - 1 + sd - 1`` for both outputs
``obv()``                     ``0`` (starts at ``volume[0]``)
``vwap(period=n)``            ``n - 1``; ``vwap()`` (cumulative, session-less): ``0``
``donchian(n)``               ``n - 1``
============================  ===========================================================
"""

from __future__ import annotations

from typing import NamedTuple, TypeAlias

import numpy as np
import pandas as pd
import talib
from numpy.typing import NDArray

from cryptoorchestrator.core.errors import ValidationFailed

FloatArray: TypeAlias = NDArray[np.float64]
ArrayLike: TypeAlias = "NDArray[np.generic] | pd.Series[float]"

# TA-Lib's moving-average type for the simple average (its stubs do not re-export MA_Type).
_SMA = talib.MA_Type.SMA  # type: ignore[attr-defined]

__all__ = [
    "BollingerBands",
    "DonchianChannel",
    "FloatArray",
    "MacdResult",
    "StochasticResult",
    "adx",
    "atr",
    "bollinger",
    "donchian",
    "ema",
    "macd",
    "obv",
    "rsi",
    "sma",
    "stochastic",
    "vwap",
]


class MacdResult(NamedTuple):
    """MACD line (fast EMA - slow EMA), its signal EMA and the histogram (line - signal)."""

    line: FloatArray
    signal: FloatArray
    hist: FloatArray


class BollingerBands(NamedTuple):
    """Bollinger bands: middle SMA plus/minus ``stddev`` population standard deviations."""

    upper: FloatArray
    middle: FloatArray
    lower: FloatArray


class StochasticResult(NamedTuple):
    """Slow stochastic: %K (SMA-smoothed fast %K) and %D (SMA of %K), both in [0, 100]."""

    k: FloatArray
    d: FloatArray


class DonchianChannel(NamedTuple):
    """Donchian channel: highest high, lowest low over the window (current bar included) and mid."""

    upper: FloatArray
    middle: FloatArray
    lower: FloatArray


def _as_float64(values: ArrayLike, name: str = "values") -> FloatArray:
    if isinstance(values, pd.Series):
        array = values.to_numpy(dtype=np.float64)
    else:
        array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValidationFailed(
            f"{name} must be one-dimensional", details={"field": name, "shape": list(array.shape)}
        )
    return np.ascontiguousarray(array)


def _same_length(**arrays: FloatArray) -> None:
    lengths = {name: len(array) for name, array in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValidationFailed("input arrays have different lengths", details={"lengths": lengths})


def _check_period(period: int, name: str = "period", minimum: int = 1) -> None:
    # bool is an int subclass; a period of True would silently mean 1.
    if isinstance(period, bool) or not isinstance(period, int | np.integer) or period < minimum:
        raise ValidationFailed(
            f"{name} must be an integer >= {minimum}", details={"field": name, "value": repr(period)}
        )


def sma(close: ArrayLike, period: int) -> FloatArray:
    """Simple moving average. Warm-up ``period - 1`` bars."""
    _check_period(period)
    values = _as_float64(close, "close")
    if period == 1:  # TA-Lib requires >= 2; a 1-bar average is the series itself
        return values.copy()
    return np.asarray(talib.SMA(values, timeperiod=period), dtype=np.float64)


def ema(close: ArrayLike, period: int) -> FloatArray:
    """Exponential moving average, alpha ``2 / (period + 1)``, seeded with the SMA of the first
    ``period`` values (TA-Lib's classic seeding). Warm-up ``period - 1`` bars."""
    _check_period(period)
    values = _as_float64(close, "close")
    if period == 1:
        return values.copy()
    return np.asarray(talib.EMA(values, timeperiod=period), dtype=np.float64)


def rsi(close: ArrayLike, period: int = 14) -> FloatArray:
    """Wilder's relative strength index in [0, 100]. Warm-up ``period`` bars."""
    _check_period(period, minimum=2)
    return np.asarray(talib.RSI(_as_float64(close, "close"), timeperiod=period), dtype=np.float64)


def macd(close: ArrayLike, fast: int = 12, slow: int = 26, signal: int = 9) -> MacdResult:
    """MACD with EMA averages. Warm-up ``slow - 1 + signal - 1`` bars for all three outputs.

    TA-Lib seeds the fast EMA so that both EMAs start at the same bar; after a few hundred bars
    the values agree with any other EMA seeding to floating-point precision.
    """
    _check_period(fast, "fast", minimum=2)
    _check_period(slow, "slow", minimum=2)
    _check_period(signal, "signal")
    if fast >= slow:
        raise ValidationFailed("fast must be smaller than slow", details={"fast": fast, "slow": slow})
    line, sig, hist = talib.MACD(
        _as_float64(close, "close"), fastperiod=fast, slowperiod=slow, signalperiod=signal
    )
    return MacdResult(
        np.asarray(line, dtype=np.float64),
        np.asarray(sig, dtype=np.float64),
        np.asarray(hist, dtype=np.float64),
    )


def bollinger(close: ArrayLike, period: int = 20, stddev: float = 2.0) -> BollingerBands:
    """Bollinger bands around the SMA with population (ddof=0) standard deviation.

    Warm-up ``period - 1`` bars.
    """
    _check_period(period, minimum=2)
    if not np.isfinite(stddev) or stddev <= 0:
        raise ValidationFailed("stddev must be a positive number", details={"field": "stddev"})
    upper, middle, lower = talib.BBANDS(
        _as_float64(close, "close"),
        timeperiod=period,
        nbdevup=stddev,
        nbdevdn=stddev,
        matype=_SMA,
    )
    return BollingerBands(
        np.asarray(upper, dtype=np.float64),
        np.asarray(middle, dtype=np.float64),
        np.asarray(lower, dtype=np.float64),
    )


def atr(high: ArrayLike, low: ArrayLike, close: ArrayLike, period: int = 14) -> FloatArray:
    """Average true range with Wilder smoothing, seeded with the mean true range of bars
    ``1..period``. Warm-up ``period`` bars."""
    _check_period(period)
    h, lo, c = _as_float64(high, "high"), _as_float64(low, "low"), _as_float64(close, "close")
    _same_length(high=h, low=lo, close=c)
    return np.asarray(talib.ATR(h, lo, c, timeperiod=period), dtype=np.float64)


def adx(high: ArrayLike, low: ArrayLike, close: ArrayLike, period: int = 14) -> FloatArray:
    """Wilder's average directional index in [0, 100]. Warm-up ``2 * period - 1`` bars."""
    _check_period(period, minimum=2)
    h, lo, c = _as_float64(high, "high"), _as_float64(low, "low"), _as_float64(close, "close")
    _same_length(high=h, low=lo, close=c)
    return np.asarray(talib.ADX(h, lo, c, timeperiod=period), dtype=np.float64)


def stochastic(
    high: ArrayLike,
    low: ArrayLike,
    close: ArrayLike,
    k_period: int = 14,
    smooth_k: int = 3,
    smooth_d: int = 3,
) -> StochasticResult:
    """Slow stochastic oscillator with SMA smoothing.

    Fast %K is ``100 * (close - lowest low) / (highest high - lowest low)`` over ``k_period`` bars
    (0 when the range is zero); %K is its ``smooth_k`` SMA and %D the ``smooth_d`` SMA of %K.
    Warm-up ``k_period - 1 + smooth_k - 1 + smooth_d - 1`` bars for both outputs.
    """
    _check_period(k_period, "k_period")
    _check_period(smooth_k, "smooth_k")
    _check_period(smooth_d, "smooth_d")
    h, lo, c = _as_float64(high, "high"), _as_float64(low, "low"), _as_float64(close, "close")
    _same_length(high=h, low=lo, close=c)
    k, d = talib.STOCH(
        h,
        lo,
        c,
        fastk_period=k_period,
        slowk_period=smooth_k,
        slowk_matype=_SMA,
        slowd_period=smooth_d,
        slowd_matype=_SMA,
    )
    return StochasticResult(np.asarray(k, dtype=np.float64), np.asarray(d, dtype=np.float64))


def obv(close: ArrayLike, volume: ArrayLike) -> FloatArray:
    """On-balance volume, starting at ``volume[0]``: adds the volume on up closes, subtracts it
    on down closes, unchanged on flat closes. Warm-up 0 bars."""
    c, v = _as_float64(close, "close"), _as_float64(volume, "volume")
    _same_length(close=c, volume=v)
    return np.asarray(talib.OBV(c, v), dtype=np.float64)


def vwap(
    high: ArrayLike,
    low: ArrayLike,
    close: ArrayLike,
    volume: ArrayLike,
    period: int | None = None,
) -> FloatArray:
    """Volume-weighted average of the typical price ``(high + low + close) / 3``.

    With ``period`` the average is over the last ``period`` bars (warm-up ``period - 1``);
    without it the average is cumulative from the first bar (session-less, warm-up 0). A window
    with zero total volume gives NaN. TA-Lib has no VWAP: this is vectorised numpy; the rolling
    form sums each window directly (no difference of cumulative sums, which loses precision on
    long series).
    """
    h, lo, c, v = (
        _as_float64(high, "high"),
        _as_float64(low, "low"),
        _as_float64(close, "close"),
        _as_float64(volume, "volume"),
    )
    _same_length(high=h, low=lo, close=c, volume=v)
    weighted = (h + lo + c) / 3.0 * v
    out = np.full(len(c), np.nan)
    if period is None:
        price_volume, total_volume = np.cumsum(weighted), np.cumsum(v)
        np.divide(price_volume, total_volume, out=out, where=total_volume != 0)
        return out
    _check_period(period)
    if len(c) < period:
        return out
    windows = np.lib.stride_tricks.sliding_window_view
    price_volume = windows(weighted, period).sum(axis=1)
    total_volume = windows(v, period).sum(axis=1)
    tail = out[period - 1 :]
    np.divide(price_volume, total_volume, out=tail, where=total_volume != 0)
    return out


def donchian(high: ArrayLike, low: ArrayLike, period: int = 20) -> DonchianChannel:
    """Donchian channel over the last ``period`` bars, the current bar included.

    Warm-up ``period - 1`` bars. A breakout rule compares the close with the *previous* bar's
    channel (shift by one), otherwise the close can never exceed a channel that contains it.
    """
    _check_period(period)
    h, lo = _as_float64(high, "high"), _as_float64(low, "low")
    _same_length(high=h, low=lo)
    if period == 1:
        upper, lower = h.copy(), lo.copy()
    else:
        upper = np.asarray(talib.MAX(h, timeperiod=period), dtype=np.float64)
        lower = np.asarray(talib.MIN(lo, timeperiod=period), dtype=np.float64)
    return DonchianChannel(upper, (upper + lower) / 2.0, lower)
