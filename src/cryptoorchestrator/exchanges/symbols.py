"""Symbol resolution for the adapter: the pure rules live in ``domain/symbols.py`` so that the
services, the market-data layer and this adapter share them."""

from cryptoorchestrator.domain.symbols import SUPPORTED_PREVIEW, SymbolIndex, resolve_symbol

__all__ = ["SUPPORTED_PREVIEW", "SymbolIndex", "resolve_symbol"]
