"""The direct converters the paper batch uses on SQLite (``persistence/tables``): each gives
exactly the text the SQLAlchemy bind processor of its column type stores, so a row written by
the batch and one written through the repositories are the same bytes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import JSON
from sqlalchemy.dialects import sqlite

from cryptoorchestrator.persistence import tables
from cryptoorchestrator.persistence.tables import (
    Money,
    UTCDateTime,
    json_amounts_text,
    json_strings_text,
    sqlite_datetime_text,
    storable_text,
)

DIALECT = sqlite.dialect()
DATETIME_BIND = UTCDateTime().dialect_impl(DIALECT).bind_processor(DIALECT)
MONEY_BIND = Money().dialect_impl(DIALECT).bind_processor(DIALECT)
JSON_BIND = JSON().dialect_impl(DIALECT).bind_processor(DIALECT)


@given(
    moment=st.datetimes(
        min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
    ),
    offset_minutes=st.integers(min_value=-14 * 60, max_value=14 * 60),
    whole_second=st.booleans(),
)
def test_datetime_text_is_what_the_column_stores(
    moment: datetime, offset_minutes: int, whole_second: bool
) -> None:
    if whole_second:
        moment = moment.replace(microsecond=0)  # isoformat leaves the fraction out: we must not
    local = moment.astimezone(timezone(timedelta(minutes=offset_minutes)))
    assert sqlite_datetime_text(moment) == DATETIME_BIND(moment)
    assert sqlite_datetime_text(local) == DATETIME_BIND(local) == DATETIME_BIND(moment)
    assert len(sqlite_datetime_text(moment)) == 26


def test_a_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        sqlite_datetime_text(datetime(2026, 1, 1))  # naive: the point of the test


def _reference(value: Decimal) -> str:
    """NUMERIC(38, 18) by the book: round half-even to 18 places, refuse 10**20 and beyond,
    write without an exponent or trailing zeros."""
    if not value.is_finite():
        raise ValueError("not finite")
    rounded = value.quantize(Decimal(1).scaleb(-18), context=Context(prec=80, rounding=ROUND_HALF_EVEN))
    if rounded.copy_abs() >= Decimal(10) ** 20:
        raise ValueError("out of range")
    if not rounded:
        return "0"
    text = format(rounded, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _outcome(function: object, value: object) -> str:
    try:
        return function(value)  # type: ignore[operator, no-any-return]
    except (ValueError, InvalidOperation) as error:
        return type(error).__name__


@given(
    st.decimals(allow_nan=True, allow_infinity=True, places=None)
    | st.builds(
        lambda digits, exponent: Decimal(digits).scaleb(exponent),
        st.integers(min_value=-(10**40), max_value=10**40),
        st.integers(min_value=-45, max_value=25),
    )
)
def test_money_text_is_what_the_column_stores(value: Decimal) -> None:
    expected = _outcome(_reference, value)
    assert _outcome(storable_text, value) == expected
    assert _outcome(MONEY_BIND, value) == expected


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("18268.379625"), "18268.379625"),
        (Decimal("-0.00"), "0"),
        (Decimal("1E+5"), "100000"),
        (Decimal("1E-19"), "0"),  # below the 18th place: rounds to zero
        (Decimal("-18.642694250000000000"), "-18.64269425"),
        (Decimal("99999999999999999999.999999999999999999"), "99999999999999999999.999999999999999999"),
        (5, "5"),
        ("1.50", "1.5"),
    ],
)
def test_money_text_examples(value: Decimal | int | str, text: str) -> None:
    assert storable_text(value) == text


@pytest.mark.parametrize(
    "value",
    [
        Decimal("NaN"),
        Decimal("-Infinity"),
        Decimal(10) ** 20,
        Decimal("99999999999999999999.9999999999999999999"),  # rounds up to 10**20
    ],
)
def test_money_text_refuses_what_the_column_cannot_hold(value: Decimal) -> None:
    with pytest.raises(ValueError):
        storable_text(value)


@given(st.lists(st.text()))
def test_json_text_of_strings_is_what_the_column_stores(items: list[str]) -> None:
    """Trade ids are the venue's text: any character, quotes and non-ASCII included."""
    assert json_strings_text(items) == JSON_BIND(items)
    assert json_strings_text(iter(items)) == JSON_BIND(items)


@given(
    st.dictionaries(
        st.text(min_size=1, max_size=12),
        st.decimals(allow_nan=False, allow_infinity=False, min_value=-(10**19), max_value=10**19),
        max_size=4,
    )
)
def test_json_text_of_amounts_is_what_the_column_stores(amounts: dict[str, Decimal]) -> None:
    stored = {asset: storable_text(amounts[asset]) for asset in sorted(amounts)}
    assert json_amounts_text(amounts) == JSON_BIND(stored)


def test_datetime_text_keeps_a_bounded_memory_of_days() -> None:
    start = datetime(2026, 1, 1, 23, 59, 59, 999999, tzinfo=UTC)
    for day in range(200):
        moment = start + timedelta(days=day)
        assert sqlite_datetime_text(moment) == DATETIME_BIND(moment)
    assert len(tables._DAY_TEXT) <= 64
