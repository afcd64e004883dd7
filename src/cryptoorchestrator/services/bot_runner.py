"""The bot runner: holds bots through database leases and runs each one (``BotSupervisor``).

One runner per process (the API server's, or ``cryptoorchestrator runner``), named
``runner_id`` = ``host:pid:random``. Rules:

L1 *Leases.* Every ``heartbeat`` seconds (and at once when woken) the runner renews the leases
   it holds (ttl ``lease`` seconds), drops the bots whose lease it lost (another runner took
   them after it expired: their sessions leave at their next safe point, and their paper
   orders leave this process's paper venue), re-reads its bots (a desired-state or risk change reaches the
   session between two candles), then takes free leases of bots that want a runner, up to
   ``capacity``. A dead runner's bots are therefore taken over at most ``lease + heartbeat``
   seconds after it died. Sessions check the lease again before acting on each candle.
L2 *Which bots.* Bots whose desired state is running or paused, unless their status is
   ``error`` (an error waits for the user: starting the bot again, or any action on it, which
   wakes the runner); a woken bot whose desired state is stopped but whose status is not
   (it was stopping when its runner died) is taken to finish the stop.
L3 *Restart.* On start the process has already run ``TradingRuntime.recover()`` (bootstrap
   starts the trading runtime first): the bots it takes resume from their last candle, a live
   one after reconciling with its exchange (``bot_reconcile``).
L4 *Shutdown* stops the sessions at their next safe point (between two candles: a task
   cancelled inside a database transaction could keep the database locked; cancelled only if
   one does not get there within :data:`SETTLE_SECONDS`) and releases their leases, so another
   runner takes them at its next heartbeat instead of after the ttl. Statuses stay as they are
   (the bots still want to run).
L5 *Events.* The order service's listener hands every change of a held bot's order to its
   session (fills are recorded, and run the watchdog).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
from collections.abc import Iterable
from datetime import timedelta
from decimal import Decimal
from typing import Any

from cryptoorchestrator.core.clock import Clock
from cryptoorchestrator.domain.bots import Bot, BotStatus
from cryptoorchestrator.domain.orders import Order
from cryptoorchestrator.services.bot_feeds import CandleSource
from cryptoorchestrator.services.bot_journal import BotJournal
from cryptoorchestrator.services.bot_orders import ExecutionFor
from cryptoorchestrator.services.bot_session import BotSession, PaperFeedGate, RunnerContext
from cryptoorchestrator.services.orders import OrderService
from cryptoorchestrator.services.paper import PaperExecution
from cryptoorchestrator.services.portfolio import PortfolioService
from cryptoorchestrator.services.ports import UnitOfWorkFactory
from cryptoorchestrator.services.trading_runtime import TradingRuntime
from cryptoorchestrator.strategies.registry import StrategyRegistry

#: How long a stopping runner waits for a bot to reach a safe point before cancelling it.
SETTLE_SECONDS = 30.0


def new_runner_id() -> str:
    """``host:pid:random``: unique per process, readable in the leases table."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class BotRunner:
    """Holds and runs bots (module docstring); implements ``BotSupervisor``."""

    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        *,
        clock: Clock,
        orders: OrderService,
        portfolio: PortfolioService,
        trading: TradingRuntime,
        paper: PaperExecution,
        execution_for: ExecutionFor,
        registry: StrategyRegistry,
        candles: CandleSource,
        logger: Any,
        heartbeat_seconds: float = 5.0,
        lease_seconds: float = 15.0,
        capacity: int = 100,
        window: int = 1000,
        slippage_bps: Decimal = Decimal(5),
        runner_id: str | None = None,
    ) -> None:
        self._uow = uow_factory
        self._clock = clock
        self._orders = orders
        self._log = logger
        self.heartbeat = heartbeat_seconds
        self.ttl = timedelta(seconds=lease_seconds)
        self.capacity = capacity
        self.runner_id = runner_id or new_runner_id()
        self.journal = BotJournal(uow_factory, clock=clock)
        self.context = RunnerContext(
            uow_factory=uow_factory,
            clock=clock,
            orders=orders,
            portfolio=portfolio,
            trading=trading,
            paper=paper,
            execution_for=execution_for,
            registry=registry,
            candles=candles,
            journal=self.journal,
            logger=logger,
            runner_id=self.runner_id,
            window=window,
            slippage_bps=slippage_bps,
            feed_gate=PaperFeedGate(trading),
        )
        self._sessions: dict[str, tuple[BotSession, asyncio.Task[str]]] = {}
        self._woken: set[str] = set()
        self._wakeup = asyncio.Event()
        self._launched = asyncio.Event()
        self._tick_lock = asyncio.Lock()
        self._loop_task: asyncio.Task[None] | None = None
        self._closing = False

    # --- BotSupervisor ------------------------------------------------------------------------

    async def wake(self, bot_id: str) -> None:
        """The bot's desired state changed: act on it at the next tick (soon; never blocks)."""
        self._woken.add(bot_id)
        self._wakeup.set()

    # --- lifecycle ----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._loop_task is not None and not self._loop_task.done()

    async def start(self) -> None:
        """L3: start the lease loop (its first tick runs at once)."""
        if self.running:
            return
        self._closing = False
        if self._on_order not in self._orders.listeners:
            self._orders.listeners.append(self._on_order)
        self._loop_task = asyncio.create_task(self._loop(), name=f"bot-runner-{self.runner_id}")
        self._log.info("bot_runner_started", runner_id=self.runner_id, capacity=self.capacity)

    async def stop(self) -> None:
        """L4: stop the loop and the sessions between two steps (a task cancelled inside a
        database transaction could keep the database locked), then release the leases."""
        self._closing = True
        self._wakeup.set()
        task, self._loop_task = self._loop_task, None
        if task is not None:
            await self._settle([task])
        async with self._tick_lock:
            sessions, self._sessions = dict(self._sessions), {}
            for session, _ in sessions.values():
                session.shutdown()
            await self._settle([entry[1] for entry in sessions.values()])
            if sessions:
                async with self._uow() as uow:
                    for bot_id in sessions:
                        await uow.bot_leases.release(bot_id, self.runner_id)
                    await uow.commit()
        with contextlib.suppress(ValueError):
            self._orders.listeners.remove(self._on_order)
        closer = getattr(self.context.candles, "aclose", None)
        if closer is not None:
            await closer()

    async def _loop(self) -> None:
        while not self._closing:
            self._wakeup.clear()
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                self._log.exception("bot_runner_tick_failed", runner_id=self.runner_id)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.heartbeat):
                    await self._wakeup.wait()

    # --- one round ----------------------------------------------------------------------------

    async def tick(self) -> None:
        """One round of L1/L2 (the loop runs it every heartbeat; tests may call it)."""
        async with self._tick_lock:
            now = self._clock.now()
            async with self._uow() as uow:
                held = set(await uow.bot_leases.renew(self.runner_id, now=now, ttl=self.ttl))
                await uow.commit()
            await self._drop(held)
            await self._refresh()
            await self._acquire()

    async def _drop(self, held: set[str]) -> None:
        for bot_id, (session, task) in list(self._sessions.items()):
            if task.done():
                del self._sessions[bot_id]
            elif bot_id not in held:
                self._log.warning("bot_lease_lost", bot_id=bot_id, runner_id=self.runner_id)
                del self._sessions[bot_id]
                session.shutdown("lease_lost")  # it forgets its paper orders on the way out

    async def _refresh(self) -> None:
        if not self._sessions:
            return
        async with self._uow() as uow:
            current = {bot_id: await uow.bots.get(bot_id) for bot_id in self._sessions}
        for bot_id, bot in current.items():
            session = self._sessions[bot_id][0]
            if bot is None:  # deleted under us
                del self._sessions[bot_id]
                session.shutdown()
            else:
                session.update(bot)

    async def _acquire(self) -> None:
        woken, self._woken = self._woken, set()
        async with self._uow() as uow:
            candidates = list(await uow.bots.wanted_running())
            listed = {bot.id for bot in candidates}
            for bot_id in sorted(woken - listed):
                bot = await uow.bots.get(bot_id)
                if bot is not None:
                    candidates.append(bot)
        for bot in candidates:
            if bot.id in self._sessions or not _wants_runner(bot, woken):
                continue
            if len(self._sessions) >= self.capacity:
                return
            async with self._uow() as uow:
                taken = await uow.bot_leases.acquire(
                    bot.id, self.runner_id, now=self._clock.now(), ttl=self.ttl
                )
                await uow.commit()
            if taken:
                self._launch(bot)

    def _launch(self, bot: Bot) -> None:
        session = BotSession(self.context, bot)
        task = asyncio.create_task(self._drive(session), name=f"bot-{bot.id}")
        self._sessions[bot.id] = (session, task)
        self._launched.set()
        self._log.info("bot_taken", bot_id=bot.id, runner_id=self.runner_id)

    async def _drive(self, session: BotSession) -> str:
        outcome = await session.run()
        if outcome != "lease_lost":
            async with self._uow() as uow:
                await uow.bot_leases.release(session.bot.id, self.runner_id)
                await uow.commit()
        self._log.info("bot_released", bot_id=session.bot.id, outcome=outcome, runner_id=self.runner_id)
        return outcome

    async def _settle(self, tasks: Iterable[asyncio.Task[Any]]) -> None:
        """Wait for ``tasks`` to finish on their own (bounded); cancel what is still running."""
        pending = [task for task in tasks if not task.done()]
        if pending:
            await asyncio.wait(pending, timeout=max(SETTLE_SECONDS, self.heartbeat * 2))
        for task in pending:
            if not task.done():
                task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # --- listeners and inspection -------------------------------------------------------------

    async def _on_order(self, user_id: int, order: Order) -> None:
        """L5."""
        entry = self._sessions.get(order.bot_id or "")
        if entry is None:
            return
        try:
            await entry[0].on_order(order)
        except Exception:  # an event that cannot be written must not break the booking path
            self._log.exception("bot_order_event_failed", bot_id=order.bot_id, order_id=order.id)

    def held(self) -> list[str]:
        """The bots this runner runs now."""
        return sorted(bot_id for bot_id, (_, task) in self._sessions.items() if not task.done())

    def session(self, bot_id: str) -> BotSession | None:
        entry = self._sessions.get(bot_id)
        return None if entry is None else entry[0]

    async def wait_for_session(self, bot_id: str, *, seconds: float = 30.0) -> BotSession:
        """Wait (at most ``seconds``) until this runner runs ``bot_id``."""
        async with asyncio.timeout(seconds):
            while (session := self.session(bot_id)) is None:
                self._launched.clear()
                await self._launched.wait()
        return session

    async def wait_ready(self, bot_id: str, *, seconds: float = 30.0) -> BotSession:
        """Wait (at most ``seconds``) until this runner has started ``bot_id`` (reconciled, its
        status set) or its session ended."""
        session = await self.wait_for_session(bot_id, seconds=seconds)
        async with asyncio.timeout(seconds):
            await session.ready.wait()
        return session

    async def wait_for_candle(self, bot_id: str, timestamp_ms: int, *, seconds: float = 30.0) -> bool:
        """Wait (at most ``seconds``) until the runner runs ``bot_id`` and has processed the
        candle opened at ``timestamp_ms``; False when its session ended first."""
        session = await self.wait_for_session(bot_id, seconds=seconds)
        return await session.wait_processed(timestamp_ms, seconds=seconds)

    async def wait_finished(self, bot_id: str, *, seconds: float = 30.0) -> str | None:
        """Wait (at most ``seconds``) until the session of ``bot_id`` ended; its outcome."""
        entry = self._sessions.get(bot_id)
        if entry is None:
            return None
        async with asyncio.timeout(seconds):
            return await asyncio.shield(entry[1])


def _wants_runner(bot: Bot, woken: set[str]) -> bool:
    """L2."""
    if bot.is_active:
        return bot.status is not BotStatus.ERROR or bot.id in woken
    return bot.id in woken and bot.status not in (BotStatus.STOPPED, BotStatus.ERROR)
