"""The paper group commit's store on SQLite: one batch of an account's orders, one transaction,
no trip through aiosqlite's thread when the database is free.

Through SQLAlchemy every statement on aiosqlite is three or four trips through the driver's
thread (cursor, execute, fetch, close), each ~0.1 ms of waking that thread and then the event
loop: a paper order cost about twenty of them. Here a batch is two steps, whatever its size:

1. ``load``: ``BEGIN IMMEDIATE`` (the database write lock), read the balances, the positions of
   the batch's symbols and the orders already stored under its given client order ids;
2. ``write``: insert the orders, fills and ledger entries (``executemany``), upsert balances and
   positions, commit; on any error roll back in the same step.

Both run on the event loop's own thread when the write lock is free at once (the statements
take microseconds; a trip through the thread costs more than the work): ``load`` first tries
with a busy timeout of zero and, when another writer holds the lock, runs in the connection's
thread instead, waiting as long as the busy timeout allows; the rest of that transaction stays
there. What could make a commit slow, a WAL checkpoint and its fsync, is left to
``database.WalCheckpointer`` in its own thread (the server's connections checkpoint by
themselves only past ``SERVER_AUTOCHECKPOINT_PAGES``). The engine's connections are opened
with ``check_same_thread=False`` for this; a connection is used by one side at a time (it is
checked out of the pool for the whole batch, and aiosqlite's thread has nothing queued for it).

Values are converted by SQLAlchemy's own bind and result processors of the tables' column types
for this dialect (``_Codec``; for the platform's own ``Money`` and ``UTCDateTime`` the functions
behind them, called directly), so rows written here read back through the repositories exactly as
theirs do, and the other way round. A batch that leaves without ``write`` is rolled back.

It uses aiosqlite's ``Connection._execute`` (run a function in the connection's thread), which
is not public API: :func:`supported` checks it is there, and bootstrap falls back to the
unit-of-work store (``services/paper_batches.UnitOfWorkBatchStore``) when it is not.
"""

from __future__ import annotations

import sqlite3
from collections import namedtuple
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, cast

from sqlalchemy import Table
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import greenlet_spawn

from cryptoorchestrator.core.errors import Conflict
from cryptoorchestrator.domain.accounts import AccountSnapshot, BatchChanges
from cryptoorchestrator.domain.ledger import AssetBalance
from cryptoorchestrator.persistence.database import BUSY_TIMEOUT_MS
from cryptoorchestrator.persistence.tables import (
    BalanceRow,
    FillRow,
    LedgerEntryRow,
    Money,
    OrderRow,
    PositionRow,
    UTCDateTime,
    json_amounts_text,
    json_strings_text,
    sqlite_datetime_text,
    storable_text,
)
from cryptoorchestrator.persistence.trading_repositories import (
    _balance_values,
    _order,
    _position,
)

Processor = Callable[[Any], Any]


def supported(engine: AsyncEngine) -> bool:
    """Whether ``engine`` is SQLite on an aiosqlite that can run a function in its thread."""
    if engine.dialect.name != "sqlite":
        return False
    try:
        import aiosqlite
    except ImportError:  # pragma: no cover - the SQLite extra is always installed
        return False
    return callable(getattr(aiosqlite.Connection, "_execute", None))


def _recent_instants(process: Processor) -> Processor:
    """``process`` for instants, remembering its last few hundred answers: a batch stamps most
    of its rows with the same few instants (the batch's ``now``, each fill's time)."""
    memory: dict[Any, str] = {}

    def remembered(value: Any) -> str:
        text = memory.get(value)
        if text is None:
            if len(memory) >= 256:
                memory.clear()
            text = memory[value] = process(value)
        return text

    return remembered


#: The bind processors of the platform's own column types on SQLite, called directly (they give
#: what the SQLAlchemy processors give, tested): a batch converts some thirty values per order.
_SQLITE_BINDS: dict[type, Callable[[], Processor]] = {
    Money: lambda: storable_text,
    UTCDateTime: lambda: _recent_instants(sqlite_datetime_text),
}


