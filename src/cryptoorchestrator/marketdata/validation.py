"""Row-level candle validation shared by the importer and the candle store.

Every check is a vectorised boolean mask over the rows; messages are only formatted for the few rows
that get listed, so validating a million candles costs a handful of numpy passes. Row numbers in
problems are **1-based data row numbers**: the first candle is row 1 whatever the file format (in a
CSV with a header line that is line 2 of the file, in a JSON array it is the first element).

Rules (a row breaking any of them is bad; corrupt data is never kept silently):

* every value is a finite number (no NaN, no infinity, nothing that is not a number);
* prices are strictly positive, volume is not negative;
* ``high >= low``, ``high >= max(open, close)`` and ``low <= min(open, close)``;
* timestamps are strictly increasing: a timestamp equal to an earlier row's is a duplicate, one below
  the largest earlier timestamp is out of order (so after ``1, 2, 9, 3, 4`` rows ``3`` and ``4`` are
  reported and ``9`` kept: the check is greedy, it never looks ahead);
* when a timeframe is given, timestamps sit on its bucket boundaries (candle open times).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from cryptoorchestrator.core.errors import DataValidationError
from cryptoorchestrator.marketdata import timeframes as tf

PRICE_COLUMNS: Final[tuple[str, ...]] = ("open", "high", "low", "close")
VALUE_COLUMNS: Final[tuple[str, ...]] = (*PRICE_COLUMNS, "volume")
CANDLE_COLUMNS: Final[tuple[str, ...]] = ("timestamp", *VALUE_COLUMNS)
MAX_LISTED_PROBLEMS: Final = 50
"""At most this many problems are listed in a report; the total is always counted."""

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class RowProblem:
    """One problem in one row: ``row`` is the 1-based data row number."""

    row: int
    column: str | None
    message: str

    def as_dict(self) -> dict[str, Any]:
        """Plain-dict form, as carried in ``DataValidationError.details``."""
        return {"row": self.row, "column": self.column, "message": self.message}


@dataclass(frozen=True, slots=True)
class Check:
    """A named rule: ``mask`` marks the offending rows, ``describe(i)`` explains row index ``i``."""

    mask: BoolArray
    column: str | None
    describe: Callable[[int], str]


@dataclass(frozen=True)
class ValidationReport:
    """Outcome of validating ``rows`` candles.

    ``bad_rows`` marks every row that broke at least one rule; ``problems`` lists the first
    :data:`MAX_LISTED_PROBLEMS` problems ordered by row, ``problem_count`` counts all of them.
    """

    rows: int
    bad_rows: BoolArray
    problems: tuple[RowProblem, ...]
    problem_count: int
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when no row broke a rule."""
        return self.problem_count == 0

    @property
    def bad_row_count(self) -> int:
        """How many rows broke at least one rule."""
        return int(self.bad_rows.sum())

    def details(self) -> dict[str, Any]:
        """The ``details`` of the :class:`DataValidationError` raised for this report."""
        return {
            "rows": self.rows,
            "bad_row_count": self.bad_row_count,
            "problem_count": self.problem_count,
            "listed": len(self.problems),
            "truncated": self.problem_count > len(self.problems),
            "problems": [problem.as_dict() for problem in self.problems],
            **self.extra,
        }

    def error(self, what: str = "The data") -> DataValidationError:
        """A :class:`DataValidationError` that names the bad rows (call only when not ``ok``)."""
        first = self.problems[0] if self.problems else None
        head = f" First: row {first.row}: {first.message}" if first else ""
        message = (
            f"{what} has {self.bad_row_count} invalid row(s) of {self.rows} "
            f"({self.problem_count} problem(s)).{head}"
        )
        return DataValidationError(message, details=self.details())


def summarise(rows: int, checks: Sequence[Check], *, limit: int = MAX_LISTED_PROBLEMS) -> ValidationReport:
    """Fold checks into a report: OR of the masks, the total count, the first ``limit`` problems."""
    bad = np.zeros(rows, dtype=np.bool_)
    total = 0
    candidates: list[tuple[int, int, Check]] = []
    for order, check in enumerate(checks):
        hits = np.flatnonzero(check.mask)
        if hits.size == 0:
            continue
        total += int(hits.size)
        bad |= check.mask
        candidates.extend((int(i), order, check) for i in hits[:limit])
    candidates.sort(key=lambda item: (item[0], item[1]))
    problems = tuple(
        RowProblem(row=i + 1, column=check.column, message=check.describe(i))
        for i, _, check in candidates[:limit]
    )
    return ValidationReport(rows=rows, bad_rows=bad, problems=problems, problem_count=total)


