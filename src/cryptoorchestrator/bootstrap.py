"""Composition root: settings -> adapters -> services. The only place that builds adapters."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from cryptoorchestrator import __version__
from cryptoorchestrator.config.logging import get_logger
from cryptoorchestrator.config.settings import Settings
from cryptoorchestrator.core.clock import Clock, LiveClock
from cryptoorchestrator.core.errors import CryptoOrchestratorError
from cryptoorchestrator.domain.accounts import TradingAccount
from cryptoorchestrator.jobs.inprocess import InProcessJobQueue, worker_name
from cryptoorchestrator.marketdata.store import CandleStore
from cryptoorchestrator.persistence import database, sqlite_batches
from cryptoorchestrator.persistence.uow import unit_of_work_factory
from cryptoorchestrator.security.encryption import SecretBox, derive_key
from cryptoorchestrator.security.passwords import PasswordHasher
from cryptoorchestrator.security.tokens import TokenService
from cryptoorchestrator.services.accounts import AccountService
from cryptoorchestrator.services.api_keys import ApiKeyService
from cryptoorchestrator.services.auth import AuthService, SessionCache
from cryptoorchestrator.services.backtests import BacktestService
from cryptoorchestrator.services.bot_feeds import CandleSource, PollingCandleSource, StoredCandleSource
from cryptoorchestrator.services.bot_runner import BotRunner
from cryptoorchestrator.services.bots import BotService, NoRunnerAttached
from cryptoorchestrator.services.exchange_accounts import ExchangeAccountService
from cryptoorchestrator.services.execution import LiveExecution
from cryptoorchestrator.services.jobs import JobService
from cryptoorchestrator.services.keys import KeyRotationService
from cryptoorchestrator.services.market_data import (
    DOWNLOAD_JOB,
    ExchangeFactory,
    MarketDataService,
    download_job_handler,
)
from cryptoorchestrator.services.optimizations import OptimizationService
from cryptoorchestrator.services.orders import OrderService
from cryptoorchestrator.services.paper import PaperExecution
from cryptoorchestrator.services.portfolio import PortfolioService
from cryptoorchestrator.services.strategies import StrategyService
from cryptoorchestrator.services.trading_runtime import TradingRuntime
from cryptoorchestrator.services.two_factor import TwoFactorService
from cryptoorchestrator.services.users import UserService
from cryptoorchestrator.simulator.fill_model import FillRules
from cryptoorchestrator.strategies.loader import load_strategies
from cryptoorchestrator.strategies.registry import builtin_registry


class LazyProcessPool:
    """A process pool started on first use (spawned workers: safe beside an event loop), so
    commands and tests that never backtest never pay for it. ``workers=0`` means no pool."""

    def __init__(self, workers: int) -> None:
        self._workers = workers
        self._pool: ProcessPoolExecutor | None = None

    def __call__(self) -> Executor | None:
        if self._workers <= 0:
            return None
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self._workers, mp_context=multiprocessing.get_context("spawn"))
        return self._pool

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def build_secret_box(settings: Settings) -> SecretBox:
    keys = [key.get_secret_value() for key in settings.encryption_keys]
    if not keys:
        # Development fallback; production refuses to start without CO_ENCRYPTION_KEYS.
        keys = [derive_key(settings.secret_key.get_secret_value())]
    return SecretBox(keys)


@dataclass
class Container:
    """Everything a running platform holds, built once per process (or per test)."""

    settings: Settings
    clock: Clock
    engine: Any
    uow_factory: Any
    secret_box: SecretBox
    hasher: PasswordHasher
    tokens: TokenService
    auth: AuthService
    users: UserService
    two_factor: TwoFactorService
    api_keys: ApiKeyService
    key_rotation: KeyRotationService
    market_data: MarketDataService
    strategies: StrategyService
    backtests: BacktestService
    optimizations: OptimizationService
    jobs: JobService
    job_queue: InProcessJobQueue
    accounts: AccountService
    paper: PaperExecution
    orders: OrderService
    portfolio: PortfolioService
    trading: TradingRuntime
    venues: LiveVenues
    bots: BotService
    exchange_accounts: ExchangeAccountService
    process_pool: LazyProcessPool = field(default_factory=lambda: LazyProcessPool(0))
    bot_runner: BotRunner | None = None
    checkpointer: database.WalCheckpointer | None = None
    version: str = __version__
    started_at: float = field(default_factory=time.time)

    async def ping_database(self) -> None:
        await database.ping(self.engine)

    async def start(self) -> None:
        """Background parts: the labelled synthetic series on a first run, the job queue."""
        if self.settings.synthetic_data:
            await asyncio.to_thread(
                self.market_data.ensure_synthetic,
                list(self.settings.synthetic_symbols),
                self.settings.synthetic_timeframe,
            )
        if self.checkpointer is not None:
            self.checkpointer.start()
        await self.job_queue.start()
        await self.trading.start()
        if self.bot_runner is not None and self.settings.runner_enabled:
            await self.bot_runner.start()  # after the trading runtime's recovery (bot_runner L3)

    async def close(self) -> None:
        if self.bot_runner is not None:
            await self.bot_runner.stop()
        await self.trading.stop()
        await self.venues.close()
        await self.job_queue.stop()
        self.process_pool.shutdown()
        await self.market_data.close()
        if self.checkpointer is not None:
            await self.checkpointer.stop()
        await self.engine.dispose()


def ccxt_exchange_factory(settings: Settings) -> ExchangeFactory:
    """Public market data through ccxt (no credentials): the real adapter. ccxt is imported on
    first use only: it takes seconds to import and most commands never need it."""

    def build(exchange_id: str) -> Any:
        from cryptoorchestrator.exchanges.client import CcxtExchangeClient

        return CcxtExchangeClient.create(exchange_id, config={"timeout": settings.exchange_timeout_ms})

    return build


def bot_candle_source(
    settings: Settings,
    market_data: MarketDataService,
    clock: Clock,
    exchange_factory: ExchangeFactory | None,
    source: Callable[[str], str | None],
) -> CandleSource:
    """Where bots get closed candles: the exchange, polled, when market data is live; else the
    candle store, replayed at ``replay_speed`` (the offline default), read where the market-data
    service keeps the exchange's series (``source``: the paper exchange's may be synthetic)."""
    if settings.market_data_live:
        factory = exchange_factory or ccxt_exchange_factory(settings)
        return PollingCandleSource(factory, clock, poll_seconds=settings.bot_poll_seconds)

    async def stored_as(exchange: str, symbol: str) -> tuple[str, str]:
        return await market_data.resolve(symbol, exchange=source(exchange))

    return StoredCandleSource(market_data.store, clock, resolve=stored_as, speed=settings.replay_speed)


def ccxt_exchange_ids() -> list[str]:
    """Every exchange id ccxt supports (ccxt is imported on first use)."""
    import ccxt.async_support as ccxt_async

    return list(ccxt_async.exchanges)


VenueFactory = Callable[[TradingAccount, dict[str, str]], Any]
"""Builds the trading client of an exchange account from its decrypted credentials."""


def ccxt_venue_factory(settings: Settings) -> VenueFactory:
    """The real ccxt adapter for exchange accounts (imported on first use)."""

    def build(account: TradingAccount, credentials: dict[str, str]) -> Any:
        from cryptoorchestrator.exchanges.client import CcxtExchangeClient

        return CcxtExchangeClient.create(
            account.exchange,
            api_key=credentials.get("api_key"),
            secret=credentials.get("secret"),
            password=credentials.get("password") or None,
            sandbox=account.testnet,
            config={"timeout": settings.exchange_timeout_ms},
        )

    return build


class LiveVenues:
    """One live execution client per exchange account, built on first use from the account's
    encrypted credentials (decrypted here, in memory only) and kept while the process runs."""

    def __init__(self, factory: VenueFactory, *, secret_box: SecretBox, clock: Clock) -> None:
        self._factory = factory
        self._box = secret_box
        self._clock = clock
        self._clients: dict[str, LiveExecution] = {}

    def execution(self, account: TradingAccount) -> LiveExecution:
        client = self._clients.get(account.id)
        if client is None:
            credentials: dict[str, str] = {}
            if account.credentials_encrypted:
                credentials = json.loads(self._box.decrypt(account.credentials_encrypted))
            client = LiveExecution(self._factory(account, credentials), clock=self._clock)
            self._clients[account.id] = client
        return client

    def forget(self, account_id: str) -> None:
        self._clients.pop(account_id, None)

    async def close(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        await asyncio.gather(*(client.venue.close() for client in clients), return_exceptions=True)


def build_exchange_accounts(
    settings: Settings,
    *,
    clock: Clock,
    uow_factory: Any,
    secret_box: SecretBox,
    accounts: AccountService,
    orders: OrderService,
    venues: LiveVenues,
    market_data: MarketDataService,
    exchange_factory: ExchangeFactory | None,
) -> ExchangeAccountService:
    """Exchange accounts: credentials checked through ``venues``, exchange status through a
    one-off public client from the market-data exchange factory."""

    async def release_venue(account_id: str) -> None:
        # A deleted account's client (or the one a connection check built) is closed now.
        client = venues._clients.pop(account_id, None)
        if client is not None:
            await client.venue.close()

    return ExchangeAccountService(
        uow_factory,
        clock=clock,
        accounts=accounts,
        orders=orders,
        secret_box=secret_box,
        execution_for=venues.execution,
        release_venue=release_venue,
        supported_exchanges=ccxt_exchange_ids,
        public_client=exchange_factory or ccxt_exchange_factory(settings),
        market_catalog=market_data,
        logger=get_logger("cryptoorchestrator.exchange_accounts"),
    )


@dataclass(frozen=True)
class TradingCore:
    """What :func:`build_trading` wires: ``source`` maps a paper venue's exchange to the
    market-data exchange it reads; ``execution_for`` picks an account's execution client."""

    source: Callable[[str], str | None]
    accounts: AccountService
    paper: PaperExecution
    venues: LiveVenues
    execution_for: Callable[[TradingAccount], Awaitable[Any]]
    orders: OrderService
    portfolio: PortfolioService


