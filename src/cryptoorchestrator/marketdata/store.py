"""The candle store: one Parquet file per exchange, symbol and timeframe.

Layout under ``root``::

    <exchange>/<symbol as a path name>/<timeframe>.parquet      e.g. binance/BTC-USDT/1m.parquet

Columns: ``timestamp`` int64 (candle open time, ms since the epoch, UTC), ``open``, ``high``, ``low``,
``close``, ``volume`` float64. Candles are numerical-kernel input, so they are float64 and not
Decimal (architecture convention 2): float64 carries 15-17 significant decimal digits, so every
source value written with at most 15 significant digits (the exchange CSVs, ccxt's JSON numbers)
parses to the nearest double and prints back to the same decimal string; the store never rounds or
recomputes a value, so what was imported reads back bit for bit.

Design choices, each for a measured reason (see ``bench/candle_store.py``):

* rows are sorted by timestamp and unique, so a range is found by binary search
  (``numpy.searchsorted``) after row groups outside it were skipped by their min/max statistics;
* files are written uncompressed with PLAIN float pages (and DELTA_BINARY_PACKED timestamps, which
  shrink to almost nothing), read through a memory map: decoding is then little more than a copy
  out of the page cache, and a million candles read in ~10-20 ms, faster than
  ``pandas.read_parquet`` of the same file and several times faster than ``pandas.read_csv``;
  zstd compression (``compression="zstd"``) makes files about half as big for ~3x slower reads;
* row groups of 65,536 candles keep small range reads small (one group is ~3 MB);
* every write goes to a temporary file in the same folder, is fsynced and then renamed over the old
  file with ``os.replace``: a crash leaves either the old or the new dataset, never a torn one;
* writers of one dataset are serialised by a lock per file within the process; separate processes
  must not append to the same dataset at the same time (the last rename would win).

Each file carries a ``source`` label ("exchange", "import" or "synthetic") and a summary (rows,
first/last timestamp, gap count) in its Parquet key-value metadata, so :meth:`CandleStore.datasets`
reads footers only.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from cryptoorchestrator.core.errors import (
    Conflict,
    DataValidationError,
    InvalidDateRange,
    NotFound,
    ValidationFailed,
)
from cryptoorchestrator.marketdata import naming, validation
from cryptoorchestrator.marketdata import timeframes as tf

SOURCE_LABELS: Final[tuple[str, ...]] = ("exchange", "import", "synthetic")
CANDLE_SCHEMA: Final = pa.schema(
    [("timestamp", pa.int64())] + [(name, pa.float64()) for name in validation.VALUE_COLUMNS]
)
_METADATA_KEY: Final = b"cryptoorchestrator.candles"
_FORMAT_VERSION: Final = 1
_SUFFIX: Final = naming.SUFFIX


@dataclass(frozen=True, slots=True)
class AppendResult:
    """What :meth:`CandleStore.append` did: ``added`` new timestamps, ``replaced`` existing ones
    (``changed`` of which had different values), ``rows`` in the dataset afterwards."""

    added: int
    replaced: int
    changed: int
    rows: int


@dataclass(frozen=True, slots=True)
class Gap:
    """Missing candles ``[start_ms, end_ms)``: ``missing`` candle open times with no candle."""

    start_ms: int
    end_ms: int
    missing: int


@dataclass(frozen=True, slots=True)
class DatasetInfo:
    """Summary of one stored dataset (``gaps`` intervals holding ``missing`` candles in total)."""

    exchange: str
    symbol: str
    timeframe: str
    first_ms: int
    last_ms: int
    rows: int
    gaps: int
    missing: int
    source: str
    file_size: int
    path: Path


def empty_candles() -> pd.DataFrame:
    """An empty candle frame with the store's column dtypes."""
    return CANDLE_SCHEMA.empty_table().to_pandas()


