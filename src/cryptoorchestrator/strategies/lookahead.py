"""Look-ahead checker: does a strategy's signal at bar t change when later bars are removed?

A causal strategy computes the same signal for bar ``t`` from ``candles[:t+1]`` as from the full
history. The checker runs the strategy once on all candles and again on prefixes ending at
sampled bars (every ``step``-th bar plus the last ``tail`` bars), and reports every bar of each
prefix whose signal (or stop/take-profit hint) differs from the full run. Each differing
(bar, signal) pair is reported once, at the first prefix that reveals it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from cryptoorchestrator.core.errors import ValidationFailed
from cryptoorchestrator.strategies import base


@dataclass(frozen=True, slots=True)
class LookaheadDifference:
    """One bar whose signal depends on data after it."""

    bar: int
    timestamp: int
    signal: str
    full_value: float
    truncated_value: float
    prefix_end: int  # last bar of the truncated run that revealed it


@dataclass(frozen=True, slots=True)
class LookaheadReport:
    """The result of :func:`check_lookahead`; ``ok`` when nothing differed."""

    strategy: str
    bars_total: int
    prefix_ends: tuple[int, ...]
    differences: tuple[LookaheadDifference, ...]

    @property
    def ok(self) -> bool:
        """True when no signal changed on truncated data."""
        return not self.differences

    @property
    def bars(self) -> list[int]:
        """Bars with at least one difference, ascending."""
        return sorted({difference.bar for difference in self.differences})

    @property
    def signals(self) -> list[str]:
        """Names of the signals that differed."""
        return sorted({difference.signal for difference in self.differences})

    def summary(self) -> str:
        """One line for logs and reports."""
        if self.ok:
            return f"{self.strategy}: no look-ahead in {len(self.prefix_ends)} truncated runs"
        return (
            f"{self.strategy}: {len(self.differences)} signal(s) on {len(self.bars)} bar(s) change "
            f"when later data is removed ({', '.join(self.signals)}); first bar {self.bars[0]}"
        )


def prefix_ends(length: int, *, step: int, tail: int, min_bars: int) -> list[int]:
    """Last bars of the truncated runs: every ``step``-th bar from ``min_bars - 1`` and the last
    ``tail`` bars before the final one (the full run covers the final bar itself)."""
    ends = set(range(min_bars - 1, length - 1, step))
    ends.update(range(max(min_bars - 1, length - 1 - tail), length - 1))
    return sorted(ends)


def _values(signals: base.Signals) -> dict[str, np.ndarray]:
    return {name: np.asarray(value) for name, value in signals.as_dict().items() if value is not None}


def _differing(full: np.ndarray, part: np.ndarray) -> np.ndarray:
    if full.dtype.kind == "b":
        return np.flatnonzero(full[: len(part)] != part)
    head = full[: len(part)]
    both_nan = np.isnan(head) & np.isnan(part)
    close = np.isclose(head, part, rtol=1e-9, atol=0.0) | both_nan
    return np.flatnonzero(~close)


def check_lookahead(
    strategy: base.Strategy[Any],
    candles: pd.DataFrame,
    params: Mapping[str, Any] | base.StrategyParams | None = None,
    *,
    step: int = 25,
    tail: int = 5,
    min_bars: int = 2,
) -> LookaheadReport:
    """Compare the strategy's signals on ``candles`` with its signals on truncated prefixes.

    ``params`` are validated by the strategy (None: defaults). Runs ``len(candles) / step +
    tail`` truncated runs; keep ``candles`` to a few thousand bars.
    """
    if step < 1 or tail < 0 or min_bars < 1:
        raise ValidationFailed("step and min_bars must be >= 1 and tail >= 0")
    base.require_candles(candles)
    validated = strategy.validate_params(params)
    full = _values(strategy.signals(candles, validated))
    timestamps = candles["timestamp"].to_numpy(dtype=np.int64)
    ends = prefix_ends(len(candles), step=step, tail=tail, min_bars=min_bars)
    found: dict[tuple[int, str], LookaheadDifference] = {}
    for end in ends:
        truncated = _values(strategy.signals(candles.iloc[: end + 1].copy(), validated))
        for name, full_values in full.items():
            part = truncated.get(name)
            if part is None:  # a hint present on full data but absent on the prefix
                part = np.full(end + 1, np.nan)
            for bar in _differing(full_values, part):
                key = (int(bar), name)
                if key not in found:
                    found[key] = LookaheadDifference(
                        bar=int(bar),
                        timestamp=int(timestamps[bar]),
                        signal=name,
                        full_value=float(full_values[bar]),
                        truncated_value=float(part[bar]),
                        prefix_end=end,
                    )
    differences = tuple(sorted(found.values(), key=lambda d: (d.bar, d.signal)))
    return LookaheadReport(strategy.name, len(candles), tuple(ends), differences)