def build_trading(
    settings: Settings,
    *,
    clock: Clock,
    uow_factory: Any,
    market_data: MarketDataService,
    secret_box: SecretBox,
    venue_factory: VenueFactory | None,
    engine: AsyncEngine | None = None,
) -> TradingCore:
    """The trading core: accounts, the paper venue on the market-data service's prices, live
    venues from exchange credentials, orders and the portfolio."""
    paper_exchange = settings.paper_exchange or settings.market_data_exchange
    accounts = AccountService(
        uow_factory,
        clock=clock,
        paper_exchange=paper_exchange,
        starting_balances=settings.paper_starting_balances,
    )

    def source(exchange: str) -> str | None:
        # The paper venue on the default exchange reads whatever the market-data service has for
        # it: the exchange's own data, else the labelled synthetic series (a first offline run).
        return None if exchange == paper_exchange else exchange

    async def ticker(exchange: str, symbol: str) -> Any:
        return await market_data.ticker(symbol, exchange=source(exchange))

    async def book(exchange: str, symbol: str) -> Any:
        # Real depth only: with live market data a market order walks the exchange's book (and
        # fills partly when it is thin); replayed candles carry no depth, so offline orders
        # trade at the touch with the fill model's slippage instead of against a made-up book.
        if not settings.market_data_live:
            return None
        snapshot = await market_data.order_book(symbol, limit=50, exchange=source(exchange))
        return None if snapshot.source in ("synthetic", "replay") else snapshot

    paper = PaperExecution(
        clock=clock, ticker=ticker, book=book, rules=FillRules(slippage_bps=settings.paper_slippage_bps)
    )

    async def market_info(exchange: str, symbol: str) -> Any:
        return await market_data.market_info(symbol, exchange=source(exchange))

    venues = LiveVenues(venue_factory or ccxt_venue_factory(settings), secret_box=secret_box, clock=clock)

    async def execution_for(account: Any) -> Any:
        if account.kind == "paper":
            return paper.client(account.exchange)
        return venues.execution(account)

    # Paper batches on SQLite make two trips through aiosqlite's thread (persistence/sqlite_batches);
    # elsewhere (PostgreSQL) they go through the unit of work.
    batch_store = (
        sqlite_batches.SqliteOrderBatchStore(engine)
        if engine is not None and sqlite_batches.supported(engine)
        else None
    )
    orders = OrderService(
        uow_factory,
        clock=clock,
        accounts=accounts,
        market_info=market_info,
        execution_for=execution_for,
        batch_store=batch_store,
    )

    async def price(exchange: str, symbol: str) -> Any:
        seen = paper.last_price(exchange, symbol)
        if seen is not None:
            return seen
        try:
            return (await paper.quote(exchange, symbol)).last
        except CryptoOrchestratorError:
            return None

    portfolio = PortfolioService(uow_factory, clock=clock, orders=orders, price=price)

    return TradingCore(source, accounts, paper, venues, execution_for, orders, portfolio)


