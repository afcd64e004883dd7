"""Repositories of the trading core: the trading ports in ``services/ports.py`` over SQLAlchemy.

They never commit, and rows never leave: every method takes and returns domain records.

Conventions shared by every repository here:

* Money is exact: what goes in comes back equal, in canonical form (``Decimal("1.50")`` comes
  back as ``Decimal("1.5")``), rounded half-even to 18 decimal places (NUMERIC(38, 18)).
* Time filters are half-open: ``start <= t < end``.
* Listings return ``(records, total)``, newest first, like the other repositories.
* ``orders.lock_for_update`` and ``ledger.balances_for_update`` lock rows on PostgreSQL and take
  the database write lock on SQLite (which has no row locks): keep those transactions short.
* Idempotent inserts (``orders.add``, ``fills.add``) use ``INSERT ... ON CONFLICT DO NOTHING``:
  a duplicate answers ``False`` and leaves the transaction usable (no IntegrityError, so no
  aborted PostgreSQL transaction).

Speed: the order path runs about ten statements per order, so the statements it uses are built
once, here at import (Core statements on the tables, no ORM unit of work, no identity map), with
``bindparam`` placeholders, and executed with parameter dictionaries: SQLAlchemy computes their
cache keys once and finds their compiled form in the engine's compiled cache on every call.
The dialect-specific ones (``ON CONFLICT``, ``FOR NO KEY UPDATE``) exist once per dialect. Rows
are read as Core rows (``row.column``), never as ORM objects.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import date, datetime
from decimal import Context, Decimal
from typing import Any, NamedTuple, cast

from sqlalchemy import (
    ColumnElement,
    Select,
    Table,
    bindparam,
    case,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from cryptoorchestrator.core.errors import NotFound
from cryptoorchestrator.domain.accounts import EquitySnapshot, TradeRecord, TradingAccount
from cryptoorchestrator.domain.ledger import AssetBalance, LedgerEntry
from cryptoorchestrator.domain.orders import (
    OPEN_STATUSES,
    Order,
    OrderSide,
    OrderStatus,
    OrderType,
    TimeInForce,
)
from cryptoorchestrator.domain.positions import Position
from cryptoorchestrator.persistence.tables import (
    BalanceRow,
    EquitySnapshotRow,
    FillRow,
    LedgerEntryRow,
    OrderRow,
    PositionRow,
    TradingAccountRow,
    canonical_decimal,
    storable_text,
)

ZERO = Decimal(0)
# Sums in Python (SQLite) must not round: NUMERIC(38, 18) values need up to 38 digits.
_EXACT = Context(prec=80)

_ACCOUNTS = cast(Table, TradingAccountRow.__table__)
_ORDERS = cast(Table, OrderRow.__table__)
_FILLS = cast(Table, FillRow.__table__)
_LEDGER = cast(Table, LedgerEntryRow.__table__)
_BALANCES = cast(Table, BalanceRow.__table__)
_POSITIONS = cast(Table, PositionRow.__table__)
_EQUITY = cast(Table, EquitySnapshotRow.__table__)


def _same_named(columns: tuple[str, ...]) -> Callable[[Any], dict[str, Any]]:
    """The values of a row whose columns are the record's attributes of the same names."""

    def values(record: Any) -> dict[str, Any]:
        return {name: getattr(record, name) for name in columns}

    return values


_fill_values = _same_named(tuple(c.name for c in _FILLS.columns))
_entry_values = _same_named(tuple(c.name for c in _LEDGER.columns if c.name != "id"))
_position_values = _same_named(tuple(c.name for c in _POSITIONS.columns))


class _PerDialect(NamedTuple):
    """One statement built for each backend (``INSERT ... ON CONFLICT`` is dialect-specific)."""

    sqlite: Any
    postgresql: Any

    @classmethod
    def build(cls, make: Callable[[Callable[[Table], Any]], Any]) -> _PerDialect:
        """``make(insert)`` with each dialect's ``insert`` (which has ``on_conflict_do_*``)."""
        return cls(make(sqlite.insert), make(postgresql.insert))


def _upsert(key: Sequence[str], table: Table) -> _PerDialect:
    """``INSERT ... ON CONFLICT (key) DO UPDATE SET`` every other column from the new row."""

    def make(dialect_insert: Callable[[Table], Any]) -> Any:
        stmt = dialect_insert(table)
        changed = {c.name: stmt.excluded[c.name] for c in table.columns if c.name not in key}
        return stmt.on_conflict_do_update(index_elements=list(key), set_=changed)

    return _PerDialect.build(make)


