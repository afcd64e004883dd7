"""Import candles from files: CSV, JSON, freqtrade feather and Parquet, validated row by row.

Accepted layouts (``timestamp`` may also be called ``date``, ``time``, ``datetime`` or ``open_time``):

* **CSV** with a header line naming the columns (any order, extra columns ignored), or without a
  header: the first six columns are ``timestamp, open, high, low, close, volume`` (so Binance's
  12-column kline dumps work too). Delimiter ``,`` (``;`` and tab are detected);
* **JSON**: ccxt's ``fetch_ohlcv`` answer and freqtrade's JSON files, an array of
  ``[timestamp, open, high, low, close, volume]`` arrays, or an array of objects with those keys;
* **feather** (Arrow IPC) as freqtrade writes it: ``date`` (datetime64 UTC) + OHLCV;
* **Parquet** with the same columns (the store's own files included).

Any of these may be gzip-compressed. Timestamps are candle open times: integers or floats in
seconds, milliseconds, microseconds or nanoseconds (the unit is taken from the magnitude of the
median value; 2001..2286 in ms is 1e12..1e13), ISO-8601 strings (naive ones are UTC) or datetimes.

Every row is checked (see :mod:`validation`); problems carry 1-based data row numbers (blank CSV
lines are skipped and not counted). By default one bad row refuses the whole import with a
:class:`DataValidationError` listing the problems; ``drop_invalid=True`` drops the bad rows and
counts them. Corrupt data is never stored silently.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq

from cryptoorchestrator.core.errors import DataValidationError, NotFound, ValidationFailed
from cryptoorchestrator.marketdata import store as store_module
from cryptoorchestrator.marketdata import timeframes as tf
from cryptoorchestrator.marketdata import validation
from cryptoorchestrator.marketdata.validation import Check, RowProblem, ValidationReport


class ImportFormat(StrEnum):
    """File formats the importer reads."""

    CSV = "csv"
    JSON = "json"
    FEATHER = "feather"
    PARQUET = "parquet"


_EXTENSIONS: Final[dict[str, ImportFormat]] = {
    ".csv": ImportFormat.CSV,
    ".txt": ImportFormat.CSV,
    ".json": ImportFormat.JSON,
    ".feather": ImportFormat.FEATHER,
    ".ftr": ImportFormat.FEATHER,
    ".arrow": ImportFormat.FEATHER,
    ".parquet": ImportFormat.PARQUET,
    ".pq": ImportFormat.PARQUET,
}
_ALIASES: Final[dict[str, tuple[str, ...]]] = {
    "timestamp": ("timestamp", "date", "time", "datetime", "open_time", "opentime", "open time", "ts"),
    "open": ("open", "o"),
    "high": ("high", "h"),
    "low": ("low", "l"),
    "close": ("close", "c"),
    "volume": ("volume", "vol", "v"),
}
_KNOWN_NAMES: Final = frozenset(name for names in _ALIASES.values() for name in names)
_GZIP_MAGIC: Final = b"\x1f\x8b"
# Upper bounds of the median timestamp for each unit (seconds of year 5138 ~ 1e11, and so on).
_UNITS: Final[tuple[tuple[float, str, int], ...]] = (
    (1e11, "s", -1000),  # negative factor: multiply by 1000
    (1e14, "ms", 1),
    (1e17, "us", 1000),
    (float("inf"), "ns", 1_000_000),
)


@dataclass(frozen=True)
class ParsedCandles:
    """Candles read and validated from a file, not yet stored.

    ``frame`` holds the valid rows only (store dtypes, ascending unique timestamps); ``report``
    names every problem found; ``rows_dropped`` is how many rows ``frame`` lacks.
    """

    frame: pd.DataFrame
    rows_read: int
    rows_dropped: int
    report: ValidationReport
    timestamp_unit: str
    file_format: ImportFormat


@dataclass(frozen=True)
class ImportResult:
    """Outcome of :func:`import_candles` (``problems`` lists at most 50 of ``problem_count``)."""

    exchange: str
    symbol: str
    timeframe: str
    file_format: ImportFormat
    rows_read: int
    rows_stored: int
    rows_dropped: int
    rows_added: int
    rows_replaced: int
    problems: tuple[RowProblem, ...]
    problem_count: int
    first_ms: int | None
    last_ms: int | None


def detect_format(filename: str) -> ImportFormat:
    """The format named by a file name's extension (``.gz`` is looked through).

    Raises:
        ValidationFailed: the extension is not one the importer knows.
    """
    name = filename.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    suffix = Path(name).suffix
    if suffix not in _EXTENSIONS:
        raise ValidationFailed(
            f"Cannot tell the format of {filename!r}; name it .csv, .json, .feather or .parquet "
            "or pass the format.",
            details={"filename": filename, "formats": [f.value for f in ImportFormat]},
        )
    return _EXTENSIONS[suffix]


def parse_candles(
    data: Path | str | bytes,
    *,
    timeframe: str,
    file_format: ImportFormat | str | None = None,
    filename: str | None = None,
    drop_invalid: bool = False,
) -> ParsedCandles:
    """Read and validate candles from a path (``Path`` or ``str``) or from raw ``bytes``.

    Args:
        timeframe: the candles' timeframe; timestamps must be its open times.
        file_format: ``csv``, ``json``, ``feather`` or ``parquet``; by default taken from
            ``filename`` or from the path's extension.
        drop_invalid: drop bad rows instead of refusing the file.

    Raises:
        DataValidationError: the file cannot be read, holds no candles, or (unless
            ``drop_invalid``) holds a bad row; ``details`` lists the problems with row numbers.
        NotFound: the path does not exist. ValidationFailed: unknown format.
    """
    tf.validate_timeframe(timeframe)
    source = _resolve_source(data)
    fmt = _resolve_format(data, file_format, filename)
    raw = _read_raw(source, fmt)
    if len(raw) == 0:
        raise DataValidationError("The file holds no candles.", details={"rows": 0})
    ts, ts_valid, ts_checks, unit = _parse_timestamps(raw["timestamp"])
    values: dict[str, np.ndarray] = {}
    value_checks: list[Check] = []
    parse_failed: dict[str, np.ndarray] = {}
    for column in validation.VALUE_COLUMNS:
        values[column], check = _parse_values(raw[column], column)
        value_checks.append(check)
        parse_failed[column] = check.mask
    report = validation.validate_arrays(
        ts,
        values,
        timeframe=timeframe,
        valid_timestamps=ts_valid,
        extra_checks=[*ts_checks, *value_checks],
        skip=parse_failed,
    )
    report = dataclasses.replace(report, extra={"file_format": fmt.value, "timestamp_unit": unit})
    if not report.ok and not drop_invalid:
        raise report.error("The file")
    keep = ~report.bad_rows
    frame = pd.DataFrame(
        {"timestamp": ts[keep], **{column: values[column][keep] for column in validation.VALUE_COLUMNS}}
    )
    return ParsedCandles(
        frame=frame,
        rows_read=len(raw),
        rows_dropped=int(report.bad_rows.sum()),
        report=report,
        timestamp_unit=unit,
        file_format=fmt,
    )


def import_candles(
    store: store_module.CandleStore,
    data: Path | str | bytes,
    *,
    exchange: str,
    symbol: str,
    timeframe: str,
    file_format: ImportFormat | str | None = None,
    filename: str | None = None,
    drop_invalid: bool = False,
) -> ImportResult:
    """Parse, validate and store candles (source label ``import``); see :func:`parse_candles`.

    New candles replace stored ones with the same timestamp.

    Raises:
        DataValidationError: as :func:`parse_candles`, or no valid candle is left to store.
        Conflict: the dataset holds synthetic candles.
    """
    store.path_for(exchange, symbol, timeframe)  # validate the names before parsing a big file
    parsed = parse_candles(
        data, timeframe=timeframe, file_format=file_format, filename=filename, drop_invalid=drop_invalid
    )
    if parsed.frame.empty:
        raise DataValidationError(
            f"None of the {parsed.rows_read} rows is a valid candle.", details=parsed.report.details()
        )
    appended = store.append(exchange, symbol, timeframe, parsed.frame, source="import")
    ts = parsed.frame["timestamp"]
    return ImportResult(
        exchange=exchange,
        symbol=symbol,
        timeframe=timeframe,
        file_format=parsed.file_format,
        rows_read=parsed.rows_read,
        rows_stored=len(parsed.frame),
        rows_dropped=parsed.rows_dropped,
        rows_added=appended.added,
        rows_replaced=appended.replaced,
        problems=parsed.report.problems,
        problem_count=parsed.report.problem_count,
        first_ms=int(ts.iloc[0]),
        last_ms=int(ts.iloc[-1]),
    )


# --- reading files ----------------------------------------------------------------------------


def _resolve_source(data: Path | str | bytes) -> Path | bytes:
    if isinstance(data, bytes | bytearray | memoryview):
        content = bytes(data)
        return gzip.decompress(content) if content[:2] == _GZIP_MAGIC else content
    path = Path(data)
    if not path.is_file():
        raise NotFound(f"No such file: {path}.", details={"path": str(path)})
    with path.open("rb") as handle:
        compressed = handle.read(2) == _GZIP_MAGIC
    return gzip.decompress(path.read_bytes()) if compressed else path


def _resolve_format(
    data: Path | str | bytes, file_format: ImportFormat | str | None, filename: str | None
) -> ImportFormat:
    if file_format is not None:
        try:
            return ImportFormat(str(file_format).lower().lstrip("."))
        except ValueError:
            raise ValidationFailed(
                f"Unknown import format {file_format!r}.",
                details={"formats": [f.value for f in ImportFormat]},
            ) from None
    if filename is not None:
        return detect_format(filename)
    if isinstance(data, str | Path):
        return detect_format(Path(data).name)
    raise ValidationFailed("Pass the file format or the file name with raw bytes.")


def _read_raw(source: Path | bytes, fmt: ImportFormat) -> pd.DataFrame:
    """The six candle columns as read, before any conversion (dtypes as the format gives them)."""
    try:
        if fmt is ImportFormat.CSV:
            return _read_csv(source)
        if fmt is ImportFormat.JSON:
            return _read_json(source.read_bytes() if isinstance(source, Path) else source)
        target = pa.BufferReader(source) if isinstance(source, bytes) else str(source)
        table = feather.read_table(target) if fmt is ImportFormat.FEATHER else pq.read_table(target)
        return _pick_columns(table.to_pandas(), header=True)
    except DataValidationError:
        raise
    except (ValueError, TypeError, OSError, UnicodeDecodeError, pa.ArrowException) as exc:
        raise DataValidationError(
            f"The file cannot be read as {fmt.value}: {exc}", details={"file_format": fmt.value}
        ) from exc


def _read_csv(source: Path | bytes) -> pd.DataFrame:
    head = _first_line(source)
    delimiter = next((d for d in (",", ";", "\t") if d in head), ",")
    fields = [field.strip().strip("\"'").lower() for field in head.split(delimiter)]
    has_header = any(field in _KNOWN_NAMES for field in fields)
    try:
        frame = pd.read_csv(
            io.BytesIO(source) if isinstance(source, bytes) else source,
            sep=delimiter,
            header=0 if has_header else None,
            encoding="utf-8-sig",
            skipinitialspace=True,
            low_memory=False,
        )
    except pd.errors.EmptyDataError:
        return pd.DataFrame(columns=list(validation.CANDLE_COLUMNS))
    except pd.errors.ParserError as exc:
        raise DataValidationError(f"The CSV is malformed: {exc}") from exc
    return _pick_columns(frame, header=has_header)


def _first_line(source: Path | bytes) -> str:
    if isinstance(source, bytes):
        chunk = source[:65_536]
    else:
        with source.open("rb") as handle:
            chunk = handle.read(65_536)
    text = chunk.decode("utf-8-sig", errors="replace")
    return next((line for line in text.splitlines() if line.strip()), "")


def _read_json(content: bytes) -> pd.DataFrame:
    try:
        data = json.loads(content)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataValidationError(f"The file is not valid JSON: {exc}") from exc
    if not isinstance(data, list):
        raise DataValidationError(
            "JSON candles must be an array of [timestamp, open, high, low, close, volume] arrays "
            "or an array of objects."
        )
    if not data:
        return pd.DataFrame(columns=list(validation.CANDLE_COLUMNS))
    if all(isinstance(row, list) for row in data):
        # Short rows are padded (their gaps are reported as missing values), long ones cut: ccxt and
        # freqtrade write exactly six numbers, raw exchange klines start with the same six.
        width = len(validation.CANDLE_COLUMNS)
        rows = [row[:width] if len(row) >= width else row + [None] * (width - len(row)) for row in data]
        return _pick_columns(pd.DataFrame(rows), header=False)
    if all(isinstance(row, dict) for row in data):
        return _pick_columns(pd.DataFrame.from_records(data), header=True)
    kind = dict if isinstance(data[0], dict) else list
    bad = [i + 1 for i, row in enumerate(data) if not isinstance(row, kind)]
    problems = [
        RowProblem(row, None, f"expected a JSON {'object' if kind is dict else 'array'}").as_dict()
        for row in bad[: validation.MAX_LISTED_PROBLEMS]
    ]
    raise DataValidationError(
        f"{len(bad)} JSON row(s) have the wrong shape; first: row {bad[0]}.",
        details={"rows": len(data), "problem_count": len(bad), "problems": problems},
    )


def _pick_columns(frame: pd.DataFrame, *, header: bool) -> pd.DataFrame:
    """Rename/select the six candle columns: by name (``header``) or by position."""
    if not header:
        if frame.shape[1] < 6:
            raise DataValidationError(
                f"Expected at least 6 columns (timestamp, open, high, low, close, volume), "
                f"found {frame.shape[1]}.",
                details={"columns": frame.shape[1]},
            )
        picked = frame.iloc[:, :6]
        picked.columns = list(validation.CANDLE_COLUMNS)
        return picked
    by_name = {str(column).strip().lower(): column for column in frame.columns}
    chosen: dict[str, Any] = {}
    for canonical, aliases in _ALIASES.items():
        found = next((by_name[alias] for alias in aliases if alias in by_name), None)
        if found is not None:
            chosen[canonical] = found
    missing = [name for name in validation.CANDLE_COLUMNS if name not in chosen]
    if missing:
        raise DataValidationError(
            f"Missing column(s) {', '.join(missing)}.",
            details={"missing": missing, "columns": [str(column) for column in frame.columns]},
        )
    picked = frame[[chosen[name] for name in validation.CANDLE_COLUMNS]]
    picked.columns = list(validation.CANDLE_COLUMNS)
    return picked


# --- converting columns -----------------------------------------------------------------------


def _parse_values(series: pd.Series, column: str) -> tuple[np.ndarray, Check]:
    """float64 values and a check marking cells that are missing or not finite numbers."""
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    elif pd.api.types.is_bool_dtype(series):
        values = np.full(len(series), np.nan)
    else:
        numeric = pd.to_numeric(series.map(_not_bool, na_action="ignore"), errors="coerce")
        values = numeric.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(values)

    def describe(i: int) -> str:
        raw = _plain(series.iloc[i])
        if raw is None or (isinstance(raw, float) and np.isnan(raw)) or (isinstance(raw, str) and not raw):
            return f"{column} is missing or NaN"
        return f"{column} is not a finite number: {raw!r}"

    return values, Check(bad, column, describe)


def _plain(value: Any) -> Any:
    """numpy scalars as Python ones, so messages read ``inf`` and not ``np.float64(inf)``."""
    return value.item() if isinstance(value, np.generic) else value


def _not_bool(value: Any) -> Any:
    return None if isinstance(value, bool) else value


def _parse_timestamps(series: pd.Series) -> tuple[np.ndarray, np.ndarray, list[Check], str]:
    """Timestamps in ms, a validity mask, the checks for unusable ones and the unit found."""
    raw = series.reset_index(drop=True)
    text = np.zeros(len(raw), dtype=np.bool_)
    if pd.api.types.is_datetime64_any_dtype(raw):
        ms, valid = _datetimes_to_ms(raw)
        unit = "datetime"
    else:
        if pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw):
            numeric = raw
        else:
            cleaned = raw.astype(object).map(_not_bool, na_action="ignore")
            numeric = pd.to_numeric(cleaned, errors="coerce")
            text = numeric.isna().to_numpy() & cleaned.notna().to_numpy()
            text &= cleaned.astype(str).str.strip().ne("").to_numpy()
        ms, valid, unit = _numbers_to_ms(numeric)
        if text.any():
            dates = pd.to_datetime(raw[text].astype(str), utc=True, format="ISO8601", errors="coerce")
            index = np.flatnonzero(text)
            ms[index], valid[index] = _datetimes_to_ms(dates)
            unit = "iso8601" if unit == "none" else f"{unit}+iso8601"
    negative = valid & (ms < 0)
    valid &= ~negative
    unreadable = ~valid & ~negative

    def describe(i: int) -> str:
        value = _plain(raw.iloc[i])
        if value is None or value is pd.NaT or (isinstance(value, float) and np.isnan(value)):
            return "timestamp is missing"
        if text[i]:
            return f"timestamp {value!r} is not a number or an ISO-8601 date in whole milliseconds"
        return f"timestamp {value!r} is not a whole number of milliseconds"

    checks = [
        Check(unreadable, "timestamp", describe),
        Check(negative, "timestamp", lambda i: f"timestamp {int(ms[i])} is before 1970"),
    ]
    return ms, valid, checks, unit


def _numbers_to_ms(numeric: pd.Series) -> tuple[np.ndarray, np.ndarray, str]:
    """Numbers in s/ms/us/ns (by median magnitude) to integer ms; valid marks whole-ms values."""
    size = len(numeric)
    if pd.api.types.is_integer_dtype(numeric) and not numeric.isna().any():
        ints = numeric.to_numpy(dtype=np.int64)
        factor, unit = _unit_of(float(np.median(np.abs(ints)))) if size else (1, "ms")
        if factor < 0:
            return ints * -factor, np.ones(size, dtype=np.bool_), unit
        return ints // factor, ints % factor == 0, unit
    floats = numeric.to_numpy(dtype=np.float64, na_value=np.nan)
    finite = np.isfinite(floats)
    if not finite.any():
        return np.zeros(size, dtype=np.int64), finite, "none"
    factor, unit = _unit_of(float(np.median(np.abs(floats[finite]))))
    with np.errstate(invalid="ignore"):
        scaled = floats * -factor if factor < 0 else floats / factor
        valid = finite & (scaled == np.floor(scaled)) & (np.abs(scaled) < 2.0**62)
    return np.where(valid, scaled, 0).astype(np.int64), valid, unit


def _unit_of(median: float) -> tuple[int, str]:
    """(factor, unit): a negative factor multiplies (seconds), a positive one divides."""
    return next((factor, unit) for bound, unit, factor in _UNITS if median < bound)


def _datetimes_to_ms(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Datetimes (naive = UTC) to ms; invalid where missing or finer than a millisecond."""
    if getattr(values.dtype, "tz", None) is not None:
        values = values.dt.tz_convert("UTC").dt.tz_localize(None)
    exact_values = values.to_numpy()
    as_ms = exact_values.astype("datetime64[ms]")
    valid = ~np.isnat(exact_values) & (as_ms.astype(exact_values.dtype) == exact_values)
    return np.where(valid, as_ms.astype(np.int64), 0), valid
