"""Monte-Carlo resampling of a trade sequence: distributions of final return and drawdown.

Input: the per-trade returns of a run as fractions of the equity before each trade (see
:func:`equity_trade_returns`), so that compounding them replays the run's equity path from trade
to trade. Each simulation draws a new sequence of the same length:

* ``bootstrap``: draws with replacement (the order *and* the mix of trades change);
* ``permutation``: shuffles the same trades (the final return of every path is the same, only
  the path and so the drawdown change).

Equity starts at 1. ``max_drawdown`` is a negative fraction below the running peak (start
included), measured at trade boundaries. A path is *ruined* when its equity falls to
``ruin_equity`` (a fraction of the start, default 0.5) or below at any trade. Random draws
are numpy (``default_rng(seed)``, in blocks of ``block`` simulations to bound memory); the
paths run in one numba kernel (:func:`_paths_nb`, tested against a numpy oracle).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Literal

import numba
import numpy as np

from cryptoorchestrator.backtest import kernel
from cryptoorchestrator.backtest.engine import BacktestResult
from cryptoorchestrator.core.errors import ValidationFailed

ResampleMethod = Literal["bootstrap", "permutation"]


def _invalid(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(f"{field}: {message}", details={"field": field})


def equity_trade_returns(result: BacktestResult) -> np.ndarray:
    """Closed trades' ``pnl`` as a fraction of the equity before each trade.

    Trades in the fast kernel do not overlap and cash changes only by trade ``pnl`` (fees
    included), so the equity before closed trade ``k`` is the initial cash plus the ``pnl`` of
    the earlier ones, and ``prod(1 + r)`` equals the final cash over the initial cash.
    """
    closed = result.trades[result.trades["exit_reason"] != kernel.EXIT_OPEN]
    pnl = closed["pnl"].astype(np.float64)
    before = result.config.initial_cash + np.concatenate(([0.0], np.cumsum(pnl)[:-1]))
    return np.asarray(pnl / before, dtype=np.float64)


@dataclasses.dataclass(frozen=True, slots=True)
class MonteCarloResult:
    """Simulated final returns and max drawdowns (one per path) and their summaries.

    ``percentiles`` maps ``"final_return"`` and ``"max_drawdown"`` to ``{percent: value}``
    (ascending in percent, so ascending in value); ``probability_of_ruin`` is the share of paths
    whose equity fell to ``ruin_equity`` or below.
    """

    method: str
    n_simulations: int
    n_trades: int
    seed: int | None
    final_returns: np.ndarray
    max_drawdowns: np.ndarray
    percentiles: dict[str, dict[float, float]]
    probability_of_ruin: float
    ruin_equity: float

    def summary(self) -> dict[str, float]:
        """Flat ``{name_pNN: value}`` dict plus the means and the probability of ruin."""
        out = {
            f"{name}_p{percent:g}": value
            for name, values in self.percentiles.items()
            for percent, value in values.items()
        }
        out["final_return_mean"] = float(self.final_returns.mean())
        out["max_drawdown_mean"] = float(self.max_drawdowns.mean())
        out["probability_of_ruin"] = self.probability_of_ruin
        return out


def _check(returns: np.ndarray, n_simulations: int, percentiles: Sequence[float], ruin_equity: float) -> None:
    if returns.ndim != 1 or len(returns) == 0:
        raise _invalid("returns", "must be a non-empty one-dimensional array of trade returns")
    if not np.isfinite(returns).all() or (returns <= -1.0).any():
        raise _invalid("returns", "must be finite and above -1 (a trade cannot lose more than everything)")
    if n_simulations < 1:
        raise _invalid("n_simulations", "must be >= 1")
    if not percentiles or any(not 0 <= p <= 100 for p in percentiles):
        raise _invalid("percentiles", "must be values between 0 and 100")
    if not 0 < ruin_equity < 1:
        raise _invalid("ruin_equity", "must be a fraction between 0 and 1 (exclusive)")


@numba.njit(cache=True, nogil=True)
def _paths_nb(values: np.ndarray, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Final return, max drawdown (<= 0) and minimum equity of each path (equity starts at 1).

    Row ``i`` of ``indices`` picks the trade returns of path ``i``; nothing of size
    paths x trades is built besides ``indices``.
    """
    rows, n = indices.shape
    finals = np.empty(rows)
    drawdowns = np.empty(rows)
    lows = np.empty(rows)
    for i in range(rows):
        equity = 1.0
        peak = 1.0  # the starting equity is the first peak
        worst = 0.0
        low = 1.0
        for j in range(n):
            equity *= 1.0 + values[indices[i, j]]
            if equity > peak:
                peak = equity
            drawdown = equity / peak - 1.0
            if drawdown < worst:
                worst = drawdown
            if equity < low:
                low = equity
        finals[i] = equity - 1.0
        drawdowns[i] = worst
        lows[i] = low
    return finals, drawdowns, lows


