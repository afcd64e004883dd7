"""Repositories of the bots feature: the bot ports in ``services/ports.py`` over SQLAlchemy
(``docs/design/bots.md``). They never commit; rows never leave: they take and return records.

* ``bots.update`` writes only the columns it is given (one UPDATE statement), so the service
  (which writes ``desired``) and the runner (``status``, ``state``...) never undo each other.
* ``bot_leases.acquire`` and ``bot_leases.renew`` are single atomic statements: on PostgreSQL
  ``INSERT ... ON CONFLICT DO UPDATE ... WHERE`` re-checks the row under its lock (a concurrent
  acquirer waits for the first one's transaction, then sees its lease); on SQLite the database
  write lock serialises them. Two runners can never both hold a bot.
* A lease whose ``expires_at`` has passed is free (``expires_at <= now``); ``holder`` answers
  unexpired leases only.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, case, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from cryptoorchestrator.core.errors import NotFound
from cryptoorchestrator.domain.bots import (
    ACTIVE_DESIRED,
    Bot,
    BotEvent,
    BotLease,
    BotMode,
    BotRisk,
    BotStatus,
)
from cryptoorchestrator.persistence.tables import BotEventRow, BotLeaseRow, BotRow


def _insert(session: AsyncSession, model: type[Any]) -> Any:
    """The dialect's INSERT, which has ``on_conflict_do_update``."""
    dialect = session.get_bind().dialect.name
    return postgresql.insert(model) if dialect == "postgresql" else sqlite.insert(model)


async def _page(session: AsyncSession, base: Select[Any], *order_by: Any, limit: int, offset: int) -> Any:
    total = (await session.execute(select(func.count()).select_from(base.subquery()))).scalar_one()
    rows = (await session.execute(base.order_by(*order_by).limit(limit).offset(offset))).scalars()
    return rows, int(total)


# --- bots -----------------------------------------------------------------------------------------


def _bot(row: BotRow) -> Bot:
    return Bot(
        id=row.id,
        user_id=row.user_id,
        name=row.name,
        strategy_type=row.strategy_type,
        params=dict(row.params or {}),
        strategy_id=row.strategy_id,
        account_id=row.account_id,
        exchange=row.exchange,
        mode=BotMode(row.mode),
        symbols=tuple(row.symbols or ()),
        timeframe=row.timeframe,
        risk=BotRisk.from_json(dict(row.risk or {})),
        status=BotStatus(row.status),
        desired=row.desired,
        error=row.error,
        is_default=bool(row.is_default),
        created_at=row.created_at,
        updated_at=row.updated_at,
        started_at=row.started_at,
        stopped_at=row.stopped_at,
        last_candle_at=row.last_candle_at,
        state=dict(row.state or {}),
    )


def _column_value(name: str, value: Any) -> Any:
    """A record field as its column stores it."""
    if name == "risk":
        return value.to_json() if isinstance(value, BotRisk) else dict(value)
    if name == "symbols":
        return list(value)
    if name in ("params", "state"):
        return dict(value)
    if name in ("status", "mode"):
        return str(value.value if isinstance(value, BotStatus | BotMode) else value)
    return value


