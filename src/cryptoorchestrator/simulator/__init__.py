"""The simulated exchange and fill model shared by backtests and paper trading."""

from cryptoorchestrator.simulator.market_state import Bar, MarketState
from cryptoorchestrator.simulator.matching import (
    FOK_REASON,
    IOC_REASON,
    NO_LIQUIDITY_REASON,
    OCO_REASON,
    OrderUpdate,
    PaperExchange,
)

__all__ = [
    "FOK_REASON",
    "IOC_REASON",
    "NO_LIQUIDITY_REASON",
    "OCO_REASON",
    "Bar",
    "MarketState",
    "OrderUpdate",
    "PaperExchange",
]
