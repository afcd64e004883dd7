"""The persistence ports the services depend on. ``persistence`` implements them; ``bootstrap``
wires the implementation in; tests may substitute their own."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Protocol, Self

from cryptoorchestrator.domain.identity import (
    ApiKey,
    ApiKeySecret,
    AuditEvent,
    AuthSession,
    RefreshTokenRecord,
    Role,
    Scope,
    User,
    UserCredentials,
)
from cryptoorchestrator.domain.jobs import Job
from cryptoorchestrator.domain.research import BacktestRecord, SavedStrategy


class UserRepository(Protocol):
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
    ) -> User: ...

    async def get(self, user_id: int) -> User | None: ...

    async def get_credentials(self, user_id: int) -> UserCredentials | None: ...

    async def find_credentials_by_login(self, login: str) -> UserCredentials | None: ...

    async def exists(self, *, username: str | None = None, email: str | None = None) -> bool: ...

    async def update(self, user_id: int, *, now: datetime, **fields: Any) -> User: ...

    async def list(self, *, limit: int, offset: int, search: str | None = None) -> tuple[list[User], int]: ...

    async def get_preferences(self, user_id: int) -> dict[str, Any]: ...

    async def set_preferences(self, user_id: int, preferences: dict[str, Any], *, now: datetime) -> None: ...

    async def count_admins(self) -> int: ...

    async def encrypted_totp_secrets(self) -> list[tuple[int, str]]: ...


class SessionRepository(Protocol):
    async def add_session(
        self, *, session_id: str, user_id: int, now: datetime, expires_at: datetime, meta_ip: str | None
    ) -> AuthSession: ...

    async def get_session(self, session_id: str) -> AuthSession | None: ...

    async def get_active_session_user(self, session_id: str, user_id: int) -> User | None: ...

    async def revoke_session(self, session_id: str, *, now: datetime, reason: str) -> None: ...

    async def revoke_all_for_user(self, user_id: int, *, now: datetime, reason: str) -> int: ...

    async def add_refresh_token(
        self, *, token_id: str, session_id: str, user_id: int, expires_at: datetime
    ) -> None: ...

    async def mark_refresh_token_used(self, token_id: str, *, now: datetime) -> bool: ...

    async def get_refresh_token(self, token_id: str) -> RefreshTokenRecord | None: ...


class ApiKeyRepository(Protocol):
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
    ) -> ApiKey: ...

    async def list_for_user(self, user_id: int, *, limit: int, offset: int) -> tuple[list[ApiKey], int]: ...

    async def get_for_user(self, key_id: int, user_id: int) -> ApiKey | None: ...

    async def find_by_prefix(self, prefix: str) -> ApiKeySecret | None: ...

    async def revoke(self, key_id: int, *, now: datetime) -> None: ...

    async def touch(self, key_id: int, *, now: datetime) -> None: ...


class AuditRepository(Protocol):
    async def add(self, event: AuditEvent) -> None: ...

    async def list(
        self, *, limit: int, offset: int, user_id: int | None = None, event: str | None = None
    ) -> tuple[list[AuditEvent], int]: ...


class JobRepository(Protocol):
    async def add(
        self, *, job_id: str, user_id: int, kind: str, params: dict[str, Any], now: datetime
    ) -> Job: ...

    async def get(self, job_id: str) -> Job | None: ...

    async def get_for_user(self, job_id: str, user_id: int) -> Job | None: ...

    async def list_for_user(
        self, user_id: int, *, limit: int, offset: int, status: str | None = None, kind: str | None = None
    ) -> tuple[list[Job], int]: ...

    async def update(self, job_id: str, **fields: Any) -> None: ...

    async def delete(self, job_id: str) -> None: ...

    async def active(self) -> list[Job]: ...


class StrategyRepository(Protocol):
    async def add(self, record: SavedStrategy) -> SavedStrategy: ...

    async def get_for_user(self, strategy_id: str, user_id: int) -> SavedStrategy | None: ...

    async def name_taken(self, user_id: int, name: str, *, except_id: str | None = None) -> bool: ...

    async def list_for_user(
        self, user_id: int, *, limit: int, offset: int
    ) -> tuple[list[SavedStrategy], int]: ...

    async def update(self, strategy_id: str, *, now: datetime, **fields: Any) -> SavedStrategy: ...

    async def delete(self, strategy_id: str) -> None: ...


class BacktestRepository(Protocol):
    async def add(self, record: BacktestRecord) -> BacktestRecord: ...

    async def get(self, backtest_id: str) -> BacktestRecord | None: ...

    async def get_for_user(self, backtest_id: str, user_id: int) -> BacktestRecord | None: ...

    async def list_for_user(
        self, user_id: int, *, limit: int, offset: int
    ) -> tuple[list[BacktestRecord], int]: ...

    async def set_job(self, backtest_id: str, job_id: str) -> None: ...

    async def set_results(
        self, backtest_id: str, *, metrics: dict[str, Any], summary: dict[str, Any]
    ) -> None: ...

    async def delete(self, backtest_id: str) -> None: ...


class EncryptedSecretRepository(Protocol):
    """Every column that holds a secret encrypted with the SecretBox (for key rotation)."""

    async def all(self) -> list[tuple[str, Any, str, str]]: ...

    async def replace(self, table: str, key: Any, column: str, ciphertext: str) -> None: ...


class UnitOfWork(Protocol):
    """One transaction. Services own it: ``async with uow_factory() as uow: ...; await uow.commit()``.

    Leaving the block without ``commit`` rolls back."""

    users: UserRepository
    sessions: SessionRepository
    api_keys: ApiKeyRepository
    audit: AuditRepository
    secrets: EncryptedSecretRepository
    jobs: JobRepository
    strategies: StrategyRepository
    backtests: BacktestRepository

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def commit(self) -> None: ...

    async def rollback(self) -> None: ...


class UnitOfWorkFactory(Protocol):
    def __call__(self) -> UnitOfWork: ...


class HealthProbe(Protocol):
    async def ping(self) -> None: ...


__all__: Sequence[str] = (
    "ApiKeyRepository",
    "AuditRepository",
    "EncryptedSecretRepository",
    "HealthProbe",
    "JobRepository",
    "SessionRepository",
    "UnitOfWork",
    "UnitOfWorkFactory",
    "UserRepository",
)
