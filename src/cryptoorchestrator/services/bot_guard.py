"""A bot's protection: the stop and take profit of its positions, kept in place (K5, R5, R8).

Rules (``engine/bot_logic.py`` R5 and R8, applied through the order service):

G1 *New position.* Its reduce-only stop (and take profit) are placed from its entry fill price
   right after the entry filled, as one one-cancels-other pair (``bot_orders`` O3).
G2 *Trailing.* After each candle the stop that counts is the tighter of the fixed stop and the
   trailing one (the best price up to this candle); when it is tighter than the resting stop,
   that stop is cancelled and a new one placed. A level the price is already through is the
   kernel's gap exit at the next open (R5a): the bot exits now, at the first price it can trade,
   instead of sending a stop the venue would fill at once or refuse.
G3 *Watchdog* (every candle, and after every fill): an open position of the bot whose stop is
   missing (cancelled outside the bot, rejected, expired) gets a new reduce-only stop at the
   level that counts, or is flattened when the price is already at or through it; a stop the
   venue does not accept flattens it too: no position is left without its stop. Every action is
   a ``protection`` event.
G4 *Orphans.* Protective orders of a symbol where the bot holds nothing (the take profit filled
   on a venue that does not cancel the sibling stop) are cancelled.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from cryptoorchestrator.domain.bots import Bot
from cryptoorchestrator.domain.orders import Order, OrderSide, OrderStatus
from cryptoorchestrator.engine import bot_logic as logic
from cryptoorchestrator.services import bot_orders as codes
from cryptoorchestrator.services.bot_journal import BotJournal
from cryptoorchestrator.services.bot_orders import BotOrders

_ARMED = (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED, OrderStatus.PENDING)


@dataclass
class SymbolBook:
    """The per-symbol state a bot persists (``bot_session`` K6): the last candle processed and
    fed, the position as the bot sees it (side, quantity, entry and best price), its parent order
    and the candle it was opened on."""

    last_ms: int | None = None
    fed_ms: int | None = None
    position: logic.PositionState | None = None
    parent_id: str | None = None
    opened_ms: int | None = None

    def clear(self) -> None:
        self.position, self.parent_id, self.opened_ms = None, None, None

    def to_json(self) -> dict[str, Any]:
        position = self.position
        return {
            "last_ms": self.last_ms,
            "fed_ms": self.fed_ms,
            "parent_id": self.parent_id,
            "opened_ms": self.opened_ms,
            "position": None
            if position is None
            else {
                "side": position.side,
                "quantity": str(position.quantity),
                "entry_price": str(position.entry_price),
                "best_price": str(position.best_price),
            },
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> SymbolBook:
        data = data or {}
        raw = data.get("position")
        position = None
        if raw:
            position = logic.PositionState(
                side=int(raw["side"]),
                quantity=Decimal(str(raw["quantity"])),
                entry_price=Decimal(str(raw["entry_price"])),
                best_price=Decimal(str(raw["best_price"])),
            )
        return cls(
            last_ms=data.get("last_ms"),
            fed_ms=data.get("fed_ms"),
            position=position,
            parent_id=data.get("parent_id"),
            opened_ms=data.get("opened_ms"),
        )


@dataclass
class BotGuard:
    """G1-G4 for one bot. ``bot`` returns the bot as the session knows it now (its risk
    settings may change while it runs)."""

    bot: Callable[[], Bot]
    orders: BotOrders
    books: dict[str, SymbolBook]
    journal: BotJournal
    rearmed: dict[tuple[str, int], int] = field(default_factory=dict)

    async def _event(self, message: str, data: Mapping[str, Any]) -> None:
        await self.journal.event(self.bot(), "protection", message, data)

    async def protect_new(self, symbol: str, parent: Order, stamp: int) -> None:
        """G1."""
        position = self.books[symbol].position
        if position is None:
            return
        protection = logic.protection_for(position, self.bot().risk)
        await self.orders.protect(
            symbol, position, parent, stamp, stop=protection.stop, take=protection.take_profit
        )

    async def guard(self, symbol: str, stamp: int, price: Decimal) -> None:
        """G2-G4 after a candle (or a fill) of ``symbol`` at ``price``."""
        book = self.books[symbol]
        stops, takes = await self.orders.protective(symbol)
        position = book.position
        if position is None:
            for order in [*stops, *takes]:  # G4
                await self.orders.cancel(order)
                await self._event(
                    f"cancelled the protective order of a flat {symbol}", {"order_id": order.id}
                )
            return
        level, reason = logic.stop_level(position, self.bot().risk)
        if level is None:
            return
        if not stops:
            await self.rearm(symbol, position, level, stamp, price)  # G3
            return
        current = stops[-1]
        for extra in stops[:-1]:
            await self.orders.cancel(extra)
        instrument = await self.orders.instrument(symbol)
        exit_side = OrderSide.SELL if position.side == logic.LONG else OrderSide.BUY
        rounded = instrument.round_price(level, exit_side)
        placed = current.stop_price
        if placed is not None and (rounded > placed if position.side == logic.LONG else rounded < placed):
            await self.move_stop(symbol, current, position, (level, reason), stamp, price)

    async def move_stop(
        self,
        symbol: str,
        current: Order,
        position: logic.PositionState,
        level: tuple[Decimal, str],
        stamp: int,
        price: Decimal,
    ) -> None:
        """G2: cancel the resting stop and place one at the tighter level (or exit now)."""
        stop, reason = level
        if logic.stop_breached(position.side, price, stop):
            await self.flatten(
                symbol, stamp, price, f"the {reason} moved to {stop}, through the price {price}"
            )
            return
        book = self.books[symbol]
        await self.orders.cancel(current)
        parent = await self.orders.order(book.parent_id) if book.parent_id else None
        new = await self.orders.protect(
            symbol, position, parent, stamp, stop=stop, take=None, stop_intent=codes.TRAIL
        )
        await self._event(f"{reason} moved to {stop}", {"symbol": symbol, "stop": stop})
        if not any(order.type.is_stop and order.is_open for order in new):
            await self.rearm(symbol, position, stop, stamp, price)

    async def rearm(
        self, symbol: str, position: logic.PositionState, level: Decimal, stamp: int, price: Decimal
    ) -> None:
        """G3: a position without its stop gets a new one, or is flattened."""
        book = self.books[symbol]
        if logic.stop_breached(position.side, price, level):
            await self.flatten(symbol, stamp, price, f"stop missing and the price {price} is through {level}")
            return
        attempt = self.rearmed.get((symbol, stamp), 0)
        self.rearmed[(symbol, stamp)] = attempt + 1
        # The first stop of a position keeps its own id (a crash before it was placed replays
        # to the same one); later ones are numbered within the candle (O1).
        if stamp == book.opened_ms and attempt == 0:
            intent = codes.STOP
        else:
            intent = codes.REARM + (str(attempt) if attempt else "")
        parent = await self.orders.order(book.parent_id) if book.parent_id else None
        placed = await self.orders.protect(
            symbol, position, parent, stamp, stop=level, take=None, stop_intent=intent
        )
        stop = next((order for order in placed if order.type.is_stop), None)
        if stop is not None and stop.status in _ARMED:
            await self._event(f"re-armed the {symbol} stop at {level}", {"order_id": stop.id, "stop": level})
            return
        why = (
            "no stop could be placed"
            if stop is None
            else f"the stop ended {stop.status.value}: {stop.reason}"
        )
        await self.flatten(symbol, stamp, price, why)

    async def flatten(self, symbol: str, stamp: int, price: Decimal, why: str) -> None:
        """Close the position at market now (R8), with a ``protection`` event saying why."""
        order = await self.orders.close(symbol, stamp, codes.FLATTEN)
        if await self.orders.holding(symbol, price) is None:
            self.books[symbol].clear()
        await self._event(
            f"flattened {symbol}: {why}", {"symbol": symbol, "order_id": None if order is None else order.id}
        )
