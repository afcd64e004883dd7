"""Symbol resolution: what users type -> ccxt unified symbols."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cryptoorchestrator.core.errors import InvalidSymbol
from cryptoorchestrator.exchanges.symbols import SUPPORTED_PREVIEW, SymbolIndex, resolve_symbol

SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT", "ETH/BTC", "BTC/USDT:USDT", "1000SHIB/USDT")


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("BTCUSDT", "BTC/USDT"),
        ("BTC-USDT", "BTC/USDT"),
        ("BTC_USDT", "BTC/USDT"),
        ("btc/usdt", "BTC/USDT"),
        ("BTC/USDT", "BTC/USDT"),
        ("  eth-btc ", "ETH/BTC"),
        ("ethbtc", "ETH/BTC"),
        ("BTC/USDT:USDT", "BTC/USDT:USDT"),
        ("btc/usdt:usdt", "BTC/USDT:USDT"),
        ("1000shib_usdt", "1000SHIB/USDT"),
    ],
)
def test_user_spellings_resolve_to_the_unified_symbol(typed: str, expected: str) -> None:
    assert resolve_symbol(typed, SYMBOLS) == expected


def test_compact_form_prefers_the_spot_market_over_the_swap() -> None:
    assert resolve_symbol("BTCUSDT", ["BTC/USDT:USDT", "BTC/USDT"]) == "BTC/USDT"


def test_compact_form_finds_a_swap_when_there_is_no_spot_market() -> None:
    assert resolve_symbol("BTCUSDT", ["BTC/USDT:USDT"]) == "BTC/USDT:USDT"


@pytest.mark.parametrize("typed", ["DOGEUSDT", "BTC/EUR", "", "   ", "BTC"])
def test_unknown_symbols_raise_invalid_symbol_with_the_supported_list(typed: str) -> None:
    with pytest.raises(InvalidSymbol) as caught:
        resolve_symbol(typed, SYMBOLS)
    assert caught.value.details["symbol"] == typed
    assert caught.value.details["supported"] == sorted(SYMBOLS)
    assert caught.value.http_status == 404


def test_supported_list_is_capped_at_fifty_sorted_symbols() -> None:
    symbols = [f"C{index:03d}/USDT" for index in range(120)]
    with pytest.raises(InvalidSymbol) as caught:
        resolve_symbol("NOPE", reversed(symbols))  # type: ignore[arg-type]
    supported = caught.value.details["supported"]
    assert len(supported) == SUPPORTED_PREVIEW == 50
    assert supported == sorted(symbols)[:50]


def test_index_reports_membership_and_size() -> None:
    index = SymbolIndex(SYMBOLS)
    assert "ETH/BTC" in index
    assert "ETHBTC" not in index
    assert len(index) == len(SYMBOLS)
    assert index.symbols == tuple(sorted(SYMBOLS))


_asset = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=2, max_size=6)


@given(
    base=_asset,
    quote=st.sampled_from(["USDT", "USDC", "BTC", "EUR"]),
    separator=st.sampled_from(["/", "-", "_", ""]),
)
def test_any_separator_and_case_round_trips(base: str, quote: str, separator: str) -> None:
    symbol = f"{base}/{quote}"
    typed = f"{base}{separator}{quote}".lower()
    assert resolve_symbol(typed, [symbol, "ZZZ/YYY"]) == symbol
