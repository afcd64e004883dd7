"""Reference data for the fake exchange: spot markets with Binance's filters, and candles.

The defaults copy Binance's real filters for BTCUSDT, ETHUSDT and SOLUSDT (tick 0.01; lot steps
0.00001, 0.0001 and 0.001; a 5 USDT minimum notional) so that ccxt's precision handling meets
the same numbers it meets in production. Candles are generated deterministically: the same
market and interval always give the same series, in every process.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal
from typing import Final, Literal

#: Binance kline intervals in milliseconds (a month counted as 30 days).
INTERVAL_MS: Final[dict[str, int]] = {
    "1s": 1_000,
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "2h": 7_200_000,
    "4h": 14_400_000,
    "6h": 21_600_000,
    "8h": 28_800_000,
    "12h": 43_200_000,
    "1d": 86_400_000,
    "3d": 259_200_000,
    "1w": 604_800_000,
    "1M": 2_592_000_000,
}

#: 2024-01-01T00:00:00Z: the fake venue's default "now", so server times are reproducible.
DEFAULT_START_SECONDS: Final = 1_704_067_200.0


#: Binance spot's order types (a market may offer fewer: ``FakeMarket.order_types``).
SPOT_ORDER_TYPES: Final[tuple[str, ...]] = (
    "LIMIT",
    "LIMIT_MAKER",
    "MARKET",
    "STOP_LOSS",
    "STOP_LOSS_LIMIT",
    "TAKE_PROFIT",
    "TAKE_PROFIT_LIMIT",
)


@dataclass(frozen=True, slots=True)
class FakeMarket:
    """One spot market of the fake venue, described the way Binance's exchangeInfo does."""

    base: str
    quote: str
    price: Decimal
    tick_size: Decimal
    step_size: Decimal
    min_qty: Decimal
    min_notional: Decimal
    max_qty: Decimal = Decimal("9000")
    min_price: Decimal | None = None
    max_price: Decimal = Decimal("1000000")
    status: str = "TRADING"
    #: Binance replaced MIN_NOTIONAL by NOTIONAL in 2023; both still appear in the wild.
    notional_filter: Literal["NOTIONAL", "MIN_NOTIONAL"] = "NOTIONAL"
    #: The order types the market takes (exchangeInfo's ``orderTypes``); others are refused.
    order_types: tuple[str, ...] = SPOT_ORDER_TYPES

    @property
    def exchange_symbol(self) -> str:
        """Binance's id: ``BTCUSDT``."""
        return f"{self.base}{self.quote}"

    @property
    def symbol(self) -> str:
        """ccxt's unified symbol: ``BTC/USDT``."""
        return f"{self.base}/{self.quote}"


DEFAULT_MARKETS: Final[tuple[FakeMarket, ...]] = (
    FakeMarket(
        base="BTC",
        quote="USDT",
        price=Decimal("60000.00"),
        tick_size=Decimal("0.01"),
        step_size=Decimal("0.00001"),
        min_qty=Decimal("0.00001"),
        min_notional=Decimal("5"),
    ),
    FakeMarket(
        base="ETH",
        quote="USDT",
        price=Decimal("3000.00"),
        tick_size=Decimal("0.01"),
        step_size=Decimal("0.0001"),
        min_qty=Decimal("0.0001"),
        min_notional=Decimal("5"),
    ),
    FakeMarket(
        base="SOL",
        quote="USDT",
        price=Decimal("150.00"),
        tick_size=Decimal("0.01"),
        step_size=Decimal("0.001"),
        min_qty=Decimal("0.001"),
        min_notional=Decimal("5"),
    ),
)

DEFAULT_BALANCES: Final[dict[str, Decimal]] = {
    "USDT": Decimal("100000"),
    "BTC": Decimal("1"),
    "ETH": Decimal("10"),
    "SOL": Decimal("100"),
}


def floor_to(value: Decimal, step: Decimal) -> Decimal:
    """``value`` rounded down to a multiple of ``step``."""
    return (value / step).to_integral_value(rounding=ROUND_FLOOR) * step


def fmt(value: Decimal) -> str:
    """A number the way Binance writes it: a string with eight decimals."""
    return f"{value:.8f}"


def generate_candles(
    market: FakeMarket, *, interval: str, end_ms: int, count: int = 1000
) -> list[tuple[int, Decimal, Decimal, Decimal, Decimal, Decimal]]:
    """A deterministic random walk of ``count`` candles; the last one opens before ``end_ms``.

    Rows are ``(open_time_ms, open, high, low, close, volume)``; prices sit on the market's
    tick grid and the walk ends near the market's reference price.
    """
    step_ms = INTERVAL_MS[interval]
    last_open = (end_ms // step_ms) * step_ms - step_ms
    first_open = last_open - (count - 1) * step_ms
    seed = zlib.crc32(f"{market.exchange_symbol}:{interval}".encode())
    rng = random.Random(seed)  # noqa: S311 - reproducible test data
    # Walk backwards from the reference price so the series ends where the ticker is.
    closes = [market.price]
    for _ in range(count - 1):
        change = Decimal(str(round(rng.gauss(0.0, 0.002), 6)))
        closes.append(closes[-1] / (Decimal(1) + change))
    closes.reverse()
    rows = []
    previous_close = closes[0]
    for index, close in enumerate(closes):
        open_price = previous_close
        wick_up = Decimal(str(round(rng.random() * 0.001, 6)))
        wick_down = Decimal(str(round(rng.random() * 0.001, 6)))
        high = max(open_price, close) * (Decimal(1) + wick_up)
        low = min(open_price, close) * (Decimal(1) - wick_down)
        volume = Decimal(str(round(rng.uniform(1.0, 100.0), 3)))
        rows.append(
            (
                first_open + index * step_ms,
                floor_to(open_price, market.tick_size),
                floor_to(high, market.tick_size),
                floor_to(low, market.tick_size),
                floor_to(close, market.tick_size),
                volume,
            )
        )
        previous_close = close
    return rows


def normalise_candles(
    rows: Sequence[Sequence[object]],
) -> list[tuple[int, Decimal, Decimal, Decimal, Decimal, Decimal]]:
    """User-supplied ``[ts, o, h, l, c, v]`` rows as sorted Decimal tuples."""
    result = []
    for row in rows:
        timestamp, open_price, high, low, close, volume = row[:6]
        result.append(
            (
                int(Decimal(str(timestamp))),
                Decimal(str(open_price)),
                Decimal(str(high)),
                Decimal(str(low)),
                Decimal(str(close)),
                Decimal(str(volume)),
            )
        )
    result.sort(key=lambda candle: candle[0])
    return result
