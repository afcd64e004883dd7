"""Migrations: up, down and up again on SQLite and PostgreSQL; the models match the migrations."""

from __future__ import annotations

import asyncio

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from cryptoorchestrator.persistence import migrate
from cryptoorchestrator.persistence.database import create_null_pool_engine
from cryptoorchestrator.persistence.tables import Base
from tests.conftest import PG_URL

pytestmark = pytest.mark.postgres

TABLES = {
    "users",
    "auth_sessions",
    "refresh_tokens",
    "api_keys",
    "audit_log",
    "jobs",
    "strategies",
    "backtests",
    "trading_accounts",
    "orders",
    "fills",
    "ledger_entries",
    "balances",
    "positions",
    "equity_snapshots",
    "bots",
    "bot_events",
    "bot_leases",
}


async def _tables(url: str) -> set[str]:
    engine = create_null_pool_engine(url)
    async with engine.connect() as connection:
        names = await connection.run_sync(lambda sync: set(inspect(sync).get_table_names()))
    await engine.dispose()
    return names


async def _drift(url: str) -> list:
    engine = create_null_pool_engine(url)
    async with engine.connect() as connection:
        diff = await connection.run_sync(
            lambda sync: compare_metadata(
                MigrationContext.configure(sync, opts={"compare_type": True}), Base.metadata
            )
        )
    await engine.dispose()
    return diff


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path, postgres_ready):
    if request.param == "postgresql":
        if not postgres_ready:
            pytest.skip("CO_TEST_DATABASE_URL is not set: no PostgreSQL to migrate")
        return PG_URL
    return f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"


def test_upgrade_downgrade_upgrade(url):
    migrate.upgrade(url)
    assert asyncio.run(_tables(url)) >= TABLES
    assert migrate.current(url) == migrate.head_revision()
    assert asyncio.run(_drift(url)) == [], "the ORM models and the migrations disagree"
    migrate.downgrade(url, "base")
    assert migrate.current(url) is None
    assert not (TABLES & asyncio.run(_tables(url)))
    migrate.upgrade(url)
    assert asyncio.run(_tables(url)) >= TABLES


def test_history_lists_revisions():
    assert "identity" in migrate.history()