def build_container(
    settings: Settings,
    *,
    clock: Clock | None = None,
    exchange_factory: ExchangeFactory | None = None,
    venue_factory: VenueFactory | None = None,
    candle_source: CandleSource | None = None,
) -> Container:
    clock = clock or LiveClock()
    engine = database.create_engine(settings.resolved_database_url, echo=settings.database_echo)
    uow_factory = unit_of_work_factory(database.session_factory(engine))
    secret_box = build_secret_box(settings)
    hasher = PasswordHasher(
        time_cost=settings.password_hash_time_cost,
        memory_kib=settings.password_hash_memory_kib,
        parallelism=settings.password_hash_parallelism,
    )
    tokens = TokenService(
        settings.secret_key.get_secret_value(),
        algorithm=settings.jwt_algorithm,
        access_ttl=timedelta(minutes=settings.access_token_minutes),
        refresh_ttl=timedelta(days=settings.refresh_token_days),
    )
    sessions = SessionCache(clock, ttl_seconds=settings.session_cache_seconds)
    market_data = MarketDataService(
        CandleStore(settings.candles_dir),
        clock=clock,
        default_exchange=settings.market_data_exchange,
        live=settings.market_data_live,
        exchange_factory=exchange_factory or ccxt_exchange_factory(settings),
    )
    jobs = JobService(
        uow_factory, clock=clock, worker_name=worker_name(), logger=get_logger("cryptoorchestrator.jobs")
    )
    jobs.register(DOWNLOAD_JOB, download_job_handler(market_data))
    job_queue: Any
    if settings.jobs_backend == "celery":  # Celery is imported only when chosen
        from cryptoorchestrator.jobs.celery_queue import CeleryJobQueue

        job_queue = CeleryJobQueue.from_settings(jobs, settings, logger=get_logger("cryptoorchestrator.jobs"))
    else:
        job_queue = InProcessJobQueue(
            jobs, concurrency=settings.jobs_concurrency, logger=get_logger("cryptoorchestrator.jobs")
        )
    jobs.attach_queue(job_queue)
    strategy_registry = builtin_registry()
    if settings.strategies_dir is not None:
        loaded = load_strategies(settings.strategies_dir, strategy_registry)
        for error in loaded.errors:
            get_logger("cryptoorchestrator.strategies").error("user_strategy_not_loaded", error=error.message)
    strategies = StrategyService(uow_factory, registry=strategy_registry, clock=clock)
    process_pool = LazyProcessPool(settings.backtest_workers)
    backtests = BacktestService(
        uow_factory,
        jobs=jobs,
        market_data=market_data,
        strategies=strategies,
        clock=clock,
        results_dir=settings.data_dir / "backtests",
        executor_factory=process_pool,
        max_candles=settings.max_backtest_candles,
        strategies_dir=str(settings.strategies_dir) if settings.strategies_dir else None,
    )
    core = build_trading(
        settings,
        clock=clock,
        uow_factory=uow_factory,
        market_data=market_data,
        secret_box=secret_box,
        venue_factory=venue_factory,
        engine=engine,
    )
    source, accounts, paper, venues = core.source, core.accounts, core.paper, core.venues
    execution_for, orders, portfolio = core.execution_for, core.orders, core.portfolio

    exchange_accounts = build_exchange_accounts(
        settings,
        clock=clock,
        uow_factory=uow_factory,
        secret_box=secret_box,
        accounts=accounts,
        orders=orders,
        venues=venues,
        market_data=market_data,
        exchange_factory=exchange_factory,
    )
    trading = TradingRuntime(
        uow_factory,
        clock=clock,
        accounts=accounts,
        orders=orders,
        portfolio=portfolio,
        paper=paper,
        poll_seconds=settings.paper_poll_seconds,
        live_poll_seconds=settings.live_poll_seconds,
        logger=get_logger("cryptoorchestrator.trading"),
    )
    # The bot runner (services/bot_runner.py) replaces the supervisor when it is attached:
    # ``bots.supervisor = runner``; until then wakes have nobody to reach (NoRunnerAttached).
    bots = BotService(
        uow_factory,
        clock=clock,
        strategies=strategies,
        accounts=accounts,
        orders=orders,
        supervisor=NoRunnerAttached(),
    )
    bot_runner = BotRunner(
        uow_factory,
        clock=clock,
        orders=orders,
        portfolio=portfolio,
        trading=trading,
        paper=paper,
        execution_for=execution_for,
        registry=strategy_registry,
        candles=candle_source or bot_candle_source(settings, market_data, clock, exchange_factory, source),
        logger=get_logger("cryptoorchestrator.bots"),
        heartbeat_seconds=settings.bot_heartbeat_seconds,
        lease_seconds=settings.bot_lease_seconds,
        capacity=settings.runner_capacity,
        window=settings.bot_candle_window,
        slippage_bps=settings.paper_slippage_bps,
    )
    bots.supervisor = bot_runner
    return Container(
        settings=settings,
        bots=bots,
        accounts=accounts,
        paper=paper,
        orders=orders,
        portfolio=portfolio,
        trading=trading,
        venues=venues,
        exchange_accounts=exchange_accounts,
        clock=clock,
        engine=engine,
        checkpointer=database.WalCheckpointer.for_engine(engine),
        uow_factory=uow_factory,
        secret_box=secret_box,
        hasher=hasher,
        tokens=tokens,
        auth=AuthService(
            uow_factory,
            hasher=hasher,
            tokens=tokens,
            secret_box=secret_box,
            clock=clock,
            session_cache=sessions,
        ),
        users=UserService(uow_factory, hasher=hasher, clock=clock, session_cache=sessions),
        two_factor=TwoFactorService(
            uow_factory, hasher=hasher, secret_box=secret_box, clock=clock, session_cache=sessions
        ),
        api_keys=ApiKeyService(uow_factory, clock=clock),
        key_rotation=KeyRotationService(uow_factory, secret_box=secret_box, clock=clock),
        market_data=market_data,
        strategies=strategies,
        backtests=backtests,
        optimizations=OptimizationService(
            jobs=jobs,
            market_data=market_data,
            strategies=strategies,
            workers=settings.backtest_workers,
            max_candles=settings.max_backtest_candles,
        ),
        jobs=jobs,
        job_queue=job_queue,
        process_pool=process_pool,
        bot_runner=bot_runner,
    )
