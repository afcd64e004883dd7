"""The trading core's background work in a server process.

* On start, the paper venues get back the resting orders stored before a restart, paper orders
  that were stored but never sent are sent (same order, same client order id), and orders whose
  outcome was unknown are looked up (never resent blindly).
* A poller feeds the latest price of every symbol with resting paper orders into the paper
  engine every ``poll_seconds`` (0 turns it off: tests and bots feed candles themselves through
  :meth:`TradingRuntime.feed`).
* Every ``live_poll_seconds`` the open orders of exchange accounts are looked up at their
  exchange by client order id, and what happened there (fills, a cancel, an expiry) is booked;
  an order the exchange does not know is canceled. A submission whose outcome is unknown is
  resolved the same way once it is ``UNKNOWN_GRACE`` old (its sender may still be waiting for
  the answer before that; resolving sends it again, under the same client order id, only when
  the exchange has never seen it).
* Daily equity snapshots are taken, hourly and at start, of every account that holds something
  (its value moves with prices even when it does not trade) and of those that traded here.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from datetime import timedelta
from typing import Any

from cryptoorchestrator.core.clock import Clock
from cryptoorchestrator.core.errors import CryptoOrchestratorError
from cryptoorchestrator.domain.accounts import TradingAccount
from cryptoorchestrator.domain.instruments import Instrument
from cryptoorchestrator.domain.orders import Order, OrderStatus
from cryptoorchestrator.services.accounts import AccountService
from cryptoorchestrator.services.execution import OrderEvents
from cryptoorchestrator.services.orders import OrderService
from cryptoorchestrator.services.paper import PaperExecution
from cryptoorchestrator.services.portfolio import PortfolioService
from cryptoorchestrator.services.ports import UnitOfWork, UnitOfWorkFactory
from cryptoorchestrator.simulator.matching import Bar, MarketState

SNAPSHOT_SECONDS = 3600.0
#: How old a pending or unknown live order must be before the poller resolves it (its sender may
#: still be waiting for the exchange's answer before that).
UNKNOWN_GRACE = timedelta(seconds=60)


class TradingRuntime:
    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        *,
        clock: Clock,
        accounts: AccountService,
        orders: OrderService,
        portfolio: PortfolioService,
        paper: PaperExecution,
        poll_seconds: float,
        logger: Any,
        live_poll_seconds: float = 0.0,
    ) -> None:
        self._uow = uow_factory
        self._clock = clock
        self.accounts = accounts
        self.orders = orders
        self.portfolio = portfolio
        self.paper = paper
        self._poll_seconds = poll_seconds
        self._live_poll_seconds = live_poll_seconds
        self._log = logger
        self._tasks: list[asyncio.Task[None]] = []
        self.touched: set[str] = set()
        orders.listeners.append(self._touch)

    async def _touch(self, user_id: int, order: Order) -> None:
        self.touched.add(order.account_id)

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        await self.recover()
        if self._poll_seconds > 0:
            paper_loop = self._every(self._poll_seconds, self.poll_once, "paper_poll_failed")
            self._tasks.append(asyncio.create_task(paper_loop, name="paper-price-poller"))
        if self._live_poll_seconds > 0:
            live_loop = self._every(self._live_poll_seconds, self.refresh_live_once, "live_order_poll_failed")
            self._tasks.append(asyncio.create_task(live_loop, name="live-order-poller"))
        self._tasks.append(asyncio.create_task(self._snapshot_loop(), name="equity-snapshots"))

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def recover(self) -> None:
        """Rebuild the paper books and settle what a crash left open (module docstring)."""
        async with self._uow() as uow:
            open_orders = await uow.orders.open_orders()
            accounts = await _accounts(uow, (order.account_id for order in open_orders))
        resting: dict[str, list[Order]] = defaultdict(list)
        unsent: list[Order] = []
        for order in open_orders:
            account = accounts.get(order.account_id)
            if account is None:
                continue
            self.touched.add(account.id)
            if account.kind == "paper" and order.status in (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED):
                resting[account.exchange].append(order)
            else:
                unsent.append(order)
        for exchange, orders in resting.items():
            instruments: dict[str, Instrument] = {}
            for order in orders:
                account = accounts[order.account_id]
                instruments[order.symbol] = await self.orders.instrument(account, order.symbol)
            self.paper.restore(exchange, orders, instruments=instruments)
        for order in unsent:
            try:
                await self.orders.resolve_unknown(accounts[order.account_id], order)
            except CryptoOrchestratorError as error:
                self._log.warning("order_recovery_failed", order_id=order.id, error=error.message)

    # --- prices ----------------------------------------------------------------------------

    async def feed(self, exchange: str, market: MarketState | Bar) -> dict[str, Order]:
        """Match the resting paper orders of ``exchange`` against a quote or closed candle and
        book what happened. Returns the changed orders by id."""
        return await self.book(self.paper.feed(exchange, market))

    async def book(self, events: OrderEvents) -> dict[str, Order]:
        """Book events of orders of any accounts (grouped per account, in order)."""
        if not events:
            return {}
        by_account: dict[str, OrderEvents] = defaultdict(list)
        async with self._uow() as uow:
            account_of: dict[str, str] = {}
            for order_id in dict.fromkeys(order_id for order_id, _ in events):
                order = await uow.orders.get(order_id)
                if order is not None:
                    account_of[order_id] = order.account_id
            accounts = await _accounts(uow, account_of.values())
        for order_id, event in events:
            if account_of.get(order_id) in accounts:
                by_account[account_of[order_id]].append((order_id, event))
        changed: dict[str, Order] = {}
        for account_id, account_events in by_account.items():
            changed.update(await self.orders.apply(accounts[account_id], account_events))
        return changed

    async def poll_once(self) -> None:
        for exchange, symbols in self.paper.resting().items():
            for symbol in symbols:
                try:
                    quote = await self.paper.quote(exchange, symbol)
                    await self.feed(exchange, quote)
                except CryptoOrchestratorError as error:
                    self._log.warning(
                        "paper_price_unavailable", exchange=exchange, symbol=symbol, error=error.message
                    )

    async def _every(self, seconds: float, work: Callable[[], Awaitable[Any]], failure: str) -> None:
        """Run ``work`` every ``seconds`` for good; a round that fails is logged as ``failure``."""
        while True:
            await asyncio.sleep(seconds)
            try:
                await work()
            except Exception:
                self._log.exception(failure)

    # --- live orders -----------------------------------------------------------------------

    async def refresh_live_once(self) -> dict[str, Order]:
        """One round of the live order poller (module docstring): the orders it changed, by id.
        An exchange that cannot be reached is logged and left for the next round."""
        now = self._clock.now()
        async with self._uow() as uow:
            open_orders = await uow.orders.open_orders(kinds=["exchange"])
            accounts = await _accounts(uow, (order.account_id for order in open_orders))
        changed: dict[str, Order] = {}
        for order in open_orders:
            account = accounts.get(order.account_id)
            if account is None or not account.active:
                continue
            try:
                if order.status in (OrderStatus.PENDING, OrderStatus.UNKNOWN):
                    if now - order.updated_at >= UNKNOWN_GRACE:
                        resolved = await self.orders.resolve_unknown(account, order)
                        if resolved != order:
                            changed[order.id] = resolved
                    continue
                refreshed = await self.orders.refresh(account, order)
                if refreshed != order:
                    changed[order.id] = refreshed
            except CryptoOrchestratorError as error:
                self._log.warning(
                    "live_order_refresh_failed", order_id=order.id, account_id=account.id, error=error.message
                )
        return changed

    # --- snapshots -------------------------------------------------------------------------

    async def snapshot_all(self) -> int:
        """Store today's equity of the accounts in the module docstring; the number stored."""
        async with self._uow() as uow:
            accounts = {account.id: account for account in await uow.accounts.holding()}
            accounts.update(await _accounts(uow, self.touched - accounts.keys()))
        count = 0
        for account_id in sorted(accounts):
            account = accounts[account_id]
            try:
                await self.portfolio.snapshot(account)
                count += 1
            except CryptoOrchestratorError as error:
                self._log.warning("equity_snapshot_failed", account_id=account_id, error=error.message)
        return count

    async def _snapshot_loop(self) -> None:
        while True:
            try:
                await self.snapshot_all()
            except Exception:
                self._log.exception("equity_snapshot_round_failed")
            await asyncio.sleep(SNAPSHOT_SECONDS)


async def _accounts(uow: UnitOfWork, account_ids: Iterable[str]) -> dict[str, TradingAccount]:
    """The stored accounts of ``account_ids`` (each read once; one no longer stored is left out)."""
    accounts: dict[str, TradingAccount] = {}
    for account_id in dict.fromkeys(account_ids):
        account = await uow.accounts.get(account_id)
        if account is not None:
            accounts[account_id] = account
    return accounts