class _Codec:
    """One table's rows as SQLite stores them (the columns in ``columns``, in that order)."""

    def __init__(self, table: Table, dialect: Dialect, columns: Sequence[str] | None = None) -> None:
        self.table = table.name
        self.columns = list(columns or [c.name for c in table.columns])
        self._bind: list[tuple[int, Processor]] = []
        self._result: list[tuple[int, Processor]] = []
        for index, name in enumerate(self.columns):
            declared = table.c[name].type
            column_type = declared.dialect_impl(dialect)
            fast = _SQLITE_BINDS.get(type(declared))
            bind = fast() if fast is not None else column_type.bind_processor(dialect)
            if bind is not None:
                self._bind.append((index, bind))
            result = column_type.result_processor(dialect, None)
            if result is not None:
                self._result.append((index, result))
        self.row_type = namedtuple(f"{table.name}_row", self.columns)  # type: ignore[misc]
        self.select_list = ", ".join(self.columns)
        self.params = self._params_function()

    def _params_function(self) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
        """``params(values)``: the row's parameters in column order, each through its column's
        processor unless it is None (which every processor passes through). Generated once per
        table: one expression per column instead of a loop over them for every row."""
        return self._generate("values", {name: f"values[{name!r}]" for name in self.columns}, {})

    def record_params(
        self, special: dict[str, str], helpers: dict[str, Any], stored: Sequence[str] = ()
    ) -> Callable[[Any], tuple[Any, ...]]:
        """``params`` straight from a domain record ``r``, without the dictionary of values in
        between (the repositories' ``_*_values``): column ``name`` is ``r.name`` unless
        ``special`` gives its expression (``"r.side.value"``), which may use ``helpers``; the
        columns in ``stored`` get their expression's value as it is (already the stored text),
        the others go through their column's processor. The batch tests read the rows back
        through the repositories, so both stay in step."""
        unknown = (set(special) | set(stored)) - set(self.columns)
        if unknown:
            raise ValueError(f"{self.table} has no column(s) {sorted(unknown)}")
        expressions = {name: special.get(name, f"r.{name}") for name in self.columns}
        return self._generate("r", expressions, helpers, stored)

    def _generate(
        self,
        argument: str,
        expressions: dict[str, str],
        helpers: dict[str, Any],
        stored: Sequence[str] = (),
    ) -> Callable[[Any], tuple[Any, ...]]:
        processors = {i: p for i, p in self._bind if self.columns[i] not in stored}
        namespace: dict[str, Any] = {f"p{index}": process for index, process in processors.items()}
        namespace.update(helpers)
        parts = []
        for index, name in enumerate(self.columns):
            if index in processors:
                parts.append(f"None if (x{index} := {expressions[name]}) is None else p{index}(x{index})")
            else:
                parts.append(expressions[name])
        source = f"def params({argument}):\n    return (" + ", ".join(parts) + ",)\n"
        exec(source, namespace)  # noqa: S102 - built from the table's own column names
        return namespace["params"]  # type: ignore[no-any-return]

    def row(self, raw: Sequence[Any]) -> Any:
        values = list(raw)
        for index, process in self._result:
            values[index] = process(values[index])
        return self.row_type(*values)

    def insert(self, suffix: str = "") -> str:
        marks = ", ".join("?" for _ in self.columns)
        # Table and column names come from the schema's own metadata, values are bound (S608).
        return f"INSERT INTO {self.table} ({self.select_list}) VALUES ({marks}){suffix}"  # noqa: S608

    def select(self, column: str, count: int) -> str:
        """The rows of one account whose ``column`` is one of ``count`` bound values."""
        marks = _marks(count)
        return f"SELECT {self.select_list} FROM {self.table} WHERE account_id = ? AND {column} IN ({marks})"  # noqa: S608

    def upsert(self, key: Sequence[str]) -> str:
        changed = ", ".join(f"{name} = excluded.{name}" for name in self.columns if name not in key)
        return self.insert(f" ON CONFLICT ({', '.join(key)}) DO UPDATE SET {changed}")


def _marks(count: int) -> str:
    return ", ".join("?" for _ in range(count))


class SqliteOrderBatchStore:
    """``OrderBatchStore`` on an aiosqlite engine (see the module docstring)."""

    def __init__(self, engine: AsyncEngine, *, inline: bool = True) -> None:
        dialect = engine.dialect
        self._engine = engine
        #: Run a batch on the loop's thread when the write lock is free (module docstring).
        self.inline = inline
        self._orders = _Codec(cast(Table, OrderRow.__table__), dialect)
        self._fills = _Codec(cast(Table, FillRow.__table__), dialect)
        entries = cast(Table, LedgerEntryRow.__table__)
        self._entries = _Codec(entries, dialect, [c.name for c in entries.columns if c.name != "id"])
        self._balances = _Codec(cast(Table, BalanceRow.__table__), dialect)
        self._positions = _Codec(cast(Table, PositionRow.__table__), dialect)
        self._balances_sql = (
            f"SELECT {self._balances.select_list} FROM {self._balances.table} WHERE account_id = ?"  # noqa: S608
        )
        # Rows straight from the records (what the repositories' _order_values etc. give).
        enum_value = {name: f"r.{name}.value" for name in ("side", "type", "status", "time_in_force")}
        self._order_params = self._orders.record_params(
            {**enum_value, "fees": "_amounts(r.fees)", "trade_ids": "_strings(sorted(r.trade_ids))"},
            {"_amounts": json_amounts_text, "_strings": json_strings_text},
            stored=["fees", "trade_ids"],  # JSON text as the column's processor writes it (tested)
        )
        self._fill_params = self._fills.record_params({}, {})
        self._entry_params = self._entries.record_params({}, {})
        self._position_params = self._positions.record_params({}, {})
        self._sql_order_insert = self._orders.insert()
        self._sql_fill_insert = self._fills.insert()
        self._sql_entry_insert = self._entries.insert()
        self._sql_balance_upsert = self._balances.upsert(["account_id", "asset"])
        self._sql_position_upsert = self._positions.upsert(["account_id", "symbol"])

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_SqliteBatch]:
        raw = await self._engine.raw_connection()
        batch = _SqliteBatch(self, raw.driver_connection)
        try:
            yield batch
        finally:
            try:
                if batch.open:
                    await batch.run(_rollback)
            finally:
                await greenlet_spawn(raw.close)


