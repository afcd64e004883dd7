"""Dollar-cost averaging: buy every N bars, optionally take profit on the averaged position."""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import pandas as pd
from pydantic import Field

from cryptoorchestrator.strategies import base


class DcaParams(base.StrategyParams):
    """Buy interval in bars and an optional take-profit percent over the average entry price."""

    interval: int = Field(default=24, ge=1, le=100000, description="Buy every N bars")
    take_profit_pct: float | None = Field(
        default=None, gt=0.0, le=1000.0, description="Sell all when the close is this % above the average"
    )


class Dca(base.Strategy[DcaParams]):
    """Buy at bar 0 and every ``interval`` bars after (counted from the first candle).

    Without ``take_profit_pct`` it never exits. With it, the strategy tracks the average entry
    price of the buys since the last exit, assuming an equal quote amount per buy (so the
    average is the harmonic mean of the entry closes), and exits when the close reaches
    ``average * (1 + take_profit_pct / 100)``; the next buy starts a new cycle. The target is
    returned as the ``take_profit`` hint (NaN while flat). A buy is suppressed on an exit bar.
    The state runs forward bar by bar, so bar ``t`` depends on bars up to ``t`` only.
    """

    name: ClassVar[str] = "dca"
    description: ClassVar[str] = (
        "Dollar-cost averaging: buy a fixed amount every N bars, optionally sell all at a "
        "take-profit over the average entry price."
    )
    params_model = DcaParams

    def signals(self, candles: pd.DataFrame, params: DcaParams) -> base.Signals:
        close = base.column(candles, "close")
        length = len(close)
        entry = np.arange(length) % params.interval == 0
        if params.take_profit_pct is None:
            return base.Signals.long_only(entry, np.zeros(length, dtype=np.bool_))
        exit_, target = _take_profit_path(close, entry, params.take_profit_pct / 100.0)
        return base.Signals.long_only(entry & ~exit_, exit_, take_profit=target)


def _take_profit_path(
    close: base.FloatArray, entry: base.BoolArray, fraction: float
) -> tuple[base.BoolArray, base.FloatArray]:
    """Exit flags and take-profit targets of the DCA cycle (plain loop: path dependent)."""
    length = len(close)
    exit_ = np.zeros(length, dtype=np.bool_)
    target = np.full(length, np.nan)
    buys = 0
    inverse_sum = 0.0
    for index in range(length):
        price = float(close[index])
        if buys and price >= (buys / inverse_sum) * (1.0 + fraction):
            exit_[index] = True
            buys, inverse_sum = 0, 0.0
            continue
        if entry[index] and math.isfinite(price) and price > 0:
            buys += 1
            inverse_sum += 1.0 / price
        if buys:
            target[index] = (buys / inverse_sum) * (1.0 + fraction)
    return exit_, target
