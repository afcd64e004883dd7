"""Built-in strategies."""

from __future__ import annotations

from typing import Any, Final

from cryptoorchestrator.strategies import base
from cryptoorchestrator.strategies.library.bands import BollingerReversion, DonchianBreakout
from cryptoorchestrator.strategies.library.dca import Dca
from cryptoorchestrator.strategies.library.grid import Grid
from cryptoorchestrator.strategies.library.moving_average import EmaCross, SmaCross
from cryptoorchestrator.strategies.library.oscillators import MacdCross, RsiMomentum

BUILTIN_STRATEGIES: Final[tuple[type[base.Strategy[Any]], ...]] = (
    SmaCross,
    EmaCross,
    RsiMomentum,
    BollingerReversion,
    MacdCross,
    DonchianBreakout,
    Grid,
    Dca,
)

__all__ = [
    "BUILTIN_STRATEGIES",
    "BollingerReversion",
    "Dca",
    "DonchianBreakout",
    "EmaCross",
    "Grid",
    "MacdCross",
    "RsiMomentum",
    "SmaCross",
]
