"""Group commit for paper orders: the orders of one account that arrive together share one
transaction.

The paper venue runs in this process, so placing a paper order is one transaction: validate and
lock, match, book, store, commit. Orders of one account are serialised anyway (the ledger is
one set of balances), so a burst of them (a bot entering several symbols, clients firing
orders in parallel) would queue behind one commit each. :class:`PaperQueue` takes every order
waiting when the account's turn comes and handles them in one transaction
(``OrderBatchStore``): the balances, the positions of the batch's symbols and the orders stored
under its given client order ids are read once; each order is checked, locked, matched and
booked in turn on the same in-memory ledger; then the orders (in their final state), fills,
ledger entries, balances and positions are written with one statement per table and committed
once. On SQLite that is two steps without a trip through the driver's thread
(``persistence/sqlite_batches``); elsewhere the unit of work's repositories
(:class:`UnitOfWorkBatchStore`). A batch lingers briefly for orders that are on their way
(``PaperQueue._linger``). Each caller gets its own order back, or its own error:

* an order refused by a check (balance, reduce-only, risk, the venue's minimums, a client order
  id reused with another body) fails alone: every check runs before anything of that order is
  booked, and the ledger's operations are all-or-nothing;
* a client order id given twice (stored before, or earlier in the same batch) answers the first
  order (or 409 with another body), exactly as when the two arrive apart;
* anything else (a bug, the database) fails the whole batch: the transaction rolls back, the
  matching engine forgets the batch's orders, and every caller gets the error. Nothing is
  half stored.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from cryptoorchestrator.config.logging import get_logger
from cryptoorchestrator.core.errors import Conflict, UserError
from cryptoorchestrator.core.records import replace
from cryptoorchestrator.domain.accounts import AccountSnapshot, BatchChanges, TradingAccount
from cryptoorchestrator.domain.instruments import Instrument
from cryptoorchestrator.domain.ledger import Ledger
from cryptoorchestrator.domain.orders import Order, OrderStatus
from cryptoorchestrator.domain.positions import Position
from cryptoorchestrator.services.order_booking import Booking, account_leverage, book_events
from cryptoorchestrator.services.ports import UnitOfWork, UnitOfWorkFactory

if TYPE_CHECKING:
    from cryptoorchestrator.services.execution import ExecutionClient
    from cryptoorchestrator.services.orders import OrderService

_log = get_logger("cryptoorchestrator.orders")

#: The most orders one transaction takes (a bound on how long one commit holds the account).
MAX_BATCH = 64
#: How long a batch waits for the next expected order (``PaperQueue._linger``), in seconds.
LINGER_GAP = 0.001


@dataclass(frozen=True, slots=True)
class PaperItem:
    account: TradingAccount
    instrument: Instrument
    draft: Order
    reference: Decimal
    execution: ExecutionClient
    client_id_given: bool = True


class PaperQueue:
    """The waiting paper orders of one account and the task that drains them."""

    def __init__(self, service: OrderService, account_id: str) -> None:
        self._service = service
        self.account_id = account_id
        self._waiting: list[tuple[PaperItem, asyncio.Future[Order]]] = []
        self._draining = False
        self._task: asyncio.Task[None] | None = None
        self._last_size = 1
        self._arrival: asyncio.Future[bool] | None = None
        self._expected = 1  # how many waiting orders complete the batch being lingered for
        self._last_arrival = 0.0  # loop.time() of the last submit
        self._timer: asyncio.TimerHandle | None = None  # the linger timer

    async def submit(self, item: PaperItem) -> Order:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Order] = loop.create_future()
        self._waiting.append((item, future))
        self._last_arrival = loop.time()
        arrival = self._arrival
        if arrival is not None and len(self._waiting) >= self._expected and not arrival.done():
            arrival.set_result(True)  # the batch is complete: it need not wait for the timer
        if not self._draining:
            self._draining = True
            self._task = asyncio.create_task(self._drain(), name=f"paper-orders-{self.account_id}")
        return await future

    async def _linger(self) -> None:
        """Adaptive group commit: when fewer orders wait than the last batch held, the callers
        that sent those are probably sending again; wait for them while they keep arriving (at
        most ``LINGER_GAP`` seconds after the last one) instead of committing a batch of one and
        then a batch of the rest. A lone caller (last batch of one) never waits. The drain task
        is woken once, when the batch is complete or the gap has passed, not on every arrival."""
        expected = min(self._last_size, MAX_BATCH)
        if len(self._waiting) >= expected:
            return
        loop = asyncio.get_running_loop()
        arrival = self._arrival = loop.create_future()
        self._expected = expected
        self._timer = loop.call_later(LINGER_GAP, self._gap_passed, arrival)
        try:
            await arrival
        finally:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = None
            self._arrival = None

    def _gap_passed(self, arrival: asyncio.Future[bool]) -> None:
        """The linger timer: stop waiting when nothing arrived for ``LINGER_GAP`` seconds,
        else look again when that much time has passed since the last arrival."""
        if arrival.done():
            return
        loop = asyncio.get_running_loop()
        quiet = loop.time() - self._last_arrival
        if quiet >= LINGER_GAP:
            arrival.set_result(False)
        else:
            self._timer = loop.call_later(LINGER_GAP - quiet, self._gap_passed, arrival)

    async def _drain(self) -> None:
        try:
            while self._waiting:
                await self._linger()
                batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
                self._last_size = len(batch)
                try:
                    outcomes, booking = await self._process([item for item, _ in batch])
                except BaseException as error:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(error)
                    if isinstance(error, asyncio.CancelledError):
                        raise
                    continue
                try:
                    # Protective orders of filled parents are placed before the callers hear
                    # back: an order with a stop loss never answers "filled" without its stop.
                    await self._service._after_booking(batch[0][0].account, booking)
                except Exception:
                    _log.exception("protective_orders_failed", account_id=self.account_id)
                finally:
                    for (_, future), outcome in zip(batch, outcomes, strict=True):
                        if future.done():
                            continue
                        if isinstance(outcome, BaseException):
                            future.set_exception(outcome)
                        else:
                            future.set_result(outcome)
        finally:
            self._draining = False

    async def _process(self, items: list[PaperItem]) -> tuple[list[Order | BaseException], Booking]:
        service = self._service
        account = items[0].account
        now = service._clock.now()
        batch = _Batch(account, now)
        symbols = sorted({item.instrument.symbol for item in items})
        # A generated client order id cannot have been used before: only given ones are looked up.
        given = sorted({item.draft.client_order_id for item in items if item.client_id_given})
        async with service.account_lock(account.id), service.batch_store.transaction() as tx:
            state = await tx.load(account.id, symbols, given)
            ledger = Ledger(account.id, state.balances)
            batch.taken.update(state.by_client_id)
            try:
                for item in items:
                    batch.outcomes.append(await self._one(item, ledger, state.positions, batch))
                changes = BatchChanges(account.id, now)
                changes.orders = [batch.booking.changed.get(o.id, o) for o in batch.orders]
                changes.fills = batch.booking.trades
                changes.positions = list(batch.booking.positions.values())
                changes.entries = ledger.take_entries()
                moved = {entry.asset for entry in changes.entries}
                changes.balances = {asset: ledger.balance(asset) for asset in sorted(moved)}
                await tx.write(changes)
            except BaseException:
                for execution, order in batch.sent:
                    await _forget(execution, order)
                raise
        return batch.outcomes, batch.booking

    async def _one(
        self, item: PaperItem, ledger: Ledger, positions: dict[str, Position | None], batch: _Batch
    ) -> Order | BaseException:
        service = self._service
        draft = item.draft
        taken = batch.taken.get(draft.client_order_id)
        if taken is not None:  # stored before, or earlier in this batch: the same order or a 409
            return _same_or_conflict(batch.booking.changed.get(taken.id, taken), draft)
        symbol = item.instrument.symbol
        try:
            order = await service._check_and_lock(
                item.account, item.instrument, draft, item.reference, batch.now, ledger, positions[symbol]
            )
        except UserError as error:
            return error  # refused before anything of it was written
        events = await item.execution.submit(order, item.instrument)
        batch.sent.append((item.execution, order))
        batch.orders.append(order)
        batch.taken[order.client_order_id] = order
        strangers = {order_id for order_id, _ in events if order_id != order.id}
        if strangers:  # pragma: no cover - only OCO children report on siblings; they go elsewhere
            raise RuntimeError(f"paper order {order.id} reported events of other orders: {sorted(strangers)}")
        booking = book_events(
            account=item.account,
            events=list(events),
            orders={order.id: order},
            instruments={symbol: item.instrument},
            ledger=ledger,
            positions=positions,
            leverage=batch.leverage,
            now=batch.now,
        )
        total = batch.booking
        total.changed.update(booking.changed)
        total.trades.extend(booking.trades)
        total.positions.update(booking.positions)
        total.protect.extend(booking.protect)
        return booking.changed.get(order.id, order)


class _Batch:
    """What one batch has done so far."""

    def __init__(self, account: TradingAccount, now: datetime) -> None:
        self.now = now
        self.leverage = account_leverage(account)
        self.booking = Booking()
        self.outcomes: list[Order | BaseException] = []
        self.orders: list[Order] = []  # the new orders, as placed (their final state is in booking)
        self.taken: dict[str, Order] = {}  # client order id -> order
        self.sent: list[tuple[ExecutionClient, Order]] = []


class UnitOfWorkBatchStore:
    """``OrderBatchStore`` over the unit of work's repositories (PostgreSQL, where the account's
    row lock serialises batches across processes; and any test double): one statement per row,
    one transaction."""

    def __init__(self, uow_factory: UnitOfWorkFactory) -> None:
        self._uow = uow_factory

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_UnitOfWorkBatch]:
        async with self._uow() as uow:
            yield _UnitOfWorkBatch(uow)


class _UnitOfWorkBatch:
    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def load(
        self, account_id: str, symbols: Sequence[str], client_order_ids: Sequence[str]
    ) -> AccountSnapshot:
        uow = self._uow
        balances = await uow.ledger.balances_for_update(account_id)
        positions = {symbol: await uow.positions.get(account_id, symbol) for symbol in symbols}
        by_client_id = {}
        for client_id in client_order_ids:
            found = await uow.orders.get_by_client_id(account_id, client_id)
            if found is not None:
                by_client_id[client_id] = found
        return AccountSnapshot(balances=balances, positions=positions, by_client_id=by_client_id)

    async def write(self, changes: BatchChanges) -> None:
        uow = self._uow
        for order in changes.orders:
            if not await uow.orders.add(order):
                raise Conflict("The request conflicts with data stored meanwhile; retry it.")
        for record in changes.fills:
            await uow.fills.add(record)
        for position in changes.positions:
            await uow.positions.save(position)
        await uow.ledger.record(changes.account_id, changes.entries, changes.balances, now=changes.now)
        await uow.commit()


def _same_or_conflict(existing: Order, draft: Order) -> Order | BaseException:
    from cryptoorchestrator.services.orders import _same_or_conflict as check

    try:
        return check(existing, draft.fingerprint or "")
    except UserError as error:
        return error


async def _forget(execution: ExecutionClient, order: Order) -> None:
    """The batch was not stored: the matching engine must not keep its orders resting."""
    await execution.cancel(replace(order, status=OrderStatus.NEW))
