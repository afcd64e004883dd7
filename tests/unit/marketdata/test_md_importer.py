"""Importing candle files: every format, every kind of bad row with its row number, refuse vs drop."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.feather as feather
import pytest

from cryptoorchestrator.core.errors import (
    Conflict,
    DataValidationError,
    NotFound,
    ValidationFailed,
)
from cryptoorchestrator.marketdata.importer import (
    ImportFormat,
    detect_format,
    import_candles,
    parse_candles,
)
from cryptoorchestrator.marketdata.store import CandleStore

T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC
MINUTE = 60_000
HEADER = "timestamp,open,high,low,close,volume"
ROWS = [
    [T0 + 0 * MINUTE, 42000.5, 42010.0, 41990.25, 42005.0, 1.5],
    [T0 + 1 * MINUTE, 42005.0, 42020.0, 42000.0, 42015.75, 0.00012],
    [T0 + 2 * MINUTE, 42015.75, 42016.0, 41980.0, 41985.5, 12.0],
    [T0 + 3 * MINUTE, 41985.5, 41999.99, 41970.1, 41990.0, 0.0],
    [T0 + 4 * MINUTE, 41990.0, 42001.0, 41989.0, 42000.0, 3.25],
]


def expected_frame(rows: list[list[float]] = ROWS) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=HEADER.split(","))
    return frame.astype({"timestamp": "int64", **{c: "float64" for c in HEADER.split(",")[1:]}})


def csv_text(rows: list[list[object]], *, header: bool = True) -> str:
    lines = [HEADER] if header else []
    lines += [",".join(str(value) for value in row) for row in rows]
    return "\n".join(lines) + "\n"


def problems_of(caught: pytest.ExceptionInfo[DataValidationError]) -> list[tuple[int, str]]:
    return [(p["row"], p["message"]) for p in caught.value.details["problems"]]


# --- formats ------------------------------------------------------------------------------------


def test_csv_with_header_from_path(tmp_path: Path) -> None:
    path = tmp_path / "candles.csv"
    path.write_text(csv_text(ROWS))
    parsed = parse_candles(path, timeframe="1m")
    pd.testing.assert_frame_equal(parsed.frame, expected_frame(), check_exact=True)
    assert (parsed.rows_read, parsed.rows_dropped, parsed.timestamp_unit) == (5, 0, "ms")
    assert parsed.file_format is ImportFormat.CSV


def test_csv_without_header_and_from_bytes() -> None:
    parsed = parse_candles(csv_text(ROWS, header=False).encode(), timeframe="1m", filename="x.csv")
    pd.testing.assert_frame_equal(parsed.frame, expected_frame(), check_exact=True)


def test_csv_header_in_another_order_with_aliases_and_extra_columns() -> None:
    text = "Date,Volume,Close,Low,High,Open,trades\n" + "\n".join(
        f"{r[0]},{r[5]},{r[4]},{r[3]},{r[2]},{r[1]},7" for r in ROWS
    )
    parsed = parse_candles(text.encode(), timeframe="1m", file_format="csv")
    pd.testing.assert_frame_equal(parsed.frame, expected_frame(), check_exact=True)


def test_csv_with_iso_dates_semicolons_and_a_bom() -> None:
    lines = ["\ufefftime;open;high;low;close;volume"]
    for row in ROWS:
        stamp = pd.Timestamp(row[0], unit="ms", tz="UTC")
        date = stamp.isoformat() if row is ROWS[0] else stamp.strftime("%Y-%m-%d %H:%M:%S")
        lines.append(";".join([date, *(str(v) for v in row[1:])]))
    parsed = parse_candles("\n".join(lines).encode(), timeframe="1m", file_format="csv")
    pd.testing.assert_frame_equal(parsed.frame, expected_frame(), check_exact=True)
    assert parsed.timestamp_unit == "iso8601"


def test_headerless_binance_kline_csv_uses_the_first_six_columns() -> None:
    text = "\n".join(
        ",".join([*(str(v) for v in row), str(row[0] + 59_999), "1.0", "10", "0.5", "0.2", "0"])
        for row in ROWS
    )
    parsed = parse_candles(text.encode(), timeframe="1m", file_format="csv")
    pd.testing.assert_frame_equal(parsed.frame, expected_frame(), check_exact=True)


@pytest.mark.parametrize(("scale", "unit"), [(1 / 1000, "s"), (1000, "us"), (1_000_000, "ns")])
def test_timestamp_units_are_detected(scale: float, unit: str) -> None:
    rows = [[int(r[0] * scale), *r[1:]] for r in ROWS]
    parsed = parse_candles(csv_text(rows).encode(), timeframe="1m", file_format="csv")
    assert parsed.timestamp_unit == unit
    assert parsed.frame["timestamp"].tolist() == [r[0] for r in ROWS]


def test_gzip_compressed_csv(tmp_path: Path) -> None:
    path = tmp_path / "candles.csv.gz"
    path.write_bytes(gzip.compress(csv_text(ROWS).encode()))
    pd.testing.assert_frame_equal(parse_candles(path, timeframe="1m").frame, expected_frame())
    parsed = parse_candles(gzip.compress(csv_text(ROWS).encode()), timeframe="1m", filename="up.csv.gz")
    pd.testing.assert_frame_equal(parsed.frame, expected_frame())


def test_json_ccxt_arrays(tmp_path: Path) -> None:
    path = tmp_path / "BTC_USDT-1m.json"
    path.write_text(json.dumps(ROWS))
    parsed = parse_candles(path, timeframe="1m")
    pd.testing.assert_frame_equal(parsed.frame, expected_frame(), check_exact=True)
    assert parsed.file_format is ImportFormat.JSON


def test_json_objects_and_string_numbers() -> None:
    records = [dict(zip(HEADER.split(","), row, strict=True)) for row in ROWS]
    records[1] = {key: str(value) for key, value in records[1].items()}
    parsed = parse_candles(json.dumps(records).encode(), timeframe="1m", file_format="json")
    pd.testing.assert_frame_equal(parsed.frame, expected_frame(), check_exact=True)


def test_freqtrade_feather(tmp_path: Path) -> None:
    frame = expected_frame()
    freqtrade = pd.DataFrame(
        {
            "date": pd.to_datetime(frame["timestamp"], unit="ms", utc=True),
            **{c: frame[c] for c in HEADER.split(",")[1:]},
        }
    )
    path = tmp_path / "BTC_USDT-1m.feather"
    freqtrade.reset_index(drop=True).to_feather(path)
    assert feather.read_table(path).schema.field("date").type.tz == "UTC"
    parsed = parse_candles(path, timeframe="1m")
    pd.testing.assert_frame_equal(parsed.frame, frame, check_exact=True)
    assert parsed.timestamp_unit == "datetime"
    from_bytes = parse_candles(path.read_bytes(), timeframe="1m", filename="BTC_USDT-1m.feather")
    pd.testing.assert_frame_equal(from_bytes.frame, frame, check_exact=True)


def test_parquet_with_integer_or_datetime_timestamps(tmp_path: Path) -> None:
    frame = expected_frame()
    path = tmp_path / "candles.parquet"
    frame.to_parquet(path)
    pd.testing.assert_frame_equal(parse_candles(path, timeframe="1m").frame, frame, check_exact=True)
    buffer = io.BytesIO()
    frame.assign(timestamp=pd.to_datetime(frame["timestamp"], unit="ms")).to_parquet(buffer)
    parsed = parse_candles(buffer.getvalue(), timeframe="1m", file_format="parquet")
    pd.testing.assert_frame_equal(parsed.frame, frame, check_exact=True)


def test_detect_format() -> None:
    assert detect_format("a.CSV") is ImportFormat.CSV
    assert detect_format("a.json.gz") is ImportFormat.JSON
    assert detect_format("BTC_USDT-5m.feather") is ImportFormat.FEATHER
    assert detect_format("x.parquet") is ImportFormat.PARQUET
    with pytest.raises(ValidationFailed):
        detect_format("x.xlsx")
    with pytest.raises(ValidationFailed):
        parse_candles(b"1,2", timeframe="1m")
    with pytest.raises(ValidationFailed):
        parse_candles(b"1,2", timeframe="1m", file_format="xml")


def test_unreadable_inputs_raise_data_validation_errors(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        parse_candles(tmp_path / "missing.csv", timeframe="1m")
    with pytest.raises(DataValidationError, match="no candles"):
        parse_candles(b"", timeframe="1m", file_format="csv")
    with pytest.raises(DataValidationError, match="no candles"):
        parse_candles(HEADER.encode(), timeframe="1m", file_format="csv")
    with pytest.raises(DataValidationError, match="Missing column"):
        parse_candles(b"timestamp,open,high,low,close\n1,2,3,4,5\n", timeframe="1m", file_format="csv")
    with pytest.raises(DataValidationError, match="at least 6 columns"):
        parse_candles(b"1,2,3,4,5\n", timeframe="1m", file_format="csv")
    with pytest.raises(DataValidationError, match="not valid JSON"):
        parse_candles(b"[[1,2,", timeframe="1m", file_format="json")
    with pytest.raises(DataValidationError, match="array"):
        parse_candles(b'{"a": 1}', timeframe="1m", file_format="json")
    with pytest.raises(DataValidationError, match="cannot be read as parquet"):
        parse_candles(b"definitely not parquet", timeframe="1m", file_format="parquet")
    with pytest.raises(DataValidationError, match="malformed"):
        parse_candles(csv_text(ROWS).encode() + b"1,2,3,4,5,6,7,8\n", timeframe="1m", file_format="csv")


def test_json_rows_of_the_wrong_shape_are_named() -> None:
    data = json.dumps([ROWS[0], 17, ROWS[2], "x"]).encode()
    with pytest.raises(DataValidationError) as caught:
        parse_candles(data, timeframe="1m", file_format="json")
    assert [p["row"] for p in caught.value.details["problems"]] == [2, 4]


# --- bad rows -----------------------------------------------------------------------------------

BAD_ROWS: dict[str, tuple[int, list[object], str]] = {
    # kind: (1-based row, replacement row, text expected in the message)
    "duplicate": (3, [T0 + 1 * MINUTE, 42015.75, 42016.0, 41980.0, 41985.5, 12.0], "duplicate timestamp"),
    "out of order": (3, [T0 - MINUTE, 42015.75, 42016.0, 41980.0, 41985.5, 12.0], "out of order"),
    "high below low": (2, [T0 + MINUTE, 42005.0, 41000.0, 42000.0, 42015.75, 1.0], "is below low"),
    "high below open/close": (
        2,
        [T0 + MINUTE, 42005.0, 42010.0, 42000.0, 42015.75, 1.0],
        "below max(open, close)",
    ),
    "low above open/close": (
        4,
        [T0 + 3 * MINUTE, 41985.5, 41999.99, 41986.0, 41990.0, 0.0],
        "above min(open, close)",
    ),
    "negative volume": (
        5,
        [T0 + 4 * MINUTE, 41990.0, 42001.0, 41989.0, 42000.0, -3.25],
        "volume -3.25 is negative",
    ),
    "nan": (1, [T0, 42000.5, 42010.0, 41990.25, "NaN", 1.5], "close is missing or NaN"),
    "inf": (1, [T0, 42000.5, "inf", 41990.25, 42005.0, 1.5], "high is not a finite number: inf"),
    "non-numeric": (
        2,
        [T0 + MINUTE, "abc", 42020.0, 42000.0, 42015.75, 1.0],
        "open is not a finite number: 'abc'",
    ),
    "missing value": (2, [T0 + MINUTE, 42005.0, 42020.0, 42000.0, 42015.75, ""], "volume is missing"),
    "zero price": (3, [T0 + 2 * MINUTE, 0, 42016.0, 0, 41985.5, 12.0], "open 0.0 is not positive"),
    "negative price": (3, [T0 + 2 * MINUTE, 1.0, 2.0, -1.0, 1.5, 12.0], "low -1.0 is not positive"),
    "bad timestamp": (
        4,
        ["yesterday", 41985.5, 41999.99, 41970.1, 41990.0, 0.0],
        "not a number or an ISO-8601 date",
    ),
    "fractional timestamp": (
        4,
        [T0 + 3 * MINUTE + 0.5, 41985.5, 41999.99, 41970.1, 41990.0, 0.0],
        "whole number",
    ),
    "misaligned timestamp": (
        4,
        [T0 + 3 * MINUTE + 1, 41985.5, 41999.99, 41970.1, 41990.0, 0.0],
        "not a 1m candle open time",
    ),
}


def corrupted(kind: str) -> tuple[list[list[object]], int, str]:
    row, replacement, text = BAD_ROWS[kind]
    rows: list[list[object]] = [list(r) for r in ROWS]
    rows[row - 1] = replacement
    return rows, row, text


@pytest.mark.parametrize("kind", list(BAD_ROWS))
def test_each_bad_row_kind_is_reported_with_its_row_number_csv(kind: str) -> None:
    rows, row, text = corrupted(kind)
    with pytest.raises(DataValidationError) as caught:
        parse_candles(csv_text(rows).encode(), timeframe="1m", file_format="csv")
    problems = problems_of(caught)
    assert any(r == row and text in message for r, message in problems), problems
    assert {r for r, _ in problems} == {row}, problems  # and no other row is blamed
    assert caught.value.details["bad_row_count"] == 1
    assert f"row {row}" in caught.value.message

    parsed = parse_candles(csv_text(rows).encode(), timeframe="1m", file_format="csv", drop_invalid=True)
    assert (parsed.rows_read, parsed.rows_dropped, len(parsed.frame)) == (5, 1, 4)
    kept = expected_frame([r for i, r in enumerate(ROWS) if i != row - 1])
    pd.testing.assert_frame_equal(parsed.frame, kept, check_exact=True)
    assert parsed.report.problems[0].row == row


@pytest.mark.parametrize(
    "kind", ["duplicate", "out of order", "high below low", "negative volume", "non-numeric"]
)
def test_bad_rows_are_reported_with_row_numbers_json(kind: str) -> None:
    rows, row, text = corrupted(kind)
    with pytest.raises(DataValidationError) as caught:
        parse_candles(json.dumps(rows).encode(), timeframe="1m", file_format="json")
    assert any(r == row and text in message for r, message in problems_of(caught))


def test_json_null_nan_and_short_rows() -> None:
    rows: list[list[object]] = [list(r) for r in ROWS]
    rows[1][4] = None
    rows[3] = rows[3][:4]
    data = json.dumps(rows).replace("0.00012", "NaN").encode()
    with pytest.raises(DataValidationError) as caught:
        parse_candles(data, timeframe="1m", file_format="json")
    problems = problems_of(caught)
    assert (2, "close is missing or NaN") in problems
    assert (2, "volume is missing or NaN") in problems
    assert (4, "volume is missing or NaN") in problems


def test_feather_bad_rows_are_reported(tmp_path: Path) -> None:
    frame = expected_frame()
    frame.loc[2, "high"] = 1.0
    table = pa.table(
        {
            "date": pa.array(frame["timestamp"], pa.timestamp("ms", tz="UTC")),
            **{c: frame[c] for c in HEADER.split(",")[1:]},
        }
    )
    path = tmp_path / "x.feather"
    feather.write_feather(table, path)
    with pytest.raises(DataValidationError) as caught:
        parse_candles(path, timeframe="1m")
    assert {row for row, _ in problems_of(caught)} == {3}


def test_many_problems_are_capped_but_counted() -> None:
    rows = [[T0 + i * MINUTE, 10.0, 11.0, 9.0, 10.5, -1.0 if i % 2 else 1.0] for i in range(240)]
    with pytest.raises(DataValidationError) as caught:
        parse_candles(csv_text(rows).encode(), timeframe="1m", file_format="csv")
    details = caught.value.details
    assert (details["problem_count"], details["bad_row_count"], details["listed"]) == (120, 120, 50)
    assert details["truncated"] is True
    assert [p["row"] for p in details["problems"]] == list(range(2, 101, 2))


def test_greedy_order_check_keeps_the_prefix() -> None:
    stamps = [0, 1, 2, 9, 3, 4, 10]
    rows = [[T0 + s * MINUTE, 10.0, 11.0, 9.0, 10.5, 1.0] for s in stamps]
    parsed = parse_candles(csv_text(rows).encode(), timeframe="1m", file_format="csv", drop_invalid=True)
    assert [p.row for p in parsed.report.problems] == [5, 6]
    assert parsed.frame["timestamp"].tolist() == [T0 + s * MINUTE for s in (0, 1, 2, 9, 10)]


# --- storing ------------------------------------------------------------------------------------


def test_import_stores_and_reports(store: CandleStore, tmp_path: Path) -> None:
    path = tmp_path / "candles.csv"
    path.write_text(csv_text(ROWS))
    result = import_candles(store, path, exchange="binance", symbol="BTC/USDT", timeframe="1m")
    assert (result.rows_read, result.rows_stored, result.rows_dropped) == (5, 5, 0)
    assert (result.rows_added, result.rows_replaced, result.problem_count) == (5, 0, 0)
    assert (result.first_ms, result.last_ms) == (T0, T0 + 4 * MINUTE)
    pd.testing.assert_frame_equal(store.read("binance", "BTC/USDT", "1m"), expected_frame(), check_exact=True)
    assert store.info("binance", "BTC/USDT", "1m").source == "import"
    again = import_candles(
        store, path.read_bytes(), exchange="binance", symbol="BTC/USDT", timeframe="1m", filename="c.csv"
    )
    assert (again.rows_added, again.rows_replaced) == (0, 5)


def test_refused_import_stores_nothing(store: CandleStore) -> None:
    rows, _, _ = corrupted("high below low")
    with pytest.raises(DataValidationError):
        import_candles(
            store,
            csv_text(rows).encode(),
            exchange="binance",
            symbol="BTC/USDT",
            timeframe="1m",
            file_format="csv",
        )
    assert not store.exists("binance", "BTC/USDT", "1m")


def test_import_with_drop_invalid_counts_dropped_rows(store: CandleStore) -> None:
    rows, row, _ = corrupted("negative volume")
    result = import_candles(
        store,
        csv_text(rows).encode(),
        exchange="binance",
        symbol="BTC/USDT",
        timeframe="1m",
        file_format="csv",
        drop_invalid=True,
    )
    assert (result.rows_read, result.rows_stored, result.rows_dropped, result.problem_count) == (5, 4, 1, 1)
    assert result.problems[0].row == row
    assert T0 + 4 * MINUTE not in store.read("binance", "BTC/USDT", "1m")["timestamp"].tolist()


def test_import_with_nothing_valid_left_is_refused(store: CandleStore) -> None:
    rows = [[T0 + i * MINUTE, 10.0, 11.0, 9.0, 10.5, -1.0] for i in range(3)]
    with pytest.raises(DataValidationError, match="None of the 3 rows"):
        import_candles(
            store,
            csv_text(rows).encode(),
            exchange="binance",
            symbol="BTC/USDT",
            timeframe="1m",
            file_format="csv",
            drop_invalid=True,
        )
    assert store.datasets() == []


def test_import_into_a_synthetic_dataset_conflicts(store: CandleStore) -> None:
    store.append("binance", "BTC/USDT", "1m", expected_frame(), source="synthetic")
    with pytest.raises(Conflict):
        import_candles(
            store,
            json.dumps(ROWS).encode(),
            exchange="binance",
            symbol="BTC/USDT",
            timeframe="1m",
            file_format="json",
        )


def test_import_checks_store_names_first(store: CandleStore) -> None:
    with pytest.raises(ValidationFailed):
        import_candles(
            store, b"irrelevant", exchange="Bad Name", symbol="BTC/USDT", timeframe="1m", file_format="csv"
        )


def test_values_survive_exactly_through_text_formats(store: CandleStore) -> None:
    rng = np.random.default_rng(3)
    count = 2000
    close = np.round(rng.uniform(0.00001, 100000, count), 8)
    frame = pd.DataFrame(
        {
            "timestamp": T0 + np.arange(count) * MINUTE,
            "open": close,
            "high": close * 2,
            "low": close / 2,
            "close": close,
            "volume": np.round(rng.uniform(0, 1e6, count), 5),
        }
    )
    text = frame.to_csv(index=False).encode()
    import_candles(store, text, exchange="binance", symbol="X/Y", timeframe="1m", file_format="csv")
    pd.testing.assert_frame_equal(store.read("binance", "X/Y", "1m"), frame, check_exact=True)