def _rollback(connection: sqlite3.Connection) -> None:
    connection.rollback()


def _busy(error: sqlite3.OperationalError) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return (code & 0xFF) == sqlite3.SQLITE_BUSY
    return "locked" in str(error)  # pragma: no cover - Python < 3.11 has no error codes


class _SqliteBatch:
    def __init__(self, store: SqliteOrderBatchStore, driver: Any) -> None:
        self._store = store
        self._driver = driver  # the aiosqlite.Connection
        self.open = False
        self.inline = False  # this transaction holds the write lock taken on the loop's thread

    async def run(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        """``work(connection)`` where this transaction runs: on the loop's thread once the lock
        was taken there, else in the connection's thread (one trip)."""
        if self.inline:
            return work(self._driver._conn)
        return await self._driver._execute(work, self._driver._conn)

    def _try_inline(self, work: Callable[[sqlite3.Connection], Any]) -> tuple[bool, Any]:
        """Run the first statements of the transaction on the loop's thread if the write lock is
        free right now (busy timeout 0): ``(True, result)``; ``(False, None)`` when another
        writer holds it (the caller waits for it in the connection's thread instead)."""
        store = self._store
        if not store.inline:
            return False, None
        connection: sqlite3.Connection = self._driver._conn
        try:
            connection.execute("PRAGMA busy_timeout=0")
        except sqlite3.ProgrammingError:  # a connection bound to its thread: never inline
            store.inline = False
            return False, None
        try:
            result = work(connection)
        except sqlite3.OperationalError as error:
            if _busy(error):
                return False, None
            raise
        finally:
            connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        self.inline = True
        return True, result

    async def load(
        self, account_id: str, symbols: Sequence[str], client_order_ids: Sequence[str]
    ) -> AccountSnapshot:
        store = self._store
        positions_sql = store._positions.select("symbol", len(symbols))
        orders_sql = store._orders.select("client_order_id", len(client_order_ids))

        def work(connection: sqlite3.Connection) -> tuple[list[Any], list[Any], list[Any]]:
            try:
                connection.execute("BEGIN IMMEDIATE")  # the database write lock, now
                balances = connection.execute(store._balances_sql, (account_id,)).fetchall()
                positions = (
                    connection.execute(positions_sql, (account_id, *symbols)).fetchall() if symbols else []
                )
                orders = (
                    connection.execute(orders_sql, (account_id, *client_order_ids)).fetchall()
                    if client_order_ids
                    else []
                )
            except BaseException:
                connection.rollback()
                raise
            return balances, positions, orders

        self.open = True
        done, rows = self._try_inline(work)
        balance_rows, position_rows, order_rows = rows if done else await self.run(work)
        balances = {}
        for raw in balance_rows:
            row = store._balances.row(raw)
            balances[row.asset] = AssetBalance(asset=row.asset, free=row.free, locked=row.locked)
        positions = dict.fromkeys(symbols)
        for raw in position_rows:
            position = _position(store._positions.row(raw))
            positions[position.symbol] = position
        by_client_id = {}
        for raw in order_rows:
            order = _order(store._orders.row(raw))
            by_client_id[order.client_order_id] = order
        return AccountSnapshot(balances=balances, positions=positions, by_client_id=by_client_id)

    async def write(self, changes: BatchChanges) -> None:
        store = self._store
        statements = [
            (store._sql_order_insert, [store._order_params(order) for order in changes.orders]),
            (store._sql_fill_insert, [store._fill_params(fill) for fill in changes.fills]),
            (store._sql_entry_insert, [store._entry_params(entry) for entry in changes.entries]),
            (
                store._sql_balance_upsert,
                [
                    store._balances.params(_balance_values(changes.account_id, balance, changes.now))
                    for balance in changes.balances.values()
                ],
            ),
            (store._sql_position_upsert, [store._position_params(p) for p in changes.positions]),
        ]

        def work(connection: sqlite3.Connection) -> None:
            try:
                for sql, rows in statements:
                    if rows:
                        connection.executemany(sql, rows)
                connection.commit()
            except BaseException:
                connection.rollback()
                raise

        try:
            await self.run(work)
        except sqlite3.IntegrityError as error:
            raise Conflict("The request conflicts with data stored meanwhile; retry it.") from error
        finally:
            self.open = False
