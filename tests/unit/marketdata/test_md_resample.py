"""Resampling against a pandas oracle, with gaps, calendar buckets and a property test.

Tolerances: open, high, low, close and timestamps must match exactly; volume is a float sum and
pandas sums with Kahan compensation, so it may differ by a few ulps (rtol 1e-12).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cryptoorchestrator.core.errors import DataValidationError, InvalidTimeframe
from cryptoorchestrator.marketdata import timeframes as tf
from cryptoorchestrator.marketdata.resample import check_resample, resample, resample_arrays

MINUTE = 60_000
DAY = 86_400_000
T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC, a Monday

RULES: dict[str, tuple[str, dict[str, str]]] = {
    "3m": ("3min", {"origin": "epoch"}),
    "5m": ("5min", {"origin": "epoch"}),
    "15m": ("15min", {"origin": "epoch"}),
    "30m": ("30min", {"origin": "epoch"}),
    "1h": ("1h", {"origin": "epoch"}),
    "2h": ("2h", {"origin": "epoch"}),
    "4h": ("4h", {"origin": "epoch"}),
    "8h": ("8h", {"origin": "epoch"}),
    "1d": ("1D", {"origin": "epoch"}),
    "3d": ("3D", {"origin": "epoch"}),
    "1w": ("W-MON", {"closed": "left", "label": "left"}),
    "1M": ("MS", {}),
}


def oracle(frame: pd.DataFrame, source: str, target: str) -> pd.DataFrame:
    """pandas resample + agg, then drop buckets that lack any source candle."""
    rule, options = RULES[target]
    indexed = frame.set_index(pd.to_datetime(frame["timestamp"], unit="ms"))  # naive = UTC
    agg = indexed.resample(rule, **options).agg(
        {"timestamp": "count", "open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}
    )
    starts = agg.index
    ends = starts + pd.tseries.frequencies.to_offset(rule)
    if target in {"1w", "1M"}:
        ends = pd.DatetimeIndex([start + pd.tseries.frequencies.to_offset(rule) for start in starts])
    expected = (ends - starts) // pd.Timedelta(milliseconds=tf.timeframe_to_ms(source))
    complete = agg[agg["timestamp"].to_numpy() == np.asarray(expected)].copy()
    complete["timestamp"] = complete.index.as_unit("ms").asi8
    return complete.reset_index(drop=True)


def assert_matches_oracle(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert got["timestamp"].tolist() == want["timestamp"].tolist()
    for column in ("open", "high", "low", "close"):
        np.testing.assert_array_equal(got[column].to_numpy(), want[column].to_numpy(), err_msg=column)
    np.testing.assert_allclose(got["volume"].to_numpy(), want["volume"].to_numpy(), rtol=1e-12, atol=0)


def candles(timestamps: np.ndarray, seed: int = 0) -> pd.DataFrame:
    ts = np.asarray(timestamps, dtype=np.int64)
    rng = np.random.default_rng(seed)
    close = np.round(100 * np.exp(np.cumsum(rng.normal(0, 0.01, ts.size))), 2)
    open_ = np.round(close * np.exp(rng.normal(0, 0.005, ts.size)), 2)
    high = np.round(np.maximum(open_, close) * (1 + rng.uniform(0, 0.01, ts.size)), 2)
    low = np.round(np.minimum(open_, close) * (1 - rng.uniform(0, 0.01, ts.size)), 2)
    volume = np.round(rng.lognormal(0, 1, ts.size), 6)
    return pd.DataFrame(
        {"timestamp": ts, "open": open_, "high": high, "low": low, "close": close, "volume": volume}
    )


@pytest.mark.parametrize("target", ["3m", "5m", "15m", "30m", "1h", "4h", "1d"])
def test_gap_free_minutes_match_the_oracle(target: str) -> None:
    frame = candles(T0 + 7 * MINUTE + np.arange(3 * 1440) * MINUTE)  # starts mid-bucket
    got = resample(frame, "1m", target)
    assert_matches_oracle(got, oracle(frame, "1m", target))
    assert len(got) > 0


@pytest.mark.parametrize("target", ["5m", "15m", "1h", "4h"])
def test_buckets_hit_by_gaps_are_dropped(target: str) -> None:
    rng = np.random.default_rng(11)
    slots = np.arange(2 * 1440)
    present = slots[rng.random(slots.size) > 0.002]  # a few missing minutes scattered around
    present = present[(present < 600) | (present >= 700)]  # and one long outage
    frame = candles(T0 + present * MINUTE)
    got = resample(frame, "1m", target)
    want = oracle(frame, "1m", target)
    assert_matches_oracle(got, want)
    step = tf.timeframe_to_ms(target)
    full_buckets = (2 * 1440 * MINUTE) // step
    assert len(got) < full_buckets  # something was dropped...
    assert not np.isin(got["timestamp"], T0 + (650 * MINUTE) // step * step).any()  # ...the outage


def test_incomplete_first_and_last_buckets_are_dropped() -> None:
    frame = candles(T0 + np.arange(3, 3 + 60 * 5 + 2) * MINUTE)  # 00:03 .. 05:04
    got = resample(frame, "1m", "1h")
    assert got["timestamp"].tolist() == [T0 + h * 3_600_000 for h in (1, 2, 3, 4)]
    bucket = frame[(frame["timestamp"] >= T0 + 3_600_000) & (frame["timestamp"] < T0 + 7_200_000)]
    first = got.iloc[0]
    assert first["open"] == bucket["open"].iloc[0]
    assert first["close"] == bucket["close"].iloc[-1]
    assert first["high"] == bucket["high"].max()
    assert first["low"] == bucket["low"].min()


def test_weekly_buckets_open_on_monday_and_need_seven_days() -> None:
    days = T0 - 3 * DAY + np.arange(40) * DAY  # Friday 2023-12-29 .. 2024-02-06
    frame = candles(days)
    got = resample(frame, "1d", "1w")
    assert_matches_oracle(got, oracle(frame, "1d", "1w"))
    assert got["timestamp"].tolist() == [T0 + w * 7 * DAY for w in range(5)]
    with_gap = frame.drop(index=10).reset_index(drop=True)  # 2024-01-08 missing: week 2 dropped
    assert T0 + 7 * DAY not in resample(with_gap, "1d", "1w")["timestamp"].tolist()


def test_monthly_buckets_follow_the_calendar() -> None:
    hours = T0 + np.arange(24 * (31 + 29 + 31 + 10)) * 3_600_000  # Jan..Mar 2024 + 10 days of April
    frame = candles(hours)
    got = resample(frame, "1h", "1M")
    assert_matches_oracle(got, oracle(frame, "1h", "1M"))
    assert len(got) == 3  # February (29 days) counts as complete, April does not


def test_three_day_buckets_are_epoch_aligned() -> None:
    frame = candles(T0 + np.arange(20) * DAY)
    got = resample(frame, "1d", "3d")
    assert_matches_oracle(got, oracle(frame, "1d", "3d"))
    assert all(ts % (3 * DAY) == 0 for ts in got["timestamp"])


def test_identity_and_empty_input() -> None:
    frame = candles(T0 + np.arange(10) * MINUTE)
    pd.testing.assert_frame_equal(resample(frame, "1m", "1m"), frame)
    empty = resample(frame.iloc[:0], "1m", "1h")
    assert empty.empty and list(empty.columns) == list(frame.columns)
    assert empty.dtypes["timestamp"] == np.int64


@pytest.mark.parametrize(
    ("source", "target"),
    [("5m", "1m"), ("3m", "5m"), ("1h", "1h2"), ("3d", "1w"), ("1w", "1M"), ("1M", "1w"), ("1m", "7m")],
)
def test_incompatible_timeframes_are_refused(source: str, target: str) -> None:
    with pytest.raises(InvalidTimeframe):
        check_resample(source, target)


def test_unsorted_or_misaligned_source_is_refused() -> None:
    frame = candles(T0 + np.arange(10) * MINUTE)
    with pytest.raises(DataValidationError, match="strictly increasing"):
        resample(frame.iloc[::-1], "1m", "5m")
    with pytest.raises(DataValidationError, match="open times"):
        resample(frame.assign(timestamp=frame["timestamp"] + 1), "1m", "5m")
    with pytest.raises(DataValidationError, match="lacks column"):
        resample(frame.drop(columns="low"), "1m", "5m")
    with pytest.raises(DataValidationError, match="same length"):
        resample_arrays(
            [1], [1.0, 2.0], [1.0], [1.0], [1.0], [1.0], source_timeframe="1m", target_timeframe="5m"
        )


@given(
    present=st.lists(st.booleans(), min_size=1, max_size=400),
    offset_minutes=st.integers(min_value=0, max_value=59),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    target=st.sampled_from(["3m", "5m", "15m", "30m", "1h"]),
    dense=st.booleans(),
)
@settings(max_examples=60, database=None, deadline=None)
def test_property_matches_the_oracle(
    present: list[bool], offset_minutes: int, seed: int, target: str, dense: bool
) -> None:
    mask = np.array(present)
    if dense:  # mostly-full data, so complete buckets are common
        mask = np.random.default_rng(seed).random(mask.size) > 0.02
    slots = np.flatnonzero(mask)
    frame = candles(T0 + (offset_minutes + slots) * MINUTE, seed=seed)
    got = resample(frame, "1m", target)
    assert_matches_oracle(got, oracle(frame, "1m", target))
    # Invariants that hold whatever the oracle says.
    assert np.all(got["high"] >= np.maximum(got["open"], got["close"]))
    assert np.all(got["low"] <= np.minimum(got["open"], got["close"]))
    assert not tf.misaligned_mask(got["timestamp"], target).any()
