"""Technical indicators: thin wrappers over TA-Lib and numpy.

See :mod:`cryptoorchestrator.indicators.technical` for the warm-up (leading NaN) length of each.
"""

from cryptoorchestrator.indicators.technical import (
    BollingerBands,
    DonchianChannel,
    FloatArray,
    MacdResult,
    StochasticResult,
    adx,
    atr,
    bollinger,
    donchian,
    ema,
    macd,
    obv,
    rsi,
    sma,
    stochastic,
    vwap,
)

__all__ = [
    "BollingerBands",
    "DonchianChannel",
    "FloatArray",
    "MacdResult",
    "StochasticResult",
    "adx",
    "atr",
    "bollinger",
    "donchian",
    "ema",
    "macd",
    "obv",
    "rsi",
    "sma",
    "stochastic",
    "vwap",
]