def _insert_or_skip(key: Sequence[str], table: Table) -> _PerDialect:
    """``INSERT ... ON CONFLICT (key) DO NOTHING``: its row count says whether the row went in
    (1) or was skipped (0). No RETURNING: on SQLite the rows it returns cost one more trip
    through aiosqlite's thread, to learn what the row count already says."""
    return _PerDialect.build(
        lambda dialect_insert: dialect_insert(table).on_conflict_do_nothing(index_elements=list(key))
    )


def _sqlite_write_lock_statement(table: Table, column: str) -> Any:
    """A no-op UPDATE of one row (``SET column = column``): see :meth:`_Repository._write_lock`."""
    return update(table).where(table.c.id == bindparam("b_key")).values({column: table.c[column]})


class _Repository:
    """The session and its backend (known on first use, not per statement)."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session
        self._pg: bool | None = None

    @property
    def _postgresql(self) -> bool:
        if self._pg is None:
            self._pg = self._session.get_bind().dialect.name == "postgresql"
        return self._pg

    def _for_dialect(self, statements: _PerDialect) -> Any:
        return statements.postgresql if self._postgresql else statements.sqlite

    async def _execute(self, stmt: Any, params: Any = None) -> Any:
        """The statement's ``Result`` (typed ``Any``: rows are read by name or unpacked)."""
        return await self._session.execute(stmt, params)

    async def _write_lock(self, stmt: Any, key: Any) -> None:
        """Take SQLite's database write lock now (a no-op UPDATE of the row), held until the
        transaction ends. SQLite has no row locks and pysqlite starts a transaction only at the
        first write, so without this a read-modify-write could lose a concurrent update; with it
        the other writers wait (busy timeout) for this transaction: keep it short, no network
        calls inside."""
        await self._execute(stmt, {"b_key": key})

    async def _page(
        self, base: Select[Any], *order_by: Any, limit: int, offset: int
    ) -> tuple[Sequence[Any], int]:
        total = (await self._execute(select(func.count()).select_from(base.subquery()))).scalar_one()
        rows = (await self._execute(base.order_by(*order_by).limit(limit).offset(offset))).all()
        return rows, int(total)


def _time_range(column: Any, start: datetime | None, end: datetime | None) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if start is not None:
        conditions.append(column >= start)
    if end is not None:
        conditions.append(column < end)
    return conditions


# --- trading accounts ------------------------------------------------------------------------------

_A = _ACCOUNTS.c
_ACCOUNT_INSERT = insert(_ACCOUNTS)
_ACCOUNT_BY_ID = select(_ACCOUNTS).where(_A.id == bindparam("b_id"))
_ACCOUNT_BY_ID_FOR_USER = _ACCOUNT_BY_ID.where(_A.user_id == bindparam("b_user"))
_PAPER_ACCOUNT = (
    select(_ACCOUNTS)
    .where(_A.user_id == bindparam("b_user"), _A.kind == "paper")
    .order_by(_A.created_at)
    .limit(1)
)
_ACCOUNT_UPDATE = update(_ACCOUNTS).where(_A.id == bindparam("b_id")).returning(*_ACCOUNTS.columns)
_ACCOUNT_DELETE = delete(_ACCOUNTS).where(_A.id == bindparam("b_id"))
_ACCOUNT_WRITE_LOCK = _sqlite_write_lock_statement(_ACCOUNTS, "active")
_ACCOUNT_ROW_LOCK = select(_A.id).where(_A.id == bindparam("b_id")).with_for_update(key_share=True)


def _account(row: Any) -> TradingAccount:
    return TradingAccount(
        id=row.id,
        user_id=row.user_id,
        kind=row.kind,
        name=row.name,
        exchange=row.exchange,
        created_at=row.created_at,
        updated_at=row.updated_at,
        settings=dict(row.settings or {}),
        credentials_encrypted=row.credentials_encrypted,
        testnet=row.testnet,
        can_withdraw=row.can_withdraw,
        active=row.active,
    )