def value_checks(
    values: Mapping[str, FloatArray], *, skip: Mapping[str, BoolArray] | None = None
) -> list[Check]:
    """Finite, positive-price, non-negative-volume and OHLC-consistency checks.

    ``skip[column]`` marks cells already reported by the caller (for instance a parse failure shown
    with its raw text), so the same cell is not reported twice as "not finite".
    """
    checks: list[Check] = []
    skip = skip or {}
    for column in VALUE_COLUMNS:
        col = values[column]
        not_finite = ~np.isfinite(col)
        if column in skip:
            not_finite &= ~skip[column]
        checks.append(Check(not_finite, column, _describe_not_finite(column, col)))
    for column in PRICE_COLUMNS:
        col = values[column]
        checks.append(Check(col <= 0, column, _describe_value(column, col, "is not positive")))
    volume = values["volume"]
    checks.append(Check(volume < 0, "volume", _describe_value("volume", volume, "is negative")))
    high, low = values["high"], values["low"]
    top = np.maximum(values["open"], values["close"])
    bottom = np.minimum(values["open"], values["close"])
    checks.append(
        Check(high < low, "high", lambda i: f"high {float(high[i])!r} is below low {float(low[i])!r}")
    )
    checks.append(
        Check(
            high < top,
            "high",
            lambda i: f"high {float(high[i])!r} is below max(open, close) {float(top[i])!r}",
        )
    )
    checks.append(
        Check(
            low > bottom,
            "low",
            lambda i: f"low {float(low[i])!r} is above min(open, close) {float(bottom[i])!r}",
        )
    )
    return checks


def order_checks(
    timestamps: IntArray, *, valid: BoolArray | None = None, timeframe: str | None = None
) -> list[Check]:
    """Duplicate, out-of-order and (with ``timeframe``) misaligned timestamp checks.

    Rows where ``valid`` is False (their timestamp could not be read) take no part in the ordering.
    """
    ts = np.asarray(timestamps, dtype=np.int64)
    ok = np.ones(ts.size, dtype=np.bool_) if valid is None else np.asarray(valid, dtype=np.bool_)
    floor = np.iinfo(np.int64).min
    masked = np.where(ok, ts, floor)
    previous_max = np.empty_like(masked)
    if masked.size:
        previous_max[0] = floor
        np.maximum.accumulate(masked[:-1], out=previous_max[1:])
    duplicate = ok & pd.Series(masked).duplicated(keep="first").to_numpy(dtype=np.bool_)
    out_of_order = ok & ~duplicate & (masked < previous_max)

    def describe_duplicate(i: int) -> str:
        first = int(np.flatnonzero(masked == masked[i])[0])
        return f"duplicate timestamp {int(ts[i])} (first seen in row {first + 1})"

    def describe_out_of_order(i: int) -> str:
        return f"timestamp {int(ts[i])} is out of order (an earlier row has {int(previous_max[i])})"

    checks = [
        Check(duplicate, "timestamp", describe_duplicate),
        Check(out_of_order, "timestamp", describe_out_of_order),
    ]
    if timeframe is not None:
        misaligned = ok & tf.misaligned_mask(np.where(ok, ts, 0), timeframe)
        checks.append(
            Check(
                misaligned,
                "timestamp",
                lambda i: f"timestamp {int(ts[i])} is not a {timeframe} candle open time",
            )
        )
    return checks


def validate_arrays(
    timestamps: IntArray,
    values: Mapping[str, FloatArray],
    *,
    timeframe: str | None = None,
    valid_timestamps: BoolArray | None = None,
    extra_checks: Sequence[Check] = (),
    skip: Mapping[str, BoolArray] | None = None,
) -> ValidationReport:
    """Run every rule over numeric candle columns and return the report (raises nothing).

    ``extra_checks`` (for instance parse failures) come first in each row's list of problems.
    """
    checks = [
        *extra_checks,
        *order_checks(timestamps, valid=valid_timestamps, timeframe=timeframe),
        *value_checks(values, skip=skip),
    ]
    # Order problems as a reader expects: parse problems, then timestamps, then values.
    return summarise(len(timestamps), checks)


def validate_frame(frame: pd.DataFrame, *, timeframe: str | None = None) -> ValidationReport:
    """Validate a numeric candle frame (``timestamp`` int64 ms, OHLCV float64)."""
    ts = frame["timestamp"].to_numpy(dtype=np.int64)
    values = {column: frame[column].to_numpy(dtype=np.float64) for column in VALUE_COLUMNS}
    return validate_arrays(ts, values, timeframe=timeframe)


def _describe_not_finite(column: str, values: FloatArray) -> Callable[[int], str]:
    def describe(i: int) -> str:
        value = float(values[i])
        kind = "NaN" if np.isnan(value) else "infinite"
        return f"{column} is {kind} ({value!r})"

    return describe


def _describe_value(column: str, values: FloatArray, what: str) -> Callable[[int], str]:
    return lambda i: f"{column} {float(values[i])!r} {what}"
