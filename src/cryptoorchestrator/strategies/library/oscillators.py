"""Oscillator strategies: RSI momentum and MACD crossover."""

from __future__ import annotations

from typing import ClassVar

import pandas as pd
from pydantic import Field, ValidationInfo, field_validator

from cryptoorchestrator import indicators
from cryptoorchestrator.strategies import base
from cryptoorchestrator.strategies.library import moving_average


class RsiMomentumParams(base.StrategyParams):
    """RSI period and the oversold/overbought thresholds (oversold < overbought)."""

    period: int = Field(default=14, ge=2, le=500, description="RSI period (bars)")
    oversold: float = Field(default=30.0, ge=0.0, le=100.0, description="Oversold threshold")
    overbought: float = Field(default=70.0, ge=0.0, le=100.0, description="Overbought threshold")
    allow_short: bool = Field(default=False, description="Also trade the short side")

    @field_validator("overbought")
    @classmethod
    def _above_oversold(cls, overbought: float, info: ValidationInfo) -> float:
        oversold = info.data.get("oversold")
        if oversold is not None and overbought <= oversold:
            raise ValueError(f"overbought ({overbought}) must be greater than oversold ({oversold})")
        return overbought


class RsiMomentum(base.Strategy[RsiMomentumParams]):
    """RSI turning out of its extremes.

    Entry long when RSI crosses back above ``oversold`` (momentum turns up), exit long when it
    crosses back below ``overbought`` (momentum fades). Shorts mirror it: entry when RSI crosses
    below ``overbought``, exit when it crosses above ``oversold``.
    """

    name: ClassVar[str] = "rsi_momentum"
    description: ClassVar[str] = (
        "Buy when RSI crosses up out of the oversold zone, sell when it crosses down out of the "
        "overbought zone."
    )
    params_model = RsiMomentumParams

    def signals(self, candles: pd.DataFrame, params: RsiMomentumParams) -> base.Signals:
        values = indicators.rsi(base.column(candles, "close"), params.period)
        up = base.crosses_above(values, params.oversold)
        down = base.crosses_below(values, params.overbought)
        if params.allow_short:
            return base.Signals(up, down, down.copy(), up.copy())
        return base.Signals.long_only(up, down)


class MacdCrossParams(base.StrategyParams):
    """MACD periods (fast < slow) and the signal EMA period."""

    fast: int = Field(default=12, ge=2, le=500, description="Fast EMA period")
    slow: int = Field(default=26, ge=3, le=1000, description="Slow EMA period")
    signal: int = Field(default=9, ge=1, le=500, description="Signal EMA period")
    allow_short: bool = Field(default=False, description="Also trade the short side")

    @field_validator("slow")
    @classmethod
    def _slow_above_fast(cls, slow: int, info: ValidationInfo) -> int:
        fast = info.data.get("fast")
        if fast is not None and slow <= fast:
            raise ValueError(f"slow ({slow}) must be greater than fast ({fast})")
        return slow


class MacdCross(base.Strategy[MacdCrossParams]):
    """MACD line crossing its signal line."""

    name: ClassVar[str] = "macd_cross"
    description: ClassVar[str] = (
        "Buy when the MACD line crosses above its signal line, sell when it crosses below."
    )
    params_model = MacdCrossParams

    def signals(self, candles: pd.DataFrame, params: MacdCrossParams) -> base.Signals:
        result = indicators.macd(base.column(candles, "close"), params.fast, params.slow, params.signal)
        return moving_average.crossover_signals(result.line, result.signal, allow_short=params.allow_short)
