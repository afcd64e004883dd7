"""Resolve what a user types (``BTCUSDT``, ``btc-usdt``, ``BTC_USDT``) to a ccxt unified symbol.

Pure functions over a collection of unified symbols, so the same rules serve every venue and
every caller (API input, CLI, strategy configuration) without touching the network.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Final

from cryptoorchestrator.core.errors import InvalidSymbol

#: How many known symbols an ``InvalidSymbol`` error lists to help the user.
SUPPORTED_PREVIEW: Final = 50
_SEPARATORS: Final = ("-", "_", " ", ".")


def _compact(symbol: str) -> str:
    """``BTC/USDT`` -> ``BTCUSDT``; the settle part of a derivative symbol is dropped."""
    pair = symbol.split(":", 1)[0]
    return pair.replace("/", "")


class SymbolIndex:
    """Case-insensitive look-up of unified symbols, built once per market load.

    Resolution order: the exact unified symbol, then the text with ``-``, ``_``, space or ``.``
    read as the ``/`` separator, then the compact form (``BTCUSDT``). When a compact form
    matches both a spot market and a derivative (``BTC/USDT`` and ``BTC/USDT:USDT``) the spot
    market wins, because a user who wanted the swap would have typed its settle suffix.
    """

    def __init__(self, symbols: Iterable[str]) -> None:
        self._symbols: tuple[str, ...] = tuple(sorted(set(symbols)))
        self._known = frozenset(self._symbols)
        self._by_upper: dict[str, str] = {symbol.upper(): symbol for symbol in self._symbols}
        compact: dict[str, list[str]] = {}
        for symbol in self._symbols:
            compact.setdefault(_compact(symbol).upper(), []).append(symbol)
        self._by_compact = compact

    @property
    def symbols(self) -> tuple[str, ...]:
        """All known symbols, sorted."""
        return self._symbols

    def __contains__(self, symbol: object) -> bool:
        return symbol in self._known

    def __len__(self) -> int:
        return len(self._symbols)

    def resolve(self, text: str) -> str:
        """The unified symbol ``text`` names, or ``InvalidSymbol`` listing known symbols."""
        found = self._find(text)
        if found is None:
            raise InvalidSymbol(
                f"Unknown symbol {text.strip()!r}.",
                details={"symbol": text, "supported": list(self._symbols[:SUPPORTED_PREVIEW])},
            )
        return found

    def _find(self, text: str) -> str | None:
        cleaned = text.strip().upper()
        if not cleaned:
            return None
        exact = self._by_upper.get(cleaned)
        if exact is not None:
            return exact
        slashed = cleaned
        for separator in _SEPARATORS:
            slashed = slashed.replace(separator, "/")
        if slashed != cleaned and slashed in self._by_upper:
            return self._by_upper[slashed]
        if "/" in slashed:
            # A separated pair that is not listed as such may still be listed compactly
            # (``BTC-USDT`` against a venue with a compact ``BTC/USDT``-style entry).
            slashed = slashed.replace("/", "")
        candidates = self._by_compact.get(slashed.split(":", 1)[0], [])
        return _prefer_spot(candidates)


def _prefer_spot(candidates: list[str]) -> str | None:
    if not candidates:
        return None
    spot = [symbol for symbol in candidates if ":" not in symbol]
    # Sorted input makes the choice deterministic when two listings share a compact form.
    return spot[0] if spot else candidates[0]


def resolve_symbol(text: str, symbols: Collection[str]) -> str:
    """Resolve ``text`` against ``symbols`` (unified symbols); see :class:`SymbolIndex`."""
    return SymbolIndex(symbols).resolve(text)


#: Quote currencies tried, longest first, when a compact symbol (``BTCUSDT``) names a market
#: that is not known yet (an import of new data).
COMMON_QUOTES: Final = (
    "FDUSD",
    "USDT",
    "USDC",
    "BUSD",
    "TUSD",
    "USD",
    "EUR",
    "GBP",
    "TRY",
    "BTC",
    "ETH",
    "BNB",
)


def unify_new_symbol(text: str) -> str:
    """The unified form of a symbol no venue listing confirms: ``btc-usdt`` -> ``BTC/USDT``,
    ``BTCUSDT`` -> ``BTC/USDT`` (by its quote currency). Unknown shapes raise InvalidSymbol."""
    cleaned = text.strip().upper()
    for separator in _SEPARATORS:
        cleaned = cleaned.replace(separator, "/")
    if "/" in cleaned:
        base, _, quote = cleaned.partition("/")
        if base and quote and "/" not in quote:
            return f"{base}/{quote}"
    else:
        for quote in COMMON_QUOTES:
            if cleaned.endswith(quote) and len(cleaned) > len(quote):
                return f"{cleaned[: -len(quote)]}/{quote}"
    raise InvalidSymbol(
        f"Cannot read {text.strip()!r} as a market symbol: write it as BASE/QUOTE (e.g. BTC/USDT).",
        details={"symbol": text},
    )
