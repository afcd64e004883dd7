"""ccxt structures -> domain records: exact Decimals, precision modes, vendor quirks."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cryptoorchestrator.domain.market import ExchangeOrder, MarketInfo
from cryptoorchestrator.exchanges import mapping


def test_floats_become_their_shortest_decimal_not_the_binary_value() -> None:
    assert mapping.to_decimal(0.1) == Decimal("0.1")
    assert mapping.to_decimal(0.1) != Decimal.from_float(0.1)
    assert mapping.to_decimal(1e-08) == Decimal("1E-8")
    assert mapping.to_decimal("60000.00000000") == Decimal("60000")
    assert mapping.to_decimal(7) == Decimal(7)


@pytest.mark.parametrize("value", [None, math.nan, math.inf, "abc", "", True, Decimal("NaN")])
def test_missing_or_non_finite_numbers_are_none(value: object) -> None:
    assert mapping.to_decimal(value) is None


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_to_decimal_round_trips_every_finite_float(value: float) -> None:
    converted = mapping.to_decimal(value)
    assert converted is not None
    assert float(converted) == value
    assert converted == Decimal(repr(value))


def ccxt_market(**overrides: object) -> dict[str, object]:
    market: dict[str, object] = {
        "id": "BTCUSDT",
        "symbol": "BTC/USDT",
        "base": "BTC",
        "quote": "USDT",
        "settle": None,
        "type": "spot",
        "active": True,
        "maker": 0.001,
        "taker": 0.001,
        "precision": {"amount": 1e-05, "price": 0.01},
        "limits": {"amount": {"min": 1e-05, "max": 9000.0}, "cost": {"min": 5.0, "max": None}},
    }
    market.update(overrides)
    return market


def test_tick_size_precision_is_kept_as_increments() -> None:
    info = mapping.market_from_ccxt(ccxt_market(), precision_mode=mapping.TICK_SIZE)
    assert (info.price_tick, info.amount_step) == (Decimal("0.01"), Decimal("0.00001"))
    assert (info.min_amount, info.min_notional) == (Decimal("0.00001"), Decimal("5.0"))


def test_decimal_places_precision_becomes_increments() -> None:
    market = ccxt_market(precision={"amount": 3, "price": 2})
    info = mapping.market_from_ccxt(market, precision_mode=mapping.DECIMAL_PLACES)
    assert (info.price_tick, info.amount_step) == (Decimal("0.01"), Decimal("0.001"))


def test_significant_digits_have_no_fixed_increment() -> None:
    info = mapping.market_from_ccxt(
        ccxt_market(precision={"amount": 4, "price": 5}), precision_mode=mapping.SIGNIFICANT_DIGITS
    )
    assert info.price_tick is None and info.amount_step is None


def test_swap_markets_keep_type_and_settle() -> None:
    info = mapping.market_from_ccxt(
        ccxt_market(symbol="BTC/USDT:USDT", type="swap", settle="USDT", active=None)
    )
    assert (info.type, info.settle, info.active) == ("swap", "USDT", True)


def test_market_helpers_round_to_the_venue_grid() -> None:
    info = mapping.market_from_ccxt(ccxt_market())
    assert isinstance(info, MarketInfo)
    assert info.floor_amount(Decimal("0.123456789")) == Decimal("0.12345")
    assert info.round_price(Decimal("60000.006"), side="buy") == Decimal("60000.00")
    assert info.round_price(Decimal("60000.001"), side="sell") == Decimal("60000.01")
    assert info.rejection_reason(Decimal("0.0001"), Decimal("60000")) is None
    assert "minimum" in (info.rejection_reason(Decimal("0.000001"), Decimal("60000")) or "")
    assert "notional" in (info.rejection_reason(Decimal("0.00005"), Decimal("60000")) or "")
    assert "step" in (info.rejection_reason(Decimal("0.000015"), Decimal("600000")) or "")


def test_balances_skip_metadata_and_empty_assets() -> None:
    balances = mapping.balances_from_ccxt(
        {
            "info": {"raw": True},
            "timestamp": 1,
            "datetime": "x",
            "free": {"BTC": 0.5},
            "used": {"BTC": 0.25},
            "total": {"BTC": 0.75},
            "BTC": {"free": 0.5, "used": 0.25, "total": 0.75},
            "BNB": {"free": 0.0, "used": 0.0, "total": 0.0},
            "ETH": {"free": 1.0, "used": None, "total": None},
        }
    )
    assert set(balances) == {"BTC", "ETH"}
    assert balances["BTC"].total == Decimal("0.75")
    assert (balances["ETH"].used, balances["ETH"].total) == (Decimal(0), Decimal("1.0"))


def test_order_keeps_the_orders_client_id_from_a_binance_cancel_answer() -> None:
    order = mapping.order_from_ccxt(
        {
            "id": "17",
            "clientOrderId": "cancel-request-id",
            "info": {"origClientOrderId": "mine-1"},
            "symbol": "BTC/USDT",
            "side": "SELL",
            "type": "limit",
            "status": "canceled",
            "price": 70000.0,
            "amount": 0.1,
            "filled": 0.0,
            "remaining": 0.1,
            "average": None,
            "cost": 0.0,
            "fee": None,
            "fees": [{"cost": 0.1, "currency": "USDT"}, {"cost": 0.2, "currency": "USDT"}],
            "timestamp": 1_700_000_000_000,
        }
    )
    assert isinstance(order, ExchangeOrder)
    assert (order.client_order_id, order.side, order.status) == ("mine-1", "sell", "canceled")
    assert order.fee is not None and (order.fee.cost, order.fee.currency) == (Decimal("0.3"), "USDT")
    assert order.is_final and not order.is_open


def test_order_without_side_is_not_given_one() -> None:
    order = mapping.order_from_ccxt({"id": "1", "symbol": "BTC/USDT", "status": "open", "filled": None})
    assert order.side is None
    assert order.filled == 0
    assert order.fee is None


def test_ohlcv_rows_become_floats_with_nan_for_gaps() -> None:
    rows = mapping.ohlcv_from_ccxt([[1, "1.5", 2, 1, 1.5, None]])
    assert rows[0][:5] == [1, 1.5, 2.0, 1.0, 1.5]
    assert math.isnan(rows[0][5])


def test_order_book_levels_may_carry_extra_columns() -> None:
    book = mapping.order_book_from_ccxt(
        {"bids": [[100.5, 2.0, 3]], "asks": [[101.0, 1.0]], "timestamp": None, "nonce": 9},
        symbol="X/Y",
        source="venue",
    )
    assert book.bids == ((Decimal("100.5"), Decimal("2.0")),)
    assert (book.symbol, book.nonce, book.best_ask) == ("X/Y", 9, Decimal("101.0"))
