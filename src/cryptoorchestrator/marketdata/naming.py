"""File-system names of candle datasets: ``<exchange>/<symbol path name>/<timeframe>.parquet``.

Names must be safe on every file system (no separators, no ``..``, no reserved characters) and
reversible, so a listing of the store can name the symbol without opening the file.
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import unquote

from cryptoorchestrator.core.errors import ValidationFailed
from cryptoorchestrator.marketdata import timeframes as tf

SUFFIX: Final = ".parquet"
_EXCHANGE_RE: Final = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_MAX_SYMBOL_LENGTH: Final = 128


def symbol_to_path_name(symbol: str) -> str:
    """A file-system-safe, reversible name for a ccxt symbol.

    ``/`` becomes ``-`` and ``:`` becomes ``_`` (``BTC/USDT`` -> ``BTC-USDT``, ``XRP/USDT:USDT`` ->
    ``XRP-USDT_USDT``); every other character but ASCII letters and digits is percent-encoded
    (``-`` -> ``%2D``), so two symbols never share a name and no name is ``.``, ``..`` or holds a
    separator. Names keep the symbol's case: on case-insensitive file systems symbols differing
    only in case would collide, which ccxt's upper-case unified symbols never do.
    """
    parts: list[str] = []
    for char in symbol:
        if char.isascii() and char.isalnum():
            parts.append(char)
        elif char == "/":
            parts.append("-")
        elif char == ":":
            parts.append("_")
        else:
            parts.append("".join(f"%{byte:02X}" for byte in char.encode("utf-8")))
    return "".join(parts)


def path_name_to_symbol(name: str) -> str:
    """Inverse of :func:`symbol_to_path_name`."""
    return unquote(name.replace("-", "/").replace("_", ":"), errors="strict")


def timeframe_file_name(timeframe: str) -> str:
    """``1m`` -> ``1m.parquet``; ``1M`` -> ``1Mo.parquet`` (no clash on case-insensitive disks)."""
    tf.validate_timeframe(timeframe)
    return ("1Mo" if timeframe == tf.MONTH else timeframe) + SUFFIX


def timeframe_from_file_name(name: str) -> str | None:
    """Inverse of :func:`timeframe_file_name`; ``None`` for any other file name."""
    stem = name[: -len(SUFFIX)] if name.endswith(SUFFIX) else ""
    if stem == "1Mo":
        return tf.MONTH
    return stem if stem in tf.SUPPORTED_TIMEFRAMES and stem != tf.MONTH else None


def check_exchange(exchange: str) -> str:
    """Return ``exchange`` if it is a valid folder name (a ccxt id: lower-case, digits, ``-_.``)."""
    if not isinstance(exchange, str) or not _EXCHANGE_RE.fullmatch(exchange) or ".." in exchange:
        raise ValidationFailed(
            f"Invalid exchange name {exchange!r}: use lower-case letters, digits, '-', '_' or '.'.",
            details={"exchange": str(exchange)},
        )
    return exchange


def symbol_folder(symbol: str) -> str:
    """The folder name of ``symbol``, after checking it is a plausible symbol."""
    if not isinstance(symbol, str) or not symbol.strip() or len(symbol) > _MAX_SYMBOL_LENGTH:
        raise ValidationFailed(f"Invalid symbol {symbol!r}.", details={"symbol": str(symbol)})
    if any(not char.isprintable() for char in symbol):
        raise ValidationFailed(f"Invalid symbol {symbol!r}: control characters.", details={"symbol": symbol})
    return symbol_to_path_name(symbol)
