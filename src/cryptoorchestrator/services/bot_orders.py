"""The orders of one bot: entries, exits and protective orders, all through the order service.

Rules (the bot runtime's; each is cited where it is implemented):

O1 *Deterministic client order ids.* Every order a bot sends is named
   ``bot-<bot id prefix>-<candle open time>-<symbol>-<intent>`` (:func:`client_order_id`; the
   open time in base 36 and a symbol of more than 8 characters as a hash, so that the id stays
   within Binance's 36 characters). A restarted bot that replays a candle asks for the same ids
   and the order service answers with the orders already stored: nothing is sent twice.
O2 *A replayed id with another body* (the quantity was sized again on changed balances) is the
   same order: the stored one is used, never a second one.
O3 *Protective orders* are reduce-only: a stop-market order at the stop level and a limit order
   at the take profit, placed from the entry's fill price after it filled, as one
   one-cancels-other pair with the entry as parent (``OrderService.place_child``).
O4 *Exits* cancel the position's protective orders first (on spot they hold the coins the exit
   sells), then send a reduce-only market order for what is held (spot: what is free, rounded
   down to the step).
O5 *Live orders are looked up, never resent blindly*: an order left ``unknown`` or ``pending`` is
   resolved by its client order id (``OrderService.resolve_unknown``), the others refreshed from
   the venue's answer to a lookup.
"""

from __future__ import annotations

import hashlib
import string
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from cryptoorchestrator.core.errors import Conflict, NotFound, OrderRejected
from cryptoorchestrator.domain.accounts import TradingAccount
from cryptoorchestrator.domain.bots import Bot
from cryptoorchestrator.domain.instruments import Instrument
from cryptoorchestrator.domain.ledger import Ledger, sellable
from cryptoorchestrator.domain.orders import Order, OrderSide, OrderStatus, OrderType
from cryptoorchestrator.domain.positions import Position
from cryptoorchestrator.engine import bot_logic as logic
from cryptoorchestrator.services.bot_journal import BotJournal
from cryptoorchestrator.services.execution import ExecutionClient
from cryptoorchestrator.services.orders import OrderRequest, OrderService
from cryptoorchestrator.services.paper import PaperExecution
from cryptoorchestrator.services.ports import UnitOfWorkFactory

ExecutionFor = Callable[[TradingAccount], Awaitable[ExecutionClient]]
_DIGITS = string.digits + string.ascii_lowercase
_ZERO = Decimal(0)
#: Intent codes of O1.
ENTRY_LONG, ENTRY_SHORT, EXIT, STOP, TAKE, TRAIL, REARM, FLATTEN, CLOSE_ON_STOP = (
    "el",
    "es",
    "x",
    "sl",
    "tp",
    "ts",
    "ra",
    "fl",
    "st",
)


def _base36(value: int) -> str:
    out = ""
    while True:
        value, digit = divmod(value, 36)
        out = _DIGITS[digit] + out
        if value == 0:
            return out


def symbol_code(symbol: str) -> str:
    """The symbol's letters and digits (``BTCUSDT``), or 8 hex digits of its hash when longer."""
    code = "".join(ch for ch in symbol if ch.isalnum())
    return code if len(code) <= 8 else hashlib.sha256(symbol.encode()).hexdigest()[:8]


def bot_prefix(bot_id: str) -> str:
    """``bot-<8 hex digits of the bot id>-``: what every order of the bot starts with (O1)."""
    return f"bot-{bot_id.replace('-', '')[:8]}-"


def client_order_id(bot_id: str, timestamp_ms: int, symbol: str, intent: str) -> str:
    """O1: the deterministic client order id of a bot's order."""
    return f"{bot_prefix(bot_id)}{_base36(timestamp_ms)}-{symbol_code(symbol)}-{intent}"


