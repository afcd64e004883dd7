"""The Python face of the fast backtest: config, validation, result, ``run_backtest``.

The kernel (:mod:`cryptoorchestrator.backtest.kernel`) works in float64; money-like values in
the result are floats with the kernel's tolerances, not ``Decimal`` (architecture convention 2).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Literal, TypeAlias

import numpy as np
import pandas as pd

from cryptoorchestrator.backtest import kernel
from cryptoorchestrator.backtest import metrics as metrics_module
from cryptoorchestrator.core.errors import ValidationFailed
from cryptoorchestrator.simulator.fill_model import SLIPPAGE_FIXED, SLIPPAGE_VOLUME

Sizing = Literal["fixed_quantity", "fixed_cash", "percent_equity", "risk"]
FillAt = Literal["open", "close"]
SlippageModel = Literal["fixed", "volume"]

_SIZING_CODES = {
    "fixed_quantity": kernel.SIZE_FIXED_QUANTITY,
    "fixed_cash": kernel.SIZE_FIXED_CASH,
    "percent_equity": kernel.SIZE_PERCENT_EQUITY,
    "risk": kernel.SIZE_RISK,
}
_SLIPPAGE_CODES = {"fixed": SLIPPAGE_FIXED, "volume": SLIPPAGE_VOLUME}
PRICE_COLUMNS = ("open", "high", "low", "close", "volume")
SIGNAL_COLUMNS = ("entry_long", "exit_long", "entry_short", "exit_short")


def _invalid(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(f"{field}: {message}", details={"field": field})


@dataclass(frozen=True, slots=True, kw_only=True)
class BacktestConfig:
    """Parameters of one fast backtest. Costs are on by default.

    Fractions are plain numbers (``0.001`` = 0.1%); ``stop_loss``, ``take_profit`` and
    ``trailing_stop`` are fractions of the entry price, ``None`` turns them off. ``size`` is read
    according to ``sizing`` (see the kernel's rule R4). Invalid values raise
    :class:`~cryptoorchestrator.core.errors.ValidationFailed` whose ``details["field"]`` names
    the field.
    """

    initial_cash: float = 10_000.0
    fill_at: FillAt = "open"
    sizing: Sizing = "percent_equity"
    size: float = 1.0
    leverage: float = 1.0
    maintenance_margin_rate: float = 0.005
    stop_loss: float | None = None
    take_profit: float | None = None
    trailing_stop: float | None = None
    taker_fee: float = 0.001
    maker_fee: float = 0.001
    slippage: SlippageModel = "fixed"
    slippage_bps: float = 5.0
    impact_k_bps: float = 10.0
    impact_cap_bps: float = 100.0
    quantity_step: float = 0.0
    min_quantity: float = 0.0
    min_notional: float = 0.0
    timeframe: str = "1m"

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float | int) and not isinstance(value, bool) and not math.isfinite(value):
                raise _invalid(f.name, "must be a finite number")
        self._check_choices()
        self._check_ranges()
        metrics_module.timeframe_seconds(self.timeframe)  # raises ValidationFailed naming it

    def _check_choices(self) -> None:
        if self.fill_at not in ("open", "close"):
            raise _invalid("fill_at", "must be 'open' or 'close'")
        if self.sizing not in _SIZING_CODES:
            raise _invalid("sizing", f"must be one of {sorted(_SIZING_CODES)}")
        if self.slippage not in _SLIPPAGE_CODES:
            raise _invalid("slippage", f"must be one of {sorted(_SLIPPAGE_CODES)}")
        if self.sizing == "risk" and self.stop_loss is None:
            raise _invalid("stop_loss", "is required when sizing is 'risk'")

    def _check_ranges(self) -> None:
        if self.initial_cash <= 0:
            raise _invalid("initial_cash", "must be > 0")
        if self.size <= 0:
            raise _invalid("size", "must be > 0")
        if self.sizing in ("percent_equity", "risk") and self.size > 1:
            raise _invalid("size", "is a fraction of equity and must be <= 1")
        if not 1 <= self.leverage <= 200:
            raise _invalid("leverage", "must be between 1 and 200")
        if not 0 <= self.maintenance_margin_rate < 1 / self.leverage:
            raise _invalid("maintenance_margin_rate", "must be >= 0 and below 1 / leverage")
        for name in ("stop_loss", "take_profit", "trailing_stop"):
            value = getattr(self, name)
            if value is not None and not 0 < value < 1:
                raise _invalid(name, "must be a fraction between 0 and 1 (exclusive) or None")
        self._check_cost_ranges()

    def _check_cost_ranges(self) -> None:
        for name in ("taker_fee", "maker_fee"):
            if not 0 <= getattr(self, name) < 0.1:
                raise _invalid(name, "must be a fraction >= 0 and < 0.1")
        for name in ("slippage_bps", "impact_k_bps", "impact_cap_bps"):
            if not 0 <= getattr(self, name) < 10_000:
                raise _invalid(name, "must be >= 0 and < 10000 basis points")
        for name in ("quantity_step", "min_quantity", "min_notional"):
            if getattr(self, name) < 0:
                raise _invalid(name, "must be >= 0")


@dataclass(frozen=True, slots=True)
class BacktestResult:
    """What a fast backtest returns.

    ``trades`` has :data:`~cryptoorchestrator.backtest.kernel.TRADE_DTYPE` rows, ``bars`` one
    :data:`~cryptoorchestrator.backtest.kernel.BAR_DTYPE` row per input bar (equity, cash and
    signed position at the close). ``index`` is the candles' index when a DataFrame was given.
    """

    trades: np.ndarray
    bars: np.ndarray
    config: BacktestConfig
    index: pd.Index | None = None

    @property
    def final_equity(self) -> float:
        """Equity after the last bar (the open position marked at the last close)."""
        return float(self.bars["equity"][-1]) if len(self.bars) else self.config.initial_cash

    def trades_frame(self) -> pd.DataFrame:
        """The trades as a DataFrame, with the exit reason as a name."""
        frame = pd.DataFrame(self.trades)
        frame["exit_reason"] = frame["exit_reason"].map(kernel.EXIT_REASONS)
        return frame

    def metrics(self) -> metrics_module.Metrics:
        """Performance metrics, annualised with the config's ``timeframe``."""
        return metrics_module.compute_metrics(
            self.bars, self.trades, initial_cash=self.config.initial_cash, timeframe=self.config.timeframe
        )

    def equity_series(self) -> pd.Series:
        """Equity per bar, on the candles' index when there was one."""
        return pd.Series(self.bars["equity"], index=self.index, name="equity")


ArrayLike: TypeAlias = pd.DataFrame | Mapping[str, np.ndarray | pd.Series]


def _column(source: ArrayLike, name: str, dtype: type, length: int | None) -> np.ndarray:
    values = np.asarray(source[name])
    if values.ndim != 1:
        raise _invalid(name, "must be one-dimensional")
    if length is not None and len(values) != length:
        raise _invalid(name, f"has {len(values)} rows, expected {length}")
    if dtype is np.bool_ and values.dtype != np.bool_:
        raise _invalid(name, "must be a boolean array")
    return np.ascontiguousarray(values, dtype=dtype)


def _prices(candles: ArrayLike) -> dict[str, np.ndarray]:
    missing = [c for c in PRICE_COLUMNS if c not in candles]
    if missing:
        raise _invalid("candles", f"missing columns {missing}")
    out: dict[str, np.ndarray] = {}
    length: int | None = None
    for name in PRICE_COLUMNS:
        out[name] = _column(candles, name, np.float64, length)
        length = len(out[name])
        if not np.isfinite(out[name]).all():
            raise _invalid(name, "contains NaN or infinite values")
    if (out["open"] <= 0).any() or (out["low"] <= 0).any():
        raise _invalid("candles", "prices must be > 0")
    if (out["high"] < out["low"]).any():
        raise _invalid("candles", "high below low")
    return out


def _signals(signals: ArrayLike, length: int) -> dict[str, np.ndarray]:
    unknown = [c for c in signals if c not in SIGNAL_COLUMNS]
    if unknown:
        raise _invalid("signals", f"unknown columns {unknown}; expected {list(SIGNAL_COLUMNS)}")
    return {
        name: _column(signals, name, np.bool_, length) if name in signals else np.zeros(length, np.bool_)
        for name in SIGNAL_COLUMNS
    }


def run_backtest(candles: ArrayLike, signals: ArrayLike, config: BacktestConfig) -> BacktestResult:
    """Run the fast kernel on one symbol.

    ``candles`` is a DataFrame or mapping with float columns open, high, low, close, volume;
    ``signals`` a DataFrame or mapping with boolean columns among entry_long, exit_long,
    entry_short, exit_short (missing ones are all False), of the same length. Raises
    ValidationFailed on bad input.
    """
    prices = _prices(candles)
    sig = _signals(signals, len(prices["close"]))
    trades, bars = kernel.simulate_nb(
        prices["open"],
        prices["high"],
        prices["low"],
        prices["close"],
        prices["volume"],
        sig["entry_long"],
        sig["exit_long"],
        sig["entry_short"],
        sig["exit_short"],
        config.fill_at == "close",
        float(config.initial_cash),
        _SIZING_CODES[config.sizing],
        float(config.size),
        float(config.leverage),
        float(config.maintenance_margin_rate),
        float(config.stop_loss or 0.0),
        float(config.take_profit or 0.0),
        float(config.trailing_stop or 0.0),
        float(config.taker_fee),
        float(config.maker_fee),
        _SLIPPAGE_CODES[config.slippage],
        float(config.slippage_bps),
        float(config.impact_k_bps),
        float(config.impact_cap_bps),
        float(config.quantity_step),
        float(config.min_quantity),
        float(config.min_notional),
    )
    index = candles.index if isinstance(candles, pd.DataFrame) else None
    return BacktestResult(trades=trades, bars=bars, config=config, index=index)
