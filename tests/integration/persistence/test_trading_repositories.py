"""The trading-core repositories (accounts, orders, fills, ledger, positions, equity) and
migration 0004, on SQLite and, when CO_TEST_DATABASE_URL is set, on PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptoorchestrator.core.errors import Conflict, NotFound
from cryptoorchestrator.domain.accounts import EquitySnapshot, TradeRecord, TradingAccount
from cryptoorchestrator.domain.identity import Role
from cryptoorchestrator.domain.ledger import AssetBalance, LedgerEntry
from cryptoorchestrator.domain.orders import (
    Fill,
    Filled,
    Liquidity,
    Order,
    OrderSide,
    OrderStatus,
    OrderType,
    TimeInForce,
    apply_event,
)
from cryptoorchestrator.domain.positions import Position
from cryptoorchestrator.persistence import migrate
from cryptoorchestrator.persistence.database import create_engine, create_null_pool_engine, session_factory
from cryptoorchestrator.persistence.tables import canonical_decimal, storable_decimal
from cryptoorchestrator.persistence.uow import SqlUnitOfWork, unit_of_work_factory
from tests.conftest import PG_URL

pytestmark = pytest.mark.postgres

ZERO = Decimal(0)
NOW = datetime(2026, 3, 14, 15, 9, 26, 535897, tzinfo=UTC)
TINY = Decimal("0.000000000000000001")
BIG = Decimal("123456789012.123456789")
TRADING_TABLES = {
    "trading_accounts",
    "orders",
    "fills",
    "ledger_entries",
    "balances",
    "positions",
    "equity_snapshots",
}

UowFactory = Callable[[], SqlUnitOfWork]


@dataclasses.dataclass
class Db:
    engine: AsyncEngine
    uow: UowFactory
    postgresql: bool


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Db]:
    engine = create_engine(database_url)
    yield Db(engine, unit_of_work_factory(session_factory(engine)), engine.dialect.name == "postgresql")
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
        await uow.commit()
    return user.id


def _account(
    user_id: int, account_id: str, *, kind: str = "paper", name: str | None = None
) -> TradingAccount:
    return TradingAccount(
        id=account_id,
        user_id=user_id,
        kind=kind,
        name=name or kind,
        exchange="binance",
        created_at=NOW,
        updated_at=NOW,
        settings={"starting_balances": {"USDT": "10000"}},
    )


async def _add_account(db: Db, account: TradingAccount) -> TradingAccount:
    async with db.uow() as uow:
        stored = await uow.accounts.add(account)
        await uow.commit()
    return stored


@pytest.fixture
async def alice(db: Db) -> int:
    return await _user(db, "alice")


@pytest.fixture
async def bob(db: Db) -> int:
    return await _user(db, "bob")


@pytest.fixture
async def paper(db: Db, alice: int) -> TradingAccount:
    return await _add_account(db, _account(alice, "acc-paper"))


def _order(
    account: TradingAccount, order_id: str, client_order_id: str | None = None, **fields: Any
) -> Order:
    values: dict[str, Any] = {
        "id": order_id,
        "user_id": account.user_id,
        "account_id": account.id,
        "symbol": "BTC/USDT",
        "side": OrderSide.BUY,
        "type": OrderType.LIMIT,
        "quantity": Decimal("0.5"),
        "price": Decimal("30000.5"),
        "client_order_id": client_order_id or f"c-{order_id}",
        "created_at": NOW,
        "updated_at": NOW,
    }
    values.update(fields)
    return Order(**values)


async def _add_orders(db: Db, *orders: Order) -> None:
    async with db.uow() as uow:
        for order in orders:
            assert await uow.orders.add(order)
        await uow.commit()


def _fill_record(order: Order, trade_id: str, **fields: Any) -> TradeRecord:
    values: dict[str, Any] = {
        "id": f"f-{order.id}-{trade_id}",
        "user_id": order.user_id,
        "account_id": order.account_id,
        "order_id": order.id,
        "trade_id": trade_id,
        "symbol": order.symbol,
        "side": order.side.value,
        "price": Decimal("30000"),
        "quantity": Decimal("0.1"),
        "fee": Decimal("0.0001"),
        "fee_asset": "BTC",
        "liquidity": "taker",
        "timestamp": NOW,
    }
    values.update(fields)
    return TradeRecord(**values)


def _is_canonical(value: Decimal) -> bool:
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)
    return value == canonical_decimal(value) and exponent <= 0 and "E" not in format(value, "f")


# --- the money helpers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("1.500", "1.5"),
        ("1E+1", "10"),
        ("1.23E+5", "123000"),
        ("100", "100"),
        ("0E-18", "0"),
        ("-0", "0"),
        ("-0.000", "0"),
        ("-2.50", "-2.5"),
        ("0.000000000000000001", "0.000000000000000001"),
        ("123456789012.123456789", "123456789012.123456789"),
        ("12345678901234567890.123456789012345678", "12345678901234567890.123456789012345678"),
    ],
)
def test_canonical_decimal(given: str, expected: str) -> None:
    result = canonical_decimal(Decimal(given))
    assert format(result, "f") == expected
    assert result == Decimal(given)
    assert _is_canonical(result)
    assert canonical_decimal(result).as_tuple() == result.as_tuple()  # idempotent


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("0.0000000000000000015", "0.000000000000000002"),  # half-even at 18 places
        ("0.0000000000000000025", "0.000000000000000002"),
        ("-0.0000000000000000035", "-0.000000000000000004"),
        ("-99999999999999999999.999999999999999999", "-99999999999999999999.999999999999999999"),
        ("0.0000000000000000001", "0"),
        ("99999999999999999999.999999999999999999", "99999999999999999999.999999999999999999"),
        (str(Decimal(1) / Decimal(3)), "0.333333333333333333"),
    ],
)
def test_storable_decimal_rounds_like_numeric_38_18(given: str, expected: str) -> None:
    assert format(storable_decimal(Decimal(given)), "f") == expected


@pytest.mark.parametrize(
    "given",
    [
        "NaN",
        "Infinity",
        "-Infinity",
        "1E+20",
        "-100000000000000000000",
        "99999999999999999999.9999999999999999995",
    ],
)
def test_storable_decimal_refuses_what_numeric_38_18_cannot_hold(given: str) -> None:
    with pytest.raises(ValueError):
        storable_decimal(Decimal(given))


# --- trading accounts --------------------------------------------------------------------------------


async def test_accounts_add_get_list(db: Db, alice: int, bob: int) -> None:
    paper = await _add_account(db, _account(alice, "a1"))
    assert paper == _account(alice, "a1")
    exchange = dataclasses.replace(
        _account(alice, "a2", kind="exchange", name="main"),
        created_at=NOW + timedelta(seconds=1),
        credentials_encrypted="ciphertext",
        testnet=True,
        can_withdraw=False,
    )
    await _add_account(db, exchange)
    await _add_account(db, _account(bob, "b1"))
    async with db.uow() as uow:
        assert await uow.accounts.get("a2") == exchange
        assert await uow.accounts.get("missing") is None
        assert await uow.accounts.get_for_user("a2", alice) == exchange
        assert await uow.accounts.get_for_user("a2", bob) is None
        assert await uow.accounts.paper_for_user(alice) == paper
        assert (await uow.accounts.paper_for_user(bob)).id == "b1"  # type: ignore[union-attr]
        assert await uow.accounts.list_for_user(alice, limit=10, offset=0) == ([paper, exchange], 2)
        assert await uow.accounts.list_for_user(alice, limit=1, offset=1) == ([exchange], 2)
        assert await uow.accounts.list_for_user(alice, kind="exchange", limit=10, offset=0) == ([exchange], 1)
    carol = await _user(db, "carol")
    async with db.uow() as uow:
        assert await uow.accounts.paper_for_user(carol) is None
        assert await uow.accounts.list_for_user(carol, limit=10, offset=0) == ([], 0)


async def test_accounts_are_unique_per_user_name_and_one_paper_each(db: Db, alice: int, bob: int) -> None:
    await _add_account(db, _account(alice, "a1", kind="exchange", name="main"))
    await _add_account(db, _account(bob, "b1", kind="exchange", name="main"))  # another user: fine
    with pytest.raises(Conflict):
        await _add_account(db, _account(alice, "a2", kind="exchange", name="main"))
    await _add_account(db, _account(alice, "a3", kind="paper", name="paper"))
    with pytest.raises(Conflict):
        await _add_account(db, _account(alice, "a4", kind="paper", name="second paper"))
    await _add_account(db, _account(alice, "a5", kind="exchange", name="second exchange"))


async def test_accounts_update_and_delete(db: Db, alice: int) -> None:
    await _add_account(db, _account(alice, "a1", kind="exchange", name="main"))
    later = NOW + timedelta(hours=1)
    async with db.uow() as uow:
        updated = await uow.accounts.update(
            "a1",
            now=later,
            name="renamed",
            settings={"fee_rate": "0.001"},
            credentials_encrypted="v2",
            can_withdraw=True,
            active=False,
        )
        await uow.commit()
    assert (updated.name, updated.settings, updated.credentials_encrypted) == (
        "renamed",
        {"fee_rate": "0.001"},
        "v2",
    )
    assert (updated.can_withdraw, updated.active, updated.updated_at, updated.created_at) == (
        True,
        False,
        later,
        NOW,
    )
    async with db.uow() as uow:
        assert await uow.accounts.get("a1") == updated
        with pytest.raises(ValueError, match="kind"):
            await uow.accounts.update("a1", now=later, kind="paper")
        with pytest.raises(NotFound):
            await uow.accounts.update("missing", now=later, name="x")
        await uow.accounts.delete("a1")
        await uow.accounts.delete("missing")  # a no-op
        await uow.commit()
    async with db.uow() as uow:
        assert await uow.accounts.get("a1") is None


async def test_accounts_holding_are_the_active_ones_with_a_non_zero_balance(
    db: Db, alice: int, bob: int
) -> None:
    """What the hourly equity snapshots cover (every user's, whether they traded lately or not)."""
    cash = await _add_account(db, _account(alice, "a-cash"))
    locked = await _add_account(db, _account(bob, "b-locked", kind="exchange", name="main"))
    spent = await _add_account(db, _account(bob, "b-spent"))
    await _add_account(db, _account(alice, "a-empty", kind="exchange", name="empty"))
    idle = await _add_account(db, _account(alice, "a-idle", kind="exchange", name="idle"))
    moves = {
        cash.id: [("USDT", Decimal("0.000000000000000001"), ZERO)],
        locked.id: [("USDT", Decimal(5), ZERO), ("USDT", Decimal(-5), Decimal(5))],
        spent.id: [("USDT", Decimal(10), ZERO), ("USDT", Decimal(-10), ZERO)],
        idle.id: [("BTC", Decimal(1), ZERO)],
    }
    for account_id, changes in moves.items():
        free = locked_total = ZERO
        async with db.uow() as uow:
            for asset, free_delta, locked_delta in changes:
                free, locked_total = free + free_delta, locked_total + locked_delta
                entry = LedgerEntry(account_id, asset, free_delta, locked_delta, "deposit", None, NOW)
                await uow.ledger.record(
                    account_id, [entry], {asset: AssetBalance(asset, free, locked_total)}, now=NOW
                )
            await uow.commit()
    async with db.uow() as uow:
        await uow.accounts.update(idle.id, now=NOW, active=False)
        await uow.commit()
    async with db.uow() as uow:
        holding = await uow.accounts.holding()
    assert [account.id for account in holding] == ["a-cash", "b-locked"]
    assert holding[0] == cash


async def test_account_credentials_take_part_in_key_rotation(db: Db, alice: int) -> None:
    account = dataclasses.replace(_account(alice, "a1", kind="exchange"), credentials_encrypted="old")
    await _add_account(db, account)
    async with db.uow() as uow:
        assert ("trading_accounts", "a1", "credentials_encrypted", "old") in await uow.secrets.all()
        await uow.secrets.replace("trading_accounts", "a1", "credentials_encrypted", "new")
        await uow.commit()
    async with db.uow() as uow:
        assert (await uow.accounts.get("a1")).credentials_encrypted == "new"  # type: ignore[union-attr]


# --- orders -------------------------------------------------------------------------------------------


async def test_order_round_trips_every_field_exactly(db: Db, paper: TradingAccount) -> None:
    order = _order(
        paper,
        "o1",
        type=OrderType.STOP_LIMIT,
        side=OrderSide.SELL,
        quantity=TINY,
        price=BIG,
        stop_price=Decimal("0.10"),
        time_in_force=TimeInForce.IOC,
        reduce_only=True,
        stop_loss=Decimal("1E+1"),
        take_profit=Decimal("-0.5"),
        bot_id="bot-1",
        parent_id="o0",
        oco_group="g1",
        exchange_order_id="x-1",
        status=OrderStatus.NEW,
        locked_asset="BTC",
        locked_amount=Decimal("12345678901234567890.123456789012345678"),
        fingerprint="f" * 64,
        reason="because",
        triggered=True,
    )
    await _add_orders(db, order)
    async with db.uow() as uow:
        stored = await uow.orders.get("o1")
    assert stored == order
    assert stored is not None
    for name in ("quantity", "price", "stop_price", "stop_loss", "take_profit", "locked_amount"):
        assert _is_canonical(getattr(stored, name)), name
    assert format(stored.quantity, "f") == "0.000000000000000001"
    assert format(stored.price, "f") == "123456789012.123456789"  # type: ignore[arg-type]
    assert format(stored.stop_loss, "f") == "10"  # type: ignore[arg-type]
    assert format(stored.stop_price, "f") == "0.1"  # type: ignore[arg-type]


async def test_order_add_is_idempotent_on_client_order_id(db: Db, paper: TradingAccount, bob: int) -> None:
    first = _order(paper, "o1", "same")
    async with db.uow() as uow:
        assert await uow.orders.add(first) is True
        # Another id, same client id: nothing written, and the transaction is still usable.
        assert await uow.orders.add(_order(paper, "o2", "same", quantity=Decimal(9))) is False
        assert await uow.orders.add(first) is False  # the very same order again
        assert await uow.orders.get_by_client_id(paper.id, "same") == first
        assert await uow.orders.add(_order(paper, "o3", "other")) is True
        await uow.commit()
    other_account = await _add_account(db, _account(bob, "acc-bob"))
    async with db.uow() as uow:
        # The key is per account: another account may use the same client id.
        assert await uow.orders.add(_order(other_account, "o4", "same")) is True
        await uow.commit()
    async with db.uow() as uow:
        assert await uow.orders.get("o2") is None
        assert await uow.orders.get_by_client_id(paper.id, "same") == first
        assert await uow.orders.get_by_client_id(paper.id, "nope") is None
        assert (await uow.orders.get_by_client_id("acc-bob", "same")).id == "o4"  # type: ignore[union-attr]


async def test_twenty_concurrent_adds_of_one_client_order_id_store_one_order(
    db: Db, paper: TradingAccount
) -> None:
    async def submit(index: int) -> bool:
        async with db.uow() as uow:
            inserted = await uow.orders.add(_order(paper, f"o{index}", "idempotency-key"))
            await asyncio.sleep(0.01)  # hold the transaction open: the others must wait or skip
            await uow.commit()
        return inserted

    results = await asyncio.gather(*(submit(index) for index in range(20)))
    assert results.count(True) == 1
    async with db.uow() as uow:
        orders, total = await uow.orders.list_for_user(paper.user_id, limit=100, offset=0)
    assert total == 1
    assert orders[0].id == f"o{results.index(True)}"


async def test_order_save_writes_back_the_mutable_state(db: Db, paper: TradingAccount) -> None:
    order = _order(paper, "o1", quantity=Decimal("1"), locked_asset="USDT", locked_amount=Decimal("30000.5"))
    await _add_orders(db, order)
    fills = [
        Fill("t1", "o1", "BTC/USDT", OrderSide.BUY, Decimal("30000"), Decimal("0.3"), Decimal("0.0003"),
             "BTC", Liquidity.MAKER, NOW + timedelta(seconds=1)),
        Fill("t2", "o1", "BTC/USDT", OrderSide.BUY, Decimal("30001"), Decimal("0.4"), Decimal("1.2"),
             "USDT", Liquidity.TAKER, NOW + timedelta(seconds=2)),
    ]  # fmt: skip
    for fill in fills:
        order = apply_event(order, Filled(fill))
    order = dataclasses.replace(
        order, exchange_order_id="x-9", locked_amount=Decimal("9000.15"), reason="partly", triggered=True
    )
    async with db.uow() as uow:
        await uow.orders.save(order)
        await uow.commit()
    async with db.uow() as uow:
        stored = await uow.orders.get("o1")
    assert order.average_price == Decimal("30000.57142857142857142857143")  # 28 digits in memory
    # NUMERIC(38, 18) keeps 18 decimal places (half-even), on SQLite too.
    assert stored == dataclasses.replace(order, average_price=Decimal("30000.571428571428571429"))
    assert stored is not None
    assert stored.status is OrderStatus.PARTIALLY_FILLED
    assert stored.trade_ids == frozenset({"t1", "t2"})
    assert stored.fees == {"BTC": Decimal("0.0003"), "USDT": Decimal("1.2")}
    assert stored.filled_quantity == Decimal("0.7")
    # After a reload, the de-duplication still knows the fills it applied.
    assert apply_event(stored, Filled(fills[0])) == stored
    async with db.uow() as uow:  # saving the reloaded order again changes nothing
        await uow.orders.save(stored)
        await uow.commit()
    async with db.uow() as uow:
        assert await uow.orders.get("o1") == stored
    async with db.uow() as uow:
        with pytest.raises(NotFound):
            await uow.orders.save(_order(paper, "missing"))


async def test_order_save_writes_every_column_even_over_a_stale_read(db: Db, paper: TradingAccount) -> None:
    order = _order(paper, "o1")
    await _add_orders(db, order)
    async with db.uow() as uow:
        loaded = await uow.orders.get("o1")
        async with db.uow() as other:
            canceled = dataclasses.replace(order, status=OrderStatus.CANCELED, reason="user")
            await other.orders.save(canceled)
            await other.commit()
        assert loaded == order
        await uow.orders.save(loaded)  # what this transaction read, unchanged: it still wins
        assert await uow.orders.get("o1") == order
        await uow.commit()
    async with db.uow() as uow:
        assert await uow.orders.get("o1") == order


async def test_order_average_price_keeps_18_decimal_places(db: Db, paper: TradingAccount) -> None:
    order = _order(paper, "o1", filled_quantity=Decimal(3), average_price=Decimal(1) / Decimal(3))
    await _add_orders(db, order)
    async with db.uow() as uow:
        stored = await uow.orders.get("o1")
    assert stored is not None
    assert format(stored.average_price, "f") == "0.333333333333333333"  # type: ignore[arg-type]


async def test_order_get_for_user_hides_other_users_orders(db: Db, paper: TradingAccount, bob: int) -> None:
    await _add_orders(db, _order(paper, "o1"))
    async with db.uow() as uow:
        assert (await uow.orders.get_for_user("o1", paper.user_id)).id == "o1"  # type: ignore[union-attr]
        assert await uow.orders.get_for_user("o1", bob) is None
        assert await uow.orders.get_for_user("missing", bob) is None


async def test_order_listing_filters_and_pages(db: Db, paper: TradingAccount, bob: int) -> None:
    exchange = await _add_account(db, _account(paper.user_id, "acc-x", kind="exchange", name="main"))
    bobs = await _add_account(db, _account(bob, "acc-bob"))
    minute = timedelta(minutes=1)
    orders = [
        _order(paper, "o1", created_at=NOW, status=OrderStatus.FILLED),
        _order(paper, "o2", created_at=NOW + minute, symbol="ETH/USDT", bot_id="b1"),
        _order(exchange, "o3", created_at=NOW + 2 * minute, status=OrderStatus.CANCELED, bot_id="b1"),
        _order(paper, "o4", created_at=NOW + 3 * minute, status=OrderStatus.PARTIALLY_FILLED),
        _order(bobs, "o5", created_at=NOW + 4 * minute),
    ]
    await _add_orders(db, *orders)

    async def ids(**filters: Any) -> tuple[list[str], int]:
        async with db.uow() as uow:
            found, total = await uow.orders.list_for_user(
                paper.user_id, **{"limit": 50, "offset": 0, **filters}
            )
        return [order.id for order in found], total

    assert await ids() == (["o4", "o3", "o2", "o1"], 4)  # newest first, alice's only
    assert await ids(limit=2, offset=1) == (["o3", "o2"], 4)
    assert await ids(symbol="ETH/USDT") == (["o2"], 1)
    assert await ids(status=OrderStatus.FILLED) == (["o1"], 1)
    assert await ids(status="canceled") == (["o3"], 1)
    assert await ids(status=[OrderStatus.FILLED, "partially_filled"]) == (["o4", "o1"], 2)
    assert await ids(bot_id="b1") == (["o3", "o2"], 2)
    assert await ids(account_id="acc-x") == (["o3"], 1)
    assert await ids(start=NOW + minute) == (["o4", "o3", "o2"], 3)
    assert await ids(start=NOW + minute, end=NOW + 3 * minute) == (["o3", "o2"], 2)  # end excluded
    assert await ids(bot_id="b1", account_id="acc-x", status="canceled", symbol="BTC/USDT") == (["o3"], 1)


async def test_open_orders_across_users(db: Db, paper: TradingAccount, bob: int) -> None:
    exchange = await _add_account(db, _account(paper.user_id, "acc-x", kind="exchange", name="main"))
    bobs = await _add_account(db, _account(bob, "acc-bob"))
    minute = timedelta(minutes=1)
    await _add_orders(
        db,
        _order(paper, "o1", created_at=NOW + 5 * minute, status=OrderStatus.NEW),
        _order(paper, "o2", created_at=NOW, status=OrderStatus.FILLED),
        _order(bobs, "o3", created_at=NOW + minute, status=OrderStatus.PENDING, type=OrderType.STOP_MARKET),
        _order(exchange, "o4", created_at=NOW + 2 * minute, status=OrderStatus.UNKNOWN, symbol="ETH/USDT"),
        _order(paper, "o5", created_at=NOW + 3 * minute, status=OrderStatus.PARTIALLY_FILLED),
        _order(paper, "o6", created_at=NOW + 4 * minute, status=OrderStatus.REJECTED),
        _order(bobs, "o7", created_at=NOW + 6 * minute, status=OrderStatus.EXPIRED),
        _order(bobs, "o8", created_at=NOW + 7 * minute, status=OrderStatus.CANCELED),
    )
    async with db.uow() as uow:
        assert [o.id for o in await uow.orders.open_orders()] == ["o3", "o4", "o5", "o1"]  # oldest first
        assert [o.id for o in await uow.orders.open_orders(account_id=paper.id)] == ["o5", "o1"]
        assert [o.id for o in await uow.orders.open_orders(symbol="ETH/USDT")] == ["o4"]
        assert [o.id for o in await uow.orders.open_orders(kinds=["paper"])] == ["o3", "o5", "o1"]
        assert [o.id for o in await uow.orders.open_orders(kinds=["exchange"])] == ["o4"]
        assert [o.id for o in await uow.orders.open_orders(types=["stop_market"])] == ["o3"]
        assert [o.id for o in await uow.orders.open_orders(types=[OrderType.LIMIT], kinds=["paper"])] == [
            "o5",
            "o1",
        ]


async def test_lock_for_update_reads_the_current_state(db: Db, paper: TradingAccount) -> None:
    await _add_orders(db, _order(paper, "o1"))
    async with db.uow() as uow:
        before = await uow.orders.get("o1")
        async with db.uow() as other:
            await other.orders.save(dataclasses.replace(before, status=OrderStatus.NEW))  # type: ignore[arg-type]
            await other.commit()
        locked = await uow.orders.lock_for_update("o1")
        assert locked is not None
        assert locked.status is OrderStatus.NEW
        assert await uow.orders.lock_for_update("missing") is None


async def test_lock_for_update_serialises_writers(db: Db, paper: TradingAccount) -> None:
    order = _order(paper, "o1")
    await _add_orders(db, order)

    async def lock_and_save() -> Order:
        async with db.uow() as uow:
            current = await uow.orders.lock_for_update("o1")
            assert current is not None
            updated = dataclasses.replace(current, reason=f"{current.reason}+second")
            await uow.orders.save(updated)
            await uow.commit()
        return updated

    async with db.uow() as uow:
        current = await uow.orders.lock_for_update("o1")
        assert current is not None
        waiting = asyncio.create_task(lock_and_save())
        await asyncio.sleep(0.3)
        assert not waiting.done(), "a second lock_for_update must wait for the first transaction"
        if db.postgresql:
            # FOR NO KEY UPDATE: another transaction can still insert a fill referencing the order
            # (SQLite has only the database write lock: there, every other writer waits).
            async with db.uow() as other:
                assert await asyncio.wait_for(other.fills.add(_fill_record(order, "t1")), timeout=5)
                await other.commit()
        await uow.orders.save(dataclasses.replace(current, reason="first"))
        await uow.commit()
    assert (await asyncio.wait_for(waiting, timeout=5)).reason == "first+second"


# --- fills --------------------------------------------------------------------------------------------


async def test_fill_add_deduplicates_per_order_and_trade_id(db: Db, paper: TradingAccount) -> None:
    o1, o2 = _order(paper, "o1"), _order(paper, "o2")
    await _add_orders(db, o1, o2)
    record = _fill_record(
        o1, "t1", price=BIG, quantity=TINY, realized_pnl=Decimal("-1.50"), bot_id="b", strategy="s"
    )
    async with db.uow() as uow:
        assert await uow.fills.add(record) is True
        assert await uow.fills.add(dataclasses.replace(record, id="another")) is False
        assert await uow.fills.add(record) is False
        assert await uow.fills.add(_fill_record(o2, "t1")) is True  # same trade id, other order
        await uow.commit()
    async with db.uow() as uow:
        stored = await uow.fills.get_for_user(record.id, paper.user_id)
        assert stored == record
        assert stored is not None
        assert format(stored.realized_pnl, "f") == "-1.5"  # type: ignore[arg-type]
        assert _is_canonical(stored.quantity) and _is_canonical(stored.price)
        assert await uow.fills.get_for_user("another", paper.user_id) is None
        assert await uow.fills.get_for_user(record.id, paper.user_id + 1000) is None
        assert [fill.id for fill in await uow.fills.for_order("o1")] == [record.id]


async def test_fill_listing_filters_and_pages(db: Db, paper: TradingAccount, bob: int) -> None:
    exchange = await _add_account(db, _account(paper.user_id, "acc-x", kind="exchange", name="main"))
    bobs = await _add_account(db, _account(bob, "acc-bob"))
    o1, o2, o3 = _order(paper, "o1"), _order(exchange, "o2", symbol="ETH/USDT"), _order(bobs, "o3")
    await _add_orders(db, o1, o2, o3)
    second = timedelta(seconds=1)
    records = [
        _fill_record(o1, "t1", timestamp=NOW + 2 * second),
        _fill_record(o1, "t2", timestamp=NOW, bot_id="b1"),
        _fill_record(o2, "t3", timestamp=NOW + second, symbol="ETH/USDT", bot_id="b1"),
        _fill_record(o3, "t4", timestamp=NOW + 3 * second),
    ]
    async with db.uow() as uow:
        for record in records:
            assert await uow.fills.add(record)
        await uow.commit()

    async def ids(**filters: Any) -> tuple[list[str], int]:
        async with db.uow() as uow:
            found, total = await uow.fills.list_for_user(
                paper.user_id, **{"limit": 50, "offset": 0, **filters}
            )
        return [record.trade_id for record in found], total

    assert await ids() == (["t1", "t3", "t2"], 3)  # newest first, alice's only
    assert await ids(limit=1, offset=1) == (["t3"], 3)
    assert await ids(symbol="BTC/USDT") == (["t1", "t2"], 2)
    assert await ids(bot_id="b1") == (["t3", "t2"], 2)
    assert await ids(account_id="acc-x") == (["t3"], 1)
    assert await ids(start=NOW + second) == (["t1", "t3"], 2)
    assert await ids(end=NOW + 2 * second) == (["t3", "t2"], 2)
    async with db.uow() as uow:
        assert [r.trade_id for r in await uow.fills.for_order("o1")] == ["t2", "t1"]  # oldest first
        assert await uow.fills.for_order("missing") == []


async def test_fill_summary(db: Db, paper: TradingAccount, bob: int) -> None:
    o1, o2 = _order(paper, "o1"), _order(paper, "o2", symbol="ETH/USDT")
    bobs = await _add_account(db, _account(bob, "acc-bob"))
    o3 = _order(bobs, "o3")
    await _add_orders(db, o1, o2, o3)
    records = [
        _fill_record(o1, "t1", fee=TINY, fee_asset="BTC"),  # an opening fill: no P&L
        _fill_record(o1, "t2", realized_pnl=BIG, fee=Decimal("0.5"), fee_asset="USDT"),
        _fill_record(o1, "t3", realized_pnl=Decimal("-0.000000000000000003"), fee=TINY, fee_asset="BTC"),
        _fill_record(o2, "t4", realized_pnl=Decimal("-2.25"), fee=Decimal("0.25"), fee_asset="USDT"),
        _fill_record(o2, "t5", realized_pnl=Decimal(0), fee=Decimal(0), fee_asset="USDT"),
        _fill_record(o3, "t6", realized_pnl=Decimal(1000), fee=Decimal(1), fee_asset="USDT"),
    ]
    async with db.uow() as uow:
        for record in records:
            assert await uow.fills.add(record)
        await uow.commit()
    async with db.uow() as uow:
        summary = await uow.fills.summary_for_user(paper.user_id)
        eth = await uow.fills.summary_for_user(paper.user_id, symbol="ETH/USDT")
        empty = await uow.fills.summary_for_user(paper.user_id, start=NOW + timedelta(days=1))
    assert summary == {
        "count": 5,
        "closing_count": 4,
        "realized_pnl": Decimal("123456789009.873456788999999997"),
        "gross_profit": BIG,
        "gross_loss": Decimal("-2.250000000000000003"),
        "wins": 1,
        "losses": 2,
        "fees": {"BTC": Decimal("0.000000000000000002"), "USDT": Decimal("0.75")},
    }
    assert all(_is_canonical(summary[key]) for key in ("realized_pnl", "gross_profit", "gross_loss"))
    assert format(summary["fees"]["USDT"], "f") == "0.75"
    assert eth["count"] == 2 and eth["realized_pnl"] == Decimal("-2.25") and eth["losses"] == 1
    assert empty == {
        "count": 0,
        "closing_count": 0,
        "realized_pnl": Decimal(0),
        "gross_profit": Decimal(0),
        "gross_loss": Decimal(0),
        "wins": 0,
        "losses": 0,
        "fees": {},
    }


# --- ledger -------------------------------------------------------------------------------------------


def _entry(account: TradingAccount, asset: str, free: str, locked: str = "0", **fields: Any) -> LedgerEntry:
    values: dict[str, Any] = {
        "account_id": account.id,
        "asset": asset,
        "free_delta": Decimal(free),
        "locked_delta": Decimal(locked),
        "kind": "deposit",
        "reference": "opening",
        "timestamp": NOW,
    }
    values.update(fields)
    return LedgerEntry(**values)


async def test_ledger_records_entries_and_balances(db: Db, paper: TradingAccount) -> None:
    opening = [_entry(paper, "USDT", "10000"), _entry(paper, "BTC", "0.000000000000000001")]
    async with db.uow() as uow:
        assert await uow.ledger.balances(paper.id) == {}
        await uow.ledger.record(
            paper.id,
            opening,
            {"USDT": AssetBalance("USDT", Decimal("10000")), "BTC": AssetBalance("BTC", TINY)},
            now=NOW,
        )
        await uow.commit()
    lock = [_entry(paper, "USDT", "-15000.25", "15000.25", kind="lock", reference="o1")]
    trade = [
        _entry(paper, "USDT", "0", "-15000.25", kind="trade", reference="t1"),
        _entry(paper, "BTC", "0.5", kind="trade", reference="t1"),
        _entry(paper, "BTC", "-0.0005", kind="fee", reference="t1"),
    ]
    async with db.uow() as uow:
        balances = await uow.ledger.balances_for_update(paper.id)
        assert balances == {"BTC": AssetBalance("BTC", TINY), "USDT": AssetBalance("USDT", Decimal(10000))}
        # 10000 - 15000.25 would be negative in real life; the repository stores what it is given.
        await uow.ledger.record(
            paper.id, lock, {"USDT": AssetBalance("USDT", Decimal("-5000.25"), Decimal("15000.25"))}, now=NOW
        )
        # Read-your-writes inside the transaction.
        assert (await uow.ledger.balances(paper.id))["USDT"].locked == Decimal("15000.25")
        await uow.ledger.record(
            paper.id,
            trade,
            {
                "USDT": AssetBalance("USDT", Decimal("-5000.25"), Decimal(0)),
                "BTC": AssetBalance("BTC", Decimal("0.499500000000000001")),
            },
            now=NOW + timedelta(seconds=1),
        )
        await uow.commit()
    async with db.uow() as uow:
        balances = await uow.ledger.balances(paper.id)
        sums = await uow.ledger.entry_sums(paper.id)
        entries, total = await uow.ledger.entries(paper.id, limit=100, offset=0)
        btc, btc_total = await uow.ledger.entries(paper.id, asset="BTC", limit=2, offset=0)
    assert balances == {
        "BTC": AssetBalance("BTC", Decimal("0.499500000000000001"), Decimal(0)),
        "USDT": AssetBalance("USDT", Decimal("-5000.25"), Decimal(0)),
    }
    assert all(_is_canonical(b.free) and _is_canonical(b.locked) for b in balances.values())
    # The balances are the sum of the entries.
    assert sums == {asset: (balance.free, balance.locked) for asset, balance in balances.items()}
    assert all(_is_canonical(free) and _is_canonical(locked) for free, locked in sums.values())
    assert total == 6
    assert entries == list(reversed(opening + lock + trade))  # newest first
    assert (btc, btc_total) == ([trade[2], trade[1]], 3)


async def test_ledger_record_refuses_entries_of_another_account(db: Db, paper: TradingAccount) -> None:
    async with db.uow() as uow:
        with pytest.raises(ValueError, match="account"):
            await uow.ledger.record(paper.id, [_entry(paper, "USDT", "1", account_id="x")], {}, now=NOW)
        with pytest.raises(ValueError, match="BTC"):
            await uow.ledger.record(paper.id, [], {"USDT": AssetBalance("BTC")}, now=NOW)
        await uow.ledger.record(paper.id, [], {}, now=NOW)  # nothing to do
        assert await uow.ledger.entry_sums(paper.id) == {}


async def test_ledger_entries_are_append_only(db: Db, paper: TradingAccount, alice: int) -> None:
    async with db.uow() as uow:
        await uow.ledger.record(
            paper.id, [_entry(paper, "USDT", "100")], {"USDT": AssetBalance("USDT", Decimal(100))}, now=NOW
        )
        await uow.commit()
    for statement in (
        "UPDATE ledger_entries SET free_delta = 1",
        "DELETE FROM ledger_entries",
        "DELETE FROM ledger_entries WHERE account_id = 'acc-paper'",
    ):
        with pytest.raises(DBAPIError, match="append-only"):
            async with db.engine.begin() as connection:
                await connection.execute(text(statement))
    async with db.uow() as uow:
        assert await uow.ledger.entry_sums(paper.id) == {"USDT": (Decimal(100), Decimal(0))}
        # Deleting the account deletes its history with it.
        await uow.accounts.delete(paper.id)
        await uow.commit()
    async with db.engine.connect() as connection:
        assert (await connection.execute(text("SELECT COUNT(*) FROM ledger_entries"))).scalar_one() == 0
        assert (await connection.execute(text("SELECT COUNT(*) FROM balances"))).scalar_one() == 0


async def test_deleting_an_account_or_user_cascades_to_everything_it_owns(
    db: Db, alice: int, bob: int
) -> None:
    accounts = [await _add_account(db, _account(alice, "a1")), await _add_account(db, _account(bob, "b1"))]
    for account in accounts:
        order = _order(account, f"o-{account.id}")
        await _add_orders(db, order)
        async with db.uow() as uow:
            assert await uow.fills.add(_fill_record(order, "t1"))
            await uow.ledger.record(
                account.id,
                [_entry(account, "USDT", "5")],
                {"USDT": AssetBalance("USDT", Decimal(5))},
                now=NOW,
            )
            await uow.positions.save(_position(account, "BTC/USDT"))
            await uow.equity.upsert(EquitySnapshot(account.id, date(2026, 3, 14), Decimal(5), "USDT", NOW))
            await uow.commit()
    async with db.engine.begin() as connection:
        await connection.execute(text("DELETE FROM trading_accounts WHERE id = 'a1'"))
        counts = {
            table: (await connection.execute(text(f"SELECT COUNT(*) FROM {table}"))).scalar_one()
            for table in sorted(TRADING_TABLES)
        }
        assert counts == dict.fromkeys(TRADING_TABLES, 1)
        await connection.execute(text(f"DELETE FROM users WHERE id = {bob}"))
        for table in TRADING_TABLES:
            assert (await connection.execute(text(f"SELECT COUNT(*) FROM {table}"))).scalar_one() == 0


async def test_balances_for_update_serialises_ledger_writers(db: Db, paper: TradingAccount) -> None:
    async def deposit(amount: Decimal, *, hold: float) -> None:
        async with db.uow() as uow:
            balances = await uow.ledger.balances_for_update(paper.id)
            current = balances.get("USDT", AssetBalance("USDT"))
            await asyncio.sleep(hold)
            new = dataclasses.replace(current, free=current.free + amount)
            await uow.ledger.record(paper.id, [_entry(paper, "USDT", str(amount))], {"USDT": new}, now=NOW)
            await uow.commit()

    # No balance row exists yet: the account row lock still makes the second writer wait.
    await asyncio.gather(deposit(Decimal("1.1"), hold=0.3), deposit(Decimal("2.2"), hold=0.0))
    async with db.uow() as uow:
        assert await uow.ledger.balances(paper.id) == {"USDT": AssetBalance("USDT", Decimal("3.3"))}
        assert await uow.ledger.entry_sums(paper.id) == {"USDT": (Decimal("3.3"), Decimal(0))}


# --- positions ----------------------------------------------------------------------------------------


def _position(account: TradingAccount, symbol: str, **fields: Any) -> Position:
    values: dict[str, Any] = {
        "account_id": account.id,
        "symbol": symbol,
        "kind": "spot",
        "quantity": Decimal("0.5"),
        "entry_price": Decimal("30000.5"),
        "realized_pnl": Decimal(0),
        "fees_paid": TINY,
        "leverage": Decimal(1),
        "margin": Decimal(0),
        "opened_at": NOW,
        "updated_at": NOW,
    }
    values.update(fields)
    return Position(**values)


async def test_positions_save_get_and_list(db: Db, paper: TradingAccount, bob: int) -> None:
    swap = await _add_account(db, _account(paper.user_id, "acc-x", kind="exchange", name="main"))
    bobs = await _add_account(db, _account(bob, "acc-bob"))
    btc = _position(paper, "BTC/USDT")
    eth = _position(
        paper, "ETH/USDT", quantity=Decimal(0), entry_price=None, opened_at=None, realized_pnl=BIG
    )
    short = _position(
        swap,
        "BTC/USDT:USDT",
        kind="swap",
        quantity=Decimal("-2.000"),
        leverage=Decimal("10"),
        margin=Decimal("6000.1"),
        realized_pnl=Decimal("-3.5"),
    )
    other = _position(bobs, "BTC/USDT")
    async with db.uow() as uow:
        assert await uow.positions.get(paper.id, "BTC/USDT") is None
        for position in (btc, eth, short, other):
            await uow.positions.save(position)
        assert await uow.positions.get(paper.id, "BTC/USDT") == btc
        await uow.commit()
    async with db.uow() as uow:
        assert await uow.positions.get(paper.id, "ETH/USDT") == eth
        stored = await uow.positions.get("acc-x", "BTC/USDT:USDT")
        assert stored == short
        assert stored is not None and format(stored.quantity, "f") == "-2" and stored.side == "short"
        assert await uow.positions.list(paper.id) == [btc]  # open only by default
        assert await uow.positions.list(paper.id, open_only=False) == [btc, eth]
        assert await uow.positions.list([paper.id, "acc-x"]) == [btc, short]
        assert await uow.positions.list([paper.id, "acc-x"], symbol="BTC/USDT") == [btc]
        assert await uow.positions.list([]) == []
        assert await uow.positions.list_for_user(paper.user_id) == [btc, short]
        assert await uow.positions.list_for_user(paper.user_id, open_only=False) == [btc, eth, short]
        assert await uow.positions.list_for_user(paper.user_id, account_id="acc-x") == [short]
        assert await uow.positions.list_for_user(paper.user_id, symbol="ETH/USDT", open_only=False) == [eth]
        assert await uow.positions.list_for_user(bob) == [other]


async def test_position_save_replaces_and_reads_back_in_the_same_transaction(
    db: Db, paper: TradingAccount
) -> None:
    first = _position(paper, "BTC/USDT")
    closed = dataclasses.replace(
        first,
        quantity=Decimal("0E-18"),
        entry_price=None,
        realized_pnl=Decimal("12.50"),
        fees_paid=Decimal("0.02"),
        updated_at=NOW + timedelta(hours=1),
    )
    async with db.uow() as uow:
        await uow.positions.save(first)
        assert await uow.positions.get(paper.id, "BTC/USDT") == first
        await uow.positions.save(closed)
        assert await uow.positions.get(paper.id, "BTC/USDT") == closed
        assert await uow.positions.list(paper.id) == []  # flat: zero is stored canonically
        await uow.commit()
    async with db.uow() as uow:
        stored = await uow.positions.get(paper.id, "BTC/USDT")
    assert stored == closed
    assert stored is not None and stored.quantity.as_tuple() == Decimal(0).as_tuple()


# --- equity snapshots ---------------------------------------------------------------------------------


async def test_equity_snapshots_upsert_and_list(db: Db, paper: TradingAccount) -> None:
    days = [date(2026, 3, 1) + timedelta(days=offset) for offset in range(3)]
    snapshots = [EquitySnapshot(paper.id, day, BIG + index, "USDT", NOW) for index, day in enumerate(days)]
    async with db.uow() as uow:
        for snapshot in reversed(snapshots):
            await uow.equity.upsert(snapshot)
        await uow.commit()
    replaced = dataclasses.replace(snapshots[1], equity=TINY, taken_at=NOW + timedelta(hours=2))
    async with db.uow() as uow:
        assert await uow.equity.list(paper.id) == snapshots  # oldest first
        await uow.equity.upsert(replaced)
        assert await uow.equity.list(paper.id, since=days[1]) == [replaced, snapshots[2]]
        await uow.commit()
    async with db.uow() as uow:
        assert await uow.equity.list(paper.id) == [snapshots[0], replaced, snapshots[2]]
        assert await uow.equity.list(paper.id, since=date(2027, 1, 1)) == []
        assert await uow.equity.list("missing") == []


# --- migration 0004 -----------------------------------------------------------------------------------


async def _schema(url: str) -> tuple[set[str], set[str]]:
    """(tables, ledger triggers) of the database at ``url``."""
    engine = create_null_pool_engine(url)
    async with engine.connect() as connection:
        tables = await connection.run_sync(lambda sync: set(inspect(sync).get_table_names()))
        if engine.dialect.name == "postgresql":
            query = "SELECT tgname FROM pg_trigger WHERE tgname LIKE 'ledger_entries%'"
        else:
            query = "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'ledger_entries%'"
        triggers = set((await connection.execute(text(query))).scalars())
    await engine.dispose()
    return tables, triggers


@pytest.fixture(params=["sqlite", "postgresql"])
def migration_url(request: pytest.FixtureRequest, tmp_path: Path, postgres_ready: str | None) -> str:
    if request.param == "postgresql":
        if not postgres_ready:
            pytest.skip("CO_TEST_DATABASE_URL is not set: no PostgreSQL to migrate")
        assert PG_URL is not None
        return PG_URL
    return f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"


async def test_migration_0004_upgrade_downgrade_upgrade(migration_url: str) -> None:
    await migrate.aupgrade(migration_url)  # head, then back to this revision
    await migrate.adowngrade(migration_url, "0004_trading")
    assert await migrate.acurrent(migration_url) == "0004_trading"
    tables, triggers = await _schema(migration_url)
    assert tables >= TRADING_TABLES | {"users", "backtests"}
    assert triggers == {"ledger_entries_no_update", "ledger_entries_no_delete"}

    await migrate.adowngrade(migration_url, "0003")
    assert await migrate.acurrent(migration_url) == "0003"
    tables, triggers = await _schema(migration_url)
    assert not tables & TRADING_TABLES
    assert tables >= {"users", "backtests"}
    assert triggers == set()

    await migrate.aupgrade(migration_url, "0004_trading")
    assert await migrate.acurrent(migration_url) == "0004_trading"
    tables, triggers = await _schema(migration_url)
    assert tables >= TRADING_TABLES
    assert triggers == {"ledger_entries_no_update", "ledger_entries_no_delete"}
    await migrate.aupgrade(migration_url)  # leave the database at head for the other tests
