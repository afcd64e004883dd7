"""Composition root: settings -> adapters -> services. The only place that builds adapters."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from cryptoorchestrator import __version__
from cryptoorchestrator.config.logging import get_logger
from cryptoorchestrator.config.settings import Settings
from cryptoorchestrator.core.clock import Clock, LiveClock
from cryptoorchestrator.jobs.inprocess import InProcessJobQueue, worker_name
from cryptoorchestrator.marketdata.store import CandleStore
from cryptoorchestrator.persistence import database
from cryptoorchestrator.persistence.uow import unit_of_work_factory
from cryptoorchestrator.security.encryption import SecretBox, derive_key
from cryptoorchestrator.security.passwords import PasswordHasher
from cryptoorchestrator.security.tokens import TokenService
from cryptoorchestrator.services.api_keys import ApiKeyService
from cryptoorchestrator.services.auth import AuthService, SessionCache
from cryptoorchestrator.services.backtests import BacktestService
from cryptoorchestrator.services.jobs import JobService
from cryptoorchestrator.services.keys import KeyRotationService
from cryptoorchestrator.services.market_data import (
    DOWNLOAD_JOB,
    ExchangeFactory,
    MarketDataService,
    download_job_handler,
)
from cryptoorchestrator.services.optimizations import OptimizationService
from cryptoorchestrator.services.strategies import StrategyService
from cryptoorchestrator.services.two_factor import TwoFactorService
from cryptoorchestrator.services.users import UserService
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
    process_pool: LazyProcessPool = field(default_factory=lambda: LazyProcessPool(0))
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
        await self.job_queue.start()

    async def close(self) -> None:
        await self.job_queue.stop()
        self.process_pool.shutdown()
        await self.market_data.close()
        await self.engine.dispose()


def ccxt_exchange_factory(settings: Settings) -> ExchangeFactory:
    """Public market data through ccxt (no credentials): the real adapter. ccxt is imported on
    first use only: it takes seconds to import and most commands never need it."""

    def build(exchange_id: str) -> Any:
        from cryptoorchestrator.exchanges.client import CcxtExchangeClient

        return CcxtExchangeClient.create(exchange_id, config={"timeout": settings.exchange_timeout_ms})

    return build


def build_container(
    settings: Settings, *, clock: Clock | None = None, exchange_factory: ExchangeFactory | None = None
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
    return Container(
        settings=settings,
        clock=clock,
        engine=engine,
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
    )
