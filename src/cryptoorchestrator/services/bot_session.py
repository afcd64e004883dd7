"""One running bot: its candle loop, its status and its persisted state (held by a BotRunner).

Per closed candle, in this order (the kernel's order of events with ``fill_at="close"``):

K1 *Paper venue first.* A paper bot feeds the candle to the paper venue
   (``TradingRuntime.feed``) before anything else, so resting stops and take profits fill as
   the candle says (the kernel's R5a/b). Each candle is fed once per process and stream (two
   bots on one symbol do not feed it twice), and a bot records that it fed it before acting, so
   that a candle replayed after a crash is not fed again.
K2 *Lease fence.* The bot acts only while its runner holds its lease.
K3 *Position.* The position as booked is the truth: a position closed by its stop or take
   profit clears the bot's view; an open one it did not know is adopted (entry price as
   booked). The trailing anchor moves with the candle's extreme only for positions opened
   before the candle (R5c).
K4 *Decision and intents.* The strategy's decision on the window ending with the candle
   (``engine.signals``), the rules of ``engine.bot_logic`` (R1/R2, R4), carried out through the
   order service with deterministic client order ids (``bot_orders`` O1). While paused, no new
   entries; exits and protection go on.
K5 *Protection.* A new position gets its stop (and take profit) from its fill price; the stop
   moves when the trailing level is tighter (cancel, then a new one); the watchdog re-arms a
   missing stop, or flattens when the price is already through it or the venue refuses it
   (R8); orphaned protective orders of a flat symbol are cancelled.
K6 *State.* ``state["symbols"]`` (per symbol: last candle, fed candle, the position's entry and
   best price, its parent order) and ``last_candle_at`` are written after every candle: the
   resume point.

Statuses: ``starting`` (reconciling) -> ``running`` | ``paused``; ``stopping`` -> ``stopped``
(with the positions closed when ``state["close_positions"]`` asks); ``error`` with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from cryptoorchestrator.core.clock import Clock
from cryptoorchestrator.core.errors import CryptoOrchestratorError, OrderRejected
from cryptoorchestrator.domain.bots import DESIRED_PAUSED, DESIRED_RUNNING, Bot, BotStatus
from cryptoorchestrator.domain.orders import Order
from cryptoorchestrator.engine import bot_logic as logic
from cryptoorchestrator.engine.signals import Candle, SignalEngine
from cryptoorchestrator.marketdata.live import ClosedCandle
from cryptoorchestrator.services import bot_orders as bot_orders_module
from cryptoorchestrator.services.bot_feeds import CandleSource, CandleStream
from cryptoorchestrator.services.bot_guard import BotGuard, SymbolBook
from cryptoorchestrator.services.bot_journal import BotJournal
from cryptoorchestrator.services.bot_orders import BotOrders, ExecutionFor
from cryptoorchestrator.services.bot_reconcile import ReconcileFailed, reconcile
from cryptoorchestrator.services.orders import MARKET_BUFFER, OrderService
from cryptoorchestrator.services.paper import PaperExecution
from cryptoorchestrator.services.portfolio import PortfolioService
from cryptoorchestrator.services.ports import UnitOfWorkFactory
from cryptoorchestrator.services.trading_runtime import TradingRuntime
from cryptoorchestrator.simulator.matching import Bar
from cryptoorchestrator.strategies.registry import StrategyRegistry

_ZERO = Decimal(0)


class LeaseLost(Exception):
    """Another runner holds the bot now (K2): stop acting at once."""


class ShutdownRequested(Exception):
    """The runner is shutting down: leave between two candles, status unchanged."""


def to_decimal(value: float) -> Decimal:
    """A candle float as the Decimal of its shortest round-tripping text (the replay's rule)."""
    return Decimal(str(value))


def candle_time(timestamp_ms: int) -> datetime:
    return datetime.fromtimestamp(timestamp_ms / 1000, tz=UTC)


def engine_candle(candle: ClosedCandle) -> Candle:
    return Candle(candle.timestamp, candle.open, candle.high, candle.low, candle.close, candle.volume)


def to_bar(candle: ClosedCandle) -> Bar:
    return Bar(
        symbol=candle.symbol,
        open=to_decimal(candle.open),
        high=to_decimal(candle.high),
        low=to_decimal(candle.low),
        close=to_decimal(candle.close),
        volume=to_decimal(candle.volume),
        timestamp=candle_time(candle.timestamp),
    )


class PaperFeedGate:
    """K1: feeds each candle of a stream to the paper venue once per process."""

    def __init__(self, trading: TradingRuntime) -> None:
        self._trading = trading
        self._fed: dict[tuple[str, str, str], int] = {}

    async def feed(self, exchange: str, timeframe: str, bar: Bar, timestamp_ms: int) -> None:
        key = (exchange, bar.symbol, timeframe)
        if self._fed.get(key, -1) >= timestamp_ms:
            return
        self._fed[key] = timestamp_ms
        await self._trading.feed(exchange, bar)


@dataclass
class RunnerContext:
    """What every bot session of a runner shares."""

    uow_factory: UnitOfWorkFactory
    clock: Clock
    orders: OrderService
    portfolio: PortfolioService
    trading: TradingRuntime
    paper: PaperExecution
    execution_for: ExecutionFor
    registry: StrategyRegistry
    candles: CandleSource
    journal: BotJournal
    logger: Any
    runner_id: str
    window: int
    slippage_bps: Decimal
    feed_gate: PaperFeedGate


@dataclass
class _Control:
    stop: bool = False
    watchdog: bool = False
    desired: str | None = None
    shutdown: str | None = None


class BotSession:
    """Runs one bot while its runner holds the lease (module docstring)."""

    def __init__(self, context: RunnerContext, bot: Bot) -> None:
        self.ctx = context
        self.bot = bot
        self.desired = bot.desired
        self.books: dict[str, SymbolBook] = {}
        self.processed_ms: int | None = None
        self.outcome: str | None = None
        self._queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._control = _Control()
        self._progress = asyncio.Condition()
        #: Set once the bot is started (reconciled, status running or paused) or its session ended.
        self.ready = asyncio.Event()
        self._filled: dict[str, Decimal] = {}
        self._closes: dict[str, Decimal] = {}
        self.orders: BotOrders | None = None
        self.engine: SignalEngine | None = None
        self.guard: BotGuard | None = None

    # --- control (called by the runner) -------------------------------------------------------

    def update(self, bot: Bot) -> None:
        """The bot as stored now: a change of its desired state is acted on between candles."""
        self.bot = replace(bot, state=self.bot.state)
        if bot.desired != self.desired:
            self._control.desired = bot.desired
            self._queue.put_nowait(("control", None))

    def shutdown(self, reason: str = "shutdown") -> None:
        """Leave at the next safe point, between two candles (never in the middle of a database
        transaction: a cancelled transaction can hold the database's write lock). ``reason`` is
        ``"shutdown"`` (the runner stops: the lease is released) or ``"lease_lost"``."""
        self._control.shutdown = reason
        self._queue.put_nowait(("control", None))

    def request_watchdog(self) -> None:
        self._control.watchdog = True
        self._queue.put_nowait(("control", None))

    async def on_order(self, order: Order) -> None:
        """An order of this bot changed (the order service's listener): record fills (K5: the
        watchdog runs after every fill)."""
        seen = self._filled.get(order.id, _ZERO)
        if order.filled_quantity > seen:
            await self.ctx.journal.event(
                self.bot,
                "fill",
                f"{order.side.value} {order.filled_quantity - seen} {order.symbol} at {order.average_price}",
                {
                    "order_id": order.id,
                    "client_order_id": order.client_order_id,
                    "symbol": order.symbol,
                    "side": order.side.value,
                    "quantity": order.filled_quantity - seen,
                    "filled_quantity": order.filled_quantity,
                    "average_price": order.average_price,
                    "status": order.status.value,
                },
            )
            self.request_watchdog()
        if order.is_terminal:
            self._filled.pop(order.id, None)
        else:
            self._filled[order.id] = order.filled_quantity

    async def wait_processed(self, timestamp_ms: int, *, seconds: float) -> bool:
        """Wait (at most ``seconds``) until a candle at or after ``timestamp_ms`` was processed
        (or the session ended)."""
        async with asyncio.timeout(seconds), self._progress:
            await self._progress.wait_for(
                lambda: (
                    self.outcome is not None
                    or (self.processed_ms is not None and self.processed_ms >= timestamp_ms)
                )
            )
        return self.processed_ms is not None and self.processed_ms >= timestamp_ms

    async def _notify(self) -> None:
        async with self._progress:
            self._progress.notify_all()

    # --- lifecycle ----------------------------------------------------------------------------

    async def run(self) -> str:
        """The bot's whole life under this runner; returns the outcome (``stopped``, ``error``,
        ``lease_lost``, ``shutdown``, ``ended``)."""
        try:
            self.outcome = await self._run()
        except LeaseLost:
            self.outcome = "lease_lost"
            if self.orders is not None:
                await self.orders.forget_paper(self.ctx.clock.now())
        except ShutdownRequested:
            self.outcome = "shutdown"
        except ReconcileFailed as error:
            self.outcome = await self._fail(error.message)
        except CryptoOrchestratorError as error:
            self.outcome = await self._fail(f"{error.code}: {error.message}")
        except asyncio.CancelledError:
            self.outcome = "cancelled"
            raise
        except Exception as error:
            self.ctx.logger.exception("bot_failed", bot_id=self.bot.id)
            self.outcome = await self._fail(f"unexpected {type(error).__name__}: {error}")
        finally:
            self.ready.set()
            await self._notify()
        return self.outcome

    async def _run(self) -> str:
        bot = await self.ctx.journal.load(self.bot.id)
        if bot is None:
            return "ended"
        self.bot, self.desired = bot, bot.desired
        await self._prepare()
        if not bot.is_active:
            await self._finish_stop()
            return "stopped"
        await self._start()
        self.ready.set()
        if await self._loop():
            await self._finish_stop()
            return "stopped"
        return "ended"

    async def _prepare(self) -> None:
        async with self.ctx.uow_factory() as uow:
            account = await uow.accounts.get(self.bot.account_id)
        if account is None:
            raise ReconcileFailed("The bot's trading account no longer exists.")
        self.orders = BotOrders(
            bot=self.bot,
            account=account,
            uow_factory=self.ctx.uow_factory,
            orders=self.ctx.orders,
            paper=self.ctx.paper,
            execution_for=self.ctx.execution_for,
            journal=self.ctx.journal,
        )
        symbols = self.bot.state.get("symbols") or {}
        self.books = {symbol: SymbolBook.from_json(symbols.get(symbol)) for symbol in self.bot.symbols}
        self.guard = BotGuard(lambda: self.bot, self.orders, self.books, self.ctx.journal)

    async def _status(self, status: BotStatus, message: str, **fields: Any) -> None:
        if self.bot.status is status and not fields:
            return
        self.bot = await self.ctx.journal.update(self.bot.id, status=status, **fields)
        await self.ctx.journal.event(self.bot, "state", message, {"status": status.value})

    async def _start(self) -> None:
        assert self.orders is not None
        fresh = self.bot.status in (BotStatus.STARTING, BotStatus.STOPPED, BotStatus.ERROR)
        strategy = self.ctx.registry.create(self.bot.strategy_type)
        self.engine = SignalEngine(strategy, self.bot.params, window=self.ctx.window)
        await self._status(BotStatus.STARTING, f"starting on runner {self.ctx.runner_id}")
        restored = await self.orders.restore_paper()
        if restored:
            await self.ctx.journal.event(self.bot, "reconcile", f"{restored} resting paper order(s) restored")
        if not self.orders.is_paper:
            report = await reconcile(self.orders, now=self.ctx.clock.now())
            await self.ctx.journal.event(
                self.bot, "reconcile", "reconciled with the exchange", report.as_dict()
            )
        await self._set_leverage()
        status = BotStatus.PAUSED if self.desired == DESIRED_PAUSED else BotStatus.RUNNING
        extra: dict[str, Any] = {"error": None}
        if fresh or self.bot.started_at is None:
            extra["started_at"] = self.ctx.clock.now()
        await self._status(status, f"{status.value} on runner {self.ctx.runner_id}", **extra)

    async def _set_leverage(self) -> None:
        assert self.orders is not None
        leverage = self.bot.risk.leverage
        for symbol in self.bot.symbols:
            instrument = await self.orders.instrument(symbol)
            chosen = self.orders.account.settings.get("leverage", {}).get(instrument.symbol)
            if instrument.is_spot or Decimal(str(chosen or 1)) == leverage:
                continue
            await self.ctx.portfolio.set_leverage(
                self.bot.user_id, instrument.symbol, leverage, account_id=self.orders.account.id
            )

    async def _fail(self, reason: str) -> str:
        self.ctx.logger.warning("bot_error", bot_id=self.bot.id, reason=reason)
        with contextlib.suppress(CryptoOrchestratorError):
            self.bot = await self.ctx.journal.update(self.bot.id, status=BotStatus.ERROR, error=reason)
            await self.ctx.journal.event(self.bot, "error", reason)
        return "error"

    async def _finish_stop(self) -> None:
        assert self.orders is not None
        await self._status(BotStatus.STOPPING, "stopping")
        latest = await self.ctx.journal.load(self.bot.id)
        close = bool((latest or self.bot).state.get("close_positions"))
        if close:
            stamp = int(self.ctx.clock.timestamp() * 1000)
            for symbol in self.bot.symbols:
                order = await self.orders.close(symbol, stamp, bot_orders_module.CLOSE_ON_STOP)
                if order is not None:
                    await self.ctx.journal.event(
                        self.bot,
                        "order",
                        f"closed {symbol} on stop: {order.status.value}",
                        {"order_id": order.id},
                    )
        await self._status(
            BotStatus.STOPPED, "stopped", stopped_at=self.ctx.clock.now(), state={"close_positions": False}
        )

    # --- the candle loop ----------------------------------------------------------------------

    async def _loop(self) -> bool:
        """Candles and control messages until a stop is asked (True) or the lease is lost."""
        assert self.engine is not None
        streams: list[CandleStream] = []
        pumps: list[asyncio.Task[None]] = []
        try:
            for symbol in self.bot.symbols:
                book = self.books[symbol]
                stream = await self.ctx.candles.open(
                    self.bot.exchange,
                    symbol,
                    self.bot.timeframe,
                    after_ms=book.last_ms,
                    warmup=self.ctx.window,
                )
                streams.append(stream)
                self.engine.warm(symbol, [engine_candle(c) for c in stream.history])
                pumps.append(asyncio.create_task(self._pump(stream), name=f"bot-{self.bot.id}-{symbol}"))
            while True:
                kind, payload = await self._queue.get()
                if kind == "candle":
                    await self._on_candle(payload)
                elif kind == "error":
                    raise payload
                if await self._controls():
                    return True
        finally:
            for pump in pumps:
                pump.cancel()
            for pump in pumps:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await pump
            for stream in streams:
                await stream.aclose()

    async def _pump(self, stream: CandleStream) -> None:
        try:
            async for candle in stream.candles:
                await self._queue.put(("candle", candle))
        except asyncio.CancelledError:
            raise
        except Exception as error:
            await self._queue.put(("error", error))

    async def _controls(self) -> bool:
        control = self._control
        if control.shutdown == "lease_lost":
            raise LeaseLost(self.bot.id)
        if control.shutdown is not None:
            raise ShutdownRequested(self.bot.id)
        if control.desired is not None:
            self.desired, control.desired = control.desired, None
            if self.desired in (DESIRED_RUNNING, DESIRED_PAUSED):
                status = BotStatus.PAUSED if self.desired == DESIRED_PAUSED else BotStatus.RUNNING
                await self._status(status, status.value)
            else:
                control.stop = True
        if control.stop:
            return True
        if control.watchdog:
            control.watchdog = False
            await self._check_lease()
            for symbol, book in self.books.items():
                if book.last_ms is not None and symbol in self._closes:
                    await self._guarded(symbol, book.last_ms, self._closes[symbol])
        return False

    async def _check_lease(self) -> None:
        async with self.ctx.uow_factory() as uow:
            holder = await uow.bot_leases.holder(self.bot.id, now=self.ctx.clock.now())
        if holder is None or holder.runner_id != self.ctx.runner_id:
            raise LeaseLost(self.bot.id)

    async def _save(self, **fields: Any) -> None:
        state = {"symbols": {symbol: book.to_json() for symbol, book in self.books.items()}}
        self.bot = await self.ctx.journal.update(self.bot.id, state=state, **fields)

    async def _on_candle(self, candle: ClosedCandle) -> None:
        assert self.orders is not None
        assert self.engine is not None
        symbol, stamp = candle.symbol, candle.timestamp
        book = self.books[symbol]
        if book.last_ms is not None and stamp <= book.last_ms:
            return  # F1/S4: processed before
        bar = to_bar(candle)
        await self._check_lease()  # K2
        if self.orders.is_paper and (book.fed_ms is None or stamp > book.fed_ms):
            await self.ctx.feed_gate.feed(self.orders.account.exchange, self.bot.timeframe, bar, stamp)  # K1
            book.fed_ms = stamp
            await self._save()
        await self.orders.refresh()
        position = await self._sync(symbol, bar, stamp)  # K3
        decision = self.engine.on_candle(symbol, engine_candle(candle))  # K4
        view = await self._view(symbol, bar.close)
        intents = logic.on_decision(
            decision, position, self.bot.risk, view, entries_allowed=self.desired == DESIRED_RUNNING
        )
        if intents or not decision.is_quiet:
            await self.ctx.journal.event(
                self.bot,
                "signal",
                ", ".join(name for name, on in decision.as_dict().items() if on is True) or "no signal",
                {**decision.as_dict(), "intents": [_describe(intent) for intent in intents]},
            )
        for intent in intents:
            await self._act(intent, stamp, bar.close)
        await self._guarded(symbol, stamp, bar.close)  # K5
        book.last_ms = stamp
        self._closes[symbol] = bar.close
        await self._save(last_candle_at=candle_time(stamp))  # K6
        self.processed_ms = max(stamp, self.processed_ms or stamp)
        await self._notify()

    async def _sync(self, symbol: str, bar: Bar, stamp: int) -> logic.PositionState | None:
        """K3."""
        assert self.orders is not None
        book = self.books[symbol]
        booked = await self.orders.holding(symbol, bar.close)
        if booked is None:  # flat, or dust (R9)
            book.clear()
            return None
        quantity = booked.quantity
        side = logic.LONG if quantity > 0 else logic.SHORT
        if book.position is None or book.position.side != side:
            book.position = logic.PositionState.opened(side, abs(quantity), booked.entry_price or bar.close)
            parent = await self.orders.latest_entry(symbol)
            book.parent_id = None if parent is None else parent.id
            book.opened_ms = stamp
            await self.ctx.journal.event(
                self.bot, "reconcile", f"adopted the open {symbol} position", {"quantity": quantity}
            )
            return book.position
        book.position = replace(book.position, quantity=abs(quantity))
        if book.opened_ms is None or stamp > book.opened_ms:
            book.position = logic.trail(book.position, high=bar.high, low=bar.low)  # R5c
        return book.position

    async def _view(self, symbol: str, price: Decimal) -> logic.MarketView:
        assert self.orders is not None
        instrument = await self.orders.instrument(symbol)
        valuation = await self.ctx.portfolio.value_account(self.orders.account)
        async with self.ctx.uow_factory() as uow:
            balances = await uow.ledger.balances(self.orders.account.id)
        held = 0
        for other in self.bot.symbols:  # R1/R4: the bot's open positions, dust aside (R9)
            if other == symbol:
                held += self.books[symbol].position is not None
            else:
                held += await self.orders.holding(other, self._closes.get(other)) is not None
        free = balances[instrument.margin_asset].free if instrument.margin_asset in balances else _ZERO
        return logic.MarketView(
            equity=valuation.equity,
            free_cash=free,
            price=price,
            taker_fee=instrument.taker_fee,
            slippage_bps=self.ctx.slippage_bps,
            lock_buffer=MARKET_BUFFER if instrument.is_spot else _ZERO,
            quantity_step=instrument.quantity_step,
            min_quantity=instrument.min_quantity,
            min_notional=instrument.min_notional,
            spot=instrument.is_spot,
            open_positions=held,
        )

    async def _act(self, intent: logic.Intent, stamp: int, price: Decimal) -> None:
        assert self.orders is not None
        book = self.books[intent.symbol]
        if isinstance(intent, logic.ClosePosition):
            await self.orders.close(intent.symbol, stamp, bot_orders_module.EXIT)
            if await self.orders.holding(intent.symbol, price) is None:
                book.clear()
            return
        try:
            order = await self.orders.enter(intent, stamp)
        except OrderRejected as error:  # includes refused funds: nothing was stored
            await self.ctx.journal.event(self.bot, "warning", f"entry refused: {error.message}")
            return
        booked = await self.orders.holding(intent.symbol, price)
        if order.filled_quantity <= 0 or booked is None:
            return  # not filled (yet): the watchdog protects it once it is (K5)
        book.position = logic.PositionState.opened(
            intent.side, abs(booked.quantity), booked.entry_price or order.average_price or intent.reference
        )
        book.parent_id, book.opened_ms = order.id, stamp
        assert self.guard is not None
        await self.guard.protect_new(intent.symbol, order, stamp)  # G1

    async def _guarded(self, symbol: str, stamp: int, price: Decimal) -> None:
        assert self.guard is not None
        await self.guard.guard(symbol, stamp, price)


def _describe(intent: logic.Intent) -> dict[str, Any]:
    if isinstance(intent, logic.OpenPosition):
        return {"open": intent.side, "quantity": str(intent.quantity), "reference": str(intent.reference)}
    return {"close": intent.side, "reason": intent.reason}
