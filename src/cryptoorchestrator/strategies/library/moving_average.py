"""Moving-average crossover strategies (SMA and EMA).

Entry long when the fast average crosses above the slow one, exit long when it crosses below
(the crossing rule of :mod:`cryptoorchestrator.strategies.base`: strictly greater now,
less-or-equal before, so an exact tie is not a cross). With ``allow_short`` the mirror image
opens and closes shorts.
"""

from __future__ import annotations

from typing import ClassVar

import pandas as pd
from pydantic import Field, ValidationInfo, field_validator

from cryptoorchestrator import indicators
from cryptoorchestrator.strategies import base


class MovingAverageCrossParams(base.StrategyParams):
    """Fast and slow periods (fast < slow) and whether to trade the short side."""

    fast: int = Field(default=10, ge=1, le=1000, description="Fast average period (bars)")
    slow: int = Field(default=30, ge=2, le=5000, description="Slow average period (bars)")
    allow_short: bool = Field(default=False, description="Also open shorts on downward crosses")

    @field_validator("slow")
    @classmethod
    def _slow_above_fast(cls, slow: int, info: ValidationInfo) -> int:
        fast = info.data.get("fast")
        if fast is not None and slow <= fast:
            raise ValueError(f"slow ({slow}) must be greater than fast ({fast})")
        return slow


def crossover_signals(fast: base.FloatArray, slow: base.FloatArray, *, allow_short: bool) -> base.Signals:
    """Signals of a two-line crossover: up-cross enters long, down-cross exits (or enters short)."""
    up = base.crosses_above(fast, slow)
    down = base.crosses_below(fast, slow)
    if allow_short:
        return base.Signals(up, down, down.copy(), up.copy())
    return base.Signals.long_only(up, down)


class SmaCross(base.Strategy[MovingAverageCrossParams]):
    """Simple moving-average crossover."""

    name: ClassVar[str] = "sma_cross"
    description: ClassVar[str] = (
        "Buy when the fast SMA crosses above the slow SMA, sell when it crosses below."
    )
    params_model = MovingAverageCrossParams

    def signals(self, candles: pd.DataFrame, params: MovingAverageCrossParams) -> base.Signals:
        close = base.column(candles, "close")
        return crossover_signals(
            indicators.sma(close, params.fast),
            indicators.sma(close, params.slow),
            allow_short=params.allow_short,
        )


class EmaCross(base.Strategy[MovingAverageCrossParams]):
    """Exponential moving-average crossover."""

    name: ClassVar[str] = "ema_cross"
    description: ClassVar[str] = (
        "Buy when the fast EMA crosses above the slow EMA, sell when it crosses below."
    )
    params_model = MovingAverageCrossParams

    def signals(self, candles: pd.DataFrame, params: MovingAverageCrossParams) -> base.Signals:
        close = base.column(candles, "close")
        return crossover_signals(
            indicators.ema(close, params.fast),
            indicators.ema(close, params.slow),
            allow_short=params.allow_short,
        )