class SqlTradingAccountRepository(_Repository):
    """``settings`` is stored as JSON: it must hold JSON values (decimals as strings)."""

    _UPDATABLE = frozenset(
        {"name", "exchange", "settings", "credentials_encrypted", "testnet", "can_withdraw", "active"}
    )

    async def add(self, account: TradingAccount) -> TradingAccount:
        settings = dict(account.settings)
        await self._execute(
            _ACCOUNT_INSERT,
            {
                "id": account.id,
                "user_id": account.user_id,
                "kind": account.kind,
                "name": account.name,
                "exchange": account.exchange,
                "settings": settings,
                "credentials_encrypted": account.credentials_encrypted,
                "testnet": account.testnet,
                "can_withdraw": account.can_withdraw,
                "active": account.active,
                "created_at": account.created_at,
                "updated_at": account.updated_at,
            },
        )
        return replace(account, settings=settings)

    async def _one(self, stmt: Any, params: dict[str, Any]) -> TradingAccount | None:
        row = (await self._execute(stmt, params)).first()
        return _account(row) if row is not None else None

    async def get(self, account_id: str) -> TradingAccount | None:
        return await self._one(_ACCOUNT_BY_ID, {"b_id": account_id})

    async def get_for_user(self, account_id: str, user_id: int) -> TradingAccount | None:
        return await self._one(_ACCOUNT_BY_ID_FOR_USER, {"b_id": account_id, "b_user": user_id})

    async def paper_for_user(self, user_id: int) -> TradingAccount | None:
        return await self._one(_PAPER_ACCOUNT, {"b_user": user_id})

    async def list_for_user(
        self, user_id: int, *, kind: str | None = None, limit: int, offset: int
    ) -> tuple[list[TradingAccount], int]:
        base = select(_ACCOUNTS).where(_A.user_id == user_id)
        if kind is not None:
            base = base.where(_A.kind == kind)
        rows, total = await self._page(base, _A.created_at, _A.id, limit=limit, offset=offset)
        return [_account(row) for row in rows], total

    async def holding(self) -> list[TradingAccount]:
        held = select(_BALANCES.c.account_id).where(
            _BALANCES.c.account_id == _A.id, or_(_BALANCES.c.free != ZERO, _BALANCES.c.locked != ZERO)
        )
        stmt = select(_ACCOUNTS).where(_A.active.is_(True), held.exists()).order_by(_A.id)
        return [_account(row) for row in await self._execute(stmt)]

    async def update(self, account_id: str, *, now: datetime, **fields: Any) -> TradingAccount:
        unknown = set(fields) - self._UPDATABLE
        if unknown:
            raise ValueError(f"not updatable: {sorted(unknown)}")
        values = {name: dict(value) if name == "settings" else value for name, value in fields.items()}
        values["updated_at"] = now
        values["b_id"] = account_id
        row = (await self._execute(_ACCOUNT_UPDATE, values)).first()
        if row is None:
            raise NotFound("Trading account not found.")
        return _account(row)

    async def delete(self, account_id: str) -> None:
        """Deletes the account and, by cascade, its orders, fills, ledger, balances, positions
        and equity snapshots."""
        await self._execute(_ACCOUNT_DELETE, {"b_id": account_id})


# --- orders -----------------------------------------------------------------------------------------

_O = _ORDERS.c
_ORDER_INSERT = _insert_or_skip(["account_id", "client_order_id"], _ORDERS)
_ORDER_BY_ID = select(_ORDERS).where(_O.id == bindparam("b_id"))
_ORDER_BY_ID_FOR_USER = _ORDER_BY_ID.where(_O.user_id == bindparam("b_user"))
_ORDER_BY_CLIENT_ID = select(_ORDERS).where(
    _O.account_id == bindparam("b_account"), _O.client_order_id == bindparam("b_client")
)
_ORDER_LOCK = _ORDER_BY_ID.with_for_update(key_share=True)
_ORDER_SAVE = update(_ORDERS).where(_O.id == bindparam("b_id"))
_ORDER_WRITE_LOCK = _sqlite_write_lock_statement(_ORDERS, "status")
_OPEN_STATUS_VALUES = sorted(status.value for status in OPEN_STATUSES)
#: ``open_orders`` by which filters are given: (account, symbol, kinds, types) -> statement.
_OPEN_ORDERS: dict[tuple[bool, bool, bool, bool], Select[Any]] = {}


def _open_orders_statement(account: bool, symbol: bool, kinds: bool, types: bool) -> Select[Any]:
    key = (account, symbol, kinds, types)
    stmt = _OPEN_ORDERS.get(key)
    if stmt is None:
        stmt = select(_ORDERS).where(_O.status.in_(_OPEN_STATUS_VALUES))
        if account:
            stmt = stmt.where(_O.account_id == bindparam("b_account"))
        if symbol:
            stmt = stmt.where(_O.symbol == bindparam("b_symbol"))
        if kinds:
            stmt = stmt.join(_ACCOUNTS, _A.id == _O.account_id).where(
                _A.kind.in_(bindparam("b_kinds", expanding=True))
            )
        if types:
            stmt = stmt.where(_O.type.in_(bindparam("b_types", expanding=True)))
        stmt = _OPEN_ORDERS[key] = stmt.order_by(_O.created_at, _O.id)
    return stmt


