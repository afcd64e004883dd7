"""Kernel rules on hand-built bars: stops inside a bar, gaps, trailing stops, shorts,
leverage and liquidation, sizing modes, quantity step and minimums, fill at close, slippage."""

from __future__ import annotations

import numpy as np
import pytest

from cryptoorchestrator.backtest.engine import BacktestConfig, BacktestResult, run_backtest
from cryptoorchestrator.backtest.kernel import (
    EXIT_LIQUIDATION,
    EXIT_OPEN,
    EXIT_SIGNAL,
    EXIT_STOP_LOSS,
    EXIT_TAKE_PROFIT,
    EXIT_TRAILING_STOP,
)

NO_COSTS = {"taker_fee": 0.0, "maker_fee": 0.0, "slippage_bps": 0.0}


def bars(rows: list[tuple[float, float, float, float]], volume: float = 1_000.0) -> dict[str, np.ndarray]:
    arr = np.array(rows, dtype=np.float64)
    return {
        "open": arr[:, 0],
        "high": arr[:, 1],
        "low": arr[:, 2],
        "close": arr[:, 3],
        "volume": np.full(len(rows), volume),
    }


def signal(n: int, *at: int) -> np.ndarray:
    out = np.zeros(n, dtype=bool)
    out[list(at)] = True
    return out


def run(
    rows: list[tuple[float, float, float, float]], signals: dict[str, np.ndarray], **cfg: object
) -> BacktestResult:
    config = BacktestConfig(**{**NO_COSTS, **cfg})  # type: ignore[arg-type]
    return run_backtest(bars(rows), signals, config)


FLAT = (100.0, 100.0, 100.0, 100.0)


def test_bt_stop_and_take_profit_in_one_bar_assume_the_stop() -> None:
    rows = [FLAT, (100.0, 110.0, 90.0, 100.0), FLAT]
    result = run(rows, {"entry_long": signal(3, 0)}, stop_loss=0.05, take_profit=0.05)
    (trade,) = result.trades
    assert trade["exit_reason"] == EXIT_STOP_LOSS
    assert trade["exit_bar"] == 1
    assert trade["exit_price"] == pytest.approx(95.0)
    assert result.final_equity == pytest.approx(10_000.0 * 0.95)


def test_bt_take_profit_alone_fills_at_the_limit_with_maker_fee() -> None:
    rows = [FLAT, (100.0, 110.0, 99.0, 108.0), FLAT]
    result = run(rows, {"entry_long": signal(3, 0)}, stop_loss=0.05, take_profit=0.05, maker_fee=0.0002)
    (trade,) = result.trades
    assert trade["exit_reason"] == EXIT_TAKE_PROFIT
    assert trade["exit_price"] == pytest.approx(105.0)
    assert trade["exit_fee"] == pytest.approx(trade["quantity"] * 105.0 * 0.0002)


def test_bt_gap_through_the_stop_fills_at_the_open() -> None:
    rows = [FLAT, (100.0, 101.0, 99.0, 100.0), (90.0, 91.0, 85.0, 88.0), FLAT]
    result = run(rows, {"entry_long": signal(4, 0)}, stop_loss=0.05)
    (trade,) = result.trades
    assert trade["exit_reason"] == EXIT_STOP_LOSS
    assert (trade["exit_bar"], trade["exit_price"]) == (2, pytest.approx(90.0))


def test_bt_gap_through_the_take_profit_fills_at_the_better_open() -> None:
    rows = [FLAT, (100.0, 101.0, 99.0, 100.0), (120.0, 121.0, 119.0, 120.0)]
    result = run(rows, {"entry_long": signal(3, 0)}, take_profit=0.1)
    assert result.trades["exit_price"][0] == pytest.approx(120.0)
    assert result.trades["exit_reason"][0] == EXIT_TAKE_PROFIT


def test_bt_trailing_stop_follows_the_high_of_earlier_bars() -> None:
    rows = [
        FLAT,
        (100.0, 105.0, 99.0, 104.0),  # entry at 100; trail from 100 -> 90, then high 105
        (104.0, 120.0, 103.0, 118.0),  # stop 94.5 not hit; high 120 moves the trail to 108
        (118.0, 119.0, 107.0, 110.0),  # low 107 <= 108: out at 108
        FLAT,
    ]
    result = run(rows, {"entry_long": signal(5, 0)}, trailing_stop=0.1)
    (trade,) = result.trades
    assert trade["exit_reason"] == EXIT_TRAILING_STOP
    assert (trade["exit_bar"], trade["exit_price"]) == (3, pytest.approx(108.0))


