"""Group commit for paper orders: the orders of one account that arrive together share one
transaction.

The paper venue runs in this process, so placing a paper order is one transaction: validate and
lock, store, match, book, commit. Orders of one account are serialised anyway (the ledger is
one set of balances), so a burst of them (a bot entering several symbols, a client firing
orders in parallel) would queue behind one commit each. :class:`PaperQueue` takes every order
waiting when the account's turn comes and handles them in one transaction: the balances and
positions are read once, each order is checked, locked, stored, matched and booked in turn on
the same in-memory ledger, and everything is written and committed once. Each caller gets its
own order back, or its own error:

* an order refused by a check (balance, reduce-only, risk, the venue's minimums, a client order
  id reused with another body) fails alone: every check runs before anything of that order is
  written, and the ledger's operations are all-or-nothing;
* anything else (a bug, the database) fails the whole batch: the transaction rolls back, the
  matching engine forgets the batch's orders, and every caller gets the error. Nothing is
  half stored.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from cryptoorchestrator.config.logging import get_logger
from cryptoorchestrator.core.errors import UserError
from cryptoorchestrator.domain.accounts import TradingAccount
from cryptoorchestrator.domain.instruments import Instrument
from cryptoorchestrator.domain.ledger import Ledger
from cryptoorchestrator.domain.orders import Order, OrderStatus
from cryptoorchestrator.domain.positions import Position
from cryptoorchestrator.services.order_booking import Booking

if TYPE_CHECKING:
    from cryptoorchestrator.services.execution import ExecutionClient
    from cryptoorchestrator.services.orders import OrderService

_log = get_logger("cryptoorchestrator.orders")

#: The most orders one transaction takes (a bound on how long one commit holds the account).
MAX_BATCH = 64


@dataclass(frozen=True, slots=True)
class PaperItem:
    account: TradingAccount
    instrument: Instrument
    draft: Order
    reference: Decimal
    execution: ExecutionClient


class PaperQueue:
    """The waiting paper orders of one account and the task that drains them."""

    def __init__(self, service: OrderService, account_id: str) -> None:
        self._service = service
        self.account_id = account_id
        self._waiting: list[tuple[PaperItem, asyncio.Future[Order]]] = []
        self._draining = False
        self._task: asyncio.Task[None] | None = None

    async def submit(self, item: PaperItem) -> Order:
        future: asyncio.Future[Order] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if not self._draining:
            self._draining = True
            self._task = asyncio.create_task(self._drain(), name=f"paper-orders-{self.account_id}")
        return await future

    async def _drain(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
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
        total = Booking()
        outcomes: list[Order | BaseException] = []
        sent: list[tuple[ExecutionClient, Order]] = []
        async with service.account_lock(account.id), service._uow() as uow:
            ledger = Ledger(account.id, await uow.ledger.balances_for_update(account.id))
            positions: dict[str, Position | None] = {}
            try:
                for item in items:
                    outcomes.append(await self._one(uow, item, ledger, positions, total, sent, now))
                await service._write(uow, account, total, ledger, now)
                await uow.commit()
            except BaseException:
                for execution, order in sent:
                    await _forget(execution, order)
                raise
        return outcomes, total

    async def _one(
        self,
        uow: Any,
        item: PaperItem,
        ledger: Ledger,
        positions: dict[str, Position | None],
        total: Booking,
        sent: list[tuple[ExecutionClient, Order]],
        now: Any,
    ) -> Order | BaseException:
        service = self._service
        symbol = item.instrument.symbol
        if symbol not in positions:
            positions[symbol] = await uow.positions.get(item.account.id, symbol)
        try:
            prepared = await service._prepare(
                uow, item.account, item.instrument, item.draft, item.reference, now,
                loaded=(ledger, positions[symbol]),
            )  # fmt: skip
            if isinstance(prepared, Order):
                return _same_or_conflict(prepared, item.draft)
        except UserError as error:
            return error  # refused before anything of it was written
        order = prepared[0]
        events = await item.execution.submit(order, item.instrument)
        sent.append((item.execution, order))
        booking = await service._book(
            uow, item.account, events, now, ledger=ledger, known={order.id: order}, positions=positions
        )
        total.changed.update(booking.changed)
        total.trades.extend(booking.trades)
        total.positions.update(booking.positions)
        total.protect.extend(booking.protect)
        return booking.changed.get(order.id, order)


def _same_or_conflict(existing: Order, draft: Order) -> Order | BaseException:
    from cryptoorchestrator.services.orders import _same_or_conflict as check

    try:
        return check(existing, draft.fingerprint or "")
    except UserError as error:
        return error


async def _forget(execution: ExecutionClient, order: Order) -> None:
    """The batch was not stored: the matching engine must not keep its orders resting."""
    await execution.cancel(replace(order, status=OrderStatus.NEW))
