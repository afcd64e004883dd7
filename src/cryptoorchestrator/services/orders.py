"""Orders: validation, idempotent submission, the state machine, and booking of fills.

The order of work for ``POST /orders`` (each step cites the issue's rule it implements):

1. *Validate before anything is sent*: the account (the user's own, paper by default), the symbol
   (resolved against the venue's markets), quantity and prices rounded down to the step and
   tick, the venue's minimum quantity and notional, reduce-only never increasing a position,
   then the pluggable risk checks.
2. *Idempotency*: the order is stored (``pending``) with its ``client_order_id`` (generated when
   absent) *before* it is sent. The database's unique (account, client order id) makes a repeat
   return the first order; the same id with a different body answers 409 ``CONFLICT``.
3. *Funds*: in the same transaction the ledger locks what the order may cost (quote for a spot
   buy, with a buffer for market orders' slippage; the base for a spot sell; margin on swaps),
   else 400 ``INSUFFICIENT_BALANCE`` with required and available amounts and nothing stored.
4. *Send* through the account's execution client (paper engine or ccxt); a timeout or 5xx
   leaves the order ``unknown`` until :meth:`OrderService.resolve_unknown` asks the venue about
   its client order id. It is never resent under a new id and never reported as rejected.
5. *Book* every event with the state machine; a fill is booked once (unique trade id), moving the
   ledger and the position together (``order_booking``); a terminal order releases what is left
   of its lock; a filled order with ``stop_loss``/``take_profit`` gets its two protective orders
   as a one-cancels-other pair.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_CEILING, Decimal
from typing import Any, Protocol

from cryptoorchestrator.core.clock import Clock
from cryptoorchestrator.core.errors import Conflict, NotFound, OrderRejected, UserError
from cryptoorchestrator.core.ids import new_uuid7
from cryptoorchestrator.core.records import replace
from cryptoorchestrator.domain.accounts import TradingAccount
from cryptoorchestrator.domain.instruments import Instrument
from cryptoorchestrator.domain.ledger import AssetBalance, Ledger, sellable
from cryptoorchestrator.domain.market import MarketInfo
from cryptoorchestrator.domain.orders import (
    Canceled,
    Order,
    OrderSide,
    OrderStatus,
    OrderType,
    TimeInForce,
)
from cryptoorchestrator.domain.positions import Position
from cryptoorchestrator.services.accounts import AccountService
from cryptoorchestrator.services.bot_crash import crash_point
from cryptoorchestrator.services.execution import ExecutionClient, OrderEvents
from cryptoorchestrator.services.order_booking import Booking, account_leverage, book_events
from cryptoorchestrator.services.paper_batches import PaperItem, PaperQueue, UnitOfWorkBatchStore
from cryptoorchestrator.services.ports import OrderBatchStore, UnitOfWork, UnitOfWorkFactory

#: Extra quote locked for a spot market buy above ``quantity * touch * (1 + taker fee)``: the
#: slippage a market order may pay (the paper fill model caps it at 1 %; venues move faster).
MARKET_BUFFER = Decimal("0.02")
_INSTRUMENT_TTL = 300.0
#: Locks are rounded up to the database's 18 decimal places (balances = sums of stored entries).
LOCK_QUANTUM = Decimal("1e-18")


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """What a client (the API, a bot, a close-position) asks for."""

    symbol: str
    side: OrderSide
    quantity: Decimal
    type: OrderType = OrderType.MARKET
    price: Decimal | None = None
    stop_price: Decimal | None = None
    time_in_force: TimeInForce = TimeInForce.GTC
    reduce_only: bool = False
    client_order_id: str | None = None
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    bot_id: str | None = None
    account_id: str | None = None


@dataclass(frozen=True, slots=True)
class RiskContext:
    """What a risk check sees of an order about to be locked and sent."""

    user_id: int
    account: TradingAccount
    instrument: Instrument
    order: Order
    reference_price: Decimal
    position: Position | None
    ledger: Ledger


class RiskCheck(Protocol):
    """A pre-trade check (the risk-management feature plugs in here): raise
    ``RiskLimitExceeded`` (or any ``UserError``) to refuse the order; nothing is stored then."""

    async def __call__(self, context: RiskContext) -> None: ...


MarketInfoSource = Callable[[str, str], Awaitable[MarketInfo]]
ExecutionFactory = Callable[[TradingAccount], Awaitable[ExecutionClient]]
OrderListener = Callable[[int, Order], Awaitable[None]]


def new_client_order_id() -> str:
    """``co-`` and 24 hex digits: within Binance's 36 characters and its allowed alphabet. Taken
    from a time-ordered UUID (time, then this process's counter, then random bits), so the
    generated ids of one account are inserted at the end of their unique index."""
    return "co-" + new_uuid7().replace("-", "")[:24]


class OrderService:
    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        *,
        clock: Clock,
        accounts: AccountService,
        market_info: MarketInfoSource,
        execution_for: ExecutionFactory,
        risk_checks: Sequence[RiskCheck] = (),
        batch_store: OrderBatchStore | None = None,
    ) -> None:
        self._uow = uow_factory
        #: Where paper batches are loaded and written (``paper_batches``): bootstrap gives the
        #: SQLite one (two trips per batch); the default works on any unit of work.
        self.batch_store: OrderBatchStore = batch_store or UnitOfWorkBatchStore(uow_factory)
        self._clock = clock
        self.accounts = accounts
        self._market_info = market_info
        self._execution_for = execution_for
        self.risk_checks: list[RiskCheck] = list(risk_checks)
        self.listeners: list[OrderListener] = []
        self._locks: dict[str, asyncio.Lock] = {}
        self._instruments: dict[tuple[str, str], tuple[float, Instrument]] = {}
        self._paper_queues: dict[str, PaperQueue] = {}

    # --- lookups ---------------------------------------------------------------------------

    def account_lock(self, account_id: str) -> asyncio.Lock:
        """Serialises the ledger changes of one account inside this process (the database row
        locks do it across processes on PostgreSQL)."""
        lock = self._locks.get(account_id)
        if lock is None:
            lock = self._locks[account_id] = asyncio.Lock()
        return lock

    async def instrument(self, account: TradingAccount, symbol: str) -> Instrument:
        key = (account.exchange, symbol)
        cached = self._instruments.get(key)
        now = self._clock.timestamp()
        if cached is not None and now - cached[0] < _INSTRUMENT_TTL:
            return cached[1]
        if account.kind == "paper":
            market = await self._market_info(account.exchange, symbol)
        else:
            execution = await self._execution_for(account)
            market = await execution.market(symbol)  # type: ignore[attr-defined]
        instrument = Instrument.from_market(market)
        self._instruments[key] = (now, instrument)
        self._instruments[(account.exchange, instrument.symbol)] = (now, instrument)
        return instrument

    async def get(self, user_id: int, order_id: str) -> Order:
        async with self._uow() as uow:
            order = await uow.orders.get_for_user(order_id, user_id)
        if order is None:
            raise NotFound("Order not found.", details={"order_id": order_id})
        return order

    async def list(self, user_id: int, **filters: Any) -> tuple[list[Order], int]:
        async with self._uow() as uow:
            return await uow.orders.list_for_user(user_id, **filters)

    # --- placing ---------------------------------------------------------------------------

    async def place(self, user_id: int, request: OrderRequest) -> Order:
        """Validate, store, lock, send and book one order (module docstring, steps 1-5)."""
        account = await self.accounts.resolve(user_id, request.account_id)
        instrument = await self.instrument(account, request.symbol)
        given = request.client_order_id is not None  # a generated id cannot have been used before
        client_id = request.client_order_id or new_client_order_id()
        # What a repeat of a given client order id is compared with (a generated one cannot repeat).
        fingerprint = _fingerprint(request, instrument.symbol, account.id) if given else ""
        execution = await self._execution_for(account)
        paper = execution.mode == "paper"
        if given and not paper:  # a paper batch looks the id up in its own transaction
            existing = await self._stored(account.id, client_id)
            if existing is not None:
                return _same_or_conflict(existing, fingerprint)
        try:
            reference = await self._reference_price(execution, account, instrument, request)
            draft = self._draft(user_id, account, instrument, request, client_id, fingerprint, reference)
        except UserError:
            # A repeat answers with the first order even when its body would not pass now.
            existing = await self._stored(account.id, client_id) if given and paper else None
            if existing is None:
                raise
            return _same_or_conflict(existing, fingerprint)
        crash_point("before_persist")  # test hook (bot_crash): inert unless CO_TEST_CRASH_AT is set
        if paper:
            return await self._place_paper(PaperItem(account, instrument, draft, reference, execution, given))
        stored = await self._store(account, instrument, draft, reference)
        if stored.id != draft.id:
            return _same_or_conflict(stored, fingerprint)
        crash_point("after_persist")  # test hook (bot_crash)
        return await self._send(account, instrument, stored, execution)

    async def _stored(self, account_id: str, client_order_id: str) -> Order | None:
        async with self._uow() as uow:
            return await uow.orders.get_by_client_id(account_id, client_order_id)

    async def _place_paper(self, item: PaperItem) -> Order:
        """Steps 2-5 in one transaction for the paper venue (``paper_batches``): it lives in this
        process, so the order is stored, matched and booked together, and orders arriving
        together for one account share the transaction."""
        account_id = item.account.id
        queue = self._paper_queues.get(account_id)
        if queue is None:
            queue = self._paper_queues[account_id] = PaperQueue(self, account_id)
        return await queue.submit(item)

    async def _reference_price(
        self,
        execution: ExecutionClient,
        account: TradingAccount,
        instrument: Instrument,
        request: OrderRequest,
    ) -> Decimal:
        """The price used to value the order for the minimum notional and the lock: the limit
        price, else the stop price, else the current touch."""
        if request.price is not None:
            return request.price
        if request.stop_price is not None:
            return request.stop_price
        return await execution.reference_price(instrument.symbol, request.side)

    def _draft(
        self,
        user_id: int,
        account: TradingAccount,
        instrument: Instrument,
        request: OrderRequest,
        client_id: str,
        fingerprint: str,
        reference: Decimal,
    ) -> Order:
        quantity = instrument.round_quantity(request.quantity)
        price = None if request.price is None else instrument.round_price(request.price, request.side)
        stop = (
            None if request.stop_price is None else instrument.round_price(request.stop_price, request.side)
        )
        instrument.check(quantity, price or stop or reference)
        now = self._clock.now()
        return Order(
            id=new_uuid7(),
            user_id=user_id,
            account_id=account.id,
            symbol=instrument.symbol,
            side=request.side,
            type=request.type,
            quantity=quantity,
            client_order_id=client_id,
            created_at=now,
            updated_at=now,
            price=price,
            stop_price=stop,
            time_in_force=request.time_in_force,
            reduce_only=request.reduce_only,
            stop_loss=request.stop_loss,
            take_profit=request.take_profit,
            bot_id=request.bot_id,
            fingerprint=fingerprint or None,
        )

    async def _prepare(
        self,
        uow: UnitOfWork,
        account: TradingAccount,
        instrument: Instrument,
        draft: Order,
        reference: Decimal,
        now: datetime,
    ) -> Order | tuple[Order, Ledger]:
        """Steps 1-3 inside the caller's transaction (a live order, stored before it is sent):
        reduce-only and risk checks, the lock, the stored order. Returns the order already
        stored under the client order id instead when there is one; the transaction is then
        not committed."""
        position = await uow.positions.get(account.id, instrument.symbol)
        ledger = Ledger(account.id, await uow.ledger.balances_for_update(account.id))
        order = await self._check_and_lock(account, instrument, draft, reference, now, ledger, position)
        if not await uow.orders.add(order):
            stored = await uow.orders.get_by_client_id(account.id, draft.client_order_id)
            if stored is None:  # pragma: no cover - the unique index said it exists
                raise Conflict("The order could not be stored; try again.")
            return stored
        return order, ledger

    async def _check_and_lock(
        self,
        account: TradingAccount,
        instrument: Instrument,
        draft: Order,
        reference: Decimal,
        now: datetime,
        ledger: Ledger,
        position: Position | None,
    ) -> Order:
        """Steps 1 and 3 on a loaded ledger: reduce-only, the risk checks, then the lock (all or
        nothing). Returns the draft with its lock; raises a ``UserError`` when refused."""
        _check_reduce_only(draft, position, instrument)
        asset, amount = lock_for(draft, instrument, reference, position)
        for check in self.risk_checks:
            await check(RiskContext(draft.user_id, account, instrument, draft, reference, position, ledger))
        amount = amount.quantize(LOCK_QUANTUM, rounding=ROUND_CEILING)
        if amount > 0:
            ledger.lock(asset, amount, timestamp=now, reference=draft.id)
        return replace(draft, locked_asset=asset, locked_amount=amount)

    async def _store(
        self, account: TradingAccount, instrument: Instrument, draft: Order, reference: Decimal
    ) -> Order:
        """Steps 2-3 in one transaction, committed before the order is sent to a live venue;
        the stored order comes back (another one when the client order id was already taken)."""
        now = self._clock.now()
        async with self.account_lock(account.id), self._uow() as uow:
            prepared = await self._prepare(uow, account, instrument, draft, reference, now)
            if isinstance(prepared, Order):
                return prepared
            _, ledger = prepared
            await uow.ledger.record(account.id, ledger.take_entries(), ledger.balances(), now=now)
            await uow.commit()
        return prepared[0]

    async def _send(
        self, account: TradingAccount, instrument: Instrument, order: Order, execution: ExecutionClient
    ) -> Order:
        events = await execution.submit(replace(order, locked_amount=order.locked_amount), instrument)
        crash_point("after_send")  # test hook (bot_crash)
        booked = await self.apply(account, events)
        return booked.get(order.id) or await self.get(order.user_id, order.id)

    # --- cancelling ------------------------------------------------------------------------

    async def cancel(self, user_id: int, order_id: str) -> Order:
        """Cancel an open order; funds still locked for it are released when the venue confirms.
        A terminal order answers 400 ``ORDER_NOT_OPEN``."""
        order = await self.get(user_id, order_id)
        if order.is_terminal:
            raise OrderRejected(
                f"The order is already {order.status.value}.",
                details={"order_id": order_id, "status": order.status.value},
                code="ORDER_NOT_OPEN",
            )
        account = await self.accounts.resolve(user_id, order.account_id)
        execution = await self._execution_for(account)
        booked = await self.apply(account, await execution.cancel(order))
        return booked.get(order.id) or await self.get(user_id, order_id)

    # --- booking ---------------------------------------------------------------------------

    async def apply(self, account: TradingAccount, events: OrderEvents) -> dict[str, Order]:
        """Book venue events for orders of ``account`` (step 5) and place the protective orders
        of parents that just completed. Returns the orders after the events, by id."""
        if not events:
            return {}
        now = self._clock.now()
        async with self.account_lock(account.id), self._uow() as uow:
            ledger = Ledger(account.id, await uow.ledger.balances_for_update(account.id))
            booking = await self._book(uow, account, events, now, ledger=ledger)
            await self._write(uow, account, booking, ledger, now)
            await uow.commit()
        await self._after_booking(account, booking)
        return booking.changed

    async def _after_booking(self, account: TradingAccount, booking: Booking) -> None:
        crash_point("after_answer")  # test hook (bot_crash): the booking is committed
        for order in booking.changed.values():
            for listener in self.listeners:
                await listener(order.user_id, order)
        for parent in booking.protect:
            await self._protect(account, parent)

    async def _book(
        self,
        uow: UnitOfWork,
        account: TradingAccount,
        events: OrderEvents,
        now: datetime,
        *,
        ledger: Ledger | None = None,
        known: dict[str, Order] | None = None,
        positions: dict[str, Position | None] | None = None,
    ) -> Booking:
        """Book ``events`` in memory inside the caller's transaction (``_write`` stores the
        result). ``known`` orders, ``ledger`` and ``positions`` already loaded in this transaction
        are used as they are; ``positions`` is updated in place."""
        orders, instruments = await self._load_orders(uow, account, events, known or {})
        if ledger is None:
            ledger = Ledger(account.id, await uow.ledger.balances_for_update(account.id))
        positions = {} if positions is None else positions  # a batch shares its dict
        for symbol in instruments:
            if symbol not in positions:
                positions[symbol] = await uow.positions.get(account.id, symbol)
        return book_events(
            account=account,
            events=[(oid, event) for oid, event in events if oid in orders],
            orders=orders,
            instruments=instruments,
            ledger=ledger,
            positions=positions,
            leverage=account_leverage(account),
            now=now,
        )

    async def _write(
        self, uow: UnitOfWork, account: TradingAccount, booking: Booking, ledger: Ledger, now: datetime
    ) -> None:
        """Store what a booking changed: orders, fills, positions, ledger entries and balances."""
        for order in booking.changed.values():
            await uow.orders.save(order)
        for record in booking.trades:
            await uow.fills.add(record)
        for position in booking.positions.values():
            await uow.positions.save(position)
        await uow.ledger.record(account.id, ledger.take_entries(), ledger.balances(), now=now)

    async def _load_orders(
        self, uow: UnitOfWork, account: TradingAccount, events: OrderEvents, known: dict[str, Order]
    ) -> tuple[dict[str, Order], dict[str, Instrument]]:
        """The orders the events are about (locked for update), their OCO siblings and the
        instruments they trade; orders of another account are left out."""
        orders: dict[str, Order] = dict(known)
        for order_id, _ in events:
            if order_id not in orders:
                found = await uow.orders.lock_for_update(order_id)
                if found is not None and found.account_id == account.id:
                    orders[order_id] = found
        # B3 of order_booking: a protective order that fills may take its sibling's lock.
        for group, symbol in {(o.oco_group, o.symbol) for o in orders.values() if o.oco_group}:
            for sibling in await uow.orders.open_orders(account_id=account.id, symbol=symbol):
                if sibling.oco_group == group and sibling.id not in orders:
                    orders[sibling.id] = sibling
        instruments = {}
        for order in orders.values():
            if order.symbol not in instruments:
                instruments[order.symbol] = await self.instrument(account, order.symbol)
        return orders, instruments

    async def _protect(self, account: TradingAccount, parent: Order) -> None:
        """The parent filled: place its stop loss and take profit as one OCO pair (reduce-only,
        for what the fill left in the account: an exit never sells more than is free)."""
        instrument = await self.instrument(account, parent.symbol)
        async with self._uow() as uow:
            ledger = Ledger(account.id, await uow.ledger.balances(account.id))
        quantity = parent.filled_quantity
        if instrument.is_spot and parent.side is OrderSide.BUY:
            quantity = sellable(
                ledger, instrument, parent.filled_quantity - parent.fees.get(instrument.base, Decimal(0))
            )
        side = parent.side.opposite
        children: list[tuple[str, OrderType, Decimal | None, Decimal | None]] = []
        if parent.stop_loss is not None:
            children.append(("sl", OrderType.STOP_MARKET, None, parent.stop_loss))
        if parent.take_profit is not None:
            children.append(("tp", OrderType.LIMIT, parent.take_profit, None))
        for tag, order_type, price, stop in children:
            request = OrderRequest(
                symbol=parent.symbol,
                side=side,
                quantity=quantity,
                type=order_type,
                price=price,
                stop_price=stop,
                reduce_only=True,
                client_order_id=f"{parent.client_order_id[:30]}-{tag}",
                bot_id=parent.bot_id,
                account_id=account.id,
            )
            await self.place_child(parent.user_id, account, instrument, request, parent=parent)

    async def place_child(
        self,
        user_id: int,
        account: TradingAccount,
        instrument: Instrument,
        request: OrderRequest,
        *,
        parent: Order,
    ) -> Order | None:
        """A protective order of ``parent``: shares the OCO group ``parent.id``. A spot pair locks
        the base once (on the first child); the sibling pays from that lock when it fills."""
        execution = await self._execution_for(account)
        fingerprint = _fingerprint(request, instrument.symbol, account.id)
        reference = request.price or request.stop_price or Decimal(1)
        try:
            draft = self._draft(
                user_id, account, instrument, request, request.client_order_id or "", fingerprint, reference
            )
        except OrderRejected:
            return None  # the position is below the venue's minimum: nothing to protect
        draft = replace(draft, parent_id=parent.id, oco_group=parent.id)
        now = self._clock.now()
        async with self.account_lock(account.id), self._uow() as uow:
            if await uow.orders.get_by_client_id(account.id, draft.client_order_id) is not None:
                return None
            siblings = [
                o
                for o in await uow.orders.open_orders(account_id=account.id, symbol=instrument.symbol)
                if o.oco_group == parent.id
            ]
            ledger = Ledger(account.id, await uow.ledger.balances_for_update(account.id))
            asset, amount = lock_for(draft, instrument, reference, None)
            if siblings and instrument.is_spot:
                amount = Decimal(0)  # one lock for the pair
            amount = amount.quantize(LOCK_QUANTUM, rounding=ROUND_CEILING)
            if amount > 0:
                amount = min(amount, ledger.balance(asset).free)
                ledger.lock(asset, amount, timestamp=now, reference=draft.id)
            draft = replace(draft, locked_asset=asset, locked_amount=amount)
            await uow.orders.add(draft)
            await uow.ledger.record(account.id, ledger.take_entries(), ledger.balances(), now=now)
            await uow.commit()
        return await self._send(account, instrument, draft, execution)

    async def sync_balances(self, account: TradingAccount) -> dict[str, AssetBalance]:
        """Set an exchange account's ledger to the balances the exchange reports (entries of kind
        ``reset``): done when the account is connected, before it has orders of its own."""
        execution = await self._execution_for(account)
        reported = await execution.balances()  # type: ignore[attr-defined]
        now = self._clock.now()
        async with self.account_lock(account.id), self._uow() as uow:
            ledger = Ledger(account.id, await uow.ledger.balances_for_update(account.id))
            ledger.reset(
                {asset: b.total for asset, b in reported.items() if b.total > 0},
                timestamp=now,
                reference="exchange-sync",
            )
            await uow.ledger.record(account.id, ledger.take_entries(), ledger.balances(), now=now)
            await uow.commit()
        return ledger.balances()

    # --- unknown outcomes ------------------------------------------------------------------

    async def refresh(self, account: TradingAccount, order: Order) -> Order:
        """Book what the venue says of an order it accepted (fills, a cancel or an expiry
        there; fills already booked are not booked again). An order the venue answers it does
        not know is canceled, and what it held locked is released."""
        execution = await self._execution_for(account)
        events = await execution.lookup(order)
        if events is None:
            events = [(order.id, Canceled(timestamp=self._clock.now(), reason="not found at the exchange"))]
        booked = await self.apply(account, events)
        return booked.get(order.id, order)

    async def resolve_unknown(self, account: TradingAccount, order: Order) -> Order:
        """Ask the venue about an order whose submission outcome is unknown (or that was stored
        and never sent): book what it knows; when it has never seen the order, send it again
        under the *same* client order id (the venue refuses a duplicate of a live id)."""
        execution = await self._execution_for(account)
        found = await execution.lookup(order)
        if found is None:
            instrument = await self.instrument(account, order.symbol)
            pending = replace(order, status=OrderStatus.PENDING)
            events = await execution.submit(pending, instrument)
        else:
            events = found
        booked = await self.apply(account, events)
        return booked.get(order.id, order)


def lock_for(
    order: Order, instrument: Instrument, reference: Decimal, position: Position | None
) -> tuple[str, Decimal]:
    """What placing ``order`` locks (step 3): ``(asset, amount)``."""
    if instrument.is_spot:
        if order.side is OrderSide.SELL:
            return instrument.base, order.quantity
        price = order.price if order.type.has_limit_price and order.price is not None else reference
        buffer = Decimal(0) if order.type.has_limit_price else MARKET_BUFFER
        fee = max(instrument.taker_fee, instrument.maker_fee)
        return instrument.quote, order.quantity * price * (1 + fee + buffer)
    # Swaps: margin for the part that opens or increases a position (reduce-only opens nothing).
    held = Decimal(0) if position is None else position.quantity
    signed = order.quantity * order.side.sign
    opening = order.quantity
    if held != 0 and (held > 0) != (signed > 0):
        opening = max(Decimal(0), order.quantity - abs(held))
    if order.reduce_only:
        opening = Decimal(0)
    leverage = position.leverage if position is not None else Decimal(1)
    price = order.price or reference
    fee = order.quantity * price * instrument.taker_fee
    return instrument.margin_asset, opening * price / leverage + fee


def _check_reduce_only(order: Order, position: Position | None, instrument: Instrument) -> None:
    if not order.reduce_only:
        return
    held = Decimal(0) if position is None else position.quantity
    reduces = (held > 0 and order.side is OrderSide.SELL) or (held < 0 and order.side is OrderSide.BUY)
    if not reduces or order.quantity > abs(held):
        raise OrderRejected(
            "A reduce-only order may only reduce the open position"
            f" ({position.side if position else 'flat'} {abs(held)} {instrument.symbol}).",
            details={"reduce_only": True, "position": str(held), "quantity": str(order.quantity)},
        )


def _fingerprint(request: OrderRequest, symbol: str, account_id: str) -> str:
    body = {
        "account_id": account_id,
        "symbol": symbol,
        "side": request.side.value,
        "type": request.type.value,
        "quantity": str(request.quantity.normalize()),
        "price": None if request.price is None else str(request.price.normalize()),
        "stop_price": None if request.stop_price is None else str(request.stop_price.normalize()),
        "time_in_force": request.time_in_force.value,
        "reduce_only": request.reduce_only,
        "stop_loss": None if request.stop_loss is None else str(request.stop_loss.normalize()),
        "take_profit": None if request.take_profit is None else str(request.take_profit.normalize()),
        "bot_id": request.bot_id,
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _same_or_conflict(existing: Order, fingerprint: str) -> Order:
    if existing.fingerprint is not None and existing.fingerprint != fingerprint:
        raise Conflict(
            f"client_order_id {existing.client_order_id!r} was already used for a different order.",
            details={"client_order_id": existing.client_order_id, "order_id": existing.id},
        )
    return existing