@dataclass
class BotOrders:
    """Order actions of one bot on its account (O1-O5)."""

    bot: Bot
    account: TradingAccount
    uow_factory: UnitOfWorkFactory
    orders: OrderService
    paper: PaperExecution
    execution_for: ExecutionFor
    journal: BotJournal

    @property
    def is_paper(self) -> bool:
        return self.account.kind == "paper"

    async def instrument(self, symbol: str) -> Instrument:
        return await self.orders.instrument(self.account, symbol)

    # --- reading ---------------------------------------------------------------------------

    async def position(self, symbol: str) -> Position | None:
        instrument = await self.instrument(symbol)
        async with self.uow_factory() as uow:
            return await uow.positions.get(self.account.id, instrument.symbol)

    async def holding(self, symbol: str, price: Decimal | None) -> Position | None:
        """The open position of ``symbol``, or None when it is flat or dust (R9) at ``price``
        (its entry price when no price is known)."""
        position = await self.position(symbol)
        if position is None:
            return None
        instrument = await self.instrument(symbol)
        dust = logic.is_dust(
            position.quantity,
            price or position.entry_price or _ZERO,
            step=instrument.quantity_step,
            min_quantity=instrument.min_quantity,
            min_notional=instrument.min_notional,
        )
        return None if dust else position

    async def open_orders(self, symbol: str | None = None) -> list[Order]:
        """The bot's open orders (of ``symbol``, or all), oldest first."""
        resolved = None if symbol is None else (await self.instrument(symbol)).symbol
        async with self.uow_factory() as uow:
            found = await uow.orders.open_orders(account_id=self.account.id, symbol=resolved)
        return [order for order in found if order.bot_id == self.bot.id]

    async def protective(self, symbol: str) -> tuple[list[Order], list[Order]]:
        """The bot's open protective stops and take profits on ``symbol``."""
        found = [order for order in await self.open_orders(symbol) if order.reduce_only]
        stops = [order for order in found if order.type.is_stop]
        takes = [order for order in found if order.type is OrderType.LIMIT]
        return stops, takes

    async def order(self, order_id: str) -> Order | None:
        async with self.uow_factory() as uow:
            return await uow.orders.get(order_id)

    async def latest_entry(self, symbol: str) -> Order | None:
        """The bot's newest filled order on ``symbol`` that was not reduce-only (the parent of a
        position the bot finds open after a restart)."""
        instrument = await self.instrument(symbol)
        async with self.uow_factory() as uow:
            found, _ = await uow.orders.list_for_user(
                self.bot.user_id, bot_id=self.bot.id, account_id=self.account.id, symbol=instrument.symbol,
                limit=20, offset=0,
            )  # fmt: skip
        for order in found:
            if not order.reduce_only and order.filled_quantity > 0 and order.parent_id is None:
                return order
        return None

    # --- sending ---------------------------------------------------------------------------

    async def place(self, request: OrderRequest) -> Order:
        """Send ``request`` (its client order id is deterministic, O1); O2 on a repeat."""
        try:
            order = await self.orders.place(self.bot.user_id, request)
        except Conflict:
            existing = await self._by_client_id(request.client_order_id or "")
            if existing is None:
                raise
            order = existing
        await self.journal.event(
            self.bot,
            "order",
            f"{order.side.value} {order.quantity} {order.symbol} {order.type.value}: {order.status.value}",
            {
                "order_id": order.id,
                "client_order_id": order.client_order_id,
                "symbol": order.symbol,
                "side": order.side.value,
                "type": order.type.value,
                "quantity": order.quantity,
                "price": order.price,
                "stop_price": order.stop_price,
                "status": order.status.value,
                "reason": order.reason,
            },
        )
        return order

    async def _by_client_id(self, client_id: str) -> Order | None:
        async with self.uow_factory() as uow:
            return await uow.orders.get_by_client_id(self.account.id, client_id)

    def _request(
        self, symbol: str, side: OrderSide, quantity: Decimal, cid: str, **extra: Any
    ) -> OrderRequest:
        return OrderRequest(
            symbol=symbol,
            side=side,
            quantity=quantity,
            client_order_id=cid,
            bot_id=self.bot.id,
            account_id=self.account.id,
            **extra,
        )

    async def enter(self, intent: logic.OpenPosition, timestamp_ms: int) -> Order:
        """A market order opening ``intent.side`` (O1)."""
        side = OrderSide.BUY if intent.side == logic.LONG else OrderSide.SELL
        code = ENTRY_LONG if intent.side == logic.LONG else ENTRY_SHORT
        cid = client_order_id(self.bot.id, timestamp_ms, intent.symbol, code)
        return await self.place(self._request(intent.symbol, side, intent.quantity, cid))

    async def cancel(self, order: Order) -> Order:
        try:
            return await self.orders.cancel(self.bot.user_id, order.id)
        except OrderRejected:
            return await self.order(order.id) or order  # it ended meanwhile

    async def close(self, symbol: str, timestamp_ms: int, intent: str) -> Order | None:
        """O4: cancel the protective orders, then a reduce-only market exit of the holding."""
        stops, takes = await self.protective(symbol)
        for order in [*stops, *takes]:
            await self.cancel(order)
        position = await self.position(symbol)
        if position is None or position.quantity == 0:
            return None
        instrument = await self.instrument(symbol)
        quantity = await self.exit_quantity(instrument, position)
        if quantity <= 0 or quantity < instrument.min_quantity:
            return None  # dust: the venue would refuse it
        side = OrderSide.SELL if position.quantity > 0 else OrderSide.BUY
        cid = client_order_id(self.bot.id, timestamp_ms, symbol, intent)
        try:
            return await self.place(self._request(symbol, side, quantity, cid, reduce_only=True))
        except OrderRejected as error:
            await self.journal.event(self.bot, "warning", f"exit of {symbol} refused: {error.message}")
            return None

    async def exit_quantity(self, instrument: Instrument, position: Position) -> Decimal:
        """What an exit sells: spot, the free coins (ledger rule 9); swaps, the position."""
        if not instrument.is_spot:
            return instrument.round_quantity(abs(position.quantity))
        async with self.uow_factory() as uow:
            ledger = Ledger(self.account.id, await uow.ledger.balances(self.account.id))
        return sellable(ledger, instrument, abs(position.quantity))

    async def protect(
        self,
        symbol: str,
        state: logic.PositionState,
        parent: Order | None,
        timestamp_ms: int,
        *,
        stop: Decimal | None,
        take: Decimal | None,
        stop_intent: str = STOP,
    ) -> list[Order]:
        """O3: the reduce-only stop (and take profit) of a position; the stop first, so that on
        spot it holds the coins' lock and the take profit shares it."""
        instrument = await self.instrument(symbol)
        quantity = instrument.round_quantity(state.quantity)
        side = OrderSide.SELL if state.side == logic.LONG else OrderSide.BUY
        wanted: list[tuple[str, OrderType, Decimal | None, Decimal | None]] = []
        if stop is not None:
            wanted.append((stop_intent, OrderType.STOP_MARKET, None, stop))
        if take is not None and parent is not None:
            wanted.append((TAKE, OrderType.LIMIT, take, None))
        placed: list[Order] = []
        for intent, order_type, price, stop_price in wanted:
            cid = client_order_id(self.bot.id, timestamp_ms, symbol, intent)
            request = self._request(
                symbol,
                side,
                quantity,
                cid,
                type=order_type,
                price=price,
                stop_price=stop_price,
                reduce_only=True,
            )
            order = await self._place_protective(instrument, request, parent)
            if order is not None:
                placed.append(order)
        return placed

    async def _place_protective(
        self, instrument: Instrument, request: OrderRequest, parent: Order | None
    ) -> Order | None:
        existing = await self._by_client_id(request.client_order_id or "")
        if existing is not None:
            return existing  # O1: placed before the restart
        if parent is None:
            return await self.place(request)
        child = await self.orders.place_child(
            self.bot.user_id, self.account, instrument, request, parent=parent
        )
        if child is None:
            return await self._by_client_id(request.client_order_id or "")
        stored = await self._by_client_id(request.client_order_id or "") or child
        await self.journal.event(
            self.bot,
            "order",
            f"protective {stored.type.value} {stored.side.value} {stored.quantity} {stored.symbol}: "
            f"{stored.status.value}",
            {
                "order_id": stored.id,
                "client_order_id": stored.client_order_id,
                "price": stored.price,
                "stop_price": stored.stop_price,
                "status": stored.status.value,
                "reason": stored.reason,
            },
        )
        return stored

    # --- the venue -------------------------------------------------------------------------

    async def refresh(self) -> None:
        """O5 (live accounts): book what the venue says of the bot's open orders."""
        if self.is_paper:
            return
        for order in await self.open_orders():
            if order.status in (OrderStatus.PENDING, OrderStatus.UNKNOWN):
                await self.orders.resolve_unknown(self.account, order)
            else:
                await self.orders.refresh(self.account, order)

    async def restore_paper(self) -> int:
        """Paper accounts: put the bot's resting orders back into this process's paper venue
        (a bot that moved here from another runner); orders never sent are resolved (O5)."""
        if not self.is_paper:
            return 0
        engine = self.paper.engine(self.account.exchange)
        resting = {order.id for order in engine.open_orders()}
        restore: list[Order] = []
        for order in await self.open_orders():
            if order.status in (OrderStatus.PENDING, OrderStatus.UNKNOWN):
                await self.orders.resolve_unknown(self.account, order)
            elif order.id not in resting:
                restore.append(order)
        if restore:
            instruments = {order.symbol: await self.instrument(order.symbol) for order in restore}
            self.paper.restore(self.account.exchange, restore, instruments=instruments)
        return len(restore)

    async def forget_paper(self, now: datetime) -> None:
        """Paper accounts: take the bot's orders out of this process's paper venue without
        booking anything (the runner that holds the bot now matches them)."""
        if not self.is_paper:
            return
        engine = self.paper.engine(self.account.exchange)
        for order in engine.open_orders():
            if order.bot_id == self.bot.id:
                try:
                    engine.cancel(order.id, now=now)
                except NotFound:
                    continue
