"""Built-in strategies: shapes, the SMA cross against a plain-Python loop, ties, parameters,
the registry and its catalog."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest

from cryptoorchestrator.core.errors import ValidationFailed
from cryptoorchestrator.strategies import base, registry
from cryptoorchestrator.strategies.library import BUILTIN_STRATEGIES, Dca, DonchianBreakout, Grid, SmaCross

from .conftest import candles_from_close

ALL_NAMES = sorted([strategy.name for strategy in BUILTIN_STRATEGIES] + ["rules"])
SHORT_CAPABLE = [
    "sma_cross",
    "ema_cross",
    "rsi_momentum",
    "bollinger_reversion",
    "macd_cross",
    "donchian_breakout",
    "grid",
]


def assert_well_formed(signals: base.Signals, length: int) -> None:
    assert signals.problems(length) == []
    for name in base.SIGNAL_NAMES:
        array = getattr(signals, name)
        assert array.dtype == np.bool_ and array.shape == (length,)


def python_sma_cross(close: list[float], fast: int, slow: int) -> tuple[list[bool], list[bool], list[float]]:
    """Reference: SMA by plain sums and the documented crossing rule, bar by bar."""

    def average(end: int, period: int) -> float:
        return math.fsum(close[end - period + 1 : end + 1]) / period if end >= period - 1 else math.nan

    entries, exits, gaps = [False] * len(close), [False] * len(close), [math.nan] * len(close)
    for t in range(1, len(close)):
        f_now, s_now = average(t, fast), average(t, slow)
        f_before, s_before = average(t - 1, fast), average(t - 1, slow)
        entries[t] = f_now > s_now and f_before <= s_before
        exits[t] = f_now < s_now and f_before >= s_before
        gaps[t] = min(abs(f_now - s_now), abs(f_before - s_before))
    return entries, exits, gaps


@pytest.mark.parametrize("name", ALL_NAMES)
def test_builtin_signals_are_well_formed_on_synthetic_candles(name: str, candles: pd.DataFrame) -> None:
    strategy = registry.get(name)()
    signals = strategy.signals(candles, strategy.default_params())
    assert_well_formed(signals, len(candles))
    assert signals.entry_long.any(), "defaults should trade on 1500 random-walk bars"
    if name != "dca":
        assert signals.exit_long.any()
    assert not signals.entry_short.any() and not signals.exit_short.any()  # long-only by default


@pytest.mark.parametrize("name", SHORT_CAPABLE)
def test_allow_short_produces_short_signals(name: str, candles: pd.DataFrame) -> None:
    strategy = registry.get(name)()
    signals = strategy.signals(candles, strategy.validate_params({"allow_short": True}))
    assert_well_formed(signals, len(candles))
    assert signals.entry_short.any() and signals.exit_short.any()


def test_sma_cross_matches_plain_python_loop(candles: pd.DataFrame) -> None:
    close = candles["close"].tolist()
    entries, exits, _ = python_sma_cross(close, 10, 30)
    signals = SmaCross().signals(candles, SmaCross.validate_params({"fast": 10, "slow": 30}))
    np.testing.assert_array_equal(signals.entry_long, entries)
    np.testing.assert_array_equal(signals.exit_long, exits)
    assert sum(entries) > 5


def test_tie_is_not_a_cross_until_strictly_greater() -> None:
    # fast=2, slow=4 on integers: every average is exact in binary floating point.
    close = [10, 8, 6, 4, 4, 4, 4, 4, 6, 8, 8, 8, 6, 4, 4, 4, 4, 6]
    candles = candles_from_close(close)
    signals = SmaCross().signals(candles, SmaCross.validate_params({"fast": 2, "slow": 4}))
    fast = pd.Series(close, dtype=float).rolling(2).mean().to_numpy()
    slow = pd.Series(close, dtype=float).rolling(4).mean().to_numpy()
    ties = np.flatnonzero(fast == slow)
    assert ties.size >= 3, "the series must contain exact ties"
    assert not signals.entry_long[ties].any() and not signals.exit_long[ties].any()
    # Bars 4..7 tie (flat at 4); bar 8 is the first bar with fast > slow: the cross is there.
    assert fast[7] == slow[7] and fast[8] > slow[8]
    assert np.flatnonzero(signals.entry_long).tolist() == [8, 17]
    # Bar 12: fast drops below slow for the first time after being above.
    assert np.flatnonzero(signals.exit_long).tolist() == [12]


def test_tie_rule_on_helpers() -> None:
    a = np.array([1.0, 2.0, 2.0, 3.0, 3.0, 2.0, 3.0, np.nan, 4.0])
    b = np.array([2.0, 2.0, 2.0, 2.0, 3.0, 3.0, 3.0, 3.0, 3.0])
    # 3: 3>2 after 2<=2. 6: 3 vs 3 tie is not a cross. 8: the bar before is NaN, so no cross.
    assert np.flatnonzero(base.crosses_above(a, b)).tolist() == [3]
    # 5: 2<3 after 3>=3 (tie before counts as "from above").
    assert np.flatnonzero(base.crosses_below(a, b)).tolist() == [5]


@pytest.mark.parametrize(
    ("name", "params", "field"),
    [
        ("sma_cross", {"fast": 30, "slow": 10}, "slow"),
        ("sma_cross", {"fast": 30, "slow": 30}, "slow"),
        ("sma_cross", {"fast": 0}, "fast"),
        ("ema_cross", {"slow": 10**6}, "slow"),
        ("rsi_momentum", {"oversold": -1}, "oversold"),
        ("rsi_momentum", {"oversold": 60, "overbought": 40}, "overbought"),
        ("bollinger_reversion", {"stddev": 0}, "stddev"),
        ("macd_cross", {"fast": 26, "slow": 12}, "slow"),
        ("donchian_breakout", {"period": "long"}, "period"),
        ("grid", {"spacing_pct": 0}, "spacing_pct"),
        ("grid", {"reference_price": -5}, "reference_price"),
        ("dca", {"interval": 0}, "interval"),
        ("dca", {"unknown": 1}, "unknown"),
    ],
)
def test_parameter_errors_are_422_naming_the_field(name: str, params: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        registry.default_registry().validate_params(name, params)
    error = caught.value
    assert error.http_status == 422 and error.code == "VALIDATION_ERROR"
    errors = error.details["errors"]
    assert [item["loc"] for item in errors] == [[field]]
    assert set(errors[0]) == {"loc", "msg", "type"} and errors[0]["msg"]
    json.dumps(error.details)  # the API can serialise it


def test_unknown_strategy_is_404() -> None:
    with pytest.raises(registry.StrategyNotFound) as caught:
        registry.get("no_such_strategy")
    assert caught.value.http_status == 404 and caught.value.code == "STRATEGY_NOT_FOUND"
    assert "sma_cross" in caught.value.details["available"]


def test_catalog_lists_every_strategy_with_schema_and_defaults() -> None:
    entries = registry.catalog()
    assert [entry["name"] for entry in entries] == ALL_NAMES
    for entry in entries:
        assert entry["description"]
        schema = entry["parameters_schema"]
        assert schema["type"] == "object"
        assert set(entry["defaults"]) == set(schema["properties"])
        json.dumps(entry)
    sma = next(entry for entry in entries if entry["name"] == "sma_cross")
    assert sma["defaults"] == {"fast": 10, "slow": 30, "allow_short": False}
    assert sma["parameters_schema"]["properties"]["fast"]["minimum"] == 1


def test_registry_rejects_duplicates_and_invalid_classes() -> None:
    fresh = registry.builtin_registry()
    assert "sma_cross" in fresh and len(fresh) == len(ALL_NAMES)
    fresh.register(SmaCross)  # the same class again is a no-op

    class Other(SmaCross):
        name = "sma_cross"

    with pytest.raises(registry.StrategyAlreadyRegistered):
        fresh.register(Other)
    fresh.register(Other, replace=True)
    assert fresh.get("sma_cross") is Other

    class BadName(SmaCross):
        name = "Bad Name!"

    with pytest.raises(ValidationFailed):
        fresh.register(BadName)
    assert registry.default_registry().get("sma_cross") is SmaCross  # the default is untouched


def test_donchian_breakout_uses_the_previous_channel() -> None:
    close = [10, 11, 12, 11, 10, 13, 9, 8]
    signals = DonchianBreakout().signals(
        candles_from_close(close), DonchianBreakout.validate_params({"period": 3, "exit_period": 2})
    )
    # Bar 5: 13 > max(12, 11, 10). Bar 6: 9 < min(10, 13). Bar 7: 8 < min(13, 9).
    assert np.flatnonzero(signals.entry_long).tolist() == [5]
    assert np.flatnonzero(signals.exit_long).tolist() == [4, 6, 7]
    assert signals.stop_loss is not None and signals.stop_loss[5] == 10.0


def test_grid_buys_stepping_down_and_sells_stepping_up() -> None:
    close = [100, 99.5, 98.5, 97.5, 98.5, 100, 101.5, 102.5, 101]
    params = Grid.validate_params({"reference_price": 100, "spacing_pct": 1.0, "levels": 2})
    signals = Grid().signals(candles_from_close(close), params)
    # Levels: 0, 0, -1, -2, -1, 0, 1, 2, 1. Buys on down-steps below the mid, sells on up-steps above.
    assert np.flatnonzero(signals.entry_long).tolist() == [2, 3]
    assert np.flatnonzero(signals.exit_long).tolist() == [6, 7]
    assert signals.stop_loss is not None and np.allclose(signals.stop_loss, 97.0)


def test_dca_buys_every_interval_and_takes_profit_on_the_average() -> None:
    close = [100.0, 90.0, 80.0, 90.0, 100.0, 110.0, 120.0]
    plain = Dca().signals(candles_from_close(close), Dca.validate_params({"interval": 2}))
    assert np.flatnonzero(plain.entry_long).tolist() == [0, 2, 4, 6]
    assert not plain.exit_long.any() and plain.take_profit is None
    signals = Dca().signals(
        candles_from_close(close), Dca.validate_params({"interval": 2, "take_profit_pct": 10})
    )
    # Buys at 100 and 80 (equal amounts): average 2 / (1/100 + 1/80) = 88.89; target 97.78 -> bar 4.
    assert np.flatnonzero(signals.exit_long).tolist() == [4]
    assert np.flatnonzero(signals.entry_long).tolist() == [0, 2, 6]
    assert signals.take_profit is not None
    assert signals.take_profit[2] == pytest.approx(2 / (1 / 100 + 1 / 80) * 1.1)
    assert np.isnan(signals.take_profit[4]) and np.isnan(signals.take_profit[5])


@pytest.mark.realdata
@pytest.mark.parametrize("name", ALL_NAMES)
def test_builtin_signals_on_real_btc_candles(
    name: str, real_candles: Callable[[str, int], pd.DataFrame]
) -> None:
    frame = real_candles("binance_BTC-USDT_5m.csv", 20_000)
    strategy = registry.get(name)()
    signals = strategy.signals(frame, strategy.default_params())
    assert_well_formed(signals, len(frame))
    assert signals.entry_long.any()


@pytest.mark.realdata
def test_sma_cross_matches_python_loop_on_real_candles(
    real_candles: Callable[[str, int], pd.DataFrame],
) -> None:
    frame = real_candles("binance_BTC-USDT_5m.csv", 20_000)
    entries, exits, gaps = python_sma_cross(frame["close"].tolist(), 10, 30)
    signals = SmaCross().signals(frame, SmaCross.default_params())
    mismatched = np.flatnonzero((signals.entry_long != entries) | (signals.exit_long != exits))
    # TA-Lib's running sums and fsum can disagree only where the averages (near-)tie.
    scale = frame["close"].abs().max()
    assert all(gaps[bar] <= 1e-9 * scale for bar in mismatched), mismatched
    assert len(mismatched) <= 2 and sum(entries) > 100
