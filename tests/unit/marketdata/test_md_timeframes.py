"""Timeframe parsing and bucket alignment."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from cryptoorchestrator.core.errors import InvalidTimeframe, ValidationFailed
from cryptoorchestrator.marketdata import timeframes as tf


def ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)


@pytest.mark.parametrize(
    ("timeframe", "expected"),
    [
        ("1m", 60_000),
        ("3m", 180_000),
        ("5m", 300_000),
        ("15m", 900_000),
        ("30m", 1_800_000),
        ("1h", 3_600_000),
        ("2h", 7_200_000),
        ("4h", 14_400_000),
        ("6h", 21_600_000),
        ("8h", 28_800_000),
        ("12h", 43_200_000),
        ("1d", 86_400_000),
        ("3d", 259_200_000),
        ("1w", 604_800_000),
        ("1M", 2_592_000_000),
    ],
)
def test_timeframe_to_ms_matches_ccxt(timeframe: str, expected: int) -> None:
    assert tf.timeframe_to_ms(timeframe) == expected


@pytest.mark.parametrize("bad", ["", "1", "m", "2m", "1H", "60m", "1y", " 1m", "1d ", None, 5])
def test_invalid_timeframe_lists_supported(bad: object) -> None:
    with pytest.raises(InvalidTimeframe) as caught:
        tf.timeframe_to_ms(bad)  # type: ignore[arg-type]
    assert caught.value.details["supported"] == list(tf.SUPPORTED_TIMEFRAMES)
    assert "1m, 3m, 5m" in caught.value.message
    assert isinstance(caught.value, ValidationFailed)


def test_supported_timeframes_are_ordered_by_length() -> None:
    lengths = [tf.timeframe_to_ms(name) for name in tf.SUPPORTED_TIMEFRAMES]
    assert lengths == sorted(lengths)
    assert tf.SUPPORTED_TIMEFRAMES[:3] == ("1m", "3m", "5m")


def test_align_fixed_timeframes_to_epoch() -> None:
    ts = ms(2024, 3, 1, 13, 47) + 12_345
    assert tf.align_down(ts, "1m") == ms(2024, 3, 1, 13, 47)
    assert tf.align_down(ts, "15m") == ms(2024, 3, 1, 13, 45)
    assert tf.align_down(ts, "4h") == ms(2024, 3, 1, 12)
    assert tf.align_down(ts, "1d") == ms(2024, 3, 1)
    assert tf.align_up(ts, "1h") == ms(2024, 3, 1, 14)
    assert tf.align_up(ms(2024, 3, 1, 14), "1h") == ms(2024, 3, 1, 14)
    assert tf.next_open(ms(2024, 3, 1, 14), "1h") == ms(2024, 3, 1, 15)
    assert tf.is_aligned(ms(2024, 3, 1, 14), "2h")
    assert not tf.is_aligned(ms(2024, 3, 1, 13), "2h")
    # 3d buckets count from the epoch, not from the month.
    assert (tf.align_down(ts, "3d") - 0) % (3 * tf.DAY_MS) == 0


def test_weeks_open_on_monday() -> None:
    wednesday = ms(2024, 3, 6, 10)
    monday = tf.align_down(wednesday, "1w")
    assert monday == ms(2024, 3, 4)
    assert datetime.fromtimestamp(monday / 1000, UTC).weekday() == 0
    assert tf.align_down(ms(2024, 3, 4), "1w") == ms(2024, 3, 4)
    assert tf.next_open(monday, "1w") == ms(2024, 3, 11)
    assert tf.align_down(0, "1w") == -3 * tf.DAY_MS  # the Monday before the epoch (a Thursday)


def test_months_follow_the_calendar() -> None:
    assert tf.align_down(ms(2024, 2, 29, 23, 59), "1M") == ms(2024, 2, 1)
    assert tf.next_open(ms(2024, 2, 1), "1M") == ms(2024, 3, 1)
    assert tf.next_open(ms(2023, 12, 31), "1M") == ms(2024, 1, 1)
    assert tf.is_calendar_timeframe("1M")
    assert not tf.is_calendar_timeframe("1w")
    lengths = tf.bucket_lengths_ms(tf.period_index([ms(2024, 2, 1), ms(2024, 3, 1)], "1M"), "1M")
    assert lengths.tolist() == [29 * tf.DAY_MS, 31 * tf.DAY_MS]


@pytest.mark.parametrize("timeframe", tf.SUPPORTED_TIMEFRAMES)
def test_period_index_and_start_are_inverse(timeframe: str) -> None:
    rng = np.random.default_rng(7)
    stamps = rng.integers(ms(2015, 1, 1), ms(2030, 1, 1), size=500)
    index = tf.period_index(stamps, timeframe)
    starts = tf.period_start(index, timeframe)
    nexts = tf.period_start(index + 1, timeframe)
    assert np.all(starts <= stamps)
    assert np.all(stamps < nexts)
    assert np.array_equal(tf.period_index(starts, timeframe), index)
    assert not tf.misaligned_mask(starts, timeframe).any()
    assert tf.misaligned_mask(starts + 1, timeframe).all()
