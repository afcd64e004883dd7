"""Deterministic synthetic candles for offline use: a regime-switching random walk.

The price follows a geometric random walk whose drift and volatility depend on a market regime
(bull, bear, sideways). Regimes switch as a Markov chain in continuous time: each lasts an
exponentially distributed time with a regime-specific mean (in days, so the dynamics do not depend
on the timeframe) and is followed by another regime drawn from a transition table. Returns are
Student-t (5 degrees of freedom, scaled to unit variance) for fat tails.

Each candle opens at the previous close; wicks extend beyond ``max(open, close)`` and
``min(open, close)`` by half-normal amounts scaled to the regime volatility, so the OHLC rules of
:mod:`validation` always hold. Prices are rounded to the symbol's tick (``decimals``) and never fall
below one tick; volume is log-normal, larger on big moves and in bear markets, always positive.

The same (seed, symbol, timeframe, start, count) gives bit-identical output: the generator is
numpy's PCG64 seeded from the seed and a SHA-256 of symbol and timeframe (stable across processes,
unlike ``hash``). numpy documents that its distributions may change between releases, so files are
reproducible per numpy version; they are stored with the source label ``synthetic``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import pandas as pd

from cryptoorchestrator.core.errors import InvalidDateRange, ValidationFailed
from cryptoorchestrator.marketdata import store as store_module
from cryptoorchestrator.marketdata import timeframes as tf

DEFAULT_SYMBOLS: Final[tuple[str, ...]] = ("BTC/USDT", "ETH/USDT", "SOL/USDT")
SYNTHETIC_EXCHANGE: Final = "synthetic"
DEFAULT_START_MS: Final = 1_672_531_200_000  # 2023-01-01 00:00 UTC: fixed, so every install agrees
DEFAULT_DAYS: Final = 730
_YEAR_MS: Final = 365.25 * tf.DAY_MS
_STUDENT_DF: Final = 5.0


@dataclass(frozen=True, slots=True)
class Regime:
    """A market regime: annualised log drift and volatility, mean duration in days."""

    name: str
    drift: float
    volatility: float
    mean_days: float
    volume_factor: float


REGIMES: Final[tuple[Regime, ...]] = (
    Regime("bull", drift=0.9, volatility=0.55, mean_days=45.0, volume_factor=1.1),
    Regime("bear", drift=-0.8, volatility=0.75, mean_days=25.0, volume_factor=1.4),
    Regime("sideways", drift=0.0, volatility=0.35, mean_days=35.0, volume_factor=0.8),
)
# Next-regime probabilities when a regime ends (rows: current regime; the diagonal is zero).
TRANSITIONS: Final = np.array([[0.0, 0.35, 0.65], [0.4, 0.0, 0.6], [0.5, 0.5, 0.0]])


@dataclass(frozen=True, slots=True)
class SymbolProfile:
    """Start price, price decimals (tick = 10**-decimals), hourly base volume, volume decimals."""

    start_price: float
    decimals: int
    hourly_volume: float
    volume_decimals: int


PROFILES: Final[dict[str, SymbolProfile]] = {
    "BTC/USDT": SymbolProfile(16_500.0, 2, 900.0, 5),
    "ETH/USDT": SymbolProfile(1_200.0, 2, 9_000.0, 4),
    "SOL/USDT": SymbolProfile(10.0, 2, 250_000.0, 2),
}


def profile_for(symbol: str, seed: int = 0) -> SymbolProfile:
    """The built-in profile of a known symbol, else one derived deterministically from its name."""
    if symbol in PROFILES:
        return PROFILES[symbol]
    rng = np.random.default_rng(_seed_words(seed, symbol, "profile"))
    price = float(10 ** rng.uniform(-1.0, 3.0))
    decimals = max(2, 5 - int(np.floor(np.log10(price))))  # about six significant digits
    return SymbolProfile(round(price, decimals), decimals, float(10 ** rng.uniform(3.0, 6.0)), 2)


def generate_candles(
    symbol: str,
    timeframe: str,
    *,
    start_ms: int,
    count: int,
    seed: int = 0,
    profile: SymbolProfile | None = None,
) -> pd.DataFrame:
    """``count`` synthetic candles from ``start_ms`` (an open time of ``timeframe``), store dtypes.

    Raises:
        InvalidDateRange: ``start_ms`` is negative or not a candle open time of ``timeframe``.
        ValidationFailed: ``count`` or ``seed`` is negative.
    """
    step_ms = tf.timeframe_to_ms(timeframe)
    if count < 0 or seed < 0:
        raise ValidationFailed("count and seed must not be negative.", details={"count": count, "seed": seed})
    if start_ms < 0 or not tf.is_aligned(start_ms, timeframe):
        raise InvalidDateRange(
            f"start_ms {start_ms} is not a {timeframe} candle open time.", details={"start_ms": start_ms}
        )
    profile = profile or profile_for(symbol, seed)
    rng = np.random.default_rng(_seed_words(seed, symbol, timeframe))
    timestamps = tf.period_start(tf.period_index(start_ms, timeframe) + np.arange(count), timeframe)
    regimes = _regime_path(rng, count, step_ms)
    drift = np.array([r.drift for r in REGIMES])[regimes]
    sigma = np.array([r.volatility for r in REGIMES])[regimes]
    dt = step_ms / _YEAR_MS
    shocks = rng.standard_t(_STUDENT_DF, size=count) * np.sqrt((_STUDENT_DF - 2.0) / _STUDENT_DF)
    log_returns = (drift - 0.5 * sigma**2) * dt + sigma * np.sqrt(dt) * shocks
    close_raw = profile.start_price * np.exp(np.cumsum(log_returns))
    tick = 10.0**-profile.decimals

    def to_tick(values: np.ndarray) -> np.ndarray:
        # Rounding and clamping are monotone, so they keep low <= open, close <= high.
        return np.maximum(np.round(values, profile.decimals), tick)

    close = to_tick(close_raw)
    open_ = np.empty(count)
    if count:
        open_[0] = to_tick(np.array([profile.start_price]))[0]
        open_[1:] = close[:-1]
    bar_sigma = sigma * np.sqrt(dt)
    upper = np.maximum(open_, close) * np.exp(0.6 * bar_sigma * np.abs(rng.standard_normal(count)))
    lower = np.minimum(open_, close) * np.exp(-0.6 * bar_sigma * np.abs(rng.standard_normal(count)))
    high = to_tick(upper)
    low = np.minimum(to_tick(lower), np.minimum(open_, close))

    volume_factor = np.array([r.volume_factor for r in REGIMES])[regimes]
    hours = step_ms / tf.HOUR_MS
    volume = (
        profile.hourly_volume
        * hours
        * volume_factor
        * (1.0 + 0.5 * np.abs(shocks))
        * np.exp(0.5 * rng.standard_normal(count) - 0.125)
    )
    volume_tick = 10.0**-profile.volume_decimals
    volume = np.maximum(np.round(volume, profile.volume_decimals), volume_tick)
    return pd.DataFrame(
        {"timestamp": timestamps, "open": open_, "high": high, "low": low, "close": close, "volume": volume}
    )


@dataclass(frozen=True, slots=True)
class EnsureResult:
    """Which symbols :func:`ensure_synthetic_datasets` generated and which it left alone."""

    created: tuple[str, ...]
    skipped: tuple[str, ...]


def ensure_synthetic_datasets(
    store: store_module.CandleStore,
    symbols: Sequence[str] = DEFAULT_SYMBOLS,
    timeframe: str = "1h",
    *,
    start_ms: int = DEFAULT_START_MS,
    count: int | None = None,
    seed: int = 0,
    exchange: str = SYNTHETIC_EXCHANGE,
) -> EnsureResult:
    """Give an offline first run something to work with: synthetic candles for ``symbols``.

    A symbol is generated only when the store holds no data at all for it (on any exchange, in any
    timeframe), so real downloads or imports are never shadowed and a second call does nothing.
    ``count`` defaults to two years of candles.
    """
    if count is None:
        count = int(DEFAULT_DAYS * tf.DAY_MS // tf.timeframe_to_ms(timeframe))
    stored = {info.symbol for info in store.datasets()}
    created: list[str] = []
    skipped: list[str] = []
    for symbol in symbols:
        if symbol in stored:
            skipped.append(symbol)
            continue
        frame = generate_candles(symbol, timeframe, start_ms=start_ms, count=count, seed=seed)
        store.append(exchange, symbol, timeframe, frame, source="synthetic")
        created.append(symbol)
    return EnsureResult(created=tuple(created), skipped=tuple(skipped))


def _seed_words(seed: int, *labels: str) -> list[int]:
    digest = hashlib.sha256("\x1f".join(labels).encode("utf-8")).digest()
    return [seed, *(int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4))]


def _regime_path(rng: np.random.Generator, count: int, step_ms: int) -> np.ndarray:
    """Regime number per candle; loops once per regime spell, not per candle."""
    path = np.empty(count, dtype=np.int64)
    position = 0
    current = int(rng.integers(len(REGIMES)))
    while position < count:
        mean_candles = REGIMES[current].mean_days * tf.DAY_MS / step_ms
        length = max(1, round(float(rng.exponential(mean_candles))))
        path[position : position + length] = current
        position += length
        current = int(rng.choice(len(REGIMES), p=TRANSITIONS[current]))
    return path
