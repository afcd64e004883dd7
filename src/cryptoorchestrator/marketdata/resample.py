"""Exact resampling of candles to a larger timeframe, complete buckets only.

A target candle is built from the source candles whose open time falls in its bucket: the first
open, the highest high, the lowest low, the last close and the summed volume. Buckets are aligned
like exchange candles (epoch for fixed timeframes, Monday 00:00 UTC for ``1w``, the first of the
month for ``1M``; see :mod:`timeframes`).

Only **complete** buckets are returned: a bucket lacking any of its source candles, whether the
still-forming last one or one hit by a gap in the data, is dropped. Emitting a partial bucket
would either leak the future into a backtest (a last bucket that later changes) or fabricate a
candle the exchange never printed.

Everything is vectorised with numpy ``ufunc.reduceat`` over bucket boundaries; no Python loops
over candles. Volume is a float64 sum in candle order, so it can differ from another summation
order (pandas uses Kahan summation) by a few ulps; prices are exact.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

from cryptoorchestrator.core.errors import DataValidationError, InvalidTimeframe
from cryptoorchestrator.marketdata import timeframes as tf
from cryptoorchestrator.marketdata import validation

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def check_resample(source_timeframe: str, target_timeframe: str) -> None:
    """Raise :class:`InvalidTimeframe` unless every target bucket is a whole number of source buckets.

    Fixed targets need a source step that divides both the target step and its alignment offset
    (so ``1d`` -> ``1w`` works, ``3d`` -> ``1w`` does not); ``1M`` needs a source step that divides
    a day; a ``1M`` source can only be "resampled" to itself.
    """
    source_ms = tf.timeframe_to_ms(source_timeframe)
    target_ms = tf.timeframe_to_ms(target_timeframe)
    if source_timeframe == target_timeframe:
        return
    if source_timeframe == tf.MONTH:
        compatible = False
    elif target_timeframe == tf.MONTH:
        compatible = tf.DAY_MS % source_ms == 0
    else:
        offset = tf.WEEK_OFFSET_MS if target_timeframe == "1w" else 0
        compatible = target_ms > source_ms and target_ms % source_ms == 0 and offset % source_ms == 0
    if not compatible:
        raise InvalidTimeframe(
            f"Cannot resample {source_timeframe} candles to {target_timeframe}: "
            "the target must be a larger whole multiple of the source.",
            details={"source_timeframe": source_timeframe, "target_timeframe": target_timeframe},
        )


def resample_arrays(
    timestamp: npt.ArrayLike,
    open_: npt.ArrayLike,
    high: npt.ArrayLike,
    low: npt.ArrayLike,
    close: npt.ArrayLike,
    volume: npt.ArrayLike,
    *,
    source_timeframe: str,
    target_timeframe: str,
) -> dict[str, np.ndarray]:
    """Resample column arrays; returns ``{"timestamp", "open", "high", "low", "close", "volume"}``.

    Raises:
        InvalidTimeframe: the target is not a multiple of the source (see :func:`check_resample`).
        DataValidationError: timestamps are not strictly increasing open times of the source
            timeframe (resampling them would silently produce wrong candles).
    """
    check_resample(source_timeframe, target_timeframe)
    ts = np.asarray(timestamp, dtype=np.int64)
    columns = {
        "open": np.asarray(open_, dtype=np.float64),
        "high": np.asarray(high, dtype=np.float64),
        "low": np.asarray(low, dtype=np.float64),
        "close": np.asarray(close, dtype=np.float64),
        "volume": np.asarray(volume, dtype=np.float64),
    }
    if any(column.shape != ts.shape for column in columns.values()) or ts.ndim != 1:
        raise DataValidationError("All candle columns must be one-dimensional and of the same length.")
    _check_source(ts, source_timeframe)
    if ts.size == 0:
        return {"timestamp": ts.copy(), **{name: col.copy() for name, col in columns.items()}}

    bucket = tf.period_index(ts, target_timeframe)
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    ends = np.r_[starts[1:], ts.size]
    bucket_ids = bucket[starts]
    # Aligned, unique source candles: a bucket is complete iff it holds every one of them.
    expected = tf.bucket_lengths_ms(bucket_ids, target_timeframe) // tf.timeframe_to_ms(source_timeframe)
    complete = (ends - starts) == expected
    if source_timeframe == tf.MONTH:
        complete = (ends - starts) == 1
    starts, ends, bucket_ids = starts[complete], ends[complete], bucket_ids[complete]
    if starts.size == 0:
        empty = np.empty(0, dtype=np.float64)
        return {"timestamp": np.empty(0, dtype=np.int64), **{name: empty.copy() for name in columns}}
    return {
        "timestamp": tf.period_start(bucket_ids, target_timeframe),
        "open": columns["open"][starts],
        "high": _reduce(np.maximum, columns["high"], starts, ends),
        "low": _reduce(np.minimum, columns["low"], starts, ends),
        "close": columns["close"][ends - 1],
        "volume": _reduce(np.add, columns["volume"], starts, ends),
    }


def resample(frame: pd.DataFrame, source_timeframe: str, target_timeframe: str) -> pd.DataFrame:
    """Resample a candle frame (``timestamp`` ms + OHLCV) to ``target_timeframe``, complete buckets only.

    Returns a new frame with the store's columns and dtypes and a RangeIndex.
    """
    missing = [column for column in validation.CANDLE_COLUMNS if column not in frame.columns]
    if missing:
        raise DataValidationError(
            f"Candle frame lacks column(s) {', '.join(missing)}.", details={"missing": missing}
        )
    result = resample_arrays(
        frame["timestamp"].to_numpy(dtype=np.int64),
        frame["open"].to_numpy(dtype=np.float64),
        frame["high"].to_numpy(dtype=np.float64),
        frame["low"].to_numpy(dtype=np.float64),
        frame["close"].to_numpy(dtype=np.float64),
        frame["volume"].to_numpy(dtype=np.float64),
        source_timeframe=source_timeframe,
        target_timeframe=target_timeframe,
    )
    return pd.DataFrame(result, columns=list(validation.CANDLE_COLUMNS))


def _check_source(ts: IntArray, source_timeframe: str) -> None:
    if ts.size > 1 and np.any(np.diff(ts) <= 0):
        raise DataValidationError("Candles to resample must have strictly increasing timestamps.")
    misaligned = tf.misaligned_mask(ts, source_timeframe)
    if misaligned.any():
        first = int(np.flatnonzero(misaligned)[0])
        raise DataValidationError(
            f"{int(misaligned.sum())} timestamp(s) are not {source_timeframe} candle open times; "
            f"first: row {first + 1} ({int(ts[first])}).",
            details={"misaligned": int(misaligned.sum()), "first_row": first + 1},
        )


def _reduce(ufunc: np.ufunc, values: FloatArray, starts: IntArray, ends: IntArray) -> FloatArray:
    """``ufunc`` over each ``values[start:end]`` (non-empty, contiguous, ascending segments).

    ``reduceat`` needs the segment starts only; complete buckets may be separated by dropped
    ones, so the starts of the dropped stretches are passed too and their results discarded.
    """
    bounds = np.empty(starts.size * 2, dtype=np.int64)
    bounds[0::2] = starts
    bounds[1::2] = ends
    if bounds[-1] == values.size:  # reduceat indices must be < len(values)
        bounds = bounds[:-1]
    reduced = ufunc.reduceat(values, bounds)
    return np.asarray(reduced[0::2], dtype=np.float64)