def _fees_json(fees: Mapping[str, Decimal]) -> dict[str, str]:
    return {asset: storable_text(amount) for asset, amount in sorted(fees.items())}


def _order(row: Any) -> Order:
    return Order(
        id=row.id,
        user_id=row.user_id,
        account_id=row.account_id,
        symbol=row.symbol,
        side=OrderSide(row.side),
        type=OrderType(row.type),
        quantity=row.quantity,
        client_order_id=row.client_order_id,
        created_at=row.created_at,
        updated_at=row.updated_at,
        status=OrderStatus(row.status),
        price=row.price,
        stop_price=row.stop_price,
        time_in_force=TimeInForce(row.time_in_force),
        reduce_only=row.reduce_only,
        stop_loss=row.stop_loss,
        take_profit=row.take_profit,
        bot_id=row.bot_id,
        parent_id=row.parent_id,
        oco_group=row.oco_group,
        exchange_order_id=row.exchange_order_id,
        filled_quantity=row.filled_quantity,
        average_price=row.average_price,
        fees={asset: canonical_decimal(amount) for asset, amount in (row.fees or {}).items()},
        trade_ids=frozenset(row.trade_ids or ()),
        triggered=row.triggered,
        reason=row.reason,
        locked_asset=row.locked_asset,
        locked_amount=row.locked_amount,
        fingerprint=row.fingerprint,
    )


def _order_state(order: Order) -> dict[str, Any]:
    """The columns that change over an order's life (what ``save`` writes back)."""
    return {
        "status": order.status.value,
        "filled_quantity": order.filled_quantity,
        "average_price": order.average_price,
        "fees": _fees_json(order.fees),
        "trade_ids": sorted(order.trade_ids),
        "exchange_order_id": order.exchange_order_id,
        "triggered": order.triggered,
        "reason": order.reason,
        "locked_asset": order.locked_asset,
        "locked_amount": order.locked_amount,
        "updated_at": order.updated_at,
    }


def _order_values(order: Order) -> dict[str, Any]:
    values = _order_state(order)
    values.update(
        id=order.id,
        user_id=order.user_id,
        account_id=order.account_id,
        client_order_id=order.client_order_id,
        symbol=order.symbol,
        side=order.side.value,
        type=order.type.value,
        quantity=order.quantity,
        price=order.price,
        stop_price=order.stop_price,
        time_in_force=order.time_in_force.value,
        reduce_only=order.reduce_only,
        stop_loss=order.stop_loss,
        take_profit=order.take_profit,
        bot_id=order.bot_id,
        parent_id=order.parent_id,
        oco_group=order.oco_group,
        fingerprint=order.fingerprint,
        created_at=order.created_at,
    )
    return values


def _statuses(status: OrderStatus | str | Sequence[OrderStatus | str] | None) -> list[str]:
    if status is None:
        return []
    if isinstance(status, str):  # OrderStatus is a StrEnum
        return [OrderStatus(status).value]
    return [OrderStatus(item).value for item in status]


