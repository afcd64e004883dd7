"""Performance metrics of a backtest, from the per-bar equity and the trade records.

Everything here is float64 (kernel domain, architecture convention 2): money-like outputs such
as ``average_win`` are floats in quote currency, good to float precision, not ``Decimal``.

Conventions (those of empyrical / quantstats, so that they can serve as oracles later):

* Bar returns are simple returns of equity, the first one measured from the initial cash.
* Crypto trades every day: the annualisation factor is ``365 days / bar length`` bars per year.
* ``annual_return`` is the compound annual growth rate over the bars of the run.
* ``volatility`` = ``std(returns, ddof=1) * sqrt(periods)``; ``sharpe`` =
  ``mean / std(ddof=1) * sqrt(periods)`` (risk-free rate 0); ``sortino`` =
  ``mean * periods / (sqrt(mean(min(r, 0)^2)) * sqrt(periods))``.
* ``max_drawdown`` is a negative fraction (``-0.25`` = 25% below the running peak, the initial
  cash included); ``calmar`` = ``annual_return / |max_drawdown|``.
* Trade statistics count closed trades only; a trade still open at the end (exit reason
  ``EXIT_OPEN``) is counted in ``open_trades``. A trade with ``pnl > 0`` is a win, ``< 0`` a loss.
* Ratios that divide by zero are ``nan`` (``inf`` for a profit factor without losses).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from cryptoorchestrator.backtest import kernel
from cryptoorchestrator.core.errors import ValidationFailed

_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_YEAR_SECONDS = 365 * 86_400
_TIMEFRAME = re.compile(r"^([1-9][0-9]*)([smhdw])$")


def timeframe_seconds(timeframe: str) -> int:
    """Seconds in one bar of ``timeframe`` ("1m", "5m", "1h", "1d", "1w", ...)."""
    match = _TIMEFRAME.match(timeframe)
    if match is None:
        raise ValidationFailed(
            f"timeframe: {timeframe!r} is not a timeframe like '5m' or '1h'", details={"field": "timeframe"}
        )
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def periods_per_year(timeframe: str) -> float:
    """Bars per year for ``timeframe``; crypto trades 365 days a year."""
    return _YEAR_SECONDS / timeframe_seconds(timeframe)


@dataclass(frozen=True, slots=True)
class Metrics:
    """Backtest performance figures; see the module docstring for the definitions."""

    total_return: float
    annual_return: float
    volatility: float
    sharpe: float
    sortino: float
    calmar: float
    max_drawdown: float
    total_trades: int
    long_trades: int
    short_trades: int
    open_trades: int
    wins: int
    losses: int
    win_rate: float
    profit_factor: float
    expectancy: float
    average_win: float
    average_loss: float
    largest_win: float
    largest_loss: float
    average_duration_bars: float
    average_duration_seconds: float
    exposure: float


def bar_returns(equity: np.ndarray, initial_cash: float) -> np.ndarray:
    """Simple returns per bar, the first measured from ``initial_cash``."""
    previous = np.concatenate(([initial_cash], equity[:-1]))
    return equity / previous - 1.0


def drawdown_series(equity: np.ndarray, initial_cash: float) -> np.ndarray:
    """Drawdown per bar as a fraction (<= 0) below the running peak, initial cash included."""
    peak = np.maximum.accumulate(np.concatenate(([initial_cash], equity)))[1:]
    return equity / peak - 1.0


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator != 0 and math.isfinite(denominator) else math.nan


def _return_metrics(equity: np.ndarray, initial_cash: float, periods: float) -> dict[str, float]:
    returns = bar_returns(equity, initial_cash)
    n = len(returns)
    total = float(equity[-1] / initial_cash - 1.0) if n else 0.0
    annual = (1.0 + total) ** (periods / n) - 1.0 if n and total > -1.0 else -1.0 if n else math.nan
    std = float(np.std(returns, ddof=1)) if n > 1 else math.nan
    mean = float(np.mean(returns)) if n else math.nan
    downside = float(np.sqrt(np.mean(np.minimum(returns, 0.0) ** 2))) if n else math.nan
    max_dd = float(np.min(drawdown_series(equity, initial_cash))) if n else 0.0
    return {
        "total_return": total,
        "annual_return": annual,
        "volatility": std * math.sqrt(periods),
        "sharpe": _ratio(mean, std) * math.sqrt(periods),
        "sortino": _ratio(mean * periods, downside * math.sqrt(periods)),
        "calmar": _ratio(annual, abs(max_dd)),
        "max_drawdown": max_dd,
    }


def equity_metrics(equity: np.ndarray, initial_cash: float, *, periods: float) -> dict[str, float]:
    """Return, volatility, Sharpe, Sortino, Calmar and maximum drawdown of an equity series
    (the definitions of the module docstring): live and paper portfolios are measured exactly
    as backtests are, ``periods`` being the number of samples in a year (365 for daily)."""
    return _return_metrics(np.asarray(equity, dtype=np.float64), initial_cash, periods)


def _trade_metrics(trades: np.ndarray, seconds_per_bar: float) -> dict[str, float | int]:
    closed = trades[trades["exit_reason"] != kernel.EXIT_OPEN]
    pnl = closed["pnl"]
    wins, losses = pnl[pnl > 0], pnl[pnl < 0]
    gross_loss = float(-losses.sum())
    duration = (closed["exit_bar"] - closed["entry_bar"]).astype(np.float64)
    count = len(closed)
    return {
        "total_trades": count,
        "long_trades": int((closed["side"] == 1).sum()),
        "short_trades": int((closed["side"] == -1).sum()),
        "open_trades": len(trades) - count,
        "wins": len(wins),
        "losses": len(losses),
        "win_rate": _ratio(len(wins), count),
        "profit_factor": (
            float(wins.sum()) / gross_loss if gross_loss > 0 else (math.inf if len(wins) else math.nan)
        ),
        "expectancy": float(pnl.mean()) if count else math.nan,
        "average_win": float(wins.mean()) if len(wins) else math.nan,
        "average_loss": float(losses.mean()) if len(losses) else math.nan,
        "largest_win": float(wins.max()) if len(wins) else math.nan,
        "largest_loss": float(losses.min()) if len(losses) else math.nan,
        "average_duration_bars": float(duration.mean()) if count else math.nan,
        "average_duration_seconds": float(duration.mean()) * seconds_per_bar if count else math.nan,
    }


def compute_metrics(bars: np.ndarray, trades: np.ndarray, *, initial_cash: float, timeframe: str) -> Metrics:
    """Compute :class:`Metrics` from the kernel's ``bars`` and ``trades`` records.

    ``bars`` needs the fields ``equity`` and ``position``; ``trades`` is
    :data:`~cryptoorchestrator.backtest.kernel.TRADE_DTYPE`. ``timeframe`` sets the
    annualisation (365-day year).
    """
    if initial_cash <= 0:
        raise ValidationFailed("initial_cash: must be > 0", details={"field": "initial_cash"})
    seconds = timeframe_seconds(timeframe)
    equity = np.asarray(bars["equity"], dtype=np.float64)
    position = np.asarray(bars["position"], dtype=np.float64)
    exposure = float(np.mean(position != 0.0)) if len(position) else 0.0
    return Metrics(
        **_return_metrics(equity, initial_cash, _YEAR_SECONDS / seconds),  # type: ignore[arg-type]
        **_trade_metrics(trades, float(seconds)),  # type: ignore[arg-type]
        exposure=exposure,
    )
