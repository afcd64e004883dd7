"""Repositories: the ports in ``services/ports.py`` over SQLAlchemy. They never commit."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from cryptoorchestrator.core.errors import NotFound
from cryptoorchestrator.domain.identity import (
    ApiKey,
    ApiKeySecret,
    AuditEvent,
    AuditEventType,
    AuthSession,
    RefreshTokenRecord,
    RequestMeta,
    Role,
    Scope,
    User,
    UserCredentials,
)
from cryptoorchestrator.domain.jobs import Job, JobStatus
from cryptoorchestrator.domain.research import BacktestRecord, SavedStrategy
from cryptoorchestrator.persistence.tables import (
    ApiKeyRow,
    AuditLogRow,
    AuthSessionRow,
    BacktestRow,
    JobRow,
    RefreshTokenRow,
    StrategyRow,
    UserRow,
)


def _user(row: UserRow) -> User:
    return User(
        id=row.id,
        username=row.username,
        email=row.email,
        role=Role(row.role),
        is_active=row.is_active,
        first_name=row.first_name,
        last_name=row.last_name,
        totp_enabled=row.totp_enabled,
        created_at=row.created_at,
        updated_at=row.updated_at,
        last_login_at=row.last_login_at,
    )


def _credentials(row: UserRow) -> UserCredentials:
    return UserCredentials(
        user=_user(row), password_hash=row.password_hash, totp_secret_encrypted=row.totp_secret_encrypted
    )


class SqlUserRepository:
    _UPDATABLE = frozenset(
        {
            "username",
            "email",
            "first_name",
            "last_name",
            "password_hash",
            "role",
            "is_active",
            "totp_secret_encrypted",
            "totp_enabled",
            "last_login_at",
        }
    )

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(
        self,
        *,
        username: str,
        email: str,
        password_hash: str,
        role: Role,
        first_name: str | None,
        last_name: str | None,
        now: datetime,
    ) -> User:
        row = UserRow(
            username=username,
            email=email,
            password_hash=password_hash,
            role=role.value,
            is_active=True,
            first_name=first_name,
            last_name=last_name,
            totp_enabled=False,
            preferences={},
            created_at=now,
            updated_at=now,
        )
        self._session.add(row)
        await self._session.flush()
        return _user(row)

    async def get(self, user_id: int) -> User | None:
        row = await self._session.get(UserRow, user_id)
        return _user(row) if row else None

    async def get_credentials(self, user_id: int) -> UserCredentials | None:
        row = await self._session.get(UserRow, user_id)
        return _credentials(row) if row else None

    async def find_credentials_by_login(self, login: str) -> UserCredentials | None:
        lowered = login.strip().lower()
        stmt = select(UserRow).where(or_(func.lower(UserRow.username) == lowered, UserRow.email == lowered))
        row = (await self._session.execute(stmt)).scalars().first()
        return _credentials(row) if row else None

    async def exists(self, *, username: str | None = None, email: str | None = None) -> bool:
        conditions = []
        if username is not None:
            conditions.append(func.lower(UserRow.username) == username.lower())
        if email is not None:
            conditions.append(UserRow.email == email.lower())
        if not conditions:
            return False
        stmt = select(func.count()).select_from(UserRow).where(or_(*conditions))
        return bool((await self._session.execute(stmt)).scalar_one())

    async def update(self, user_id: int, *, now: datetime, **fields: Any) -> User:
        unknown = set(fields) - self._UPDATABLE
        if unknown:
            raise ValueError(f"not updatable: {sorted(unknown)}")
        row = await self._session.get(UserRow, user_id)
        if row is None:
            raise NotFound("User not found.")
        for name, value in fields.items():
            setattr(row, name, value.value if isinstance(value, Role) else value)
        row.updated_at = now
        await self._session.flush()
        return _user(row)

    async def list(self, *, limit: int, offset: int, search: str | None = None) -> tuple[list[User], int]:
        base = select(UserRow)
        if search:
            pattern = f"%{search.lower()}%"
            base = base.where(or_(func.lower(UserRow.username).like(pattern), UserRow.email.like(pattern)))
        total = (await self._session.execute(select(func.count()).select_from(base.subquery()))).scalar_one()
        rows = (await self._session.execute(base.order_by(UserRow.id).limit(limit).offset(offset))).scalars()
        return [_user(row) for row in rows], int(total)

    async def get_preferences(self, user_id: int) -> dict[str, Any]:
        row = await self._session.get(UserRow, user_id)
        if row is None:
            raise NotFound("User not found.")
        return dict(row.preferences or {})

    async def set_preferences(self, user_id: int, preferences: dict[str, Any], *, now: datetime) -> None:
        row = await self._session.get(UserRow, user_id)
        if row is None:
            raise NotFound("User not found.")
        row.preferences = dict(preferences)
        row.updated_at = now
        await self._session.flush()

    async def count_admins(self) -> int:
        stmt = select(func.count()).select_from(UserRow).where(UserRow.role == Role.ADMIN.value)
        return int((await self._session.execute(stmt)).scalar_one())

    async def encrypted_totp_secrets(self) -> list[tuple[int, str]]:
        stmt = select(UserRow.id, UserRow.totp_secret_encrypted).where(
            UserRow.totp_secret_encrypted.is_not(None)
        )
        return [(int(row[0]), str(row[1])) for row in (await self._session.execute(stmt)).all()]


def _session_record(row: AuthSessionRow) -> AuthSession:
    return AuthSession(
        id=row.id,
        user_id=row.user_id,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        revoked_reason=row.revoked_reason,
    )


class SqlSessionRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add_session(
        self, *, session_id: str, user_id: int, now: datetime, expires_at: datetime, meta_ip: str | None
    ) -> AuthSession:
        row = AuthSessionRow(
            id=session_id, user_id=user_id, created_at=now, expires_at=expires_at, ip=meta_ip
        )
        self._session.add(row)
        await self._session.flush()
        return _session_record(row)

    async def get_session(self, session_id: str) -> AuthSession | None:
        row = await self._session.get(AuthSessionRow, session_id)
        return _session_record(row) if row else None

    async def get_active_session_user(self, session_id: str, user_id: int) -> User | None:
        """The user of a live (not revoked) session, in one query: the hot path of every request."""
        stmt = (
            select(UserRow)
            .join(AuthSessionRow, AuthSessionRow.user_id == UserRow.id)
            .where(
                AuthSessionRow.id == session_id,
                AuthSessionRow.user_id == user_id,
                AuthSessionRow.revoked_at.is_(None),
            )
        )
        row = (await self._session.execute(stmt)).scalars().first()
        return _user(row) if row else None

    async def revoke_session(self, session_id: str, *, now: datetime, reason: str) -> None:
        await self._session.execute(
            update(AuthSessionRow)
            .where(AuthSessionRow.id == session_id, AuthSessionRow.revoked_at.is_(None))
            .values(revoked_at=now, revoked_reason=reason)
        )

    async def revoke_all_for_user(self, user_id: int, *, now: datetime, reason: str) -> int:
        result = await self._session.execute(
            update(AuthSessionRow)
            .where(AuthSessionRow.user_id == user_id, AuthSessionRow.revoked_at.is_(None))
            .values(revoked_at=now, revoked_reason=reason)
        )
        return int(getattr(result, "rowcount", 0) or 0)

    async def add_refresh_token(
        self, *, token_id: str, session_id: str, user_id: int, expires_at: datetime
    ) -> None:
        self._session.add(
            RefreshTokenRow(id=token_id, session_id=session_id, user_id=user_id, expires_at=expires_at)
        )
        await self._session.flush()

    async def mark_refresh_token_used(self, token_id: str, *, now: datetime) -> bool:
        """Atomically claim a refresh token; False when it was already used (a replay)."""
        result = await self._session.execute(
            update(RefreshTokenRow)
            .where(RefreshTokenRow.id == token_id, RefreshTokenRow.used_at.is_(None))
            .values(used_at=now)
        )
        return bool(getattr(result, "rowcount", 0))

    async def get_refresh_token(self, token_id: str) -> RefreshTokenRecord | None:
        row = await self._session.get(RefreshTokenRow, token_id)
        if row is None:
            return None
        return RefreshTokenRecord(
            token_id=row.id,
            session_id=row.session_id,
            user_id=row.user_id,
            expires_at=row.expires_at,
            used_at=row.used_at,
        )


def _api_key(row: ApiKeyRow) -> ApiKey:
    return ApiKey(
        id=row.id,
        user_id=row.user_id,
        name=row.name,
        prefix=row.prefix,
        scopes=frozenset(Scope(scope) for scope in row.scopes.split(",") if scope),
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
    )


class SqlApiKeyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(
        self,
        *,
        user_id: int,
        name: str,
        prefix: str,
        digest: str,
        scopes: frozenset[Scope],
        now: datetime,
        expires_at: datetime | None,
    ) -> ApiKey:
        row = ApiKeyRow(
            user_id=user_id,
            name=name,
            prefix=prefix,
            key_hash=digest,
            scopes=",".join(sorted(scope.value for scope in scopes)),
            created_at=now,
            expires_at=expires_at,
        )
        self._session.add(row)
        await self._session.flush()
        return _api_key(row)

    async def list_for_user(self, user_id: int, *, limit: int, offset: int) -> tuple[list[ApiKey], int]:
        base = select(ApiKeyRow).where(ApiKeyRow.user_id == user_id, ApiKeyRow.revoked_at.is_(None))
        total = (await self._session.execute(select(func.count()).select_from(base.subquery()))).scalar_one()
        rows = (
            await self._session.execute(base.order_by(ApiKeyRow.id).limit(limit).offset(offset))
        ).scalars()
        return [_api_key(row) for row in rows], int(total)

    async def get_for_user(self, key_id: int, user_id: int) -> ApiKey | None:
        stmt = select(ApiKeyRow).where(
            ApiKeyRow.id == key_id, ApiKeyRow.user_id == user_id, ApiKeyRow.revoked_at.is_(None)
        )
        row = (await self._session.execute(stmt)).scalars().first()
        return _api_key(row) if row else None

    async def find_by_prefix(self, prefix: str) -> ApiKeySecret | None:
        row = (
            (await self._session.execute(select(ApiKeyRow).where(ApiKeyRow.prefix == prefix)))
            .scalars()
            .first()
        )
        return ApiKeySecret(key=_api_key(row), digest=row.key_hash) if row else None

    async def revoke(self, key_id: int, *, now: datetime) -> None:
        await self._session.execute(update(ApiKeyRow).where(ApiKeyRow.id == key_id).values(revoked_at=now))

    async def touch(self, key_id: int, *, now: datetime) -> None:
        await self._session.execute(update(ApiKeyRow).where(ApiKeyRow.id == key_id).values(last_used_at=now))


class SqlAuditRepository:
    """Append-only by construction: it can add and read, nothing else."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, event: AuditEvent) -> None:
        self._session.add(
            AuditLogRow(
                created_at=event.created_at,
                event=event.event.value,
                success=event.success,
                actor_user_id=event.actor_user_id,
                target_user_id=event.target_user_id,
                ip=event.meta.ip,
                user_agent=(event.meta.user_agent or "")[:256] or None,
                request_id=event.meta.request_id,
                details=dict(event.details),
            )
        )
        await self._session.flush()

    async def list(
        self, *, limit: int, offset: int, user_id: int | None = None, event: str | None = None
    ) -> tuple[list[AuditEvent], int]:
        base = select(AuditLogRow)
        if user_id is not None:
            base = base.where(
                or_(AuditLogRow.actor_user_id == user_id, AuditLogRow.target_user_id == user_id)
            )
        if event is not None:
            base = base.where(AuditLogRow.event == event)
        total = (await self._session.execute(select(func.count()).select_from(base.subquery()))).scalar_one()
        stmt = base.order_by(AuditLogRow.id.desc()).limit(limit).offset(offset)
        rows = (await self._session.execute(stmt)).scalars()
        return [
            AuditEvent(
                id=row.id,
                event=AuditEventType(row.event),
                success=row.success,
                created_at=row.created_at,
                actor_user_id=row.actor_user_id,
                target_user_id=row.target_user_id,
                meta=RequestMeta(ip=row.ip, user_agent=row.user_agent, request_id=row.request_id),
                details=dict(row.details or {}),
            )
            for row in rows
        ], int(total)