class SqlOrderRepository(_Repository):
    """``trade_ids`` is stored with the order (a JSON list written by ``add`` and ``save``), so
    an order reloads exactly as it was saved and fill de-duplication survives a restart."""

    async def add(self, order: Order) -> bool:
        """True when inserted; False when the account already has an order with this
        ``client_order_id`` (the existing order is untouched: fetch it with ``get_by_client_id``)."""
        result = await self._execute(self._for_dialect(_ORDER_INSERT), _order_values(order))
        return bool(result.rowcount)

    async def _one(self, stmt: Any, params: dict[str, Any]) -> Order | None:
        row = (await self._execute(stmt, params)).first()
        return _order(row) if row is not None else None

    async def get(self, order_id: str) -> Order | None:
        return await self._one(_ORDER_BY_ID, {"b_id": order_id})

    async def get_for_user(self, order_id: str, user_id: int) -> Order | None:
        return await self._one(_ORDER_BY_ID_FOR_USER, {"b_id": order_id, "b_user": user_id})

    async def get_by_client_id(self, account_id: str, client_order_id: str) -> Order | None:
        return await self._one(_ORDER_BY_CLIENT_ID, {"b_account": account_id, "b_client": client_order_id})

    async def lock_for_update(self, order_id: str) -> Order | None:
        """The order, locked until the transaction ends: ``FOR NO KEY UPDATE`` on PostgreSQL (so
        fills referencing it can still be inserted by others); on SQLite the database write lock
        (see :meth:`_Repository._write_lock`), since a plain read there would allow lost updates."""
        if not self._postgresql:
            await self._write_lock(_ORDER_WRITE_LOCK, order_id)
        return await self._one(_ORDER_LOCK, {"b_id": order_id})

    async def save(self, order: Order) -> None:
        """Write back the order's whole mutable state (status, filled quantity, average price,
        fees, trade ids, venue id, triggered, reason, lock, updated_at): every column, changed
        or not, so what is stored is exactly ``order``."""
        values = _order_state(order)
        values["b_id"] = order.id
        result = await self._execute(_ORDER_SAVE, values)
        if not result.rowcount:
            raise NotFound("Order not found.")

    async def list_for_user(
        self,
        user_id: int,
        *,
        symbol: str | None = None,
        status: OrderStatus | str | Sequence[OrderStatus | str] | None = None,
        bot_id: str | None = None,
        account_id: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int,
        offset: int,
    ) -> tuple[list[Order], int]:
        """Newest first; ``start <= created_at < end``."""
        base = select(_ORDERS).where(_O.user_id == user_id)
        if symbol is not None:
            base = base.where(_O.symbol == symbol)
        statuses = _statuses(status)
        if statuses:
            base = base.where(_O.status.in_(statuses))
        if bot_id is not None:
            base = base.where(_O.bot_id == bot_id)
        if account_id is not None:
            base = base.where(_O.account_id == account_id)
        base = base.where(*_time_range(_O.created_at, start, end))
        rows, total = await self._page(base, _O.created_at.desc(), _O.id.desc(), limit=limit, offset=offset)
        return [_order(row) for row in rows], total

    async def open_orders(
        self,
        *,
        account_id: str | None = None,
        symbol: str | None = None,
        kinds: Sequence[str] | None = None,
        types: Sequence[OrderType | str] | None = None,
    ) -> list[Order]:
        """Open orders (pending, new, partially filled, unknown) of every user, oldest first.
        ``kinds`` filters on the account kind (``["paper"]`` for the paper matcher,
        ``["exchange"]`` for reconciliation); ``types`` on the order type."""
        stmt = _open_orders_statement(
            account_id is not None, symbol is not None, kinds is not None, types is not None
        )
        params: dict[str, Any] = {}
        if account_id is not None:
            params["b_account"] = account_id
        if symbol is not None:
            params["b_symbol"] = symbol
        if kinds is not None:
            params["b_kinds"] = list(kinds)
        if types is not None:
            params["b_types"] = [OrderType(kind).value for kind in types]
        return [_order(row) for row in await self._execute(stmt, params)]


# --- fills --------------------------------------------------------------------------------------------

_F = _FILLS.c
_FILL_INSERT = _insert_or_skip(["order_id", "trade_id"], _FILLS)
_FILL_FOR_USER = select(_FILLS).where(_F.id == bindparam("b_id"), _F.user_id == bindparam("b_user"))
_FILLS_OF_ORDER = select(_FILLS).where(_F.order_id == bindparam("b_order")).order_by(_F.timestamp, _F.id)


def _trade(row: Any) -> TradeRecord:
    return TradeRecord(
        id=row.id,
        user_id=row.user_id,
        account_id=row.account_id,
        order_id=row.order_id,
        trade_id=row.trade_id,
        symbol=row.symbol,
        side=row.side,
        price=row.price,
        quantity=row.quantity,
        fee=row.fee,
        fee_asset=row.fee_asset,
        liquidity=row.liquidity,
        timestamp=row.timestamp,
        realized_pnl=row.realized_pnl,
        bot_id=row.bot_id,
        strategy=row.strategy,
    )


def _empty_summary() -> dict[str, Any]:
    return {
        "count": 0,
        "closing_count": 0,
        "realized_pnl": ZERO,
        "gross_profit": ZERO,
        "gross_loss": ZERO,
        "wins": 0,
        "losses": 0,
        "fees": {},
    }