class SqlBotRepository:
    _UPDATABLE = frozenset(
        {
            "name",
            "strategy_type",
            "params",
            "strategy_id",
            "account_id",
            "exchange",
            "mode",
            "symbols",
            "timeframe",
            "risk",
            "status",
            "desired",
            "error",
            "is_default",
            "started_at",
            "stopped_at",
            "last_candle_at",
            "state",
        }
    )

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(
        self, bot: Bot, *, idempotency_key: str | None = None, request_hash: str | None = None
    ) -> Bot:
        """Store a new bot. ``idempotency_key`` (unique per user) and ``request_hash`` (what the
        request asked, to tell a repeat from a different request under the same key) are kept
        for :meth:`get_by_idempotency_key`."""
        values = {name: _column_value(name, getattr(bot, name)) for name in self._UPDATABLE}
        row = BotRow(
            id=bot.id,
            user_id=bot.user_id,
            created_at=bot.created_at,
            updated_at=bot.updated_at,
            idempotency_key=idempotency_key,
            request_hash=request_hash,
            **values,
        )
        self._session.add(row)
        await self._session.flush()
        return _bot(row)

    async def _one(self, *conditions: Any) -> BotRow | None:
        stmt = select(BotRow).where(*conditions).execution_options(populate_existing=True)
        row: BotRow | None = (await self._session.execute(stmt)).scalars().first()
        return row

    async def get(self, bot_id: str) -> Bot | None:
        row = await self._one(BotRow.id == bot_id)
        return _bot(row) if row else None

    async def get_for_user(self, bot_id: str, user_id: int) -> Bot | None:
        row = await self._one(BotRow.id == bot_id, BotRow.user_id == user_id)
        return _bot(row) if row else None

    async def default_for_user(self, user_id: int) -> Bot | None:
        row = await self._one(BotRow.user_id == user_id, BotRow.is_default.is_(True))
        return _bot(row) if row else None

    async def get_by_idempotency_key(self, user_id: int, key: str) -> tuple[Bot, str | None] | None:
        """The bot created under ``key`` and the ``request_hash`` stored with it."""
        row = await self._one(BotRow.user_id == user_id, BotRow.idempotency_key == key)
        return (_bot(row), row.request_hash) if row else None

    async def get_by_name(self, user_id: int, name: str) -> Bot | None:
        """The user's bot called ``name`` (names are unique per user)."""
        row = await self._one(BotRow.user_id == user_id, BotRow.name == name)
        return _bot(row) if row else None

    async def list_for_user(
        self,
        user_id: int,
        *,
        status: str | None = None,
        exchange: str | None = None,
        mode: str | None = None,
        limit: int,
        offset: int,
    ) -> tuple[list[Bot], int]:
        """Newest first."""
        base = select(BotRow).where(BotRow.user_id == user_id)
        if status is not None:
            base = base.where(BotRow.status == status)
        if exchange is not None:
            base = base.where(BotRow.exchange == exchange)
        if mode is not None:
            base = base.where(BotRow.mode == mode)
        base = base.execution_options(populate_existing=True)
        rows, total = await _page(
            self._session, base, BotRow.created_at.desc(), BotRow.id.desc(), limit=limit, offset=offset
        )
        return [_bot(row) for row in rows], total

    async def wanted_running(self) -> list[Bot]:
        """Bots whose desired state is running or paused, of every user, oldest first."""
        stmt = (
            select(BotRow)
            .where(BotRow.desired.in_(sorted(ACTIVE_DESIRED)))
            .order_by(BotRow.created_at, BotRow.id)
            .execution_options(populate_existing=True)
        )
        return [_bot(row) for row in (await self._session.execute(stmt)).scalars()]

    async def update(self, bot_id: str, *, now: datetime, **fields: Any) -> Bot:
        """Write ``fields`` (and ``updated_at``) and nothing else; the bot as stored after."""
        unknown = set(fields) - self._UPDATABLE
        if unknown:
            raise ValueError(f"not updatable: {sorted(unknown)}")
        values = {name: _column_value(name, value) for name, value in fields.items()}
        result = await self._session.execute(
            update(BotRow)
            .where(BotRow.id == bot_id)
            .values(updated_at=now, **values)
            .execution_options(synchronize_session=False)
        )
        if not getattr(result, "rowcount", 0):
            raise NotFound("Bot not found.")
        bot = await self.get(bot_id)
        assert bot is not None
        return bot

    async def delete(self, bot_id: str) -> None:
        """Deletes the bot with its events and lease (cascade); its orders and fills stay."""
        await self._session.execute(
            delete(BotRow).where(BotRow.id == bot_id).execution_options(synchronize_session=False)
        )


# --- events ---------------------------------------------------------------------------------------


def _event(row: BotEventRow) -> BotEvent:
    return BotEvent(
        id=row.id,
        bot_id=row.bot_id,
        user_id=row.user_id,
        kind=row.kind,
        message=row.message,
        data=dict(row.data or {}),
        timestamp=row.timestamp,
    )


class SqlBotEventRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, event: BotEvent) -> BotEvent:
        row = BotEventRow(
            bot_id=event.bot_id,
            user_id=event.user_id,
            kind=event.kind,
            message=event.message,
            data=dict(event.data),
            timestamp=event.timestamp,
        )
        self._session.add(row)
        await self._session.flush()
        return _event(row)

    async def list_for_bot(
        self,
        bot_id: str,
        *,
        kind: str | None = None,
        since: datetime | None = None,
        limit: int,
        offset: int,
    ) -> tuple[list[BotEvent], int]:
        """Newest first (by insertion order); ``since`` is inclusive."""
        base = select(BotEventRow).where(BotEventRow.bot_id == bot_id)
        if kind is not None:
            base = base.where(BotEventRow.kind == kind)
        if since is not None:
            base = base.where(BotEventRow.timestamp >= since)
        rows, total = await _page(self._session, base, BotEventRow.id.desc(), limit=limit, offset=offset)
        return [_event(row) for row in rows], total

    async def count_since(self, bot_id: str, *, kind: str, since: datetime) -> int:
        stmt = select(func.count()).where(
            BotEventRow.bot_id == bot_id, BotEventRow.kind == kind, BotEventRow.timestamp >= since
        )
        return int((await self._session.execute(stmt)).scalar_one())


# --- leases ---------------------------------------------------------------------------------------


def _lease(row: BotLeaseRow) -> BotLease:
    return BotLease(
        bot_id=row.bot_id,
        runner_id=row.runner_id,
        acquired_at=row.acquired_at,
        heartbeat_at=row.heartbeat_at,
        expires_at=row.expires_at,
    )


class SqlBotLeaseRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def acquire(self, bot_id: str, runner_id: str, *, now: datetime, ttl: timedelta) -> bool:
        """Take the lease when nobody holds it, it expired, or ``runner_id`` already holds it
        (then renew it, keeping ``acquired_at``). One atomic statement; True when ``runner_id``
        holds it afterwards. The bot must exist (foreign key)."""
        table = BotLeaseRow.__table__
        stmt = _insert(self._session, BotLeaseRow).values(
            bot_id=bot_id, runner_id=runner_id, acquired_at=now, heartbeat_at=now, expires_at=now + ttl
        )
        ours = table.c.runner_id == runner_id
        stmt = stmt.on_conflict_do_update(
            index_elements=["bot_id"],
            set_={
                "runner_id": stmt.excluded.runner_id,
                "acquired_at": case((ours, table.c.acquired_at), else_=stmt.excluded.acquired_at),
                "heartbeat_at": stmt.excluded.heartbeat_at,
                "expires_at": stmt.excluded.expires_at,
            },
            where=(table.c.expires_at <= now) | ours,
        ).returning(BotLeaseRow.runner_id)
        return (await self._session.execute(stmt)).scalar_one_or_none() == runner_id

    async def renew(self, runner_id: str, *, now: datetime, ttl: timedelta) -> list[str]:
        """Extend every lease ``runner_id`` still holds; their bot ids, sorted. A lease another
        runner took (or that was released, or whose bot was deleted) is absent: drop that bot.
        A lease that expired but that nobody took is still this runner's and is renewed (taking
        it needs ``acquire``, which is serialised with this statement)."""
        stmt = (
            update(BotLeaseRow)
            .where(BotLeaseRow.runner_id == runner_id)
            .values(heartbeat_at=now, expires_at=now + ttl)
            .returning(BotLeaseRow.bot_id)
            .execution_options(synchronize_session=False)
        )
        return sorted((await self._session.execute(stmt)).scalars())

    async def release(self, bot_id: str, runner_id: str) -> None:
        """Give the lease up (only when ``runner_id`` holds it)."""
        await self._session.execute(
            delete(BotLeaseRow)
            .where(BotLeaseRow.bot_id == bot_id, BotLeaseRow.runner_id == runner_id)
            .execution_options(synchronize_session=False)
        )

    async def holder(self, bot_id: str, *, now: datetime) -> BotLease | None:
        """The unexpired lease of the bot, if any."""
        stmt = (
            select(BotLeaseRow)
            .where(BotLeaseRow.bot_id == bot_id, BotLeaseRow.expires_at > now)
            .execution_options(populate_existing=True)
        )
        row = (await self._session.execute(stmt)).scalars().first()
        return _lease(row) if row else None
