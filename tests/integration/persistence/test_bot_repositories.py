"""The bot repositories (bots, bot events, bot leases) and migration 0005, on SQLite and, when
CO_TEST_DATABASE_URL is set, on PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptoorchestrator.core.errors import Conflict, NotFound
from cryptoorchestrator.domain.accounts import TradingAccount
from cryptoorchestrator.domain.bots import Bot, BotEvent, BotMode, BotRisk, BotStatus
from cryptoorchestrator.domain.identity import Role
from cryptoorchestrator.persistence import migrate
from cryptoorchestrator.persistence.database import create_engine, create_null_pool_engine, session_factory
from cryptoorchestrator.persistence.uow import SqlUnitOfWork, unit_of_work_factory
from tests.conftest import PG_URL

pytestmark = pytest.mark.postgres

NOW = datetime(2026, 3, 14, 15, 9, 26, 535897, tzinfo=UTC)
TTL = timedelta(seconds=15)
BOT_TABLES = {"bots", "bot_events", "bot_leases"}

UowFactory = Callable[[], SqlUnitOfWork]


@dataclasses.dataclass
class Db:
    engine: AsyncEngine
    uow: UowFactory


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Db]:
    engine = create_engine(database_url)
    yield Db(engine, unit_of_work_factory(session_factory(engine)))
    await engine.dispose()


async def _user(db: Db, name: str) -> int:
    async with db.uow() as uow:
        user = await uow.users.add(
            username=name,
            email=f"{name}@example.com",
            password_hash="x",
            role=Role.USER,
            first_name=None,
            last_name=None,
            now=NOW,
        )
        await uow.accounts.add(
            TradingAccount(
                id=f"acc-{user.id}", user_id=user.id, kind="paper", name="paper", exchange="binance",
                created_at=NOW, updated_at=NOW,
            )
        )  # fmt: skip
        await uow.commit()
    return user.id


@pytest.fixture
async def alice(db: Db) -> int:
    return await _user(db, "alice")


@pytest.fixture
async def bob(db: Db) -> int:
    return await _user(db, "bob")


def _bot(user_id: int, bot_id: str, **fields: Any) -> Bot:
    values: dict[str, Any] = {
        "id": bot_id,
        "user_id": user_id,
        "name": f"bot {bot_id}",
        "strategy_type": "sma_cross",
        "params": {"fast": 10, "slow": 30, "allow_short": False},
        "strategy_id": None,
        "account_id": f"acc-{user_id}",
        "exchange": "binance",
        "mode": BotMode.PAPER,
        "symbols": ("BTC/USDT",),
        "timeframe": "1h",
        "risk": BotRisk(),
        "status": BotStatus.STOPPED,
        "desired": "stopped",
        "error": None,
        "is_default": False,
        "created_at": NOW,
        "updated_at": NOW,
        "started_at": None,
        "stopped_at": None,
        "last_candle_at": None,
        "state": {},
    }
    values.update(fields)
    return Bot(**values)


async def _add(db: Db, *bots: Bot, idempotency_key: str | None = None) -> None:
    """Store ``bots`` in one transaction."""
    async with db.uow() as uow:
        for bot in bots:
            await uow.bots.add(bot, idempotency_key=idempotency_key)
        await uow.commit()


async def _acquire(db: Db, bot_id: str, runner: str) -> bool:
    async with db.uow() as uow:
        taken = await uow.bot_leases.acquire(bot_id, runner, now=NOW, ttl=TTL)
        await uow.commit()
    return taken


def _event(bot: Bot, kind: str, at: datetime, message: str = "m") -> BotEvent:
    return BotEvent(None, bot.id, bot.user_id, kind, message, {"price": "1.5"}, at)


# --- bots -------------------------------------------------------------------------------------------


async def test_bot_round_trips_every_field(db: Db, alice: int) -> None:
    bot = _bot(
        alice,
        "b1",
        symbols=("ETH/USDT", "BTC/USDT"),
        risk=BotRisk(
            risk_per_trade=Decimal("0.015"),
            stop_loss=Decimal("0.02"),
            take_profit=Decimal("0.05"),
            trailing_stop=Decimal("0.01"),
            leverage=Decimal("3"),
            max_open_positions=4,
            max_position_fraction=Decimal("0.5"),
        ),
        status=BotStatus.RUNNING,
        desired="running",
        error="boom",
        is_default=True,
        started_at=NOW,
        stopped_at=NOW - timedelta(days=1),
        last_candle_at=NOW - timedelta(hours=1),
        state={"BTC/USDT": {"best": "30000.5"}, "close_positions": False},
    )
    async with db.uow() as uow:
        assert await uow.bots.add(bot, idempotency_key="k1", request_hash="h1") == bot
        await uow.commit()
    async with db.uow() as uow:
        assert await uow.bots.get("b1") == bot
        assert await uow.bots.get_for_user("b1", alice) == bot
        assert await uow.bots.default_for_user(alice) == bot
        assert await uow.bots.get_by_name(alice, "bot b1") == bot
        assert await uow.bots.get_by_idempotency_key(alice, "k1") == (bot, "h1")
        assert await uow.bots.get("missing") is None
        assert await uow.bots.get_by_name(alice, "nope") is None
        assert await uow.bots.get_by_idempotency_key(alice, "k2") is None


async def test_bots_are_private_unique_by_name_and_one_default_each(db: Db, alice: int, bob: int) -> None:
    await _add(db, _bot(alice, "a1", is_default=True), _bot(bob, "b1", name="bot a1", is_default=True))
    async with db.uow() as uow:
        assert await uow.bots.get_for_user("a1", bob) is None
        assert await uow.bots.get_by_name(bob, "bot a1") == await uow.bots.get("b1")
        assert await uow.bots.default_for_user(bob) == await uow.bots.get("b1")
    for duplicate in (_bot(alice, "a2", name="bot a1"), _bot(alice, "a3", is_default=True)):
        with pytest.raises(Conflict):
            await _add(db, duplicate)
    await _add(db, _bot(alice, "a4"), _bot(alice, "a5"))  # several bots that are not the default
    with pytest.raises(Conflict):  # an Idempotency-Key is used once per user
        await _add(db, _bot(alice, "a6"), _bot(alice, "a7"), idempotency_key="k")
    await _add(db, _bot(bob, "b6"), idempotency_key="k")  # by each user


async def test_list_filters_pages_newest_first(db: Db, alice: int, bob: int) -> None:
    bots = [
        _bot(alice, "a1", created_at=NOW),
        _bot(alice, "a2", created_at=NOW + timedelta(seconds=1), status=BotStatus.RUNNING, desired="running"),
        _bot(alice, "a3", created_at=NOW + timedelta(seconds=2), exchange="bybit", mode=BotMode.LIVE),
        _bot(bob, "b1", created_at=NOW + timedelta(seconds=3), status=BotStatus.PAUSED, desired="paused"),
    ]
    await _add(db, *bots)

    async def ids(user_id: int, **filters: Any) -> tuple[list[str], int]:
        async with db.uow() as uow:
            found, total = await uow.bots.list_for_user(
                user_id, limit=filters.pop("limit", 50), offset=0, **filters
            )
        return [bot.id for bot in found], total

    assert await ids(alice) == (["a3", "a2", "a1"], 3)
    assert await ids(alice, limit=1) == (["a3"], 3)
    assert await ids(alice, status="running") == (["a2"], 1)
    assert await ids(alice, status="stopped") == (["a3", "a1"], 2)
    assert await ids(alice, exchange="bybit") == (["a3"], 1)
    assert await ids(alice, mode="paper") == (["a2", "a1"], 2)
    assert await ids(alice, mode="live", exchange="binance") == ([], 0)
    assert await ids(bob) == (["b1"], 1)
    async with db.uow() as uow:
        page, total = await uow.bots.list_for_user(alice, limit=2, offset=2)
        assert [bot.id for bot in page] == ["a1"] and total == 3
        assert [bot.id for bot in await uow.bots.wanted_running()] == ["a2", "b1"]  # every user


async def test_update_writes_only_the_given_fields(db: Db, alice: int) -> None:
    await _add(db, _bot(alice, "a1"))
    later = NOW + timedelta(minutes=1)
    # The user and a runner write at the same time, each from an older read: neither is lost.
    async with db.uow() as user_uow, db.uow() as runner_uow:
        await user_uow.bots.get("a1")
        await runner_uow.bots.get("a1")
        await user_uow.bots.update("a1", now=later, desired="running", status=BotStatus.STARTING)
        await user_uow.commit()
        updated = await runner_uow.bots.update(
            "a1", now=later, state={"x": 1}, last_candle_at=later, symbols=["ETH/USDT"]
        )
        await runner_uow.commit()
    assert updated.desired == "running" and updated.status is BotStatus.STARTING
    assert updated.state == {"x": 1} and updated.last_candle_at == later and updated.updated_at == later
    assert updated.symbols == ("ETH/USDT",)
    async with db.uow() as uow:
        risky = await uow.bots.update("a1", now=later, risk=BotRisk(leverage=Decimal(5)), mode=BotMode.LIVE)
        assert risky.risk == BotRisk(leverage=Decimal(5)) and risky.mode is BotMode.LIVE
        with pytest.raises(ValueError, match="not updatable"):
            await uow.bots.update("a1", now=later, user_id=2)
        with pytest.raises(NotFound):
            await uow.bots.update("missing", now=later, desired="running")


async def test_delete_cascades_to_events_and_lease(db: Db, alice: int) -> None:
    bot = _bot(alice, "a1")
    other = _bot(alice, "a2")
    await _add(db, bot, other)
    async with db.uow() as uow:
        await uow.bot_events.add(_event(bot, "state", NOW))
        await uow.bot_events.add(_event(other, "state", NOW))
        assert await uow.bot_leases.acquire("a1", "r1", now=NOW, ttl=TTL)
        await uow.commit()
    async with db.uow() as uow:
        await uow.bots.delete("a1")
        await uow.bots.delete("missing")  # nothing to do
        await uow.commit()
    async with db.engine.connect() as connection:
        for table, expected in (("bots", 1), ("bot_events", 1), ("bot_leases", 0)):
            assert (await connection.execute(text(f"SELECT COUNT(*) FROM {table}"))).scalar_one() == expected
    # Deleting the user deletes their bots and everything under them.
    async with db.engine.begin() as connection:
        await connection.execute(text(f"DELETE FROM users WHERE id = {alice}"))
        for table in BOT_TABLES:
            assert (await connection.execute(text(f"SELECT COUNT(*) FROM {table}"))).scalar_one() == 0


# --- events -----------------------------------------------------------------------------------------


async def test_events_newest_first_by_kind_and_since(db: Db, alice: int) -> None:
    bot, other = _bot(alice, "a1"), _bot(alice, "a2")
    await _add(db, bot, other)
    moments = [NOW - timedelta(days=1), NOW, NOW, NOW + timedelta(minutes=1)]
    async with db.uow() as uow:
        stored = [
            await uow.bot_events.add(_event(bot, "signal", at, f"s{i}")) for i, at in enumerate(moments)
        ]
        stored.append(await uow.bot_events.add(_event(bot, "order", NOW, "o")))
        await uow.bot_events.add(_event(other, "signal", NOW))
        await uow.commit()
    assert all(event.id is not None for event in stored)
    assert stored[0] == dataclasses.replace(_event(bot, "signal", moments[0], "s0"), id=stored[0].id)
    async with db.uow() as uow:
        everything, total = await uow.bot_events.list_for_bot("a1", limit=50, offset=0)
        assert total == 5 and [e.message for e in everything] == ["o", "s3", "s2", "s1", "s0"]
        signals, total = await uow.bot_events.list_for_bot("a1", kind="signal", limit=2, offset=1)
        assert total == 4 and [e.message for e in signals] == ["s2", "s1"]
        recent, total = await uow.bot_events.list_for_bot("a1", since=NOW, limit=50, offset=0)
        assert total == 4 and "s0" not in [e.message for e in recent]
        assert await uow.bot_events.count_since("a1", kind="signal", since=NOW) == 3
        assert await uow.bot_events.count_since("a1", kind="order", since=NOW) == 1
        assert await uow.bot_events.count_since("a2", kind="signal", since=NOW - timedelta(days=2)) == 1
        assert await uow.bot_events.count_since("a1", kind="error", since=NOW) == 0


# --- leases -----------------------------------------------------------------------------------------


async def test_acquire_renew_release_and_holder(db: Db, alice: int) -> None:
    await _add(db, _bot(alice, "a1"), _bot(alice, "a2"))
    async with db.uow() as uow:
        assert await uow.bot_leases.holder("a1", now=NOW) is None
        assert await uow.bot_leases.acquire("a1", "r1", now=NOW, ttl=TTL) is True
        assert await uow.bot_leases.acquire("a1", "r2", now=NOW + timedelta(seconds=5), ttl=TTL) is False
        # The holder acquiring again renews, keeping when it first took the lease.
        later = NOW + timedelta(seconds=10)
        assert await uow.bot_leases.acquire("a1", "r1", now=later, ttl=TTL) is True
        lease = await uow.bot_leases.holder("a1", now=later)
        assert lease is not None
        assert (lease.runner_id, lease.acquired_at, lease.heartbeat_at, lease.expires_at) == (
            "r1",
            NOW,
            later,
            later + TTL,
        )
        assert await uow.bot_leases.acquire("a2", "r1", now=later, ttl=TTL) is True
        assert await uow.bot_leases.renew("r1", now=later + timedelta(seconds=5), ttl=TTL) == ["a1", "a2"]
        assert await uow.bot_leases.renew("r2", now=later, ttl=TTL) == []
        # Releasing: only the holder can.
        await uow.bot_leases.release("a2", "r2")
        assert await uow.bot_leases.holder("a2", now=later) is not None
        await uow.bot_leases.release("a2", "r1")
        assert await uow.bot_leases.holder("a2", now=later) is None
        assert await uow.bot_leases.acquire("a2", "r2", now=later, ttl=TTL) is True
        await uow.commit()


async def test_an_expired_lease_passes_to_another_runner_and_its_renewal_drops_it(db: Db, alice: int) -> None:
    await _add(db, _bot(alice, "a1"), _bot(alice, "a2"))
    async with db.uow() as uow:
        assert await uow.bot_leases.acquire("a1", "dead", now=NOW, ttl=TTL)
        assert await uow.bot_leases.acquire("a2", "dead", now=NOW, ttl=TTL)
        await uow.commit()
    expiry = NOW + TTL
    async with db.uow() as uow:
        assert (
            await uow.bot_leases.acquire("a1", "r2", now=expiry - timedelta(microseconds=1), ttl=TTL) is False
        )
        assert await uow.bot_leases.holder("a1", now=expiry) is None  # expired: nobody holds it
        assert await uow.bot_leases.acquire("a1", "r2", now=expiry, ttl=TTL) is True
        lease = await uow.bot_leases.holder("a1", now=expiry)
        assert lease is not None and lease.runner_id == "r2" and lease.acquired_at == expiry
        await uow.commit()
    # The first runner comes back: it lost a1 (taken), and keeps a2 (expired, but nobody took it).
    async with db.uow() as uow:
        assert await uow.bot_leases.renew("dead", now=expiry + timedelta(seconds=1), ttl=TTL) == ["a2"]
        assert await uow.bot_leases.renew("r2", now=expiry + timedelta(seconds=1), ttl=TTL) == ["a1"]
        await uow.commit()


async def test_two_concurrent_acquirers_exactly_one_wins(db: Db, alice: int) -> None:
    await _add(db, _bot(alice, "a1"))

    async def contend(runner: str, now: datetime) -> bool:
        async with db.uow() as uow:
            taken = await uow.bot_leases.acquire("a1", runner, now=now, ttl=TTL)
            await asyncio.sleep(0.02)  # hold the transaction open: the other must wait, then lose
            await uow.commit()
        return taken

    first = await asyncio.gather(contend("r1", NOW), contend("r2", NOW))
    assert sorted(first) == [False, True]
    winner = "r1" if first[0] else "r2"
    # Again while the lease lives: the holder renews it, the other still loses.
    later = NOW + timedelta(seconds=5)
    again = await asyncio.gather(contend("r1", later), contend("r2", later))
    assert again == [winner == "r1", winner == "r2"]
    async with db.uow() as uow:
        lease = await uow.bot_leases.holder("a1", now=later)
    assert lease is not None and lease.runner_id == winner and lease.expires_at == later + TTL


async def test_ten_concurrent_acquirers_of_a_free_lease_one_wins(db: Db, alice: int) -> None:
    await _add(db, _bot(alice, "a1"))

    async def contend(runner: str) -> bool:
        async with db.uow() as uow:
            taken = await uow.bot_leases.acquire("a1", runner, now=NOW, ttl=TTL)
            await asyncio.sleep(0.01)
            await uow.commit()
        return taken

    results = await asyncio.gather(*(contend(f"r{i}") for i in range(10)))
    assert results.count(True) == 1
    async with db.uow() as uow:
        lease = await uow.bot_leases.holder("a1", now=NOW)
    assert lease is not None and lease.runner_id == f"r{results.index(True)}"


async def test_acquiring_the_lease_of_a_missing_bot_fails(db: Db) -> None:
    with pytest.raises(Conflict):
        await _acquire(db, "missing", "r1")


# --- migration 0005 -----------------------------------------------------------------------------------


async def _tables(url: str) -> set[str]:
    engine = create_null_pool_engine(url)
    async with engine.connect() as connection:
        tables = await connection.run_sync(lambda sync: set(inspect(sync).get_table_names()))
    await engine.dispose()
    return tables


@pytest.fixture(params=["sqlite", "postgresql"])
def migration_url(request: pytest.FixtureRequest, tmp_path: Path, postgres_ready: str | None) -> str:
    if request.param == "postgresql":
        if not postgres_ready:
            pytest.skip("CO_TEST_DATABASE_URL is not set: no PostgreSQL to migrate")
        assert PG_URL is not None
        return PG_URL
    return f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"


async def test_migration_0005_upgrade_downgrade_upgrade(migration_url: str) -> None:
    await migrate.aupgrade(migration_url, "0005_bots")
    assert await migrate.acurrent(migration_url) == "0005_bots"
    assert await _tables(migration_url) >= BOT_TABLES | {"users", "trading_accounts", "strategies"}
    await migrate.adowngrade(migration_url, "0004_trading")
    assert await migrate.acurrent(migration_url) == "0004_trading"
    tables = await _tables(migration_url)
    assert not tables & BOT_TABLES and tables >= {"users", "trading_accounts", "orders"}
    await migrate.aupgrade(migration_url)
    assert await _tables(migration_url) >= BOT_TABLES
