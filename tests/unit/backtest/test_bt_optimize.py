"""Parameter optimisation: spaces, methods, scoring, parallelism, cancellation."""

from __future__ import annotations

import math
import threading
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

from cryptoorchestrator.backtest import optimize as opt
from cryptoorchestrator.backtest.engine import BacktestConfig, run_backtest
from cryptoorchestrator.core.errors import ValidationFailed
from cryptoorchestrator.strategies.library.moving_average import MovingAverageCrossParams, SmaCross

from ._bt_support import real_candles, sma_cross, synthetic_candles

CONFIG = BacktestConfig(timeframe="5m")
SPACE = {"fast": {"low": 5, "high": 15, "step": 5}, "slow": {"values": [10, 20, 40]}}


def frame(n: int, seed: int = 3) -> pd.DataFrame:
    data = synthetic_candles(n, seed=seed)
    return pd.DataFrame({"timestamp": np.arange(n, dtype=np.int64) * 300_000, **data})


@pytest.fixture(scope="module")
def candles() -> pd.DataFrame:
    return frame(1500)


def test_grid_matches_brute_force_loop(candles: pd.DataFrame) -> None:
    result = opt.optimize("sma_cross", candles, SPACE, objective="sharpe", config=CONFIG, workers=1)
    brute: dict[tuple[int, int], float] = {}
    for fast in (5, 10, 15):
        for slow in (10, 20, 40):
            if fast >= slow:
                continue
            entries, exits = sma_cross(candles["close"].to_numpy(), fast, slow)
            run = run_backtest(candles, {"entry_long": entries, "exit_long": exits}, CONFIG)
            brute[(fast, slow)] = run.metrics().sharpe
    best = max(brute, key=lambda k: brute[k])
    assert result.best_params == {"fast": best[0], "slow": best[1]}
    assert result.best_score == pytest.approx(brute[best], rel=1e-12)
    assert (result.total, result.evaluated, result.skipped, result.failed) == (
        9,
        len(brute),
        9 - len(brute),
        0,
    )
    ok = result.table[result.table["status"] == "ok"]
    for (fast, slow), sharpe in brute.items():
        row = ok[(ok["fast"] == fast) & (ok["slow"] == slow)]
        assert row["sharpe"].iloc[0] == pytest.approx(sharpe, rel=1e-12)


