"""Engine and session factory. SQLite gets WAL, foreign keys and a busy timeout on every connection."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import event, exc, text
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool, PoolResetState

from cryptoorchestrator.core.errors import ConfigurationError


def normalise_url(url: str) -> str:
    """Accept plain ``postgresql://`` and ``sqlite://`` URLs and pick the async drivers."""
    parsed = make_url(url)
    driver = parsed.drivername
    if driver in ("postgresql", "postgres", "postgresql+psycopg2", "postgresql+psycopg"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    elif driver == "sqlite":
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    elif driver not in ("postgresql+asyncpg", "sqlite+aiosqlite"):
        raise ConfigurationError(
            f"Unsupported database URL scheme '{driver}': use sqlite+aiosqlite:// or postgresql+asyncpg://."
        )
    return parsed.render_as_string(hide_password=False)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    # WAL + NORMAL: a commit is atomic and survives the process crashing; only a power cut or OS
    # crash can lose the last commits (the WAL is synced at checkpoints, not at every commit),
    # never corrupt the database. FULL would fsync on every commit.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.close()


#: How long a SQLite writer waits for another one's lock before "database is locked".
BUSY_TIMEOUT_MS = 10_000
#: WAL pages after which a commit checkpoints by itself. The server's connections leave that to
#: :class:`WalCheckpointer` (in its own thread, so a commit never waits for the fsync of a
#: checkpoint, and it starts the log over under a steady load); this is only the safety net for
#: when nothing checkpoints (about 80 MB).
SERVER_AUTOCHECKPOINT_PAGES = 20_000


def _sqlite_server_pragmas(dbapi_connection: Any, record: Any) -> None:
    _sqlite_pragmas(dbapi_connection, record)
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA wal_autocheckpoint={SERVER_AUTOCHECKPOINT_PAGES}")
    cursor.close()


def _sqlite_reset(dbapi_connection: Any, _record: Any, state: PoolResetState) -> None:
    """The pool's reset of a connection handed back (``pool_reset_on_return=None`` leaves it to
    this): ROLLBACK only when SQLite has a transaction open. After a commit, or once the session
    has rolled back, the stock reset's ROLLBACK does nothing but cost a trip through aiosqlite's
    thread (pysqlite skips ROLLBACK outside a transaction anyway)."""
    if state.terminate_only or not state.asyncio_safe or state.transaction_was_reset:
        return  # discarded, garbage-collected outside the event loop, or already reset
    try:
        in_transaction = bool(dbapi_connection.driver_connection.in_transaction)
    except Exception:  # a closed or unexpected connection: reset it the ordinary way
        in_transaction = True
    if in_transaction:
        dbapi_connection.rollback()


#: PostgreSQL connections back from the pool are pinged only after this long unused. asyncpg's
#: pre-ping is three round trips (BEGIN, ``;``, ROLLBACK) on every checkout, a fifth of what a
#: paper order costs; a connection used within the last seconds is alive unless the server went
#: away meanwhile, and then its first statement fails with a disconnect, which invalidates the
#: whole pool (every connection is reconnected), so one request sees the error.
IDLE_PING_SECONDS = 5.0
_CHECKED_IN_AT = "cryptoorchestrator_checked_in_at"


def _ping_when_idle(engine: AsyncEngine) -> None:
    dialect: Dialect = engine.dialect

    def checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info[_CHECKED_IN_AT] = time.monotonic()

    def checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        checked_in_at = record.info.get(_CHECKED_IN_AT)
        if checked_in_at is None or time.monotonic() - checked_in_at < IDLE_PING_SECONDS:
            return  # a fresh connection, or one in use moments ago
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as error:
            if dialect.is_disconnect(error, dbapi_connection, None):  # type: ignore[arg-type]
                raise exc.InvalidatePoolError() from error  # the pool reconnects and retries
            raise

    event.listen(engine.sync_engine.pool, "checkin", checkin)
    event.listen(engine.sync_engine.pool, "checkout", checkout)


def create_engine(url: str, *, echo: bool = False) -> AsyncEngine:
    url = normalise_url(url)
    kwargs: dict[str, Any] = {"echo": echo}
    if is_sqlite(url):
        database = make_url(url).database
        on_file = bool(database) and database != ":memory:"
        if on_file:
            Path(str(database)).parent.mkdir(parents=True, exist_ok=True)
        # check_same_thread off: the paper batch store (sqlite_batches) runs its few statements on
        # the event loop's thread when the write lock is free, on a connection it has checked out
        # (aiosqlite's thread is idle then: nothing else holds that connection).
        connect_args = {"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}
        kwargs.update(connect_args=connect_args, pool_reset_on_return=None)
        if on_file:  # a file's queue pool (an in-memory database has one static connection)
            # LIFO: the connection returned last is handed out next. SQLite drops a connection's
            # page cache whenever another connection wrote since its last transaction; with the
            # default FIFO queue, consecutive order batches rotated over the pooled connections
            # and read back every page they touched (~45 page reads per batch with five).
            kwargs["pool_use_lifo"] = True
    else:
        kwargs.update(pool_size=10, max_overflow=20)
    engine = create_async_engine(url, **kwargs)
    if is_sqlite(url):
        event.listen(engine.sync_engine, "connect", _sqlite_server_pragmas)
        event.listen(engine.sync_engine.pool, "reset", _sqlite_reset)
    else:
        _ping_when_idle(engine)
    return engine


def create_null_pool_engine(url: str) -> AsyncEngine:
    """An engine that keeps no connections open (migrations, CLI one-shots)."""
    url = normalise_url(url)
    engine = create_async_engine(url, poolclass=NullPool)
    if is_sqlite(url):
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def session_factory(engine: AsyncEngine) -> async_sessionmaker[Any]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))