class CandleStore:
    """Parquet candle datasets under ``root``; safe for concurrent readers and threads of one process.

    Args:
        root: folder that holds the datasets (created on the first write).
        row_group_size: candles per Parquet row group (the unit of range skipping).
        compression: Parquet codec; ``"none"`` reads fastest, ``"zstd"`` halves files, reads ~3x slower.
    """

    _locks: dict[Path, threading.Lock] = {}
    _locks_guard = threading.Lock()

    def __init__(self, root: Path | str, *, row_group_size: int = 65_536, compression: str = "none") -> None:
        if row_group_size < 1:
            raise ValidationFailed("row_group_size must be positive.")
        self._root = Path(root)
        self._row_group_size = row_group_size
        self._compression = compression

    @property
    def root(self) -> Path:
        """The folder that holds the datasets."""
        return self._root

    # --- paths -------------------------------------------------------------------------------

    def path_for(self, exchange: str, symbol: str, timeframe: str) -> Path:
        """Where the dataset lives (whether or not it exists); validates all three names."""
        folder = self._root / naming.check_exchange(exchange) / naming.symbol_folder(symbol)
        return folder / naming.timeframe_file_name(timeframe)

    def exists(self, exchange: str, symbol: str, timeframe: str) -> bool:
        """True when the dataset has been stored."""
        return self.path_for(exchange, symbol, timeframe).is_file()

    # --- writing -----------------------------------------------------------------------------

    def append(
        self,
        exchange: str,
        symbol: str,
        timeframe: str,
        frame: pd.DataFrame | pa.Table,
        *,
        source: str | None = None,
        validate: bool = True,
    ) -> AppendResult:
        """Merge candles into the dataset: by timestamp, the new candle wins; order stays ascending.

        Args:
            frame: columns ``timestamp`` (int64 ms or datetime64) and ``open`` .. ``volume``; extra
                columns are ignored; within ``frame`` the last row of a timestamp wins.
            source: provenance label for the dataset (``exchange``, ``import``, ``synthetic``);
                ``None`` keeps the stored one (``exchange`` for a new dataset).
            validate: run the row rules of :mod:`validation` and refuse the whole frame on any
                problem (timestamps must also be open times of ``timeframe``).

        Raises:
            DataValidationError: the frame is malformed or breaks a row rule.
            Conflict: synthetic and real candles would be mixed in one dataset.
        """
        path = self.path_for(exchange, symbol, timeframe)
        if source is not None and source not in SOURCE_LABELS:
            raise ValidationFailed(
                f"Unknown source label {source!r}.", details={"supported": list(SOURCE_LABELS)}
            )
        new = _canonical_table(frame, timeframe=timeframe, validate=validate)
        with self._lock(path):
            old: pa.Table | None = None
            old_source: str | None = None
            if path.is_file():
                old = _read_file(path, None, None, memory_map=False)  # no map pins the old file
                old_source = _metadata(path).get("source")
            label = _merge_label(old_source, source)
            if new.num_rows == 0:
                return AppendResult(0, 0, 0, 0 if old is None else old.num_rows)
            merged, added, replaced, changed = _merge(old, new)
            if old is not None and added == 0 and changed == 0 and label == old_source:
                return AppendResult(0, replaced, 0, old.num_rows)
            self._write(path, merged, exchange=exchange, symbol=symbol, timeframe=timeframe, source=label)
            return AppendResult(added, replaced, changed, merged.num_rows)

    def delete(self, exchange: str, symbol: str, timeframe: str) -> None:
        """Remove the dataset (and its now-empty folders). Raises :class:`NotFound` when absent."""
        path = self._existing(exchange, symbol, timeframe)
        with self._lock(path):
            path.unlink()
        for folder in (path.parent, path.parent.parent):
            try:
                folder.rmdir()
            except OSError:
                break  # not empty (other datasets) or already gone

    # --- reading -----------------------------------------------------------------------------

    def read(
        self,
        exchange: str,
        symbol: str,
        timeframe: str,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int | None = None,
        *,
        from_end: bool = False,
        copy: bool = True,
    ) -> pd.DataFrame:
        """Candles with ``start_ms <= timestamp < end_ms`` as a DataFrame (RangeIndex, store dtypes).

        Args:
            start_ms, end_ms: range bounds in ms; ``None`` is open-ended.
            limit: at most this many candles, the first ones of the range (the last ones with
                ``from_end=True``, e.g. the latest N candles).
            copy: ``False`` returns read-only columns that share memory with the memory-mapped file
                (fastest; the frame cannot be modified in place, and on Windows the dataset cannot
                be rewritten while such a frame is alive).

        Raises:
            NotFound: no such dataset. InvalidDateRange: ``start_ms >= end_ms``.
        """
        table = self.read_arrow(exchange, symbol, timeframe, start_ms, end_ms, limit, from_end=from_end)
        if copy:
            return table.to_pandas()
        return table.to_pandas(split_blocks=True)

    def read_arrow(
        self,
        exchange: str,
        symbol: str,
        timeframe: str,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int | None = None,
        *,
        from_end: bool = False,
    ) -> pa.Table:
        """Like :meth:`read` but returns the Arrow table (zero-copy slices of the decoded pages)."""
        _check_range(start_ms, end_ms, limit)
        path = self._existing(exchange, symbol, timeframe)
        return _read_file(path, start_ms, end_ms, limit=limit, from_end=from_end)

    def timestamps(
        self,
        exchange: str,
        symbol: str,
        timeframe: str,
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> np.ndarray:
        """Only the timestamp column of ``[start_ms, end_ms)``, as an int64 numpy array."""
        _check_range(start_ms, end_ms, None)
        path = self._existing(exchange, symbol, timeframe)
        table = _read_file(path, start_ms, end_ms, columns=["timestamp"])
        return np.asarray(table.column("timestamp").to_numpy(), dtype=np.int64)

    def first_last(self, exchange: str, symbol: str, timeframe: str) -> tuple[int, int]:
        """Open times of the first and the last stored candle. Raises :class:`NotFound`."""
        info = self.info(exchange, symbol, timeframe)
        return info.first_ms, info.last_ms

    def gaps(
        self,
        exchange: str,
        symbol: str,
        timeframe: str,
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> list[Gap]:
        """Missing candles (by timeframe step) between the first and the last stored candle.

        With ``start_ms``/``end_ms`` only the part of each hole inside ``[start_ms, end_ms)`` is
        listed (a hole crossing a bound is clipped, its ``missing`` recounted). Time before the
        first or after the last stored candle is not a gap (use :meth:`first_last` for coverage).
        """
        _check_range(start_ms, end_ms, None)
        found = find_gaps(self.timestamps(exchange, symbol, timeframe), timeframe)
        if start_ms is None and end_ms is None:
            return found
        return _clip_gaps(found, timeframe, start_ms, end_ms)

    def info(self, exchange: str, symbol: str, timeframe: str) -> DatasetInfo:
        """Summary of one dataset, from the file footer. Raises :class:`NotFound`."""
        return _info(self._existing(exchange, symbol, timeframe))

    def datasets(
        self, *, exchange: str | None = None, symbol: str | None = None, timeframe: str | None = None
    ) -> list[DatasetInfo]:
        """Every stored dataset (optionally filtered), sorted by exchange, symbol and timeframe."""
        found = [_info(path) for path in self._dataset_files()]
        found = [
            info
            for info in found
            if (exchange is None or info.exchange == exchange)
            and (symbol is None or info.symbol == symbol)
            and (timeframe is None or info.timeframe == timeframe)
        ]
        order = {name: i for i, name in enumerate(tf.SUPPORTED_TIMEFRAMES)}
        return sorted(found, key=lambda info: (info.exchange, info.symbol, order[info.timeframe]))

    # --- internals ---------------------------------------------------------------------------

    def _dataset_files(self) -> Iterator[Path]:
        if not self._root.is_dir():
            return
        for path in self._root.glob(f"*/*/*{_SUFFIX}"):
            if path.name.startswith(".") or naming.timeframe_from_file_name(path.name) is None:
                continue  # temporary files of writes in progress, foreign files
            yield path

    def _existing(self, exchange: str, symbol: str, timeframe: str) -> Path:
        path = self.path_for(exchange, symbol, timeframe)
        if not path.is_file():
            raise NotFound(
                f"No {timeframe} candles stored for {symbol} on {exchange}.",
                details={"exchange": exchange, "symbol": symbol, "timeframe": timeframe},
            )
        return path

    @classmethod
    def _lock(cls, path: Path) -> threading.Lock:
        key = path.resolve()
        with cls._locks_guard:
            return cls._locks.setdefault(key, threading.Lock())

    def _write(self, path: Path, table: pa.Table, **labels: str) -> None:
        ts = table.column("timestamp").to_numpy()
        found = find_gaps(ts, labels["timeframe"])
        summary = {
            "version": _FORMAT_VERSION,
            **labels,
            "rows": table.num_rows,
            "first_ms": int(ts[0]),
            "last_ms": int(ts[-1]),
            "gaps": len(found),
            "missing": sum(gap.missing for gap in found),
        }
        table = table.replace_schema_metadata({_METADATA_KEY: json.dumps(summary).encode()})
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            pq.write_table(
                table,
                temporary,
                row_group_size=self._row_group_size,
                compression=self._compression,
                use_dictionary=False,
                column_encoding={"timestamp": "DELTA_BINARY_PACKED"},
                write_statistics=["timestamp"],
            )
            _fsync(temporary)
            os.replace(temporary, path)  # atomic: readers see the old or the new file
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        _fsync_directory(path.parent)


# --- module helpers ---------------------------------------------------------------------------


def find_gaps(timestamps: np.ndarray, timeframe: str) -> list[Gap]:
    """Holes in sorted, aligned, unique candle open times (vectorised; ``1M`` uses real months)."""
    if len(timestamps) < 2:
        return []
    index = tf.period_index(timestamps, timeframe)
    steps = np.diff(index)
    where = np.flatnonzero(steps > 1)
    if where.size == 0:
        return []
    starts = tf.period_start(index[where] + 1, timeframe)
    ends = np.asarray(timestamps, dtype=np.int64)[where + 1]
    missing = steps[where] - 1
    return [Gap(int(s), int(e), int(m)) for s, e, m in zip(starts, ends, missing, strict=True)]


def _clip_gaps(gaps: list[Gap], timeframe: str, start_ms: int | None, end_ms: int | None) -> list[Gap]:
    low = None if start_ms is None else tf.align_up(start_ms, timeframe)
    high = None if end_ms is None else tf.align_up(end_ms, timeframe)
    clipped: list[Gap] = []
    for gap in gaps:
        start = gap.start_ms if low is None else max(gap.start_ms, low)
        end = gap.end_ms if high is None else min(gap.end_ms, high)
        if start < end:
            missing = int(tf.period_index(end, timeframe) - tf.period_index(start, timeframe))
            clipped.append(Gap(start, end, missing))
    return clipped


def _check_range(start_ms: int | None, end_ms: int | None, limit: int | None) -> None:
    if start_ms is not None and end_ms is not None and start_ms >= end_ms:
        raise InvalidDateRange(
            f"The range start ({start_ms}) must be before its end ({end_ms}).",
            details={"start_ms": start_ms, "end_ms": end_ms},
        )
    if limit is not None and limit < 0:
        raise ValidationFailed("limit must not be negative.", details={"limit": limit})


def _merge_label(old: str | None, new: str | None) -> str:
    if old is not None and new is not None and (old == "synthetic") != (new == "synthetic"):
        raise Conflict(
            f"Refusing to mix {new} candles into a {old} dataset: delete it first.",
            details={"stored_source": old, "source": new},
        )
    return new or old or "exchange"


def _canonical_table(frame: pd.DataFrame | pa.Table, *, timeframe: str, validate: bool) -> pa.Table:
    """Store dtypes, rows sorted and unique by timestamp (last one wins), optionally validated."""
    if isinstance(frame, pa.Table):
        frame = frame.to_pandas()
    missing = [column for column in validation.CANDLE_COLUMNS if column not in frame.columns]
    if missing:
        raise DataValidationError(
            f"Candle frame lacks column(s) {', '.join(missing)}.",
            details={"missing": missing, "columns": [str(c) for c in frame.columns]},
        )
    ts = _timestamps_ms(frame["timestamp"])
    values: dict[str, np.ndarray] = {}
    for column in validation.VALUE_COLUMNS:
        try:
            values[column] = frame[column].to_numpy(dtype=np.float64, na_value=np.nan)
        except (TypeError, ValueError) as exc:
            raise DataValidationError(
                f"Column {column} is not numeric.", details={"column": column, "error": str(exc)}
            ) from exc
    # Within one frame the last row of a timestamp wins, like a later append would.
    if np.any(np.diff(ts) <= 0):
        reverse_unique, reverse_index = np.unique(ts[::-1], return_index=True)
        keep = ts.size - 1 - reverse_index
        ts = reverse_unique
        values = {name: column[keep] for name, column in values.items()}
    if validate:
        report = validation.validate_arrays(ts, values, timeframe=timeframe)
        if not report.ok:
            raise report.error("The candle frame")
    return pa.table({"timestamp": ts, **values}, schema=CANDLE_SCHEMA)


def _timestamps_ms(column: pd.Series) -> np.ndarray:
    if pd.api.types.is_datetime64_any_dtype(column):
        if getattr(column.dtype, "tz", None) is not None:
            column = column.dt.tz_convert("UTC").dt.tz_localize(None)
        if column.isna().any():
            raise DataValidationError("The timestamp column holds missing values.")
        return np.asarray(column.to_numpy(dtype="datetime64[ms]").astype(np.int64))
    if pd.api.types.is_integer_dtype(column) and not column.isna().any():
        return np.asarray(column.to_numpy(dtype=np.int64))
    if pd.api.types.is_float_dtype(column):
        raw = column.to_numpy(dtype=np.float64, na_value=np.nan)
        if np.all(np.isfinite(raw)) and np.all(raw == np.floor(raw)):
            return np.asarray(raw.astype(np.int64))
    raise DataValidationError(
        "The timestamp column must hold integer milliseconds or datetimes.",
        details={"dtype": str(column.dtype)},
    )


def _merge(old: pa.Table | None, new: pa.Table) -> tuple[pa.Table, int, int, int]:
    """Merge two sorted unique tables by timestamp, ``new`` winning; vectorised."""
    if old is None or old.num_rows == 0:
        return new, new.num_rows, 0, 0
    old_ts = old.column("timestamp").to_numpy()
    new_ts = new.column("timestamp").to_numpy()
    if new_ts[0] > old_ts[-1]:  # the common case: newer candles appended at the end
        return pa.concat_tables([old, new]), new.num_rows, 0, 0
    position = np.searchsorted(old_ts, new_ts)
    inside = position < old_ts.size
    hit = np.zeros(new_ts.size, dtype=np.bool_)
    hit[inside] = old_ts[position[inside]] == new_ts[inside]
    replaced_at = position[hit]
    changed = np.zeros(replaced_at.size, dtype=np.bool_)
    for column in validation.VALUE_COLUMNS:
        before = old.column(column).to_numpy()[replaced_at]
        after = new.column(column).to_numpy()[hit]
        changed |= before.view(np.int64) != after.view(np.int64)  # bitwise: NaN-free, -0.0 aware
    keep = np.ones(old_ts.size, dtype=np.bool_)
    keep[replaced_at] = False
    combined = pa.concat_tables([old.filter(pa.array(keep)), new])
    order = np.argsort(combined.column("timestamp").to_numpy(), kind="stable")
    merged = combined.take(pa.array(order))
    replaced = int(hit.sum())
    return merged, new.num_rows - replaced, replaced, int(changed.sum())


def _select_row_groups(
    metadata: pq.FileMetaData, start_ms: int | None, end_ms: int | None, limit: int | None, from_end: bool
) -> list[int]:
    """Row groups that may hold ``[start, end)``, trimmed to what ``limit`` can need."""
    selected: list[tuple[int, bool]] = []  # (index, fully inside the range)
    for i in range(metadata.num_row_groups):
        stats = metadata.row_group(i).column(0).statistics
        if stats is None or not stats.has_min_max:
            selected.append((i, False))
            continue
        if (end_ms is not None and stats.min >= end_ms) or (start_ms is not None and stats.max < start_ms):
            continue
        inside = (start_ms is None or stats.min >= start_ms) and (end_ms is None or stats.max < end_ms)
        selected.append((i, inside))
    if limit is None:
        return [i for i, _ in selected]
    chosen: list[int] = []
    covered = 0
    for i, inside in reversed(selected) if from_end else selected:
        if covered >= limit:
            break
        chosen.append(i)
        covered += metadata.row_group(i).num_rows if inside else 0
    return sorted(chosen)


def _read_file(
    path: Path,
    start_ms: int | None,
    end_ms: int | None,
    *,
    limit: int | None = None,
    from_end: bool = False,
    columns: list[str] | None = None,
    memory_map: bool = True,
) -> pa.Table:
    with pq.ParquetFile(path, memory_map=memory_map) as parquet:
        groups = _select_row_groups(parquet.metadata, start_ms, end_ms, limit, from_end)
        if not groups:
            schema = (
                CANDLE_SCHEMA if columns is None else pa.schema([CANDLE_SCHEMA.field(c) for c in columns])
            )
            return schema.empty_table()
        table = parquet.read_row_groups(groups, columns=columns, use_threads=True)
    table = table.replace_schema_metadata(None)
    ts = table.column("timestamp")
    ts_np = ts.chunk(0).to_numpy() if ts.num_chunks == 1 else ts.to_numpy()
    low = 0 if start_ms is None else int(np.searchsorted(ts_np, start_ms, side="left"))
    high = ts_np.size if end_ms is None else int(np.searchsorted(ts_np, end_ms, side="left"))
    if limit is not None:
        if from_end:
            low = max(low, high - limit)
        else:
            high = min(high, low + limit)
    return table.slice(low, max(high - low, 0))


def _metadata(path: Path) -> dict[str, Any]:
    raw = (pq.read_schema(path).metadata or {}).get(_METADATA_KEY)
    return dict(json.loads(raw)) if raw else {}


def _info(path: Path) -> DatasetInfo:
    summary = _metadata(path)
    timeframe = summary.get("timeframe") or naming.timeframe_from_file_name(path.name) or ""
    if "rows" not in summary:  # a file written by someone else: compute what the footer lacks
        ts = _read_file(path, None, None, columns=["timestamp"]).column("timestamp").to_numpy()
        found = find_gaps(ts, timeframe)
        summary |= {
            "rows": int(ts.size),
            "first_ms": int(ts[0]) if ts.size else 0,
            "last_ms": int(ts[-1]) if ts.size else 0,
            "gaps": len(found),
            "missing": sum(gap.missing for gap in found),
        }
    return DatasetInfo(
        exchange=summary.get("exchange") or path.parent.parent.name,
        symbol=summary.get("symbol") or naming.path_name_to_symbol(path.parent.name),
        timeframe=timeframe,
        first_ms=int(summary["first_ms"]),
        last_ms=int(summary["last_ms"]),
        rows=int(summary["rows"]),
        gaps=int(summary["gaps"]),
        missing=int(summary["missing"]),
        source=summary.get("source") or "exchange",
        file_size=path.stat().st_size,
        path=path,
    )


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDWR)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _fsync_directory(folder: Path) -> None:
    """Make the rename durable; directories cannot be opened on Windows, where this is skipped."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