def test_invalid_combinations_are_skipped_and_counted(candles: pd.DataFrame) -> None:
    space = {"fast": {"values": [10, 20, 30]}, "slow": {"values": [20, 30]}}
    result = opt.optimize("sma_cross", candles, space, config=CONFIG, workers=1)
    skipped = result.table[result.table["status"] == "skipped"]
    assert result.skipped == 3 and result.evaluated == 3
    assert sorted(zip(skipped["fast"], skipped["slow"], strict=True)) == [(20, 20), (30, 20), (30, 30)]
    assert skipped["error"].str.contains("must be greater than fast").all()
    assert (skipped["score"] == -math.inf).all()


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"nope": {"values": [1]}}, "nope"),
        ({"fast": {"low": 0, "high": 10}}, "fast"),
        ({"fast": {"low": 5, "high": 2000}}, "fast"),
        ({"slow": {"values": [30, 6000]}}, "slow"),
        ({"fast": {"low": 5, "high": 10, "step": 0.5}}, "fast"),
        ({"fast": {"low": 10, "high": 5}}, "fast"),
        ({"allow_short": {"values": ["yes"]}}, "allow_short"),
    ],
)
def test_bad_space_raises_naming_the_parameter(candles: pd.DataFrame, spec: dict, field: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        opt.optimize("sma_cross", candles, spec, workers=1)
    assert caught.value.details["field"] == field
    assert field in caught.value.message


def test_bounds_come_from_the_model_schema() -> None:
    space = opt.ParameterSpace.from_specs(SmaCross, {"fast": {"low": 1, "high": 1000, "step": 333}})
    assert space.grid() == [{"fast": 1}, {"fast": 334}, {"fast": 667}, {"fast": 1000}]
    bollinger = opt.ParameterSpace.from_specs(
        "bollinger_reversion", {"stddev": {"low": 0.5, "high": 1.5, "step": 0.25}}
    )
    assert [c["stddev"] for c in bollinger.grid()] == [0.5, 0.75, 1.0, 1.25, 1.5]
    with pytest.raises(ValidationFailed, match="stddev"):
        opt.ParameterSpace.from_specs("bollinger_reversion", {"stddev": {"low": 0.0, "high": 1.0}})
    assert MovingAverageCrossParams.model_fields["fast"].default == 10


@pytest.mark.parametrize("method", ["random", "optuna"])
def test_seeded_methods_are_reproducible(candles: pd.DataFrame, method: str) -> None:
    space = {"fast": {"low": 2, "high": 30}, "slow": {"low": 10, "high": 80, "step": 5}}
    run = [
        opt.optimize(
            "sma_cross", candles, space, method=method, n_trials=12, seed=seed, config=CONFIG, workers=1
        )
        for seed in (11, 11, 12)
    ]
    assert run[0].total == 12 and run[0].evaluated + run[0].skipped + run[0].failed == 12
    pd.testing.assert_frame_equal(run[0].table, run[1].table)
    assert run[0].best_params == run[1].best_params
    assert not run[0].table[["fast", "slow"]].equals(run[2].table[["fast", "slow"]])
    in_bounds = run[0].table
    assert in_bounds["fast"].between(2, 30).all() and in_bounds["slow"].isin(range(10, 81, 5)).all()


def test_objectives_and_min_trades(candles: pd.DataFrame) -> None:
    by_drawdown = opt.optimize(
        "sma_cross", candles, SPACE, objective="max_drawdown", config=CONFIG, workers=1
    )
    ok = by_drawdown.table[by_drawdown.table["status"] == "ok"]
    assert by_drawdown.best_score == ok["max_drawdown"].max() <= 0  # shallowest drawdown wins
    none_enough = opt.optimize("sma_cross", candles, SPACE, min_trades=10**6, config=CONFIG, workers=1)
    assert (none_enough.table.loc[none_enough.table["status"] == "ok", "score"] == -math.inf).all()
    assert none_enough.best_score == -math.inf and none_enough.best_params == {"fast": 5, "slow": 10}
    with pytest.raises(ValidationFailed, match="objective"):
        opt.optimize("sma_cross", candles, SPACE, objective="luck", workers=1)  # type: ignore[arg-type]


class FlakySma(SmaCross):
    """Raises in ``signals`` for fast == 10: a failed combination, not a crash."""

    name: ClassVar[str] = "flaky_sma"

    def signals(self, candles: pd.DataFrame, params: MovingAverageCrossParams):  # type: ignore[override]
        if params.fast == 10:
            raise RuntimeError("boom")
        return super().signals(candles, params)


def test_failing_strategy_code_is_counted_as_failed(candles: pd.DataFrame) -> None:
    result = opt.optimize(FlakySma, candles, SPACE, config=CONFIG, workers=1)
    failed = result.table[result.table["status"] == "failed"]
    assert result.failed == 2 and set(failed["fast"]) == {10}
    assert failed["error"].str.contains("boom").all()
    assert result.best_params is not None and result.best_params["fast"] != 10


def test_progress_and_cancellation_between_chunks(candles: pd.DataFrame) -> None:
    space = {"fast": {"low": 2, "high": 20}, "slow": {"values": [30, 40]}}
    calls: list[tuple[int, int]] = []
    opt.optimize(
        "sma_cross",
        candles,
        space,
        config=CONFIG,
        workers=1,
        chunk_size=4,
        progress=lambda d, t: calls.append((d, t)),
    )
    assert calls[-1] == (38, 38) and [d for d, _ in calls] == sorted(d for d, _ in calls)

    cancel = threading.Event()
    seen: list[int] = []

    def stop_after_first(done: int, total: int) -> None:
        seen.append(done)
        cancel.set()

    result = opt.optimize(
        "sma_cross",
        candles,
        space,
        config=CONFIG,
        workers=1,
        chunk_size=4,
        progress=stop_after_first,
        cancel=cancel,
    )
    assert result.cancelled and result.evaluated == 4 and seen == [4]
    assert len(result.table) == 4 and result.best_params is not None


def test_two_workers_give_the_same_results_as_one(candles: pd.DataFrame) -> None:
    space = {"fast": {"low": 4, "high": 16, "step": 4}, "slow": {"values": [12, 24, 48]}}
    serial = opt.optimize("sma_cross", candles, space, config=CONFIG, workers=1)
    calls: list[int] = []
    parallel = opt.optimize(
        "sma_cross",
        candles,
        space,
        config=CONFIG,
        workers=2,
        chunk_size=2,
        progress=lambda d, t: calls.append(d),
    )
    pd.testing.assert_frame_equal(serial.table, parallel.table)
    assert parallel.best_params == serial.best_params and parallel.best_score == serial.best_score
    assert calls[-1] == 12


@pytest.mark.slow
def test_a_shared_worker_pool_gives_the_same_results(candles: pd.DataFrame) -> None:
    space = {"fast": {"low": 4, "high": 16, "step": 4}, "slow": {"values": [12, 24, 48]}}
    kwargs = {"config": CONFIG, "method": "random", "n_trials": 8, "seed": 5}
    with opt.WorkerPool(2) as pool:
        pooled = opt.optimize("sma_cross", candles, space, pool=pool, **kwargs)
        again = opt.optimize("sma_cross", candles.iloc[:700], space, pool=pool, **kwargs)
    pd.testing.assert_frame_equal(
        pooled.table, opt.optimize("sma_cross", candles, space, workers=1, **kwargs).table
    )
    serial_short = opt.optimize("sma_cross", candles.iloc[:700], space, workers=1, **kwargs)
    pd.testing.assert_frame_equal(again.table, serial_short.table)


@pytest.mark.realdata
def test_grid_on_real_btc_candles() -> None:
    data = real_candles("binance_BTC-USDT_5m.csv")
    n = 20_000
    candles = pd.DataFrame(
        {"timestamp": np.arange(n, dtype=np.int64) * 300_000, **{k: v[:n] for k, v in data.items()}}
    )
    space = {"fast": {"low": 10, "high": 30, "step": 10}, "slow": {"values": [50, 100]}}
    result = opt.optimize("sma_cross", candles, space, config=CONFIG, workers=1, min_trades=5)
    assert result.evaluated == 6 and result.best_params is not None
    best = opt.backtest_params("sma_cross", candles, result.best_params, CONFIG)
    assert result.best_score == pytest.approx(best.metrics().sharpe, rel=1e-12)
    assert best.metrics().total_trades >= 5
