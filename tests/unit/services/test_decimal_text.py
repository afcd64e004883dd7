"""Candle floats leave the API as exact decimal text without binary noise."""

from decimal import Decimal

import pytest

from cryptoorchestrator.services.market_data import decimal_text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (3908.7153900000003, "3908.71539"),  # a resampled volume sum
        (0.1 + 0.2, "0.3"),
        (0.00005330000000000001, "0.0000533"),
        (43250.5, "43250.5"),
        (1e-8, "0.00000001"),
        (123456789012345.0, "123456789012345"),
        (0.0, "0"),
    ],
)
def test_decimal_text(value, text):
    assert decimal_text(value) == text
    Decimal(text)


def test_values_with_15_significant_digits_round_trip():
    for text in ("0.123456789012345", "98765.4321098765", "1.5", "42"):
        assert Decimal(decimal_text(float(text))) == Decimal(text)
