"""The paper group commit's stores (``OrderBatchStore``): what a batch writes reads back through
the repositories exactly, on SQLite's own store (on the loop's thread and in the driver's
thread) and on the unit-of-work store (SQLite and, with CO_TEST_DATABASE_URL, PostgreSQL)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptoorchestrator.core.errors import Conflict
from cryptoorchestrator.domain.accounts import BatchChanges, TradingAccount
from cryptoorchestrator.domain.ledger import AssetBalance, LedgerEntry
from cryptoorchestrator.domain.orders import OrderStatus, OrderType
from cryptoorchestrator.domain.positions import Position
from cryptoorchestrator.persistence import sqlite_batches
from cryptoorchestrator.persistence.database import (
    SERVER_AUTOCHECKPOINT_PAGES,
    WalCheckpointer,
    create_engine,
    session_factory,
)
from cryptoorchestrator.persistence.uow import unit_of_work_factory
from cryptoorchestrator.services.paper_batches import UnitOfWorkBatchStore
from tests.integration.persistence.test_trading_repositories import (
    NOW,
    TINY,
    Db,
    _account,
    _add_account,
    _fill_record,
    _order,
    _user,
)

pytestmark = pytest.mark.postgres

LATER = datetime(2026, 3, 14, 15, 9, 27, 0, tzinfo=UTC)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Db]:
    engine = create_engine(database_url)
    yield Db(engine, unit_of_work_factory(session_factory(engine)), engine.dialect.name == "postgresql")
    await engine.dispose()


def _stores(engine: AsyncEngine, uow: Any) -> dict[str, Any]:
    stores: dict[str, Any] = {"unit of work": UnitOfWorkBatchStore(uow)}
    if sqlite_batches.supported(engine):
        stores["sqlite inline"] = sqlite_batches.SqliteOrderBatchStore(engine)
        stores["sqlite thread"] = sqlite_batches.SqliteOrderBatchStore(engine, inline=False)
    return stores


@pytest.fixture(params=["unit of work", "sqlite inline", "sqlite thread"])
async def store(request: pytest.FixtureRequest, db: Db) -> Any:
    stores = _stores(db.engine, db.uow)
    if request.param not in stores:
        pytest.skip(f"{request.param}: SQLite only")
    return stores[request.param]


@pytest.fixture
async def account(db: Db) -> TradingAccount:
    account = await _add_account(db, _account(await _user(db, "alice"), "acc-batch"))
    async with db.uow() as uow:
        await uow.ledger.record(
            account.id,
            [LedgerEntry(account.id, "USDT", Decimal(10000), Decimal(0), "deposit", "start", NOW)],
            {"USDT": AssetBalance("USDT", Decimal(10000), Decimal(0))},
            now=NOW,
        )
        await uow.commit()
    return account


def _changes(account: TradingAccount) -> BatchChanges:
    filled = _order(
        account,
        "o-1",
        "client-1",
        type=OrderType.MARKET,
        price=None,
        status=OrderStatus.FILLED,
        filled_quantity=Decimal("0.5"),
        average_price=Decimal("30000.123456789"),
        fees={"BTC": Decimal("0.0005"), "USDT": TINY},
        trade_ids=frozenset({"t-1"}),
        exchange_order_id="paper-1",
        locked_asset="USDT",
        locked_amount=Decimal(0),
        fingerprint="f" * 64,
        updated_at=LATER,
    )
    resting = _order(account, "o-2", "client-2", status=OrderStatus.NEW, locked_asset="USDT",
                     locked_amount=Decimal("1500.25"), reduce_only=True, bot_id="bot-1")  # fmt: skip
    entries = [
        LedgerEntry(account.id, "USDT", Decimal("-1500.25"), Decimal("1500.25"), "lock", "o-2", LATER),
        LedgerEntry(account.id, "USDT", Decimal("-1500.061728394"), Decimal(0), "trade", "o-1", LATER),
        LedgerEntry(account.id, "BTC", Decimal("0.0495"), Decimal(0), "trade", "o-1", LATER),
    ]
    balances = {
        "BTC": AssetBalance("BTC", Decimal("0.0495"), Decimal(0)),
        "USDT": AssetBalance("USDT", Decimal("6999.688271606"), Decimal("1500.25")),
    }
    position = Position(
        account_id=account.id,
        symbol="BTC/USDT",
        kind="spot",
        quantity=Decimal("0.0495"),
        entry_price=Decimal("30000.123456789"),
        realized_pnl=Decimal(0),
        fees_paid=Decimal("1.500061728394"),
        leverage=Decimal(1),
        margin=Decimal(0),
        opened_at=LATER,
        updated_at=LATER,
    )
    return BatchChanges(
        account_id=account.id,
        now=LATER,
        orders=[filled, resting],
        fills=[_fill_record(filled, "t-1", quantity=Decimal("0.5"), realized_pnl=None, bot_id=None)],
        positions=[position],
        entries=entries,
        balances=balances,
    )


async def test_a_batch_reads_back_exactly_through_the_repositories(db: Db, store: Any, account: Any) -> None:
    changes = _changes(account)
    async with store.transaction() as tx:
        state = await tx.load(account.id, ["BTC/USDT", "ETH/USDT"], ["client-1", "nobody"])
        assert state.balances == {"USDT": AssetBalance("USDT", Decimal(10000), Decimal(0))}
        assert state.positions == {"BTC/USDT": None, "ETH/USDT": None}
        assert state.by_client_id == {}
        await tx.write(changes)
    async with db.uow() as uow:
        for order in changes.orders:
            assert await uow.orders.get(order.id) == order
            assert await uow.orders.get_by_client_id(account.id, order.client_order_id) == order
        assert await uow.fills.for_order("o-1") == changes.fills
        assert await uow.positions.get(account.id, "BTC/USDT") == changes.positions[0]
        assert await uow.ledger.balances(account.id) == changes.balances
        stored, _ = await uow.ledger.entries(account.id, limit=10, offset=0)
        assert list(reversed(stored))[1:] == changes.entries  # after the deposit, in order
        assert await uow.ledger.entry_sums(account.id) == {
            asset: (balance.free, balance.locked) for asset, balance in changes.balances.items()
        }
    # The next batch sees what this one stored.
    async with store.transaction() as tx:
        state = await tx.load(account.id, ["BTC/USDT"], ["client-1", "client-2"])
    assert state.balances == changes.balances
    assert state.positions == {"BTC/USDT": changes.positions[0]}
    assert state.by_client_id == {"client-1": changes.orders[0], "client-2": changes.orders[1]}


async def test_leaving_without_write_stores_nothing(db: Db, store: Any, account: Any) -> None:
    async with store.transaction() as tx:
        await tx.load(account.id, ["BTC/USDT"], [])

    async def fail_midway() -> None:
        async with store.transaction() as tx:
            await tx.load(account.id, ["BTC/USDT"], [])
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await fail_midway()
    async with db.uow() as uow:
        assert await uow.orders.get("o-1") is None
    # The lock was given back: another batch goes through.
    async with store.transaction() as tx:
        await tx.load(account.id, [], [])
        await tx.write(_changes(account))
    async with db.uow() as uow:
        assert (await uow.orders.get("o-1")) is not None


async def test_a_client_order_id_taken_meanwhile_is_a_conflict_and_nothing_is_stored(
    db: Db, store: Any, account: Any
) -> None:
    changes = _changes(account)
    async with store.transaction() as tx:
        await tx.load(account.id, [], [])
        await tx.write(changes)
    again = _changes(account)
    again.orders = [_order(account, "o-9", "client-1")]  # same client order id, another order
    again.fills = []

    async def write_again() -> None:
        async with store.transaction() as tx:
            await tx.load(account.id, [], [])
            await tx.write(again)

    with pytest.raises(Conflict):
        await write_again()
    async with db.uow() as uow:
        assert await uow.orders.get("o-9") is None
        assert await uow.ledger.balances(account.id) == changes.balances


async def test_sqlite_waits_for_another_writer_in_the_drivers_thread(db: Db, account: Any) -> None:
    if db.postgresql:
        pytest.skip("SQLite's database lock")
    store = sqlite_batches.SqliteOrderBatchStore(db.engine)
    path = db.engine.url.database
    assert path is not None
    other = sqlite3.connect(path, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another process holding the write lock
    inline: list[bool] = []

    async def batch() -> None:
        async with store.transaction() as tx:
            await tx.load(account.id, [], [])
            inline.append(tx.inline)
            await tx.write(_changes(account))

    task = asyncio.create_task(batch())
    await asyncio.sleep(0.3)
    assert not task.done()  # waiting for the lock, without holding up the event loop
    other.rollback()
    other.close()
    await asyncio.wait_for(task, 10)
    assert inline == [False]
    async with store.transaction() as tx:  # free again: back on the loop's thread
        await tx.load(account.id, [], [])
        assert tx.inline
    async with db.uow() as uow:
        assert (await uow.orders.get("o-1")) is not None


async def test_sqlite_store_is_chosen_only_where_it_works(db: Db) -> None:
    assert sqlite_batches.supported(db.engine) is (not db.postgresql)


async def test_the_wal_checkpointer_checkpoints_off_the_commit_path(db: Db, account: Any) -> None:
    checkpointer = WalCheckpointer.for_engine(db.engine, interval=0.05)
    if db.postgresql:
        assert checkpointer is None
        return
    assert checkpointer is not None
    async with db.engine.connect() as connection:
        pages = (await connection.exec_driver_sql("PRAGMA wal_autocheckpoint")).scalar_one()
    assert pages == SERVER_AUTOCHECKPOINT_PAGES  # the server's commits leave it to the checkpointer
    store = sqlite_batches.SqliteOrderBatchStore(db.engine)
    async with store.transaction() as tx:
        await tx.load(account.id, [], [])
        await tx.write(_changes(account))
    checkpointer.start()
    try:
        for _ in range(100):
            if checkpointer.checkpoints:
                break
            await asyncio.sleep(0.05)
    finally:
        await checkpointer.stop()
    assert checkpointer.checkpoints >= 1
    busy, frames, done = checkpointer.checkpoint()  # reopens its connection after a stop
    assert busy == 0 and frames == done
    await checkpointer.stop()


async def test_consecutive_batches_reuse_the_last_connection_and_its_page_cache(db: Db, account: Any) -> None:
    """The SQLite pool hands out the connection returned last: a connection's page cache is
    dropped whenever another connection wrote since its last transaction, so batches rotating
    over the pool's connections read every page they touch again (measured: some forty page
    reads per batch with five pooled connections, none with this)."""
    if db.postgresql:
        pytest.skip("SQLite's pool")
    connections = [await db.engine.connect() for _ in range(3)]  # concurrent requests grew the pool
    drivers = [(await c.get_raw_connection()).driver_connection for c in connections]
    for connection in connections:
        await connection.close()
    store = sqlite_batches.SqliteOrderBatchStore(db.engine)
    used = []
    for number in range(3):
        async with store.transaction() as tx:
            used.append(tx._driver)
            await tx.load(account.id, [], [])
            if number == 0:
                await tx.write(_changes(account))
    assert used == [drivers[-1]] * 3


async def test_the_checkpointer_starts_the_log_over_under_a_steady_stream_of_commits(
    db: Db, account: Any
) -> None:
    """Commits that never pause long enough for a passive checkpoint to empty the log: the
    RESTART that follows it lets the next writer start the log from its beginning, so the log
    stays short and no commit ever has to checkpoint it by itself."""
    if db.postgresql:
        pytest.skip("SQLite's write-ahead log")
    checkpointer = WalCheckpointer.for_engine(db.engine, interval=0.005, restart_frames=20)
    assert checkpointer is not None
    store = sqlite_batches.SqliteOrderBatchStore(db.engine)
    amount = Decimal("1.5")
    changes = BatchChanges(
        account_id=account.id,
        now=LATER,
        entries=[
            LedgerEntry(account.id, "USDT", -amount, amount, "lock", "o-x", LATER),
            LedgerEntry(account.id, "USDT", amount, -amount, "unlock", "o-x", LATER),
        ],
        balances={"USDT": AssetBalance("USDT", Decimal(10000), Decimal(0))},
    )
    commits = 600
    checkpointer.start()
    try:
        for _ in range(commits):
            async with store.transaction() as tx:
                await tx.load(account.id, [], [])
                await tx.write(changes)
            await asyncio.sleep(0)  # the checkpoints run meanwhile, in their thread
    finally:
        await checkpointer.stop()
    assert checkpointer.restarts >= 1
    busy, frames, done = checkpointer.checkpoint()
    assert busy == 0 and frames == done
    # Every commit writes two frames or more: passive checkpoints alone leave a log of over a
    # thousand frames here (measured: ~2.3 per commit), one that started over holds only the
    # commits since its last restart.
    assert frames < commits
    await checkpointer.stop()
    async with db.uow() as uow:
        sums = await uow.ledger.entry_sums(account.id)
    assert sums["USDT"] == (Decimal(10000), Decimal(0))  # nothing lost on the way
