"""Band strategies: Bollinger mean reversion and Donchian breakout."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd
from pydantic import Field

from cryptoorchestrator import indicators
from cryptoorchestrator.strategies import base


class BollingerReversionParams(base.StrategyParams):
    """Band period and width in standard deviations."""

    period: int = Field(default=20, ge=2, le=1000, description="Band period (bars)")
    stddev: float = Field(default=2.0, gt=0.0, le=10.0, description="Band width (std deviations)")
    allow_short: bool = Field(default=False, description="Also trade the short side")


class BollingerReversion(base.Strategy[BollingerReversionParams]):
    """Mean reversion to the Bollinger middle band.

    Entry long when the close crosses below the lower band, exit long when it crosses back above
    the middle band. Shorts: entry when the close crosses above the upper band, exit when it
    crosses below the middle band.
    """

    name: ClassVar[str] = "bollinger_reversion"
    description: ClassVar[str] = (
        "Buy when the close drops below the lower Bollinger band, sell when it returns above the middle band."
    )
    params_model = BollingerReversionParams

    def signals(self, candles: pd.DataFrame, params: BollingerReversionParams) -> base.Signals:
        close = base.column(candles, "close")
        bands = indicators.bollinger(close, params.period, params.stddev)
        entry = base.crosses_below(close, bands.lower)
        exit_ = base.crosses_above(close, bands.middle)
        if not params.allow_short:
            return base.Signals.long_only(entry, exit_)
        return base.Signals(
            entry,
            exit_,
            base.crosses_above(close, bands.upper),
            base.crosses_below(close, bands.middle),
        )


class DonchianBreakoutParams(base.StrategyParams):
    """Entry channel period and the (usually shorter) exit channel period."""

    period: int = Field(default=20, ge=1, le=1000, description="Entry channel period (bars)")
    exit_period: int = Field(default=10, ge=1, le=1000, description="Exit channel period (bars)")
    allow_short: bool = Field(default=False, description="Also trade the short side")


def _previous(values: base.FloatArray) -> base.FloatArray:
    """``values`` delayed by one bar (NaN at bar 0): the channel of the bars *before* ``t``."""
    out = np.empty_like(values)
    out[0] = np.nan
    out[1:] = values[:-1]
    return out


class DonchianBreakout(base.Strategy[DonchianBreakoutParams]):
    """Turtle-style channel breakout.

    Entry long when the close is strictly above the highest high of the previous ``period`` bars;
    exit long when it is strictly below the lowest low of the previous ``exit_period`` bars.
    Shorts mirror it. The channels end at bar ``t - 1`` (a close cannot exceed a channel that
    includes its own bar), so the signal at ``t`` uses data up to ``t`` only. The long stop hint
    is the exit channel's lower bound.
    """

    name: ClassVar[str] = "donchian_breakout"
    description: ClassVar[str] = (
        "Buy a close above the previous N-bar high, sell a close below the previous M-bar low."
    )
    params_model = DonchianBreakoutParams

    def signals(self, candles: pd.DataFrame, params: DonchianBreakoutParams) -> base.Signals:
        high, low = base.column(candles, "high"), base.column(candles, "low")
        close = base.column(candles, "close")
        entry_channel = indicators.donchian(high, low, params.period)
        exit_channel = indicators.donchian(high, low, params.exit_period)
        entry_upper, entry_lower = _previous(entry_channel.upper), _previous(entry_channel.lower)
        exit_upper, exit_lower = _previous(exit_channel.upper), _previous(exit_channel.lower)
        entry_long = close > entry_upper
        exit_long = close < exit_lower
        if not params.allow_short:
            return base.Signals.long_only(entry_long, exit_long, stop_loss=exit_lower)
        return base.Signals(entry_long, exit_long, close < entry_lower, close > exit_upper)
