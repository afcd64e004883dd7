"""Statistics over stored fills and equity snapshots: the trade summary, P&L by period,
strategy and symbol, and portfolio performance (pure functions, Decimal money, float ratios).

Definitions: a *closing trade* is a fill that realised P&L (it reduced or closed a position);
it wins when the realised P&L is positive and loses when it is negative. ``win_rate`` is wins
over closing trades, in percent (the seeds' convention: ``66.7``); ``profit_factor`` is gross
profit over gross loss (``None`` without losses). Performance figures come from the daily
equity snapshots through ``backtest.metrics.equity_metrics``, so a paper or live portfolio is
measured exactly as a backtest is.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np

from cryptoorchestrator.backtest.metrics import equity_metrics
from cryptoorchestrator.domain.accounts import EquitySnapshot, TradeRecord

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class TradeSummary:
    trades: int
    closing_trades: int
    winning_trades: int
    losing_trades: int
    total_pnl: Decimal
    gross_profit: Decimal
    gross_loss: Decimal
    win_rate: float | None
    profit_factor: float | None
    largest_win: Decimal | None
    largest_loss: Decimal | None
    average_win: Decimal | None
    average_loss: Decimal | None
    fees: dict[str, Decimal]
    volume: Decimal


def summarize(records: Iterable[TradeRecord]) -> TradeSummary:
    """The summary of a set of fills (definitions in the module docstring)."""
    count = 0
    wins: list[Decimal] = []
    losses: list[Decimal] = []
    closing = 0
    fees: dict[str, Decimal] = defaultdict(Decimal)
    volume = ZERO
    for record in records:
        count += 1
        volume += record.price * record.quantity
        if record.fee:
            fees[record.fee_asset] += record.fee
        if record.realized_pnl is None:
            continue
        closing += 1
        if record.realized_pnl > 0:
            wins.append(record.realized_pnl)
        elif record.realized_pnl < 0:
            losses.append(record.realized_pnl)
    profit = sum(wins, ZERO)
    loss = -sum(losses, ZERO)
    return TradeSummary(
        trades=count,
        closing_trades=closing,
        winning_trades=len(wins),
        losing_trades=len(losses),
        total_pnl=profit - loss,
        gross_profit=profit,
        gross_loss=loss,
        win_rate=round(100.0 * len(wins) / closing, 4) if closing else None,
        profit_factor=float(profit / loss) if loss > 0 else None,
        largest_win=max(wins) if wins else None,
        largest_loss=min(losses) if losses else None,
        average_win=profit / len(wins) if wins else None,
        average_loss=-loss / len(losses) if losses else None,
        fees=dict(fees),
        volume=volume,
    )


def breakdown(records: Sequence[TradeRecord], *, key: str) -> list[dict[str, Any]]:
    """Realised P&L and closing-trade counts grouped by ``key`` (``symbol`` or ``strategy``;
    fills without a strategy are grouped as ``manual``), largest P&L first."""
    pnl: dict[str, Decimal] = defaultdict(Decimal)
    trades: dict[str, int] = defaultdict(int)
    for record in records:
        name = getattr(record, key) or "manual"
        trades[name] += 1 if record.realized_pnl is not None else 0
        pnl[name] += record.realized_pnl or ZERO
    rows = [{key: name, "pnl": pnl[name], "trades": trades[name]} for name in pnl]
    return sorted(rows, key=lambda row: row["pnl"], reverse=True)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def performance(snapshots: Sequence[EquitySnapshot], *, initial: Decimal | None) -> dict[str, Any]:
    """Daily returns and the return metrics of a series of daily equity snapshots.

    ``initial`` is the equity before the first snapshot of the period (the previous day's
    snapshot, or the starting balance); without it the first snapshot is the base."""
    ordered = sorted(snapshots, key=lambda s: s.day)
    if not ordered:
        return {"daily_returns": [], "metrics": {}, "initial": initial, "final": None}
    base = initial if initial is not None and initial > 0 else ordered[0].equity
    daily: list[dict[str, Any]] = []
    previous = base
    for snapshot in ordered:
        change = snapshot.equity - previous
        daily.append(
            {
                "date": snapshot.day,
                "balance": snapshot.equity,
                "return_amount": change,
                "return_percentage": float(change / previous * 100) if previous else None,
            }
        )
        previous = snapshot.equity
    equity = np.array([float(s.equity) for s in ordered], dtype=np.float64)
    figures = equity_metrics(equity, float(base), periods=365.0) if base > 0 else {}
    metrics = {
        "total_return": _finite(figures.get("total_return", math.nan)),
        "sharpe_ratio": _finite(figures.get("sharpe", math.nan)),
        "sortino_ratio": _finite(figures.get("sortino", math.nan)),
        "max_drawdown": _finite(figures.get("max_drawdown", math.nan)),
        "volatility": _finite(figures.get("volatility", math.nan)),
    }
    return {"daily_returns": daily, "metrics": metrics, "initial": base, "final": ordered[-1].equity}