def _job(row: JobRow) -> Job:
    return Job(
        id=row.id,
        user_id=row.user_id,
        kind=row.kind,
        status=JobStatus(row.status),
        progress_percent=float(row.progress_percent),
        params=dict(row.params or {}),
        created_at=row.created_at,
        message=row.message,
        result=row.result,
        error=row.error,
        started_at=row.started_at,
        finished_at=row.finished_at,
        heartbeat_at=row.heartbeat_at,
        cancel_requested=row.cancel_requested,
        worker=row.worker,
    )


class SqlJobRepository:
    _UPDATABLE = frozenset(
        {"status", "progress_percent", "message", "result", "error", "cancel_requested", "worker",
         "started_at", "finished_at", "heartbeat_at"}
    )  # fmt: skip

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(
        self, *, job_id: str, user_id: int, kind: str, params: dict[str, Any], now: datetime
    ) -> Job:
        row = JobRow(
            id=job_id,
            user_id=user_id,
            kind=kind,
            status=JobStatus.QUEUED.value,
            progress_percent=0.0,
            params=params,
            cancel_requested=False,
            created_at=now,
        )
        self._session.add(row)
        await self._session.flush()
        return _job(row)

    async def get(self, job_id: str) -> Job | None:
        row = await self._session.get(JobRow, job_id)
        return _job(row) if row else None

    async def get_for_user(self, job_id: str, user_id: int) -> Job | None:
        row = await self._session.get(JobRow, job_id)
        return _job(row) if row and row.user_id == user_id else None

    async def list_for_user(
        self, user_id: int, *, limit: int, offset: int, status: str | None = None, kind: str | None = None
    ) -> tuple[list[Job], int]:
        base = select(JobRow).where(JobRow.user_id == user_id)
        if status is not None:
            base = base.where(JobRow.status == status)
        if kind is not None:
            base = base.where(JobRow.kind == kind)
        total = (await self._session.execute(select(func.count()).select_from(base.subquery()))).scalar_one()
        stmt = base.order_by(JobRow.created_at.desc(), JobRow.id).limit(limit).offset(offset)
        return [_job(row) for row in (await self._session.execute(stmt)).scalars()], int(total)

    async def update(self, job_id: str, **fields: Any) -> None:
        unknown = set(fields) - self._UPDATABLE
        if unknown:
            raise ValueError(f"not updatable: {sorted(unknown)}")
        values = {k: (v.value if isinstance(v, JobStatus) else v) for k, v in fields.items()}
        await self._session.execute(update(JobRow).where(JobRow.id == job_id).values(**values))

    async def delete(self, job_id: str) -> None:
        row = await self._session.get(JobRow, job_id)
        if row is not None:
            await self._session.delete(row)
            await self._session.flush()

    async def active(self) -> list[Job]:
        stmt = select(JobRow).where(JobRow.status.in_([JobStatus.QUEUED.value, JobStatus.RUNNING.value]))
        return [_job(row) for row in (await self._session.execute(stmt)).scalars()]