class SqlFillRepository(_Repository):
    async def add(self, record: TradeRecord) -> bool:
        """True when stored; False when the order already has a fill with this ``trade_id``."""
        result = await self._execute(self._for_dialect(_FILL_INSERT), _fill_values(record))
        return bool(result.rowcount)

    async def get_for_user(self, fill_id: str, user_id: int) -> TradeRecord | None:
        row = (await self._execute(_FILL_FOR_USER, {"b_id": fill_id, "b_user": user_id})).first()
        return _trade(row) if row is not None else None

    async def for_order(self, order_id: str) -> list[TradeRecord]:
        """The order's fills, oldest first."""
        return [_trade(row) for row in await self._execute(_FILLS_OF_ORDER, {"b_order": order_id})]

    @staticmethod
    def _filters(
        user_id: int,
        symbol: str | None,
        bot_id: str | None,
        account_id: str | None,
        start: datetime | None,
        end: datetime | None,
    ) -> list[ColumnElement[bool]]:
        conditions: list[ColumnElement[bool]] = [_F.user_id == user_id]
        if symbol is not None:
            conditions.append(_F.symbol == symbol)
        if bot_id is not None:
            conditions.append(_F.bot_id == bot_id)
        if account_id is not None:
            conditions.append(_F.account_id == account_id)
        return conditions + _time_range(_F.timestamp, start, end)

    async def list_for_user(
        self,
        user_id: int,
        *,
        symbol: str | None = None,
        bot_id: str | None = None,
        account_id: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int,
        offset: int,
    ) -> tuple[list[TradeRecord], int]:
        """Newest first; ``start <= timestamp < end``."""
        base = select(_FILLS).where(*self._filters(user_id, symbol, bot_id, account_id, start, end))
        rows, total = await self._page(base, _F.timestamp.desc(), _F.id.desc(), limit=limit, offset=offset)
        return [_trade(row) for row in rows], total

    async def summary_for_user(
        self,
        user_id: int,
        *,
        symbol: str | None = None,
        bot_id: str | None = None,
        account_id: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> dict[str, Any]:
        """Totals over the fills the filters select (the same filters as ``list_for_user``):

        ``count`` fills, ``closing_count`` of them with a realised P&L, ``realized_pnl`` their
        sum, ``gross_profit`` the sum of the positive ones, ``gross_loss`` the sum of the
        negative ones (zero or negative), ``wins``/``losses`` how many were positive/negative,
        ``fees`` the fees paid per asset. Decimals are exact: summed by PostgreSQL's NUMERIC, or
        in Python on SQLite (which has no decimal arithmetic)."""
        conditions = self._filters(user_id, symbol, bot_id, account_id, start, end)
        if self._postgresql:
            return await self._summary_sql(conditions)
        return await self._summary_python(conditions)

    async def _summary_sql(self, conditions: list[ColumnElement[bool]]) -> dict[str, Any]:
        pnl = _F.realized_pnl
        stmt = select(
            func.count(),
            func.count(pnl),
            func.sum(pnl),
            func.sum(case((pnl > 0, pnl))),
            func.sum(case((pnl < 0, pnl))),
            func.count(case((pnl > 0, 1))),
            func.count(case((pnl < 0, 1))),
        ).where(*conditions)
        count, closing, realized, profit, loss, wins, losses = (await self._execute(stmt)).one()
        fees_stmt = (
            select(_F.fee_asset, func.sum(_F.fee))
            .where(*conditions)
            .group_by(_F.fee_asset)
            .order_by(_F.fee_asset)
        )
        fees = {asset: canonical_decimal(total) for asset, total in await self._execute(fees_stmt)}
        return {
            "count": int(count),
            "closing_count": int(closing),
            "realized_pnl": canonical_decimal(realized or ZERO),
            "gross_profit": canonical_decimal(profit or ZERO),
            "gross_loss": canonical_decimal(loss or ZERO),
            "wins": int(wins),
            "losses": int(losses),
            "fees": fees,
        }

    async def _summary_python(self, conditions: list[ColumnElement[bool]]) -> dict[str, Any]:
        stmt = select(_F.realized_pnl, _F.fee, _F.fee_asset).where(*conditions)
        summary = _empty_summary()
        fees: dict[str, Decimal] = {}
        for pnl, fee, fee_asset in await self._execute(stmt):
            summary["count"] += 1
            fees[fee_asset] = _EXACT.add(fees.get(fee_asset, ZERO), fee)
            if pnl is None:
                continue
            summary["closing_count"] += 1
            summary["realized_pnl"] = _EXACT.add(summary["realized_pnl"], pnl)
            if pnl > 0:
                summary["gross_profit"] = _EXACT.add(summary["gross_profit"], pnl)
                summary["wins"] += 1
            elif pnl < 0:
                summary["gross_loss"] = _EXACT.add(summary["gross_loss"], pnl)
                summary["losses"] += 1
        for key in ("realized_pnl", "gross_profit", "gross_loss"):
            summary[key] = canonical_decimal(summary[key])
        summary["fees"] = {asset: canonical_decimal(fees[asset]) for asset in sorted(fees)}
        return summary


# --- ledger -------------------------------------------------------------------------------------------

_L = _LEDGER.c
_B = _BALANCES.c
_LEDGER_INSERT = insert(_LEDGER)
_BALANCE_UPSERT = _upsert(["account_id", "asset"], _BALANCES)
_BALANCES_OF = (
    select(_B.asset, _B.free, _B.locked).where(_B.account_id == bindparam("b_account")).order_by(_B.asset)
)
_BALANCES_LOCKED = _BALANCES_OF.with_for_update(key_share=True)


def _entry(row: Any) -> LedgerEntry:
    return LedgerEntry(
        account_id=row.account_id,
        asset=row.asset,
        free_delta=row.free_delta,
        locked_delta=row.locked_delta,
        kind=row.kind,
        reference=row.reference,
        timestamp=row.timestamp,
    )


def _balance_values(account_id: str, balance: AssetBalance, now: datetime) -> dict[str, Any]:
    return {
        "account_id": account_id,
        "asset": balance.asset,
        "free": balance.free,
        "locked": balance.locked,
        "updated_at": now,
    }


class SqlLedgerRepository(_Repository):
    """Entries are append-only (the database refuses UPDATE, and DELETE while the account
    exists); ``balances`` is their materialised sum, written by ``record`` with them."""

    async def _balances(self, stmt: Any, account_id: str) -> dict[str, AssetBalance]:
        rows = await self._execute(stmt, {"b_account": account_id})
        return {asset: AssetBalance(asset=asset, free=free, locked=locked) for asset, free, locked in rows}

    async def balances(self, account_id: str) -> dict[str, AssetBalance]:
        return await self._balances(_BALANCES_OF, account_id)

    async def balances_for_update(self, account_id: str) -> dict[str, AssetBalance]:
        """The balances, locked until the transaction ends. The account row is locked first
        (``FOR NO KEY UPDATE`` on PostgreSQL, the database write lock on SQLite: see
        :meth:`_Repository._write_lock`), so every ledger writer of the account queues here,
        even for an asset it has no balance row for yet.

        PostgreSQL needs the two statements: the balances are read after the account lock is
        granted, with a snapshot that sees what the previous holder committed (one statement
        would read with the snapshot from before its wait and miss a balance row inserted
        meanwhile). SQLite has no row locks: its write lock covers the balances."""
        if self._postgresql:
            await self._execute(_ACCOUNT_ROW_LOCK, {"b_id": account_id})
            return await self._balances(_BALANCES_LOCKED, account_id)
        await self._write_lock(_ACCOUNT_WRITE_LOCK, account_id)
        return await self._balances(_BALANCES_OF, account_id)

    async def record(
        self,
        account_id: str,
        entries: Sequence[LedgerEntry],
        balances: Mapping[str, AssetBalance],
        *,
        now: datetime,
    ) -> None:
        """Append ``entries`` and upsert the ``balances`` they changed (asset -> new balance):
        one executemany of prebuilt statements each, whatever the number of rows."""
        for entry in entries:
            if entry.account_id != account_id:
                raise ValueError(f"ledger entry of account {entry.account_id} recorded on {account_id}")
        for asset, balance in balances.items():
            if asset != balance.asset:
                raise ValueError(f"balance of {balance.asset} given under {asset}")
        if entries:
            await self._execute(_LEDGER_INSERT, [_entry_values(entry) for entry in entries])
        if balances:
            values = [_balance_values(account_id, balance, now) for balance in balances.values()]
            await self._execute(self._for_dialect(_BALANCE_UPSERT), values)

    async def entries(
        self, account_id: str, *, asset: str | None = None, limit: int, offset: int
    ) -> tuple[list[LedgerEntry], int]:
        """Newest first (by insertion order)."""
        base = select(_LEDGER).where(_L.account_id == account_id)
        if asset is not None:
            base = base.where(_L.asset == asset)
        rows, total = await self._page(base, _L.id.desc(), limit=limit, offset=offset)
        return [_entry(row) for row in rows], total

    async def entry_sums(self, account_id: str) -> dict[str, tuple[Decimal, Decimal]]:
        """asset -> (sum of free deltas, sum of locked deltas): what the balances must equal."""
        if self._postgresql:
            stmt = (
                select(_L.asset, func.sum(_L.free_delta), func.sum(_L.locked_delta))
                .where(_L.account_id == account_id)
                .group_by(_L.asset)
            )
            found = {
                asset: (canonical_decimal(free), canonical_decimal(locked))
                for asset, free, locked in await self._execute(stmt)
            }
            return dict(sorted(found.items()))
        sums: dict[str, tuple[Decimal, Decimal]] = {}
        stmt2 = select(_L.asset, _L.free_delta, _L.locked_delta).where(_L.account_id == account_id)
        for asset, free, locked in await self._execute(stmt2):
            total_free, total_locked = sums.get(asset, (ZERO, ZERO))
            sums[asset] = (_EXACT.add(total_free, free), _EXACT.add(total_locked, locked))
        return {
            asset: (canonical_decimal(free), canonical_decimal(locked))
            for asset, (free, locked) in sorted(sums.items())
        }


# --- positions ----------------------------------------------------------------------------------------

_P = _POSITIONS.c
_POSITION_OF = select(_POSITIONS).where(
    _P.account_id == bindparam("b_account"), _P.symbol == bindparam("b_symbol")
)
_POSITION_UPSERT = _upsert(["account_id", "symbol"], _POSITIONS)


def _position(row: Any) -> Position:
    return Position(
        account_id=row.account_id,
        symbol=row.symbol,
        kind=row.kind,
        quantity=row.quantity,
        entry_price=row.entry_price,
        realized_pnl=row.realized_pnl,
        fees_paid=row.fees_paid,
        leverage=row.leverage,
        margin=row.margin,
        opened_at=row.opened_at,
        updated_at=row.updated_at,
    )


class SqlPositionRepository(_Repository):
    """A flat position (``quantity == 0``) stays stored: it carries the symbol's realised P&L."""

    async def get(self, account_id: str, symbol: str) -> Position | None:
        row = (await self._execute(_POSITION_OF, {"b_account": account_id, "b_symbol": symbol})).first()
        return _position(row) if row is not None else None

    async def save(self, position: Position) -> None:
        """Insert or replace the position of (account, symbol)."""
        await self._execute(self._for_dialect(_POSITION_UPSERT), _position_values(position))

    async def list_for_user(
        self,
        user_id: int,
        *,
        account_id: str | None = None,
        symbol: str | None = None,
        open_only: bool = True,
    ) -> list[Position]:
        """The user's positions across their accounts, by account and symbol."""
        stmt = select(_POSITIONS).join(_ACCOUNTS, _A.id == _P.account_id).where(_A.user_id == user_id)
        if account_id is not None:
            stmt = stmt.where(_P.account_id == account_id)
        return await self._select(stmt, symbol=symbol, open_only=open_only)

    async def _select(self, stmt: Select[Any], *, symbol: str | None, open_only: bool) -> list[Position]:
        if symbol is not None:
            stmt = stmt.where(_P.symbol == symbol)
        if open_only:
            # Money is canonical on every backend (zero is stored as 0), so this works on SQLite.
            stmt = stmt.where(_P.quantity != ZERO)
        stmt = stmt.order_by(_P.account_id, _P.symbol)
        return [_position(row) for row in await self._execute(stmt)]

    async def list(
        self, account_id: str | Sequence[str], *, symbol: str | None = None, open_only: bool = True
    ) -> list[Position]:
        """The positions of one account or of several, by account and symbol."""
        accounts = [account_id] if isinstance(account_id, str) else list(account_id)
        stmt = select(_POSITIONS).where(_P.account_id.in_(accounts))
        return await self._select(stmt, symbol=symbol, open_only=open_only)


# --- equity snapshots ---------------------------------------------------------------------------------

_E = _EQUITY.c
_EQUITY_UPSERT = _upsert(["account_id", "day"], _EQUITY)


def _snapshot(row: Any) -> EquitySnapshot:
    return EquitySnapshot(
        account_id=row.account_id,
        day=row.day,
        equity=row.equity,
        currency=row.currency,
        taken_at=row.taken_at,
    )


class SqlEquityRepository(_Repository):
    async def upsert(self, snapshot: EquitySnapshot) -> None:
        """Insert or replace the snapshot of (account, day)."""
        values = {
            "account_id": snapshot.account_id,
            "day": snapshot.day,
            "equity": snapshot.equity,
            "currency": snapshot.currency,
            "taken_at": snapshot.taken_at,
        }
        await self._execute(self._for_dialect(_EQUITY_UPSERT), values)

    async def list(self, account_id: str, *, since: date | None = None) -> list[EquitySnapshot]:
        """Oldest first; ``since`` is inclusive."""
        stmt = select(_EQUITY).where(_E.account_id == account_id)
        if since is not None:
            stmt = stmt.where(_E.day >= since)
        stmt = stmt.order_by(_E.day)
        return [_snapshot(row) for row in await self._execute(stmt)]
