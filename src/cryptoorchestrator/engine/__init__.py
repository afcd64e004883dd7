"""The bot runtime's pure core: strategy decisions on closed candles and the trading rules that
turn them into intents (one runtime for paper and live; no I/O, no web, database or exchange
libraries). The services layer (``services/bot_runner.py``) feeds it and carries out its intents.
"""

from cryptoorchestrator.engine.bot_logic import (
    LONG,
    SHORT,
    ClosePosition,
    Intent,
    MarketView,
    OpenPosition,
    PositionState,
    Protection,
    entry_quantity,
    is_dust,
    on_decision,
    protection_for,
    stop_breached,
    stop_level,
    trail,
)
from cryptoorchestrator.engine.signals import Candle, Decision, SignalEngine

__all__ = [
    "LONG",
    "SHORT",
    "Candle",
    "ClosePosition",
    "Decision",
    "Intent",
    "MarketView",
    "OpenPosition",
    "PositionState",
    "Protection",
    "SignalEngine",
    "entry_quantity",
    "is_dust",
    "on_decision",
    "protection_for",
    "stop_breached",
    "stop_level",
    "trail",
]