def _strategy(row: StrategyRow) -> SavedStrategy:
    return SavedStrategy(
        id=row.id,
        user_id=row.user_id,
        name=row.name,
        strategy_type=row.strategy_type,
        params=dict(row.params or {}),
        description=row.description,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


class SqlStrategyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, record: SavedStrategy) -> SavedStrategy:
        row = StrategyRow(
            id=record.id,
            user_id=record.user_id,
            name=record.name,
            strategy_type=record.strategy_type,
            params=record.params,
            description=record.description,
            created_at=record.created_at,
            updated_at=record.updated_at,
        )
        self._session.add(row)
        await self._session.flush()
        return _strategy(row)

    async def get_for_user(self, strategy_id: str, user_id: int) -> SavedStrategy | None:
        row = await self._session.get(StrategyRow, strategy_id)
        return _strategy(row) if row and row.user_id == user_id else None

    async def name_taken(self, user_id: int, name: str, *, except_id: str | None = None) -> bool:
        stmt = select(StrategyRow.id).where(StrategyRow.user_id == user_id, StrategyRow.name == name)
        found = (await self._session.execute(stmt)).scalars().first()
        return found is not None and found != except_id

    async def list_for_user(
        self, user_id: int, *, limit: int, offset: int
    ) -> tuple[list[SavedStrategy], int]:
        base = select(StrategyRow).where(StrategyRow.user_id == user_id)
        total = (await self._session.execute(select(func.count()).select_from(base.subquery()))).scalar_one()
        stmt = base.order_by(StrategyRow.created_at, StrategyRow.id).limit(limit).offset(offset)
        return [_strategy(row) for row in (await self._session.execute(stmt)).scalars()], int(total)

    async def update(self, strategy_id: str, *, now: datetime, **fields: Any) -> SavedStrategy:
        row = await self._session.get(StrategyRow, strategy_id)
        if row is None:
            raise NotFound("Strategy not found.")
        for name, value in fields.items():
            if name not in ("name", "strategy_type", "params", "description"):
                raise ValueError(f"not updatable: {name}")
            setattr(row, name, value)
        row.updated_at = now
        await self._session.flush()
        return _strategy(row)

    async def delete(self, strategy_id: str) -> None:
        row = await self._session.get(StrategyRow, strategy_id)
        if row is not None:
            await self._session.delete(row)
            await self._session.flush()


