"""The kernel against a plain-Python reference loop: SMA cross 10/30, long only, all in,
0.1% commission per side, fill at the next open, no slippage."""

from __future__ import annotations

import numpy as np
import pytest

from cryptoorchestrator.backtest.engine import BacktestConfig, run_backtest
from cryptoorchestrator.backtest.kernel import EXIT_OPEN, EXIT_SIGNAL

from ._bt_support import real_candles, sma_cross, synthetic_candles

FEE = 0.001
CASH = 10_000.0


def reference_sma_cross(
    candles: dict[str, np.ndarray], entries: np.ndarray, exits: np.ndarray
) -> tuple[list[tuple[int, int, float, float, float]], float]:
    """Trades (entry bar, exit bar, quantity, entry price, exit price) and final equity."""
    open_, close = candles["open"], candles["close"]
    cash, qty, entry_bar, entry_price = CASH, 0.0, -1, 0.0
    trades: list[tuple[int, int, float, float, float]] = []
    for t in range(1, len(close)):
        if qty > 0 and exits[t - 1]:
            cash += qty * open_[t] * (1.0 - FEE)
            trades.append((entry_bar, t, qty, entry_price, open_[t]))
            qty = 0.0
        elif qty == 0 and entries[t - 1]:
            entry_price, entry_bar = open_[t], t
            qty = cash / (entry_price * (1.0 + FEE))  # whole equity, commission included
            cash -= qty * entry_price * (1.0 + FEE)
    if qty > 0:
        trades.append((entry_bar, len(close) - 1, qty, entry_price, close[-1]))
    return trades, cash + qty * close[-1]


def _compare(candles: dict[str, np.ndarray]) -> int:
    entries, exits = sma_cross(candles["close"])
    expected_trades, expected_equity = reference_sma_cross(candles, entries, exits)
    config = BacktestConfig(initial_cash=CASH, taker_fee=FEE, maker_fee=FEE, slippage_bps=0.0)
    result = run_backtest(candles, {"entry_long": entries, "exit_long": exits}, config)
    trades = result.trades
    assert len(trades) == len(expected_trades) > 0
    got = [
        (int(r["entry_bar"]), int(r["exit_bar"]), r["quantity"], r["entry_price"], r["exit_price"])
        for r in trades
    ]
    for (eb, xb, q, ep, xp), (reb, rxb, rq, rep, rxp) in zip(got, expected_trades, strict=True):
        assert (eb, xb) == (reb, rxb)
        assert q == pytest.approx(rq, rel=1e-9)
        assert ep == pytest.approx(rep, rel=1e-12)
        assert xp == pytest.approx(rxp, rel=1e-12)
    assert (trades["side"] == 1).all()
    closed_reasons = trades["exit_reason"][:-1]
    assert (closed_reasons == EXIT_SIGNAL).all()
    assert trades["exit_reason"][-1] in (EXIT_SIGNAL, EXIT_OPEN)
    assert result.final_equity == pytest.approx(expected_equity, rel=1e-9)
    return len(trades)


def test_bt_sma_cross_matches_reference_on_synthetic_data() -> None:
    assert _compare(synthetic_candles(20_000, seed=11)) > 50


@pytest.mark.realdata
def test_bt_sma_cross_matches_reference_on_real_btc_5m() -> None:
    assert _compare(real_candles("binance_BTC-USDT_5m.csv")) > 100
