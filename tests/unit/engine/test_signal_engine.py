"""SignalEngine: the decision on each closed candle equals the replay's signal at that close
(the strategy's signals on the prefix, last value), with a bounded window (S1-S4)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cryptoorchestrator.core.errors import StrategyError, ValidationFailed
from cryptoorchestrator.engine.signals import Candle, SignalEngine
from cryptoorchestrator.strategies import base, registry


def frame(n: int = 300, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    open_ = np.concatenate(([100.0], close[:-1]))
    high = np.maximum(open_, close) * 1.002
    low = np.minimum(open_, close) * 0.998
    stamps = 1_700_000_000_000 + 60_000 * np.arange(n, dtype=np.int64)
    return pd.DataFrame(
        {"timestamp": stamps, "open": open_, "high": high, "low": low, "close": close, "volume": 1.0}
    )


def candles_of(data: pd.DataFrame) -> list[Candle]:
    return [
        Candle(int(row.timestamp), row.open, row.high, row.low, row.close, row.volume)
        for row in data.itertuples(index=False)
    ]


@pytest.mark.parametrize(
    "name", ["sma_cross", "ema_cross", "bollinger_reversion", "rsi_momentum", "donchian_breakout"]
)
def test_decisions_equal_the_signal_on_the_prefix(name: str) -> None:
    if name not in registry.builtin_registry():
        pytest.skip(f"{name} is not a built-in here")
    data = frame()
    strategy = registry.builtin_registry().create(name)
    params = strategy.default_params()
    engine = SignalEngine(strategy, params, window=len(data))
    for index, candle in enumerate(candles_of(data)):
        decision = engine.on_candle("BTC/USDT", candle)
        expected = strategy.signals(data.iloc[: index + 1], params)
        assert decision.signal == (
            bool(expected.entry_long[index]),
            bool(expected.exit_long[index]),
            bool(expected.entry_short[index]),
            bool(expected.exit_short[index]),
        ), f"bar {index}"
        assert decision.timestamp == candle.timestamp


def test_a_bounded_window_gives_the_same_sma_decisions() -> None:
    data = frame(400)
    strategy = registry.builtin_registry().create("sma_cross")
    params = strategy.validate_params({"fast": 5, "slow": 20})
    full = SignalEngine(strategy, params, window=400)
    short = SignalEngine(strategy, params, window=30)
    for candle in candles_of(data):
        assert full.on_candle("X/USDT", candle) == short.on_candle("X/USDT", candle)
    assert len(short.candles("X/USDT")) == 30


def test_warm_up_feeds_history_without_deciding() -> None:
    data = candles_of(frame(60))
    engine = SignalEngine(registry.builtin_registry().create("sma_cross"), {"fast": 3, "slow": 8}, window=50)
    engine.warm("A/B", data[:40])
    assert engine.last_timestamp("A/B") == data[39].timestamp
    assert engine.on_candle("A/B", data[40]).timestamp == data[40].timestamp
    assert engine.last_timestamp("Z/B") is None


def test_a_resent_candle_replaces_the_last_and_an_older_one_is_refused() -> None:
    data = candles_of(frame(10))
    engine = SignalEngine(registry.builtin_registry().create("sma_cross"), {"fast": 2, "slow": 3})
    for candle in data:
        engine.on_candle("A/B", candle)
    again = engine.on_candle("A/B", data[-1])
    assert again.timestamp == data[-1].timestamp
    assert len(engine.candles("A/B")) == len(data)
    with pytest.raises(ValidationFailed):
        engine.on_candle("A/B", data[3])


def test_window_must_hold_two_candles() -> None:
    with pytest.raises(ValidationFailed):
        SignalEngine(registry.builtin_registry().create("sma_cross"), window=1)


class Broken(base.Strategy[base.StrategyParams]):
    name = "broken"
    description = "raises"

    def signals(self, candles: pd.DataFrame, params: base.StrategyParams) -> base.Signals:
        raise ZeroDivisionError("boom")


def test_strategy_failures_become_strategy_errors() -> None:
    engine = SignalEngine(Broken())
    with pytest.raises(StrategyError):
        engine.on_candle("A/B", candles_of(frame(3))[0])


def test_decision_as_dict_is_json_safe() -> None:
    engine = SignalEngine(registry.builtin_registry().create("sma_cross"), {"fast": 2, "slow": 3})
    decision = engine.on_candle("A/B", candles_of(frame(3))[0])
    assert decision.as_dict()["symbol"] == "A/B"
    assert decision.is_quiet