def _backtest(row: BacktestRow) -> BacktestRecord:
    return BacktestRecord(
        id=row.id,
        user_id=row.user_id,
        job_id=row.job_id,
        strategy_id=row.strategy_id,
        strategy_type=row.strategy_type,
        params=dict(row.params or {}),
        request=dict(row.request or {}),
        created_at=row.created_at,
        metrics=row.metrics,
        summary=row.summary,
    )


class SqlBacktestRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, record: BacktestRecord) -> BacktestRecord:
        row = BacktestRow(
            id=record.id,
            user_id=record.user_id,
            job_id=record.job_id,
            strategy_id=record.strategy_id,
            strategy_type=record.strategy_type,
            params=record.params,
            request=record.request,
            created_at=record.created_at,
        )
        self._session.add(row)
        await self._session.flush()
        return _backtest(row)

    async def get(self, backtest_id: str) -> BacktestRecord | None:
        row = await self._session.get(BacktestRow, backtest_id)
        return _backtest(row) if row else None

    async def get_for_user(self, backtest_id: str, user_id: int) -> BacktestRecord | None:
        row = await self._session.get(BacktestRow, backtest_id)
        return _backtest(row) if row and row.user_id == user_id else None

    async def list_for_user(
        self, user_id: int, *, limit: int, offset: int
    ) -> tuple[list[BacktestRecord], int]:
        base = select(BacktestRow).where(BacktestRow.user_id == user_id)
        total = (await self._session.execute(select(func.count()).select_from(base.subquery()))).scalar_one()
        stmt = base.order_by(BacktestRow.created_at.desc(), BacktestRow.id).limit(limit).offset(offset)
        return [_backtest(row) for row in (await self._session.execute(stmt)).scalars()], int(total)

    async def set_job(self, backtest_id: str, job_id: str) -> None:
        await self._session.execute(
            update(BacktestRow).where(BacktestRow.id == backtest_id).values(job_id=job_id)
        )

    async def set_results(
        self, backtest_id: str, *, metrics: dict[str, Any], summary: dict[str, Any]
    ) -> None:
        await self._session.execute(
            update(BacktestRow).where(BacktestRow.id == backtest_id).values(metrics=metrics, summary=summary)
        )

    async def delete(self, backtest_id: str) -> None:
        row = await self._session.get(BacktestRow, backtest_id)
        if row is not None:
            await self._session.delete(row)
            await self._session.flush()
