"""Saved strategy configurations and backtests as plain records."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class SavedStrategy:
    """A user's strategy: a registered type (``sma_cross``, ``rules``...) with parameters."""

    id: str
    user_id: int
    name: str
    strategy_type: str
    params: dict[str, Any]
    description: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class BacktestRecord:
    id: str
    user_id: int
    job_id: str | None
    strategy_id: str | None
    strategy_type: str
    params: dict[str, Any]
    request: dict[str, Any]
    created_at: datetime
    metrics: dict[str, Any] | None = None
    summary: dict[str, Any] | None = None
