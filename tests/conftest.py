"""Shared fixtures: settings for tests, a migrated database (SQLite, or PostgreSQL when
CO_TEST_DATABASE_URL is set), the app with a controllable clock, and an async httpx client."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from cryptoorchestrator.api.app import create_app
from cryptoorchestrator.bootstrap import Container, build_container
from cryptoorchestrator.config.settings import Environment, Settings
from cryptoorchestrator.core.clock import SimClock
from cryptoorchestrator.persistence import migrate
from cryptoorchestrator.testing.api import ApiUser, register_user

PG_URL = os.environ.get("CO_TEST_DATABASE_URL")
REDIS_URL = os.environ.get("CO_TEST_REDIS_URL")

FAST_HASH = {
    # argon2id at its minimum cost: tests only (the defaults are OWASP-grade).
    "password_hash_time_cost": 1,
    "password_hash_memory_kib": 64,
    "password_hash_parallelism": 1,
}
GENEROUS_LIMITS = {
    "rate_limit_default": "100000/minute",
    "rate_limit_anonymous": "100000/minute",
    "rate_limit_auth": "100000/minute",
    "rate_limit_auth_account": "100000/minute",
}


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "env": Environment.TEST,
        "data_dir": tmp_path / "data",
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'test.db'}",
        "log_json": True,
        "log_level": "WARNING",
        "redis_url": None,
        "encryption_keys": [],
        "cors_origins": [],
        "synthetic_data": False,  # market-data tests turn it on
        "backtest_workers": 0,  # a thread; one test uses the process pool
        "live_poll_seconds": 0,  # tests run the live order poller's round themselves
        **FAST_HASH,
        **GENEROUS_LIMITS,
    }
    values.update(overrides)
    # _env_file=None: a developer's .env must not leak into tests.
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Migrate once; each test copies the file (much faster than migrating per test)."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    migrate.upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_ready() -> str | None:
    if not PG_URL:
        return None
    from sqlalchemy import text

    from cryptoorchestrator.persistence.database import create_null_pool_engine

    async def reset() -> None:
        engine = create_null_pool_engine(PG_URL)
        async with engine.begin() as connection:
            await connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            await connection.execute(text("CREATE SCHEMA public"))
        await engine.dispose()

    asyncio.run(reset())
    migrate.upgrade(PG_URL)
    return PG_URL


async def _truncate_postgres(url: str) -> None:
    from sqlalchemy import text

    from cryptoorchestrator.persistence.database import create_null_pool_engine
    from cryptoorchestrator.persistence.tables import Base

    engine = create_null_pool_engine(url)
    async with engine.begin() as connection:
        names = ", ".join(table.name for table in Base.metadata.sorted_tables)
        await connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    await engine.dispose()


@pytest.fixture
async def database_url(tmp_path: Path, sqlite_template: Path, postgres_ready: str | None) -> str:
    if postgres_ready:
        await _truncate_postgres(postgres_ready)
        return postgres_ready
    target = tmp_path / "test.db"
    shutil.copyfile(sqlite_template, target)
    return f"sqlite+aiosqlite:///{target}"


@pytest.fixture
def clock() -> SimClock:
    """Starts at the real current time (JWT libraries compare against it) and moves on demand."""
    return SimClock(start=time.time())


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path, database_url=database_url)


AppFactory = Callable[..., Any]


@pytest.fixture
async def app_factory(tmp_path: Path, database_url: str, clock: SimClock) -> AsyncIterator[AppFactory]:
    """Build apps with setting overrides; each is started (lifespan) and closed after the test."""
    stacks: list[Any] = []

    async def build(
        *, exchange_factory: Any = None, venue_factory: Any = None, **overrides: Any
    ) -> tuple[Any, Container]:
        settings = make_settings(tmp_path, database_url=database_url, **overrides)
        container = build_container(
            settings, clock=clock, exchange_factory=exchange_factory, venue_factory=venue_factory
        )
        app = create_app(settings, container=container)
        context = app.router.lifespan_context(app)
        await context.__aenter__()
        stacks.append(context)
        return app, container

    yield build
    for context in reversed(stacks):
        await context.__aexit__(None, None, None)


@pytest.fixture
async def app_and_container(app_factory: AppFactory) -> tuple[Any, Container]:
    result: tuple[Any, Container] = await app_factory()
    return result


@pytest.fixture
def app(app_and_container: tuple[Any, Container]) -> Any:
    return app_and_container[0]


@pytest.fixture
def container(app_and_container: tuple[Any, Container]) -> Container:
    return app_and_container[1]


def client_for(app: Any) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@pytest.fixture
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(app) as http:
        yield http


@pytest.fixture
async def alice(client: httpx.AsyncClient) -> ApiUser:
    return await register_user(client, "alice")


@pytest.fixture
async def bob(client: httpx.AsyncClient) -> ApiUser:
    return await register_user(client, "bob")


@pytest.fixture
async def admin(client: httpx.AsyncClient, container: Container) -> ApiUser:
    from cryptoorchestrator.domain.identity import RequestMeta, Role

    pair = await container.auth.register(
        email="root@example.com",
        password="admin-passphrase-long",
        username="root",
        role=Role.ADMIN,
        meta=RequestMeta(ip="test"),
    )
    return ApiUser(
        id=pair.user.id,
        username="root",
        email="root@example.com",
        access_token=pair.access_token,
        refresh_token=pair.refresh_token,
        password="admin-passphrase-long",
    )
