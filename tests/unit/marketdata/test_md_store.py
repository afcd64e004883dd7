"""The Parquet candle store: round trips, merging, range reads, gaps, listing and safety."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cryptoorchestrator.core.errors import (
    Conflict,
    DataValidationError,
    InvalidDateRange,
    InvalidTimeframe,
    NotFound,
    ValidationFailed,
)
from cryptoorchestrator.marketdata import store as store_module
from cryptoorchestrator.marketdata.naming import path_name_to_symbol, symbol_to_path_name
from cryptoorchestrator.marketdata.store import CandleStore, Gap

MINUTE = 60_000
T0 = 1_700_000_040_000  # a minute boundary (2023-11-14 22:14 UTC)


def candles(timestamps: np.ndarray | list[int], seed: int = 0) -> pd.DataFrame:
    """Valid OHLCV rows for the given open times, prices on a 0.01 grid."""
    ts = np.asarray(timestamps, dtype=np.int64)
    rng = np.random.default_rng(seed)
    open_ = np.round(rng.uniform(100, 200, ts.size), 2)
    close = np.round(rng.uniform(100, 200, ts.size), 2)
    high = np.round(np.maximum(open_, close) + rng.uniform(0, 5, ts.size), 2)
    low = np.round(np.minimum(open_, close) - rng.uniform(0, 5, ts.size), 2)
    volume = np.round(rng.uniform(0, 1000, ts.size), 5)
    return pd.DataFrame(
        {"timestamp": ts, "open": open_, "high": high, "low": low, "close": close, "volume": volume}
    )


def minutes(start: int, count: int) -> np.ndarray:
    return T0 + (start + np.arange(count, dtype=np.int64)) * MINUTE


def test_round_trip_is_exact_and_typed(store: CandleStore) -> None:
    frame = candles(minutes(0, 500))
    frame.loc[3, ["open", "high", "low", "close"]] = [0.1, 0.30000000000000004, 0.1, 0.2]
    frame.loc[4, ["open", "high", "low", "close", "volume"]] = [1e-8, 123456789.12345, 1e-8, 5.33e-05, 0.0]
    result = store.append("binance", "BTC/USDT", "1m", frame)
    assert (result.added, result.replaced, result.rows) == (500, 0, 500)
    back = store.read("binance", "BTC/USDT", "1m")
    pd.testing.assert_frame_equal(back, frame, check_exact=True)
    assert back.dtypes.to_dict() == {
        "timestamp": np.dtype("int64"),
        **{c: np.dtype("float64") for c in ["open", "high", "low", "close", "volume"]},
    }
    assert isinstance(back.index, pd.RangeIndex)
    table = store.read_arrow("binance", "BTC/USDT", "1m")
    assert table.schema.field("timestamp").type == pa.int64()
    assert table.num_rows == 500


def test_append_merges_new_wins_and_counts(store: CandleStore) -> None:
    first = candles(minutes(0, 10), seed=1)
    store.append("binance", "ETH/USDT", "1m", first)
    second = candles(minutes(5, 10), seed=2)  # minutes 5..14: 5 overlap, 5 new
    second.loc[0, ["open", "high", "low", "close"]] = first.loc[
        5, ["open", "high", "low", "close"]
    ].to_numpy()
    second.loc[0, "volume"] = first.loc[5, "volume"]  # one replaced row is identical
    result = store.append("binance", "ETH/USDT", "1m", second)
    assert (result.added, result.replaced, result.changed, result.rows) == (5, 5, 4, 15)
    back = store.read("binance", "ETH/USDT", "1m")
    expected = pd.concat([first.iloc[:5], second], ignore_index=True)
    pd.testing.assert_frame_equal(back, expected, check_exact=True)


def test_append_sorts_and_keeps_last_duplicate_within_a_frame(store: CandleStore) -> None:
    frame = candles(minutes(0, 6), seed=3).iloc[[3, 0, 5, 1, 4, 2]].reset_index(drop=True)
    duplicate = candles(minutes(2, 1), seed=4)
    combined = pd.concat([frame, duplicate], ignore_index=True)
    result = store.append("binance", "BTC/USDT", "1m", combined)
    assert (result.added, result.rows) == (6, 6)
    back = store.read("binance", "BTC/USDT", "1m")
    assert back["timestamp"].tolist() == minutes(0, 6).tolist()
    pd.testing.assert_series_equal(back.iloc[2], duplicate.iloc[0], check_names=False)


def test_reappending_the_same_candles_rewrites_nothing(store: CandleStore) -> None:
    frame = candles(minutes(0, 20))
    store.append("binance", "BTC/USDT", "1m", frame)
    path = store.path_for("binance", "BTC/USDT", "1m")
    inode_before = path.stat().st_ino
    result = store.append("binance", "BTC/USDT", "1m", frame.iloc[5:10])
    assert (result.added, result.replaced, result.changed, result.rows) == (0, 5, 0, 20)
    assert path.stat().st_ino == inode_before


def test_append_accepts_datetime_timestamps_and_arrow_tables(store: CandleStore) -> None:
    frame = candles(minutes(0, 3))
    as_dates = frame.assign(timestamp=pd.to_datetime(frame["timestamp"], unit="ms", utc=True))
    store.append("kraken", "BTC/USD", "1m", as_dates)
    store.append(
        "kraken", "BTC/USD", "1m", pa.Table.from_pandas(candles(minutes(3, 2)), preserve_index=False)
    )
    assert store.read("kraken", "BTC/USD", "1m")["timestamp"].tolist() == minutes(0, 5).tolist()


def test_empty_append_creates_nothing(store: CandleStore) -> None:
    result = store.append("binance", "BTC/USDT", "1m", candles([]))
    assert (result.added, result.rows) == (0, 0)
    assert not store.exists("binance", "BTC/USDT", "1m")
    assert store.datasets() == []


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("high", 1.0, "is below"),
        ("low", 10_000.0, "is above"),
        ("volume", -1.0, "negative"),
        ("close", float("nan"), "NaN"),
        ("open", float("inf"), "infinite"),
        ("open", 0.0, "not positive"),
    ],
)
def test_append_refuses_invalid_rows_and_keeps_old_data(
    store: CandleStore, column: str, value: float, message: str
) -> None:
    store.append("binance", "BTC/USDT", "1m", candles(minutes(0, 5)))
    before = store.read("binance", "BTC/USDT", "1m")
    bad = candles(minutes(5, 5))
    bad.loc[2, column] = value
    with pytest.raises(DataValidationError) as caught:
        store.append("binance", "BTC/USDT", "1m", bad)
    assert any(p["row"] == 3 and message in p["message"] for p in caught.value.details["problems"])
    pd.testing.assert_frame_equal(store.read("binance", "BTC/USDT", "1m"), before)


def test_append_refuses_misaligned_timestamps_and_bad_frames(store: CandleStore) -> None:
    with pytest.raises(DataValidationError, match="open time"):
        store.append("binance", "BTC/USDT", "5m", candles(minutes(1, 3)))
    with pytest.raises(DataValidationError, match="lacks column"):
        store.append("binance", "BTC/USDT", "1m", candles(minutes(0, 3)).drop(columns="volume"))
    with pytest.raises(DataValidationError, match="integer milliseconds"):
        store.append("binance", "BTC/USDT", "1m", candles(minutes(0, 3)).assign(timestamp=["a", "b", "c"]))
    with pytest.raises(InvalidTimeframe):
        store.append("binance", "BTC/USDT", "7m", candles(minutes(0, 3)))
    assert store.datasets() == []


def test_synthetic_and_real_candles_never_mix(store: CandleStore) -> None:
    store.append("binance", "BTC/USDT", "1m", candles(minutes(0, 3)), source="synthetic")
    with pytest.raises(Conflict):
        store.append("binance", "BTC/USDT", "1m", candles(minutes(3, 3)), source="import")
    store.append("binance", "BTC/USDT", "1m", candles(minutes(3, 3)))  # no label: keeps "synthetic"
    assert store.info("binance", "BTC/USDT", "1m").source == "synthetic"
    with pytest.raises(ValidationFailed):
        store.append("binance", "BTC/USDT", "1m", candles(minutes(6, 3)), source="made-up")


def test_source_label_defaults_and_updates(store: CandleStore) -> None:
    store.append("binance", "BTC/USDT", "1m", candles(minutes(0, 3)))
    assert store.info("binance", "BTC/USDT", "1m").source == "exchange"
    store.append("binance", "BTC/USDT", "1m", candles(minutes(0, 3)), source="import")
    assert store.info("binance", "BTC/USDT", "1m").source == "import"


def test_range_reads_are_half_open(store: CandleStore) -> None:
    frame = candles(minutes(0, 100))
    store.append("binance", "BTC/USDT", "1m", frame)
    ts = frame["timestamp"]
    read = store.read
    assert (
        read("binance", "BTC/USDT", "1m", int(ts[10]), int(ts[20]))["timestamp"].tolist()
        == ts[10:20].tolist()
    )
    # A start between candles rounds up, an end between candles includes the candle before it.
    between = read("binance", "BTC/USDT", "1m", int(ts[10]) + 1, int(ts[20]) + 1)
    assert between["timestamp"].tolist() == ts[11:21].tolist()
    assert read("binance", "BTC/USDT", "1m", start_ms=int(ts[95]))["timestamp"].tolist() == ts[95:].tolist()
    assert read("binance", "BTC/USDT", "1m", end_ms=int(ts[2]))["timestamp"].tolist() == ts[:2].tolist()
    before = read("binance", "BTC/USDT", "1m", 0, int(ts[0]))
    after = read("binance", "BTC/USDT", "1m", int(ts[99]) + 1)
    assert before.empty and after.empty
    assert list(before.columns) == list(frame.columns)
    assert before.dtypes.to_dict() == frame.dtypes.to_dict()
    pd.testing.assert_frame_equal(read("binance", "BTC/USDT", "1m", 0, 2**62), frame, check_exact=True)


def test_limit_from_start_and_from_end(store: CandleStore) -> None:
    frame = candles(minutes(0, 50))
    store.append("binance", "BTC/USDT", "1m", frame)
    ts = frame["timestamp"]
    assert store.read("binance", "BTC/USDT", "1m", limit=3)["timestamp"].tolist() == ts[:3].tolist()
    latest = store.read("binance", "BTC/USDT", "1m", limit=3, from_end=True)
    assert latest["timestamp"].tolist() == ts[47:].tolist()
    window = store.read("binance", "BTC/USDT", "1m", int(ts[10]), int(ts[20]), 4, from_end=True)
    assert window["timestamp"].tolist() == ts[16:20].tolist()
    assert store.read("binance", "BTC/USDT", "1m", limit=0).empty
    assert len(store.read("binance", "BTC/USDT", "1m", limit=1000)) == 50


def test_range_reads_across_many_row_groups_match_a_filter(tmp_path: Path) -> None:
    store = CandleStore(tmp_path, row_group_size=16)
    present = np.sort(np.random.default_rng(5).choice(2000, size=900, replace=False))
    frame = candles(minutes(0, 2000)[present])
    store.append("binance", "BTC/USDT", "1m", frame)
    assert pq.ParquetFile(store.path_for("binance", "BTC/USDT", "1m")).metadata.num_row_groups > 50
    rng = np.random.default_rng(6)
    for _ in range(200):
        start, end = sorted(int(x) for x in rng.integers(T0 - 10 * MINUTE, T0 + 2010 * MINUTE, 2))
        if start == end:
            continue
        limit = int(rng.integers(0, 120)) if rng.random() < 0.5 else None
        from_end = bool(rng.random() < 0.5)
        expected = frame[(frame["timestamp"] >= start) & (frame["timestamp"] < end)]
        if limit is not None:
            expected = expected.tail(limit) if from_end else expected.head(limit)
        got = store.read("binance", "BTC/USDT", "1m", start, end, limit, from_end=from_end)
        pd.testing.assert_frame_equal(got, expected.reset_index(drop=True), check_exact=True)


def test_read_errors(store: CandleStore) -> None:
    with pytest.raises(NotFound):
        store.read("binance", "BTC/USDT", "1m")
    with pytest.raises(NotFound):
        store.first_last("binance", "BTC/USDT", "1m")
    store.append("binance", "BTC/USDT", "1m", candles(minutes(0, 3)))
    with pytest.raises(InvalidDateRange):
        store.read("binance", "BTC/USDT", "1m", T0 + MINUTE, T0 + MINUTE)
    with pytest.raises(ValidationFailed):
        store.read("binance", "BTC/USDT", "1m", limit=-1)
    with pytest.raises(InvalidTimeframe):
        store.read("binance", "BTC/USDT", "2d")


def test_copy_false_is_read_only_and_copy_true_is_writable(store: CandleStore) -> None:
    store.append("binance", "BTC/USDT", "1m", candles(minutes(0, 10)))
    writable = store.read("binance", "BTC/USDT", "1m")
    writable.loc[0, "close"] = 1.0
    assert writable.loc[0, "close"] == 1.0
    shared = store.read("binance", "BTC/USDT", "1m", copy=False)
    with pytest.raises(ValueError, match="read-only"):
        shared.loc[0, "close"] = 1.0
    assert store.read("binance", "BTC/USDT", "1m").loc[0, "close"] != 1.0


def test_gaps_first_last_and_info(store: CandleStore) -> None:
    present = [0, 1, 2, 5, 6, 10, 11, 12]  # holes: 3-4 and 7-9
    store.append("binance", "BTC/USDT", "1m", candles(minutes(0, 13)[present]))
    assert store.gaps("binance", "BTC/USDT", "1m") == [
        Gap(T0 + 3 * MINUTE, T0 + 5 * MINUTE, 2),
        Gap(T0 + 7 * MINUTE, T0 + 10 * MINUTE, 3),
    ]
    assert store.gaps("binance", "BTC/USDT", "1m", T0 + 6 * MINUTE) == [
        Gap(T0 + 7 * MINUTE, T0 + 10 * MINUTE, 3)
    ]
    assert store.gaps("binance", "BTC/USDT", "1m", T0, T0 + 5 * MINUTE) == [
        Gap(T0 + 3 * MINUTE, T0 + 5 * MINUTE, 2)
    ]
    assert store.gaps("binance", "BTC/USDT", "1m", T0 + 4 * MINUTE + 1, T0 + 8 * MINUTE + 1) == [
        Gap(T0 + 7 * MINUTE, T0 + 9 * MINUTE, 2)
    ]
    assert store.gaps("binance", "BTC/USDT", "1m", T0 + 5 * MINUTE, T0 + 7 * MINUTE) == []
    assert store.first_last("binance", "BTC/USDT", "1m") == (T0, T0 + 12 * MINUTE)
    info = store.info("binance", "BTC/USDT", "1m")
    assert (info.rows, info.gaps, info.missing, info.first_ms, info.last_ms) == (
        8,
        2,
        5,
        T0,
        T0 + 12 * MINUTE,
    )


def test_gaps_follow_calendar_months(store: CandleStore) -> None:
    jan, feb, apr = 1_704_067_200_000, 1_706_745_600_000, 1_711_929_600_000  # 2024-01/02/04-01
    store.append("binance", "BTC/USDT", "1M", candles([jan, feb, apr]))
    assert store.gaps("binance", "BTC/USDT", "1M") == [Gap(1_709_251_200_000, apr, 1)]
    assert store.path_for("binance", "BTC/USDT", "1M").name == "1Mo.parquet"
    assert store.datasets()[0].timeframe == "1M"


def test_datasets_lists_everything_with_filters(store: CandleStore) -> None:
    store.append("binance", "BTC/USDT", "1h", candles(T0 // 3_600_000 * 3_600_000 + np.arange(5) * 3_600_000))
    store.append("binance", "BTC/USDT", "1m", candles(minutes(0, 4)[[0, 1, 3]]), source="import")
    store.append(
        "binanceusdm", "XRP/USDT:USDT", "5m", candles(T0 // 300_000 * 300_000 + np.arange(3) * 300_000)
    )
    store.append("synthetic", "SOL/USDT", "1m", candles(minutes(0, 2)), source="synthetic")
    listed = store.datasets()
    assert [(d.exchange, d.symbol, d.timeframe) for d in listed] == [
        ("binance", "BTC/USDT", "1m"),
        ("binance", "BTC/USDT", "1h"),
        ("binanceusdm", "XRP/USDT:USDT", "5m"),
        ("synthetic", "SOL/USDT", "1m"),
    ]
    one_minute = listed[0]
    assert (one_minute.rows, one_minute.gaps, one_minute.missing, one_minute.source) == (3, 1, 1, "import")
    assert one_minute.file_size == one_minute.path.stat().st_size > 0
    assert listed[3].source == "synthetic"
    assert [d.symbol for d in store.datasets(exchange="binance", timeframe="1h")] == ["BTC/USDT"]
    assert [d.exchange for d in store.datasets(symbol="XRP/USDT:USDT")] == ["binanceusdm"]


def test_datasets_ignores_temporary_and_foreign_files(store: CandleStore) -> None:
    store.append("binance", "BTC/USDT", "1m", candles(minutes(0, 2)))
    folder = store.path_for("binance", "BTC/USDT", "1m").parent
    (folder / ".1m.parquet.abc.tmp").write_bytes(b"partial")
    (folder / "notes.parquet").write_bytes(b"not a dataset")
    assert len(store.datasets()) == 1


def test_futures_symbols_get_safe_reversible_paths(store: CandleStore) -> None:
    path = store.path_for("binanceusdm", "XRP/USDT:USDT", "5m")
    assert path.relative_to(store.root).parts == ("binanceusdm", "XRP-USDT_USDT", "5m.parquet")
    assert symbol_to_path_name("BTC/USDT") == "BTC-USDT"
    hostile = store.path_for("binance", "../../etc/passwd", "1m")
    assert hostile.resolve().is_relative_to(store.root.resolve())
    assert len(hostile.relative_to(store.root).parts) == 3


@given(st.text(min_size=1, max_size=40).filter(lambda s: s.isprintable()))
@settings(max_examples=200, database=None, deadline=None)
def test_symbol_path_names_are_reversible_and_safe(symbol: str) -> None:
    name = symbol_to_path_name(symbol)
    assert path_name_to_symbol(name) == symbol
    assert name not in {"", ".", ".."}
    assert all(char.isascii() and (char.isalnum() or char in "-_%") for char in name)


@pytest.mark.parametrize("exchange", ["", "../x", "Binance", "bin ance", "a/b", ".hidden", "x" * 70])
def test_invalid_exchange_names_are_refused(store: CandleStore, exchange: str) -> None:
    with pytest.raises(ValidationFailed):
        store.path_for(exchange, "BTC/USDT", "1m")


@pytest.mark.parametrize("symbol", ["", "   ", "BTC/\x00USDT", "A" * 200])
def test_invalid_symbols_are_refused(store: CandleStore, symbol: str) -> None:
    with pytest.raises(ValidationFailed):
        store.path_for("binance", symbol, "1m")


def test_delete_removes_dataset_and_empty_folders(store: CandleStore) -> None:
    store.append("binance", "BTC/USDT", "1m", candles(minutes(0, 2)))
    store.append("binance", "ETH/USDT", "1m", candles(minutes(0, 2)))
    store.delete("binance", "BTC/USDT", "1m")
    assert not store.exists("binance", "BTC/USDT", "1m")
    assert not (store.root / "binance" / "BTC-USDT").exists()
    assert store.exists("binance", "ETH/USDT", "1m")
    with pytest.raises(NotFound):
        store.delete("binance", "BTC/USDT", "1m")
    store.delete("binance", "ETH/USDT", "1m")
    assert not (store.root / "binance").exists()


def test_a_failed_write_leaves_the_old_file_and_no_temporary(
    store: CandleStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = candles(minutes(0, 5))
    store.append("binance", "BTC/USDT", "1m", original)

    def crash(*_args: object, **_kwargs: object) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(store_module.os, "replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        store.append("binance", "BTC/USDT", "1m", candles(minutes(5, 5)))
    monkeypatch.undo()
    pd.testing.assert_frame_equal(store.read("binance", "BTC/USDT", "1m"), original)
    folder = store.path_for("binance", "BTC/USDT", "1m").parent
    assert sorted(os.listdir(folder)) == ["1m.parquet"]


def test_concurrent_appends_from_threads_lose_nothing(store: CandleStore) -> None:
    errors: list[BaseException] = []

    def worker(part: int) -> None:
        try:
            for chunk in range(5):
                store.append(
                    "binance", "BTC/USDT", "1m", candles(minutes(part * 50 + chunk * 10, 10), seed=part)
                )
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(part,)) for part in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert store.read("binance", "BTC/USDT", "1m")["timestamp"].tolist() == minutes(0, 300).tolist()


def test_compressed_store_reads_the_same(tmp_path: Path) -> None:
    frame = candles(minutes(0, 300))
    plain = CandleStore(tmp_path / "plain")
    packed = CandleStore(tmp_path / "packed", compression="zstd")
    plain.append("binance", "BTC/USDT", "1m", frame)
    packed.append("binance", "BTC/USDT", "1m", frame)
    pd.testing.assert_frame_equal(packed.read("binance", "BTC/USDT", "1m"), frame, check_exact=True)
    assert (
        packed.info("binance", "BTC/USDT", "1m").file_size < plain.info("binance", "BTC/USDT", "1m").file_size
    )