@numba.njit(cache=True, nogil=True)
def _shuffled_indices_nb(uniform: np.ndarray) -> np.ndarray:
    """One Fisher-Yates permutation of ``0..n-1`` per row, driven by the uniforms in ``uniform``.

    The randomness comes from numpy's seeded generator, so results follow ``seed``; faster than
    ``Generator.permuted`` on a (rows, n) array.
    """
    rows, n = uniform.shape
    out = np.empty((rows, n), dtype=np.int64)
    for i in range(rows):
        for j in range(n):
            out[i, j] = j
        for j in range(n - 1, 0, -1):
            k = min(int(uniform[i, j] * (j + 1)), j)
            out[i, j], out[i, k] = out[i, k], out[i, j]
    return out


def monte_carlo(
    returns: np.ndarray | Sequence[float],
    *,
    n_simulations: int = 10_000,
    method: ResampleMethod = "bootstrap",
    seed: int | None = None,
    percentiles: Sequence[float] = (5.0, 50.0, 95.0),
    ruin_equity: float = 0.5,
    block: int = 2048,
) -> MonteCarloResult:
    """Resample ``returns`` ``n_simulations`` times (see the module docstring).

    Seeded with ``seed`` (numpy ``default_rng``): the same seed gives the same paths whatever
    ``block`` is for ``bootstrap``. Raises ValidationFailed on bad input.
    """
    values = np.asarray(returns, dtype=np.float64)
    _check(values, n_simulations, percentiles, ruin_equity)
    if method not in ("bootstrap", "permutation"):
        raise _invalid("method", "must be 'bootstrap' or 'permutation'")
    rng = np.random.default_rng(seed)
    n = len(values)
    finals = np.empty(n_simulations)
    drawdowns = np.empty(n_simulations)
    lows = np.empty(n_simulations)
    for start in range(0, n_simulations, max(1, block)):
        rows = min(block, n_simulations - start)
        if method == "bootstrap":
            indices = rng.integers(0, n, size=(rows, n), dtype=np.int64)
        else:
            indices = _shuffled_indices_nb(rng.random((rows, n)))
        part = slice(start, start + rows)
        finals[part], drawdowns[part], lows[part] = _paths_nb(values, indices)
    levels = [float(p) for p in percentiles]
    return MonteCarloResult(
        method=method,
        n_simulations=n_simulations,
        n_trades=n,
        seed=seed,
        final_returns=finals,
        max_drawdowns=drawdowns,
        percentiles={
            "final_return": dict(zip(levels, np.percentile(finals, levels).tolist(), strict=True)),
            "max_drawdown": dict(zip(levels, np.percentile(drawdowns, levels).tolist(), strict=True)),
        },
        probability_of_ruin=float(np.mean(lows <= ruin_equity)),
        ruin_equity=ruin_equity,
    )


def probability_of_loss(result: MonteCarloResult, threshold: float = 0.0) -> float:
    """Share of paths whose final return is below ``threshold`` (a fraction, ``0`` = any loss)."""
    if not math.isfinite(threshold):
        raise _invalid("threshold", "must be finite")
    return float(np.mean(result.final_returns < threshold))