def test_bt_short_profits_when_price_falls_and_pays_fees() -> None:
    rows = [FLAT, FLAT, (95.0, 96.0, 80.0, 82.0), (80.0, 81.0, 79.0, 80.0), FLAT]
    fee = 0.001
    result = run(
        rows,
        {"entry_short": signal(5, 0), "exit_short": signal(5, 2)},
        taker_fee=fee,
        sizing="fixed_quantity",
        size=10.0,
    )
    (trade,) = result.trades
    assert trade["side"] == -1 and trade["exit_reason"] == EXIT_SIGNAL
    assert (trade["entry_price"], trade["exit_price"]) == (100.0, 80.0)
    expected_pnl = 10.0 * (100.0 - 80.0) - 10.0 * 100.0 * fee - 10.0 * 80.0 * fee
    assert trade["pnl"] == pytest.approx(expected_pnl)
    assert result.final_equity == pytest.approx(10_000.0 + expected_pnl)
    assert result.bars["position"][1] == -10.0


def test_bt_short_stop_loss_triggers_on_the_high() -> None:
    rows = [FLAT, (100.0, 104.0, 90.0, 95.0), FLAT]
    result = run(rows, {"entry_short": signal(3, 0)}, stop_loss=0.03, take_profit=0.05)
    (trade,) = result.trades
    assert trade["exit_reason"] == EXIT_STOP_LOSS  # both in range: the pessimistic one
    assert trade["exit_price"] == pytest.approx(103.0)


def test_bt_opposite_entry_reverses_the_position() -> None:
    rows = [FLAT, FLAT, (110.0, 110.0, 110.0, 110.0), FLAT]
    result = run(rows, {"entry_long": signal(4, 0), "entry_short": signal(4, 1)})
    assert list(result.trades["side"]) == [1, -1]
    assert result.trades["exit_reason"][0] == EXIT_SIGNAL
    assert result.trades["exit_reason"][1] == EXIT_OPEN
    assert result.trades["entry_bar"][1] == 2


def test_bt_leveraged_long_is_liquidated_and_loses_its_margin() -> None:
    rows = [FLAT, FLAT, (99.0, 99.0, 90.0, 91.0), FLAT]
    result = run(
        rows,
        {"entry_long": signal(4, 0)},
        leverage=10.0,
        maintenance_margin_rate=0.005,
        sizing="fixed_cash",
        size=1_000.0,
        taker_fee=0.001,
    )
    (trade,) = result.trades
    liq_price = 100.0 * (1 - 1 / 10) / (1 - 0.005)
    assert trade["quantity"] == pytest.approx(100.0)  # 1000 margin x 10 / 100
    assert trade["exit_reason"] == EXIT_LIQUIDATION
    assert trade["exit_price"] == pytest.approx(liq_price)
    assert trade["pnl"] == pytest.approx(-1_000.0 - 10.0)
    assert result.final_equity == pytest.approx(10_000.0 - 1_010.0)


def test_bt_leveraged_short_liquidation_beats_a_farther_stop() -> None:
    rows = [FLAT, (100.0, 130.0, 99.0, 120.0), FLAT]
    result = run(
        rows, {"entry_short": signal(3, 0)}, leverage=5.0, stop_loss=0.5, sizing="fixed_cash", size=500.0
    )
    (trade,) = result.trades
    assert trade["exit_reason"] == EXIT_LIQUIDATION
    assert trade["exit_price"] == pytest.approx(100.0 * 1.2 / 1.005)


def test_bt_liquidation_gap_at_the_open() -> None:
    rows = [FLAT, FLAT, (70.0, 71.0, 69.0, 70.0)]  # liquidation price 100 * 0.75 / 0.995 = 75.4
    result = run(rows, {"entry_long": signal(3, 0)}, leverage=4.0, size=0.5)
    assert result.trades["exit_reason"][0] == EXIT_LIQUIDATION
    assert result.trades["exit_bar"][0] == 2
    assert result.trades["exit_price"][0] == pytest.approx(75.0 / 0.995)