class WalCheckpointer:
    """Checkpoints a SQLite database's write-ahead log every ``interval`` seconds in a worker
    thread, on its own connection, so that a commit never runs a checkpoint (and its fsync).

    First ``PRAGMA wal_checkpoint(PASSIVE)``: it copies the log into the database without
    blocking readers or writers. Under a steady stream of commits that never empties the log
    (new frames arrive while it copies), and the log only starts again from its beginning after
    a complete checkpoint: it used to grow to ``SERVER_AUTOCHECKPOINT_PAGES`` and then one commit,
    on the event loop, checkpointed by itself (a 20-30 ms stall of every request, measured under
    the orders benchmark). So when the log holds ``restart_frames`` or more, a ``RESTART``
    checkpoint follows: it copies the few frames committed meanwhile while holding writers off
    (waiting at most ``RESTART_WAIT_SECONDS`` for them; an order batch that meets the lock waits
    in its driver thread, not on the loop), and the next writer starts the log over."""

    #: How long the RESTART checkpoint waits for the writer and readers before giving up until
    #: the next round (it holds new writers off while it waits).
    RESTART_WAIT_SECONDS = 0.05

    def __init__(self, path: str, *, interval: float = 1.0, restart_frames: int = 1_000) -> None:
        self._path = path
        self._interval = interval
        self._restart_frames = restart_frames
        self._connection: sqlite3.Connection | None = None
        self._lock = threading.Lock()  # a checkpoint in its thread, or the close
        self._task: asyncio.Task[None] | None = None
        self.checkpoints = 0
        self.restarts = 0  # RESTART checkpoints that completed: the log started over after each

    @classmethod
    def for_engine(
        cls, engine: AsyncEngine, *, interval: float = 1.0, restart_frames: int = 1_000
    ) -> WalCheckpointer | None:
        """The checkpointer of a file-backed SQLite engine; ``None`` for anything else."""
        url = engine.url
        if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
            return None
        return cls(url.database, interval=interval, restart_frames=restart_frames)

    def checkpoint(self) -> tuple[int, int, int]:
        """One round (the class docstring): (busy, WAL frames, frames checkpointed) of its last
        checkpoint."""
        with self._lock:
            if self._connection is None:
                self._connection = sqlite3.connect(
                    self._path, timeout=self.RESTART_WAIT_SECONDS, check_same_thread=False
                )
            connection = self._connection
            busy, frames, done = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            self.checkpoints += 1
            if not busy and frames >= self._restart_frames:
                busy, frames, done = connection.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
                if not busy:
                    self.restarts += 1
            return int(busy), int(frames), int(done)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await asyncio.to_thread(self.checkpoint)
            except sqlite3.Error:
                continue  # locked or not there yet: the next round tries again

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="sqlite-wal-checkpointer")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        with self._lock:
            connection, self._connection = self._connection, None
            if connection is not None:
                connection.close()
