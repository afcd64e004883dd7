"""Candle timeframes: ccxt timeframe strings, their length in milliseconds and bucket alignment.

Timeframes are the strings ccxt uses (``1m`` .. ``1w`` and ``1M``). Candles are identified by their
*open* time in milliseconds since the Unix epoch (UTC) and every candle opens on a bucket boundary:

* fixed timeframes from ``1m`` to ``3d`` are aligned to the epoch (1970-01-01 00:00 UTC), which is
  what exchanges do for minutes, hours, days and (Binance) 3-day candles;
* ``1w`` buckets open on Monday 00:00 UTC (ccxt and Binance weekly candles), so they are offset by
  four days from the epoch, a Thursday;
* ``1M`` buckets open on the first day of each calendar month, 00:00 UTC; their length varies, so
  :func:`timeframe_to_ms` returns ccxt's nominal 30 days and everything that needs the real bucket
  edges goes through :func:`period_index` and :func:`period_start`.

Bucket arithmetic works on whole numpy arrays (no per-candle Python) so that the store, the resampler
and the gap finder can use it on millions of candles.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from cryptoorchestrator.core.errors import InvalidTimeframe

MINUTE_MS: Final = 60_000
HOUR_MS: Final = 60 * MINUTE_MS
DAY_MS: Final = 24 * HOUR_MS
WEEK_MS: Final = 7 * DAY_MS
MONTH: Final = "1M"
MONTH_NOMINAL_MS: Final = 30 * DAY_MS
"""What ``ccxt.Exchange.parse_timeframe('1M')`` returns (in seconds * 1000)."""

WEEK_OFFSET_MS: Final = 4 * DAY_MS
"""1970-01-01 was a Thursday: weekly buckets open on Mondays, the first of which is 1970-01-05."""

_FIXED_MS: Final[dict[str, int]] = {
    "1m": MINUTE_MS,
    "3m": 3 * MINUTE_MS,
    "5m": 5 * MINUTE_MS,
    "15m": 15 * MINUTE_MS,
    "30m": 30 * MINUTE_MS,
    "1h": HOUR_MS,
    "2h": 2 * HOUR_MS,
    "4h": 4 * HOUR_MS,
    "6h": 6 * HOUR_MS,
    "8h": 8 * HOUR_MS,
    "12h": 12 * HOUR_MS,
    "1d": DAY_MS,
    "3d": 3 * DAY_MS,
    "1w": WEEK_MS,
}

SUPPORTED_TIMEFRAMES: Final[tuple[str, ...]] = (*_FIXED_MS, MONTH)
"""Every timeframe the platform accepts, shortest first."""

Int64Array = npt.NDArray[np.int64]


def validate_timeframe(timeframe: str) -> str:
    """Return ``timeframe`` unchanged when it is supported, else raise :class:`InvalidTimeframe`.

    The check is exact and case-sensitive, as in ccxt: ``1m`` is a minute and ``1M`` a month.
    """
    if not isinstance(timeframe, str) or timeframe not in SUPPORTED_TIMEFRAMES:
        supported = ", ".join(SUPPORTED_TIMEFRAMES)
        raise InvalidTimeframe(
            f"Unsupported timeframe {timeframe!r}; supported timeframes: {supported}.",
            details={"timeframe": str(timeframe), "supported": list(SUPPORTED_TIMEFRAMES)},
        )
    return timeframe


def timeframe_to_ms(timeframe: str) -> int:
    """Length of one candle in milliseconds (``1M`` is ccxt's nominal 30 days).

    Raises:
        InvalidTimeframe: the string is not one of :data:`SUPPORTED_TIMEFRAMES`.
    """
    validate_timeframe(timeframe)
    return _FIXED_MS.get(timeframe, MONTH_NOMINAL_MS)


def is_calendar_timeframe(timeframe: str) -> bool:
    """True for timeframes whose buckets vary in length (only ``1M``)."""
    return validate_timeframe(timeframe) == MONTH


def _offset_ms(timeframe: str) -> int:
    return WEEK_OFFSET_MS if timeframe == "1w" else 0


def period_index(timestamps: npt.ArrayLike, timeframe: str) -> Int64Array:
    """Number of the bucket that holds each timestamp (ms): consecutive buckets differ by one.

    For fixed timeframes this is ``floor((ts - offset) / step)``; for ``1M`` it is the number of
    calendar months since January 1970. Works element-wise on arrays and never loops in Python.
    """
    validate_timeframe(timeframe)
    ts = np.asarray(timestamps, dtype=np.int64)
    if timeframe == MONTH:
        months = ts.astype("datetime64[ms]").astype("datetime64[M]")
        return months.astype(np.int64)
    return (ts - _offset_ms(timeframe)) // _FIXED_MS[timeframe]


def period_start(indices: npt.ArrayLike, timeframe: str) -> Int64Array:
    """Open time (ms) of the buckets numbered ``indices``; the inverse of :func:`period_index`."""
    validate_timeframe(timeframe)
    idx = np.asarray(indices, dtype=np.int64)
    if timeframe == MONTH:
        return idx.astype("datetime64[M]").astype("datetime64[ms]").astype(np.int64)
    return idx * _FIXED_MS[timeframe] + _offset_ms(timeframe)


def align_down(timestamp_ms: int, timeframe: str) -> int:
    """Open time of the bucket that holds ``timestamp_ms`` (the timestamp itself when aligned)."""
    return int(period_start(period_index(timestamp_ms, timeframe), timeframe))


def align_up(timestamp_ms: int, timeframe: str) -> int:
    """The first bucket boundary at or after ``timestamp_ms``."""
    down = align_down(timestamp_ms, timeframe)
    return down if down == int(timestamp_ms) else next_open(down, timeframe)


def next_open(timestamp_ms: int, timeframe: str) -> int:
    """Open time of the bucket after the one that holds ``timestamp_ms``."""
    return int(period_start(period_index(timestamp_ms, timeframe) + 1, timeframe))


def is_aligned(timestamp_ms: int, timeframe: str) -> bool:
    """True when ``timestamp_ms`` is exactly a bucket boundary of ``timeframe``."""
    return align_down(timestamp_ms, timeframe) == int(timestamp_ms)


def misaligned_mask(timestamps: npt.ArrayLike, timeframe: str) -> npt.NDArray[np.bool_]:
    """Element-wise: True where a timestamp is not a bucket boundary of ``timeframe``."""
    ts = np.asarray(timestamps, dtype=np.int64)
    return np.asarray(period_start(period_index(ts, timeframe), timeframe) != ts, dtype=np.bool_)


def bucket_lengths_ms(indices: npt.ArrayLike, timeframe: str) -> Int64Array:
    """Real length in ms of each bucket numbered ``indices`` (varies only for ``1M``)."""
    idx = np.asarray(indices, dtype=np.int64)
    return period_start(idx + 1, timeframe) - period_start(idx, timeframe)