@pytest.mark.parametrize(
    ("cfg", "expected_qty"),
    [
        ({"sizing": "fixed_quantity", "size": 2.5}, 2.5),
        ({"sizing": "fixed_cash", "size": 1_000.0}, 10.0),
        ({"sizing": "fixed_cash", "size": 1_000.0, "leverage": 3.0}, 30.0),
        ({"sizing": "percent_equity", "size": 0.5, "taker_fee": 0.001}, 5_000.0 / (100.0 * 1.001)),
        ({"sizing": "risk", "size": 0.01, "stop_loss": 0.05}, 100.0 / (100.0 * 0.05)),
        ({"sizing": "fixed_quantity", "size": 1e6}, 100.0),  # capped at what cash pays for
    ],
)
def test_bt_sizing_modes(cfg: dict[str, object], expected_qty: float) -> None:
    result = run([FLAT, FLAT, FLAT], {"entry_long": signal(3, 0)}, **cfg)
    assert result.trades["quantity"][0] == pytest.approx(expected_qty, rel=1e-12)


def test_bt_quantity_rounds_down_to_the_step() -> None:
    result = run([FLAT, FLAT], {"entry_long": signal(2, 0)}, size=0.5, quantity_step=0.3, taker_fee=0.001)
    # 5000 / 100.1 = 49.95 -> 49.8 (166 steps of 0.3)
    assert result.trades["quantity"][0] == pytest.approx(49.8)


@pytest.mark.parametrize("cfg", [{"min_quantity": 200.0}, {"min_notional": 20_000.0}])
def test_bt_orders_under_the_minimums_are_refused(cfg: dict[str, float]) -> None:
    result = run([FLAT, FLAT, FLAT], {"entry_long": signal(3, 0)}, **cfg)
    assert len(result.trades) == 0
    assert (result.bars["equity"] == 10_000.0).all()


def test_bt_fill_at_close_uses_the_signal_bar_close() -> None:
    rows = [(100.0, 101.0, 99.0, 100.5), (101.0, 103.0, 100.0, 102.0), (102.0, 104.0, 101.0, 103.0)]
    result = run(rows, {"entry_long": signal(3, 0), "exit_long": signal(3, 1)}, fill_at="close")
    (trade,) = result.trades
    assert (trade["entry_bar"], trade["entry_price"]) == (0, 100.5)
    assert (trade["exit_bar"], trade["exit_price"]) == (1, 102.0)


def test_bt_fixed_slippage_moves_both_fills_against_us() -> None:
    result = run(
        [FLAT, FLAT, FLAT], {"entry_long": signal(3, 0), "exit_long": signal(3, 1)}, slippage_bps=10.0
    )
    (trade,) = result.trades
    assert trade["entry_price"] == pytest.approx(100.1)
    assert trade["exit_price"] == pytest.approx(99.9)


def test_bt_volume_impact_grows_with_order_size() -> None:
    def entry_price(size: float) -> float:
        result = run(
            [FLAT, FLAT],
            {"entry_long": signal(2, 0)},
            slippage="volume",
            slippage_bps=1.0,
            impact_k_bps=20.0,
            impact_cap_bps=50.0,
            sizing="fixed_quantity",
            size=size,
        )
        return float(result.trades["entry_price"][0])

    # bar volume 1000: 10 units -> 1 + 20 * sqrt(0.01) = 3 bps; 90 units -> 1 + 20 * 0.3 = 7 bps
    assert entry_price(10.0) == pytest.approx(100.0 * 1.0003)
    assert entry_price(90.0) == pytest.approx(100.0 * 1.0007)


def test_bt_equity_is_cash_plus_position_value_on_every_bar() -> None:
    rows = [FLAT, (100.0, 102.0, 98.0, 101.0), (101.0, 103.0, 100.0, 102.0), FLAT]
    result = run(rows, {"entry_long": signal(4, 0), "exit_long": signal(4, 2)}, taker_fee=0.001)
    qty = result.trades["quantity"][0]
    np.testing.assert_allclose(result.bars["position"], [0.0, qty, qty, 0.0])
    np.testing.assert_allclose(
        result.bars["equity"][1:3], result.bars["cash"][1:3] + qty * np.array([101.0, 102.0])
    )
