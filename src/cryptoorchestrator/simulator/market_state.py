"""What the paper exchange sees of a market: a quote (:class:`MarketState`) or a closed candle
(:class:`Bar`). Plain frozen dataclasses with ``Decimal`` prices (convention 2 of the
architecture guide); the service layer builds them from tickers, order books and candles.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from cryptoorchestrator.core.errors import ValidationFailed
from cryptoorchestrator.domain.market import OrderBook
from cryptoorchestrator.domain.orders import OrderSide


def _positive(name: str, value: Decimal | None) -> None:
    if value is not None and not (value.is_finite() and value > 0):
        raise ValidationFailed(f"{name} must be a finite number > 0", details={"field": name})


@dataclass(frozen=True, slots=True)
class MarketState:
    """A quote of one market at ``timestamp``.

    ``last`` is the last trade price (stop triggers use it, as venues do by default); ``bid`` and
    ``ask`` are the best prices when known; ``book`` an optional depth snapshot, which then wins
    over ``bid``/``ask`` for both the touch and the fills (market and marketable orders walk its
    levels). ``bar_volume`` is the volume of the bar in progress, for the square-root impact of
    :data:`~cryptoorchestrator.simulator.fill_model.SLIPPAGE_VOLUME`; ``None`` counts as zero
    volume, i.e. the full impact cap (fill-model rule 2: never a guess in the taker's favour).
    """

    symbol: str
    last: Decimal
    timestamp: datetime
    bid: Decimal | None = None
    ask: Decimal | None = None
    book: OrderBook | None = None
    bar_volume: Decimal | None = None

    def __post_init__(self) -> None:
        _positive("last", self.last)
        _positive("bid", self.bid)
        _positive("ask", self.ask)
        if self.bar_volume is not None and not (self.bar_volume.is_finite() and self.bar_volume >= 0):
            raise ValidationFailed("bar_volume must be a finite number >= 0", details={"field": "bar_volume"})

    @property
    def best_ask(self) -> Decimal:
        """The lowest price a buyer pays now: the book's best ask, else ``ask``, else ``last``."""
        if self.book is not None and self.book.asks:
            return self.book.asks[0][0]
        return self.ask if self.ask is not None else self.last

    @property
    def best_bid(self) -> Decimal:
        """The highest price a seller gets now: the book's best bid, else ``bid``, else ``last``."""
        if self.book is not None and self.book.bids:
            return self.book.bids[0][0]
        return self.bid if self.bid is not None else self.last

    def touch(self, side: OrderSide) -> Decimal:
        """The price a taker of ``side`` trades at: the best ask for buys, the best bid for sells."""
        return self.best_ask if side is OrderSide.BUY else self.best_bid


@dataclass(frozen=True, slots=True)
class Bar:
    """One closed candle of ``symbol``: open, high, low, close and base volume. ``timestamp`` is
    the bar's open time (the candle store's convention)."""

    symbol: str
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    timestamp: datetime

    def __post_init__(self) -> None:
        for name in ("open", "high", "low", "close"):
            _positive(name, getattr(self, name))
        if not (self.low <= min(self.open, self.close) and max(self.open, self.close) <= self.high):
            raise ValidationFailed("a bar needs low <= open, close <= high", details={"field": "high"})
        if not (self.volume.is_finite() and self.volume >= 0):
            raise ValidationFailed("volume must be a finite number >= 0", details={"field": "volume"})
