"""Grid trading around a reference price (fixed) or a rolling mid (SMA)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd
from pydantic import Field

from cryptoorchestrator import indicators
from cryptoorchestrator.strategies import base


class GridParams(base.StrategyParams):
    """Grid geometry: number of levels each side, spacing in percent of the mid, the mid."""

    levels: int = Field(default=5, ge=1, le=100, description="Grid levels on each side of the mid")
    spacing_pct: float = Field(
        default=1.0, gt=0.0, le=50.0, description="Distance between levels, percent of the mid"
    )
    window: int = Field(default=100, ge=2, le=10000, description="Rolling mid SMA period (bars)")
    reference_price: float | None = Field(
        default=None, gt=0.0, description="Fixed mid price; when unset the rolling SMA is the mid"
    )
    allow_short: bool = Field(default=False, description="Also sell short at levels above the mid")


def grid_levels(close: base.FloatArray, mid: base.FloatArray, params: GridParams) -> base.FloatArray:
    """Signed grid level of each close: 0 within one spacing of the mid, -k when the close is
    between ``k`` and ``k+1`` spacings below it (clipped to +-``levels``); NaN while the mid is."""
    distance = (close - mid) / (mid * params.spacing_pct / 100.0)
    level = np.sign(distance) * np.floor(np.abs(distance))
    return np.asarray(np.clip(level, -params.levels, params.levels), dtype=np.float64)


class Grid(base.Strategy[GridParams]):
    """Buy each time the price steps down into a lower grid level below the mid, sell each time
    it steps up into a higher level above the mid.

    A step compares the grid level at ``t`` with the level at ``t - 1`` (both from closes), so
    the signal uses data up to ``t`` only. With ``allow_short`` the upper levels also open shorts
    and the lower ones close them. Long-only grids give a stop hint one spacing below the lowest
    level (the price left the grid).
    """

    name: ClassVar[str] = "grid"
    description: ClassVar[str] = (
        "Grid of buy levels below and sell levels above a fixed or rolling mid price."
    )
    params_model = GridParams

    def signals(self, candles: pd.DataFrame, params: GridParams) -> base.Signals:
        close = base.column(candles, "close")
        if params.reference_price is not None:
            mid = np.full(len(close), params.reference_price)
        else:
            mid = indicators.sma(close, params.window)
        level = grid_levels(close, mid, params)
        previous = np.empty_like(level)
        previous[:1] = np.nan
        previous[1:] = level[:-1]
        # NaN compares false: no signal during the mid's warm-up or on the bar after it.
        step_down = (level < previous) & (level < 0)
        step_up = (level > previous) & (level > 0)
        if params.allow_short:
            return base.Signals(step_down, step_up, step_up.copy(), step_down.copy())
        stop = mid * (1.0 - (params.levels + 1) * params.spacing_pct / 100.0)
        return base.Signals.long_only(step_down, step_up, stop_loss=stop)
