"""Clocks: the live clock reads the system; the simulated clock moves only when told to."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...

    def timestamp(self) -> float: ...

    def monotonic(self) -> float: ...


class LiveClock:
    """Wall-clock time in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def timestamp(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


class SimClock:
    """A deterministic clock for backtests and tests: time moves by ``advance`` and ``set``."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)

    def now(self) -> datetime:
        return datetime.fromtimestamp(self._now, UTC)

    def timestamp(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock never goes back")
        self._now += seconds

    def set(self, timestamp: float) -> None:
        if timestamp < self._now:
            raise ValueError("a clock never goes back")
        self._now = float(timestamp)
