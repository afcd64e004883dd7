"""The declarative rules strategy: parsing, clear 422 errors and evaluation."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest

from cryptoorchestrator import indicators
from cryptoorchestrator.core.errors import ValidationFailed
from cryptoorchestrator.strategies import base
from cryptoorchestrator.strategies.rules import Condition, Group, Operand, RulesStrategy, parse_ruleset

RSI_LOW = {"indicator": "rsi", "period": 14, "op": "<", "value": 30}
RSI_HIGH = {"indicator": "rsi", "period": 14, "op": ">", "value": 70}
SMA_CROSS_UP = {
    "indicator": "sma",
    "period": 10,
    "op": "crosses_above",
    "other": {"indicator": "sma", "period": 30},
}


def run(rules: dict[str, Any], candles: pd.DataFrame) -> base.Signals:
    strategy = RulesStrategy()
    return strategy.signals(candles, strategy.validate_params(rules))


def errors_of(rules: Any) -> list[dict[str, Any]]:
    with pytest.raises(ValidationFailed) as caught:
        RulesStrategy.validate_params(rules)
    assert caught.value.http_status == 422
    json.dumps(caught.value.details)
    return caught.value.details["errors"]


def test_parse_builds_the_tree() -> None:
    ruleset = parse_ruleset(
        {"entry": {"all": [RSI_LOW, {"any": [SMA_CROSS_UP]}]}, "exit": {"any": [RSI_HIGH]}}
    )
    assert isinstance(ruleset.entry_long, Group) and ruleset.entry_long.mode == "all"
    first = ruleset.entry_long.items[0]
    assert first == Condition(Operand("rsi", (("period", 14),)), "<", 30.0)
    nested = ruleset.entry_long.items[1]
    assert isinstance(nested, Group) and nested.mode == "any"
    assert ruleset.entry_short is None and ruleset.exit_short is None


def test_rsi_rules_match_direct_comparison(candles: pd.DataFrame) -> None:
    signals = run({"entry": {"all": [RSI_LOW]}, "exit": {"any": [RSI_HIGH]}}, candles)
    rsi = indicators.rsi(candles["close"], 14)
    np.testing.assert_array_equal(signals.entry_long, rsi < 30)
    np.testing.assert_array_equal(signals.exit_long, rsi > 70)
    assert signals.entry_long.any() and signals.exit_long.any()
    assert not signals.entry_short.any()


def test_indicator_vs_indicator_cross_equals_sma_cross_strategy(candles: pd.DataFrame) -> None:
    down = dict(SMA_CROSS_UP, op="crosses_below")
    signals = run({"entry": SMA_CROSS_UP, "exit": down}, candles)
    fast, slow = indicators.sma(candles["close"], 10), indicators.sma(candles["close"], 30)
    np.testing.assert_array_equal(signals.entry_long, base.crosses_above(fast, slow))
    np.testing.assert_array_equal(signals.exit_long, base.crosses_below(fast, slow))


def test_all_any_nesting_and_short_side(candles: pd.DataFrame) -> None:
    close = candles["close"].to_numpy()
    ema20 = indicators.ema(close, 20)
    rsi = indicators.rsi(close, 14)
    rules = {
        "entry": {
            "all": [
                {"indicator": "close", "op": ">", "other": {"indicator": "ema", "period": 20}},
                {
                    "any": [
                        {"indicator": "rsi", "period": 14, "op": "<=", "value": 45},
                        {"indicator": "rsi", "period": 14, "op": ">=", "value": 65},
                    ]
                },
            ]
        },
        "exit": None,
        "entry_short": {"indicator": "macd_hist", "op": "crosses_below", "value": 0},
        "exit_short": {"indicator": "volume", "op": "==", "value": -1},
    }
    signals = run(rules, candles)
    np.testing.assert_array_equal(signals.entry_long, (close > ema20) & ((rsi <= 45) | (rsi >= 65)))
    assert not signals.exit_long.any() and not signals.exit_short.any()
    hist = indicators.macd(close).hist
    np.testing.assert_array_equal(signals.entry_short, base.crosses_below(hist, 0.0))


@pytest.mark.parametrize(
    "operand",
    [
        {"indicator": "bb_lower", "period": 20, "stddev": 2.5},
        {"indicator": "bb_upper", "period": 20},
        {"indicator": "bb_middle", "period": 20},
        {"indicator": "atr", "period": 14},
        {"indicator": "adx", "period": 14},
        {"indicator": "stoch_k", "period": 14},
        {"indicator": "stoch_d", "period": 14, "smooth_k": 5, "smooth_d": 2},
        {"indicator": "obv"},
        {"indicator": "vwap"},
        {"indicator": "vwap", "period": 50},
        {"indicator": "donchian_upper", "period": 20},
        {"indicator": "donchian_middle", "period": 20},
        {"indicator": "donchian_lower", "period": 20},
        {"indicator": "macd", "fast": 5, "slow": 35, "signal": 5},
        {"indicator": "macd_signal"},
        {"indicator": "high"},
        {"indicator": "low"},
        {"indicator": "open"},
    ],
)
def test_every_indicator_evaluates(operand: dict[str, Any], candles: pd.DataFrame) -> None:
    signals = run({"entry": {**operand, "op": ">", "other": {"indicator": "low"}}}, candles)
    assert signals.problems(len(candles)) == []


@pytest.mark.parametrize(
    ("rules", "loc", "type_"),
    [
        (
            {"entry": {"indicator": "magic", "period": 3, "op": "<", "value": 1}},
            ["entry", "indicator"],
            "unknown_indicator",
        ),
        (
            {"entry": {"all": [{"indicator": "rsi", "period": 14, "op": "=<", "value": 1}]}},
            ["entry", "all", 0, "op"],
            "invalid_op",
        ),
        (
            {"entry": {"any": [{"indicator": "sma", "op": "<", "value": 1}]}},
            ["entry", "any", 0, "period"],
            "missing",
        ),
        ({"entry": {"indicator": "rsi", "period": 14, "value": 1}}, ["entry", "op"], "missing"),
        ({"entry": {"indicator": "rsi", "period": 14, "op": "<"}}, ["entry", "value"], "missing"),
        (
            {"entry": {"indicator": "rsi", "period": "14", "op": "<", "value": 1}},
            ["entry", "period"],
            "int_type",
        ),
        (
            {"entry": {"indicator": "rsi", "period": 1, "op": "<", "value": 1}},
            ["entry", "period"],
            "out_of_range",
        ),
        (
            {"entry": {"indicator": "rsi", "period": 14, "op": "<", "value": True}},
            ["entry", "value"],
            "float_type",
        ),
        (
            {"entry": {"indicator": "close", "period": 14, "op": "<", "value": 1}},
            ["entry", "period"],
            "extra_forbidden",
        ),
        (
            {"entry": {"indicator": "sma", "period": 5, "op": ">", "other": {"indicator": "ema"}}},
            ["entry", "other", "period"],
            "missing",
        ),
        (
            {"entry": {"indicator": "macd", "fast": 30, "op": ">", "value": 0}},
            ["entry", "slow"],
            "value_error",
        ),
        ({"entry": {"all": []}}, ["entry", "all"], "type_error"),
        ({"entry": {"all": [RSI_LOW], "any": [RSI_LOW]}}, ["entry"], "value_error"),
        ({"entry": {"op": "<"}}, ["entry"], "missing"),
        ({"entry": [RSI_LOW]}, ["entry"], "dict_type"),  # caught by the parameter model
        ({"entry": RSI_LOW, "exits": RSI_HIGH}, ["exits"], "extra_forbidden"),
        ({"entry": None}, ["entry"], "dict_type"),
    ],
)
def test_invalid_rules_give_422_with_location(rules: dict[str, Any], loc: list[Any], type_: str) -> None:
    errors = errors_of(rules)
    assert {"loc": loc, "type": type_} in [{"loc": e["loc"], "type": e["type"]} for e in errors], errors
    assert all(e["msg"] for e in errors)


def test_all_errors_are_reported_at_once() -> None:
    rules = {
        "entry": {
            "all": [
                {"indicator": "nope", "op": "<", "value": 1},
                {"indicator": "rsi", "op": "??", "value": 1},
            ]
        },
        "exit": {"indicator": "sma", "op": "<", "value": 1},
    }
    locs = [error["loc"] for error in errors_of(rules)]
    assert ["entry", "all", 0, "indicator"] in locs
    assert ["entry", "all", 1, "op"] in locs and ["entry", "all", 1, "period"] in locs
    assert ["exit", "period"] in locs


def test_json_text_is_accepted_and_bad_json_is_422(candles: pd.DataFrame) -> None:
    params = RulesStrategy.validate_params(json.dumps({"entry": RSI_LOW}))
    assert params.entry == RSI_LOW
    assert errors_of("{not json")[0]["type"] == "json_invalid"
    assert errors_of("[1, 2]")[0]["type"] == "type_error"


def test_deep_nesting_is_rejected_not_a_recursion_error() -> None:
    node: dict[str, Any] = RSI_LOW
    for _ in range(40):
        node = {"all": [node]}
    assert any(error["type"] == "too_deep" for error in errors_of({"entry": node}))


def test_defaults_are_the_rsi_example(candles: pd.DataFrame) -> None:
    defaults = RulesStrategy.default_params()
    assert defaults.entry == {"all": [RSI_LOW]} and defaults.exit == {"any": [RSI_HIGH]}
    signals = RulesStrategy().signals(candles, defaults)
    np.testing.assert_array_equal(signals.entry_long, indicators.rsi(candles["close"], 14) < 30)
