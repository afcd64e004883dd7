"""Strategy decisions on closed candles, computed with the backtest's own strategy code.

:class:`SignalEngine` keeps a bounded window of closed candles per symbol. On each new closed
candle it asks the strategy for its vectorised signals on the window *ending with that candle*
and takes the last value, exactly as the event replay does (``backtest/replay.py``,
``_signal_at_close``: signals on the prefix, last value). Rules:

S1 *No look-ahead.* A decision for candle ``t`` is computed from candles up to and including
   ``t`` (the strategy interface's one rule); the engine never sees a candle before it closed.
S2 *Same code as the backtest.* The strategy runs behind the same guard
   (:func:`cryptoorchestrator.strategies.loader.guard`): its exceptions become a
   ``StrategyError``, invalid output too.
S3 *Bounded memory.* The window keeps the last ``window`` candles. Decisions equal the replay's
   (which uses the whole prefix) while the window holds the whole history, and for strategies
   whose indicators only look back a bounded number of bars (SMA, Bollinger, Donchian, grid)
   as long as the window covers that look-back; recursive indicators (EMA, RSI, MACD) converge,
   so a window of several times their period gives the same crossings in practice.
S4 *Order.* Candles of one symbol arrive in increasing open time. A candle with the open time
   of the last one replaces it (a candle re-sent after a restart); an older one is refused.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import pandas as pd

from cryptoorchestrator.core.errors import ValidationFailed
from cryptoorchestrator.strategies import base, loader

DEFAULT_WINDOW: Final = 1000
"""Candles kept per symbol unless told otherwise (S3)."""


@dataclass(frozen=True, slots=True)
class Candle:
    """One closed candle: open time in ms since the epoch and float prices (the strategy
    kernels' representation; money turns into ``Decimal`` outside the strategy)."""

    timestamp: int
    open: float
    high: float
    low: float
    close: float
    volume: float


@dataclass(frozen=True, slots=True)
class Decision:
    """The strategy's four signals for the candle of ``symbol`` opened at ``timestamp``."""

    symbol: str
    timestamp: int
    entry_long: bool
    exit_long: bool
    entry_short: bool
    exit_short: bool

    @property
    def signal(self) -> tuple[bool, bool, bool, bool]:
        """``(entry_long, exit_long, entry_short, exit_short)``, the replay's order."""
        return (self.entry_long, self.exit_long, self.entry_short, self.exit_short)

    @property
    def is_quiet(self) -> bool:
        """True when no signal is set."""
        return not any(self.signal)

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe form for a bot event."""
        return {
            "symbol": self.symbol,
            "timestamp": self.timestamp,
            "entry_long": self.entry_long,
            "exit_long": self.exit_long,
            "entry_short": self.entry_short,
            "exit_short": self.exit_short,
        }


class SignalEngine:
    """Bounded candle windows per symbol and the strategy's decision per closed candle."""

    def __init__(
        self,
        strategy: base.Strategy[Any] | loader.GuardedStrategy,
        params: Mapping[str, Any] | base.StrategyParams | None = None,
        *,
        window: int = DEFAULT_WINDOW,
    ) -> None:
        if window < 2:
            raise ValidationFailed("window must hold at least 2 candles", details={"field": "window"})
        self._strategy = strategy if isinstance(strategy, loader.GuardedStrategy) else loader.guard(strategy)
        self._params = self._strategy.validate_params(params)
        self._window = window
        self._candles: dict[str, deque[Candle]] = {}

    @property
    def window(self) -> int:
        return self._window

    @property
    def strategy_name(self) -> str:
        return self._strategy.name

    def candles(self, symbol: str) -> list[Candle]:
        """The candles held for ``symbol``, oldest first."""
        return list(self._candles.get(symbol, ()))

    def last_timestamp(self, symbol: str) -> int | None:
        held = self._candles.get(symbol)
        return held[-1].timestamp if held else None

    def warm(self, symbol: str, candles: Iterable[Candle]) -> None:
        """Add history without deciding on it (the candles before a bot starts or resumes)."""
        for candle in candles:
            self._add(symbol, candle)

    def on_candle(self, symbol: str, candle: Candle) -> Decision:
        """Add ``candle`` (S4) and return the strategy's decision for it (S1, S2)."""
        self._add(symbol, candle)
        frame = self.frame(symbol)
        signals = self._strategy.signals(frame, self._params)
        last = len(frame) - 1
        return Decision(
            symbol=symbol,
            timestamp=candle.timestamp,
            entry_long=bool(signals.entry_long[last]),
            exit_long=bool(signals.exit_long[last]),
            entry_short=bool(signals.entry_short[last]),
            exit_short=bool(signals.exit_short[last]),
        )

    def frame(self, symbol: str) -> pd.DataFrame:
        """The window of ``symbol`` as the strategy interface's candle DataFrame."""
        held = self._candles.get(symbol, deque())
        return pd.DataFrame(
            {
                "timestamp": np.fromiter((c.timestamp for c in held), dtype=np.int64, count=len(held)),
                "open": np.fromiter((c.open for c in held), dtype=np.float64, count=len(held)),
                "high": np.fromiter((c.high for c in held), dtype=np.float64, count=len(held)),
                "low": np.fromiter((c.low for c in held), dtype=np.float64, count=len(held)),
                "close": np.fromiter((c.close for c in held), dtype=np.float64, count=len(held)),
                "volume": np.fromiter((c.volume for c in held), dtype=np.float64, count=len(held)),
            }
        )

    def _add(self, symbol: str, candle: Candle) -> None:
        held = self._candles.get(symbol)
        if held is None:
            held = self._candles[symbol] = deque(maxlen=self._window)
        if held and candle.timestamp <= held[-1].timestamp:
            if candle.timestamp == held[-1].timestamp:
                held[-1] = candle  # S4: re-sent candle replaces the last one
                return
            raise ValidationFailed(
                f"candle of {symbol} at {candle.timestamp} is older than the last one "
                f"at {held[-1].timestamp}",
                details={"field": "timestamp", "symbol": symbol},
            )
        held.append(candle)
